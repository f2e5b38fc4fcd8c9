"""Where sparse pieces go in the pool: free ranges, exact-length holes first, then next-fit.

Pure NumPy on (part, start, length) arrays; called by the working set each round for the
incoming sparse coordinates (dense ones have fixed homes).
"""

from __future__ import annotations

import numpy as np

__all__ = ["entry_index", "free_ranges", "place_pieces"]


def free_ranges(parts_cap, part, start, length):
    """Free ranges (part, start, length) of pools holding pieces at (part, start, length)."""
    order = np.lexsort((start, part))
    part, start, end = part[order], start[order], (start + length)[order]
    fp, fs, fe = [], [], []
    for p, cap in enumerate(parts_cap):
        sel = part == p
        s_p, e_p = start[sel], end[sel]
        fs.append(np.concatenate([[0], e_p]))
        fe.append(np.concatenate([s_p, [cap]]))
        fp.append(np.full(len(s_p) + 1, p))
    fp, fs, fe = (np.concatenate(x).astype(np.int64) for x in (fp, fs, fe))
    keep = fe > fs
    return fp[keep], fs[keep], (fe - fs)[keep]


def entry_index(starts, lengths):
    """The position of every entry of pieces starting at ``starts`` with ``lengths``, piece
    after piece: starts[i], starts[i] + 1, ..., starts[i] + lengths[i] - 1, then piece i + 1."""
    lengths = np.asarray(lengths, dtype=np.int64)
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])  # each piece's first entry, packed
    return np.repeat(starts - first, lengths) + np.arange(int(lengths.sum()))


def place_pieces(lengths, free_part, free_start, free_len):
    """Where pieces of ``lengths`` (in priority order) go in the free ranges, or -1.

    Pieces of exactly a free range's length take such a range first (matched by length, in
    priority order: after evictions the holes are mostly of the sizes that come back in);
    the rest go next-fit, in priority order, through the remaining ranges in address order:
    as many consecutive pieces as fit into a range, then the next range; a piece larger
    than every remaining range is refused. Vectorised but for one step per range used.

    Returns (part, offset) arrays of the pieces' length, -1 where refused.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    n = len(lengths)
    out_part = np.full(n, -1, dtype=np.int64)
    out_off = np.full(n, -1, dtype=np.int64)
    if n == 0 or len(free_len) == 0:
        return out_part, out_off
    # 1. exact fits, matched within each length: the k-th piece of length L (priority
    #    order) takes the k-th free range of length L (address order).
    fo = np.lexsort((free_start, free_part, free_len))
    fl = free_len[fo]
    eo = np.argsort(lengths, kind="stable")
    el = lengths[eo]
    e_rank = np.arange(n) - np.searchsorted(el, el, side="left")
    first = np.searchsorted(fl, el, side="left")
    count = np.searchsorted(fl, el, side="right") - first
    hit = e_rank < count
    ranges = fo[first[hit] + e_rank[hit]]
    out_part[eo[hit]] = free_part[ranges]
    out_off[eo[hit]] = free_start[ranges]
    used = np.zeros(len(free_len), dtype=bool)
    used[ranges] = True
    # 2. next-fit for the rest through the unused ranges
    rest = np.flatnonzero(out_part < 0)
    if len(rest) == 0:
        return out_part, out_off
    gi = np.flatnonzero(~used)
    gi = gi[np.lexsort((free_start[gi], free_part[gi]))]
    gi = gi[free_len[gi] >= lengths[rest].min()]
    glen = free_len[gi]
    suffix_max = np.maximum.accumulate(glen[::-1])[::-1] if len(gi) else glen
    L = lengths[rest]
    csum = np.concatenate([[0], np.cumsum(L)])
    pos = 0
    for j in range(len(gi)):
        while pos < len(rest) and L[pos] > suffix_max[j]:
            pos += 1  # fits no remaining range: refused this round
        if pos >= len(rest):
            break
        if L[pos] > glen[j]:
            continue
        k = int(np.searchsorted(csum[pos + 1 :] - csum[pos], glen[j], side="right"))
        idx = rest[pos : pos + k]
        out_part[idx] = free_part[gi[j]]
        out_off[idx] = free_start[gi[j]] + csum[pos : pos + k] - csum[pos]
        pos += k
    return out_part, out_off
