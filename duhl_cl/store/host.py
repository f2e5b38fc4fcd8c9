"""The host tier: the host ledger (the package's own host memory for coordinate data, under
``host_budget``) and the host cache of coordinates read from disk, ranked by the gap memory.

:class:`HostLedger` counts every buffer of coordinate data the disk tier
(duhl_cl.store.tiered) allocates: the cache, the streaming passes' read buffers and float64
copies of a block, and the buffers of coordinates fetched for the device. A buffer that
would take it over its budget is a :class:`HostBudgetError`; its peak goes into ``stats_``.

:class:`HostCache` holds the coordinates the gap memory ranks next after the device's
(:meth:`HostCache.rank`, after each certificate): a coordinate that enters the device comes
from here when it is here, else from disk; the host refresh (unit A) refreshes the gaps of
the coordinates held here. Dense coordinates live in one slab of equal rows; sparse ones as
one (indices, values) pair each, counted with :data:`SPARSE_OVERHEAD` bytes of bookkeeping.

:func:`available_memory` is what the machine (or the process's memory cgroup) can spare.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["HostBudgetError", "HostCache", "HostLedger", "available_memory", "default_host_budget"]

# Bytes of bookkeeping counted per cached sparse coordinate (two NumPy arrays and a dict
# entry: about 2 x 112 + 100 bytes on CPython 3.11).
SPARSE_OVERHEAD = 320


class HostBudgetError(MemoryError):
    """The host tier would use more host memory than ``host_budget``."""


class HostLedger:
    """Bytes of host memory the disk tier holds for coordinate data, against a budget."""

    def __init__(self, budget: int):
        self.budget = int(budget)
        self.used = 0
        self.peak = 0
        self._held = {}

    def empty(self, shape, dtype, what="buffer"):
        """A new array, counted until :meth:`free`."""
        n = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        self.take(n, what)
        a = np.empty(shape, dtype=dtype)
        self._held[id(a)] = n
        return a

    def take(self, n, what="data"):
        if self.used + n > self.budget:
            raise HostBudgetError(
                f"the host tier needs {self.used + n} bytes for {what}, above host_budget "
                f"{self.budget}; raise host_budget"
            )
        self.used += n
        self.peak = max(self.peak, self.used)

    def give(self, n):
        self.used -= n

    def free(self, a):
        if a is not None:
            self.give(self._held.pop(id(a), 0))


class HostCache:
    """Coordinates held in host memory (see module docstring).

    Parameters
    ----------
    data : duhl_cl.store.disk.DiskData
    ledger : HostLedger
    capacity : int -- bytes the cache may hold
    """

    def __init__(self, data, ledger, capacity):
        self.data, self.ledger = data, ledger
        self.capacity = max(int(capacity), 0)
        self.itemsize = data.dtype.itemsize
        self.coord_slot = np.full(data.n_coords, -1, dtype=np.int64)
        self.slab = None
        self.pieces = {}  # sparse: coord -> (idx, val)
        self.n_cached = 0
        row = data.dim * self.itemsize
        if not data.sparse:
            self.n_rows = min(self.capacity // max(row, 1), data.n_coords)
        self.bytes_filled = 0  # read from disk into the cache, in total
        # Whether, at the last rank, every coordinate with a positive gap was cached, and for
        # how many ranks in a row it was not.
        self.holds_active = False
        self.short_ranks = 0
        # A stream's fill (offer): what holds each row of the slab, at what key.
        self._slot_coord = self._slot_key = None

    def cost(self, coords):
        """Cache bytes of ``coords``."""
        if not self.data.sparse:
            return np.full(len(coords), self.data.dim * self.itemsize, dtype=np.int64)
        return self.data.lens[coords].astype(np.int64) * (self.itemsize + 4) + SPARSE_OVERHEAD

    @property
    def cached(self) -> np.ndarray:
        """The cached coordinates, ascending."""
        return np.flatnonzero(self.coord_slot >= 0)

    def rank(self, z, exclude=None, chunk_entries=1 << 20) -> int:
        """Hold the highest-gap coordinates (``z``, the gap memory) outside ``exclude`` (the
        device's) that fit; returns the bytes read from disk to fill it."""
        if self.capacity <= 0:
            return 0
        key = np.where(np.isnan(z), np.inf, z).astype(np.float64)
        if exclude is not None and len(exclude):
            key = key.copy()
            key[exclude] = -np.inf
        order = np.argsort(-key, kind="stable")
        order = order[key[order] > -np.inf]
        k = int(np.searchsorted(np.cumsum(self.cost(order)), self.capacity, side="right"))
        want = np.zeros(self.data.n_coords, dtype=bool)
        want[order[:k]] = True
        self.holds_active = not np.any(key[~want] > 0)
        self.short_ranks = 0 if self.holds_active else self.short_ranks + 1
        held = self.coord_slot >= 0
        self._evict(np.flatnonzero(held & ~want))
        load = np.flatnonzero(want & ~held)
        if not len(load):
            return 0
        before = self.data.bytes_read
        if self.data.sparse:
            self._load_sparse(load, chunk_entries)
        else:
            self._load_dense(load, chunk_entries)
        got = self.data.bytes_read - before
        self.bytes_filled += got
        return got

    def _evict(self, coords):
        if not len(coords):
            return
        if self.data.sparse:
            for c in coords.tolist():
                del self.pieces[c]
            self.ledger.give(int(self.cost(coords).sum()))
        self.coord_slot[coords] = -1
        self.n_cached -= len(coords)

    def _load_dense(self, load, chunk_entries):
        d = self.data
        if self.slab is None:
            self.slab = self.ledger.empty((self.n_rows, d.dim), d.dtype, "the host cache")
        used = np.zeros(self.n_rows, dtype=bool)
        used[self.coord_slot[self.coord_slot >= 0]] = True
        free = np.flatnonzero(~used)
        rows = free[: len(load)]
        load = load[: len(rows)]
        # Runs of consecutive coordinates into consecutive free rows: one read each.
        brk = np.flatnonzero((np.diff(load) != 1) | (np.diff(rows) != 1)) + 1
        for a, b in zip(np.r_[0, brk], np.r_[brk, len(load)], strict=True):
            step = max(1, chunk_entries // max(d.dim, 1))
            for s in range(a, b, step):
                e = min(b, s + step)
                out = self.slab[rows[s] : rows[s] + (e - s)]
                d.read_run(int(load[s]), int(load[e - 1]) + 1, out.reshape(-1))
        self.coord_slot[load] = rows
        self.n_cached += len(load)

    def _load_sparse(self, load, chunk_entries):
        d = self.data
        self.ledger.take(int(self.cost(load).sum()), "the host cache")
        brk = np.flatnonzero(np.diff(load) != 1) + 1
        for a, b in zip(np.r_[0, brk], np.r_[brk, len(load)], strict=True):
            lens = d.lens[load[a:b]].astype(np.int64)
            ends = np.cumsum(lens)
            s = a
            while s < b:
                # As many consecutive coordinates as make chunk_entries (at least one).
                base = ends[s - a - 1] if s > a else 0
                e = a + int(np.searchsorted(ends, base + chunk_entries, side="right"))
                e = min(max(e, s + 1), b)
                n = int(ends[e - a - 1] - base)
                val = np.empty(n, d.dtype)
                idx = np.empty(n, np.int32)
                d.read_run(int(load[s]), int(load[e - 1]) + 1, val, idx)
                o = np.concatenate([[0], np.cumsum(lens[s - a : e - a])])
                for j, c in enumerate(load[s:e].tolist()):
                    self.pieces[c] = (idx[o[j] : o[j + 1]].copy(), val[o[j] : o[j + 1]].copy())
                s = e
        self.coord_slot[load] = 1
        self.n_cached += len(load)

    # -- filled from a stream's blocks (a certificate that reads every coordinate anyway)
    def begin_fill(self) -> bool:
        """Start taking rows from the blocks a stream reads (:meth:`offer`); False without
        a cache (or room for one row) or over a sparse store (whose rank reads what it
        needs)."""
        if self.capacity <= 0 or self.data.sparse or self.n_rows <= 0:
            return False
        if self.slab is None:
            self.slab = self.ledger.empty((self.n_rows, self.data.dim), self.data.dtype,
                                          "the host cache")  # fmt: skip
        held = self.cached
        # Per row of the slab: what holds it (-1: free) and the key it would be given up at
        # (-inf: free; +inf: a coordinate the stream has not reached, kept until it has).
        self._slot_coord = np.full(self.n_rows, -1, dtype=np.int64)
        self._slot_coord[self.coord_slot[held]] = held
        self._slot_key = np.where(self._slot_coord >= 0, np.inf, -np.inf)
        return True

    def offer(self, a, b, key, block):
        """Coordinates ``a..b-1`` as a stream read them (``block``, (b - a, dim)) with their
        fresh cache keys: they take the cache's rows that are free or hold the lowest keys
        the stream has seen, where lower than theirs (ties: the first come, as the rank's
        stable order), copied from the block, no read. So the cache holds the highest
        keys of the stream, but for rows it held that the stream had not yet reached when
        a row could have had their place. The rank after the stream still decides what is
        held; this saves it reading, one by one, what the stream had in hand (a 16 GiB
        SVM's certificates read 0.2-0.9 GiB of 4 KiB rows that way after each stream, 3-11
        s each)."""
        slot = self.coord_slot[a:b]
        held = slot >= 0
        self._slot_key[slot[held]] = key[held]
        # (Only a key above the lowest held one can take a row: most blocks stop here.)
        cand = np.flatnonzero(~held & (key > max(-np.inf, float(self._slot_key.min()))))
        if not len(cand):
            return
        cand = cand[np.argsort(-key[cand], kind="stable")]
        m = min(len(cand), self.n_rows)
        low = np.argpartition(self._slot_key, m - 1)[:m] if m < self.n_rows else np.arange(m)
        low = low[np.argsort(self._slot_key[low], kind="stable")]
        t = int(np.count_nonzero(key[cand[:m]] > self._slot_key[low]))  # (both monotone)
        if not t:
            return
        cand, rows = cand[:t], low[:t]
        gone = self._slot_coord[rows]
        self._evict(gone[gone >= 0])
        self.slab[rows] = block[cand]
        self.coord_slot[cand + a] = rows
        self._slot_coord[rows] = cand + a
        self._slot_key[rows] = key[cand]
        self.n_cached += t

    def end_fill(self):
        self._slot_coord = self._slot_key = None

    def holds(self, a, b) -> bool:
        """Whether coordinates ``a..b-1`` are all cached."""
        return self.capacity > 0 and bool(np.all(self.coord_slot[a:b] >= 0))

    def copy_block(self, a, b, val, idx=None):
        """Coordinates ``a..b-1`` (all cached) back to back into ``val`` (and ``idx``), as a
        read of them from disk would leave them."""
        if not self.data.sparse:
            k, d = b - a, self.data.dim
            np.take(self.slab, self.coord_slot[a:b], axis=0, out=val[: k * d].reshape(k, d))
            return
        o = 0
        for c in range(a, b):
            i, v = self.pieces[c]
            val[o : o + len(v)] = v
            idx[o : o + len(v)] = i
            o += len(v)

    def release(self):
        self._evict(self.cached)
        if self.slab is not None:
            self.ledger.free(self.slab)
            self.slab = None


def _cgroup_free():
    """Bytes the process's memory cgroup (v1 or v2) has left, or None."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, ctrl, rel = line.split(":", 2)
        if ctrl == "memory":
            base = Path("/sys/fs/cgroup/memory") / rel.lstrip("/")
            lim = base / "memory.limit_in_bytes"
        elif ctrl == "":
            base = Path("/sys/fs/cgroup") / rel.lstrip("/")
            lim = base / "memory.max"
        else:
            continue
        try:
            limit = lim.read_text().strip()
            if limit == "max" or int(limit) >= 1 << 60:
                return None
            # Page cache counts in the group's usage but is reclaimed: only the limit binds
            # what the package may hold, less what the process holds already.
            return int(limit) - _rss()
        except (OSError, ValueError):
            return None
    return None


def _rss():
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def available_memory() -> int:
    """Host memory this process can spare now: MemAvailable, bounded by its memory cgroup."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            avail = 1 << 30
    cg = _cgroup_free()
    return max(0, min(avail, cg) if cg is not None else avail)


def default_host_budget(data_bytes: int, reserve: int) -> int:
    """host_budget=None: the whole store when half of what the machine can spare holds it,
    else that half (never all of it: the device's own buffers, the shared vectors and the
    gap memory live in host memory too)."""
    return int(max(min(data_bytes + reserve, available_memory() // 2), reserve))
