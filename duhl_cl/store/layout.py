"""Dense X in the coordinates' layout: a tiled transpose on the host's threads.

A primal model reads columns, so its store keeps X column-major; a dual model reads rows
(row-major). Users mostly hold C-ordered arrays, which a primal fit must transpose once.
NumPy's ``asfortranarray`` walks the output with a stride of a whole row on the input, so
every cache line it reads is used for one entry: 0.94 s for an 8000 x 40000 float32 array on
the 2-core VM. Copying cache-sized tiles instead (each read and written whole while in cache),
two threads each owning whole column blocks, takes 0.23 s on the same array, the squared norms
the store needs included (they are summed from the tile just written, still in cache).
Called by :class:`duhl_cl.store.CoordinateStore`.
"""

from __future__ import annotations

import os

import numpy as np

from ..hostmem import page_empty
from .products import _host_pool

__all__ = ["relayout", "wants_relayout"]

# 256 x 256 float32 tiles: 256 KiB read and written, within a core's L2 (measured against
# 128 x 512, 512 x 128 and 256 x 1024 on the 8000 x 40000 array: 0.23 s against 0.26-0.29 s).
TILE = 256
# Below this many entries the tiles' Python loop is not worth it.
MIN_ENTRIES = 1 << 20


def relayout(X, order: str, dtype):
    """``X`` copied into ``order`` ('F': column-major, 'C': row-major) and ``dtype``, and the
    squared norms of its columns ('F') or rows ('C') in ``dtype``'s precision, as float64.

    Parameters
    ----------
    X : ndarray of shape (n, d), contiguous in the other order
    order : {'F', 'C'}
    dtype : numpy dtype

    Returns
    -------
    M : ndarray of shape (n, d), ``dtype``, contiguous in ``order``
    sq : ndarray of shape (d,) for 'F', (n,) for 'C', float64 (may hold non-finite values
        where X does or a square overflows ``dtype``: the caller checks)
    """
    if order == "C":
        # Row-major (n, d) is column-major (d, n) of X.T: the same copy on the transpose.
        M, sq = relayout(X.T, "F", dtype)
        return M.T, sq
    n, d = X.shape
    # On a page, so that a CPU device reads it in place as its pool (Ledger.alias).
    out = page_empty((n, d), dtype, order="F")
    out_t = out.T  # (d, n), row-major: each tile of X lands transposed in a block of rows
    sq = np.zeros(d)
    blocks = list(range(0, d, TILE))

    def work(starts):
        # One thread owns whole column blocks, so that the norms need no reduction.
        for j in starts:
            acc = np.zeros(min(TILE, d - j))
            for i in range(0, n, TILE):
                tile = out_t[j : j + TILE, i : i + TILE]
                tile[...] = X[i : i + TILE, j : j + TILE].T
                acc += np.einsum("ij,ij->i", tile, tile)
            sq[j : j + TILE] = acc

    n_threads = max(1, min(os.cpu_count() or 1, len(blocks)))
    groups = [blocks[g::n_threads] for g in range(n_threads)]
    with np.errstate(over="ignore", invalid="ignore"):
        if n_threads > 1:
            list(_host_pool().map(work, groups))
        else:
            work(blocks)
    return out, sq


def wants_relayout(X, primal: bool) -> bool:
    """Whether a dense X is large and held in the other order than the store's."""
    other = X.flags.c_contiguous if primal else X.flags.f_contiguous
    mine = X.flags.f_contiguous if primal else X.flags.c_contiguous
    return X.ndim == 2 and other and not mine and X.size >= MIN_ENTRIES
