"""The host's float64 products with the data: X x, X^T y and squared norms, in threads.

Used by the certificate (duhl_cl.duhl.certificate) and the store (squared norms); dense X is
cut into pieces of about ``block`` entries that threads take in turn, sparse X goes to
scipy.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.sparse as sp

__all__ = ["matvec", "rmatvec", "sqnorms", "weighted_sqnorms"]


_POOL = None
# Entries below which a product runs in the calling thread: threads pay off above it.
SERIAL = 1 << 20


def _host_pool():
    """Threads for the host's float64 passes (they run while the device waits)."""
    global _POOL
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1))
    return _POOL


def _over_chunks(X, block, part, out, rows=None):
    """Apply ``part(by_cols, sl, piece)`` to contiguous float64 pieces of a dense X.

    Pieces are columns when X is Fortran-ordered, else rows, of about ``block`` entries:
    upcasting one stays in cache, so a float64 product over float32 data costs little more
    than reading it. ``part`` writes its own slice of ``out`` or returns a partial sum, which
    is added to ``out``. Groups of pieces run on the host's threads (NumPy releases the GIL).
    ``rows`` (row-ordered X only): the pieces are of these rows only, ``sl`` slicing ``rows``.
    """
    by_cols = X.flags.f_contiguous and not X.flags.c_contiguous
    n = X.shape[1] if by_cols else X.shape[0] if rows is None else len(rows)
    k = max(1, block // max(X.shape[0] if by_cols else X.shape[1], 1))
    starts = list(range(0, n, k))

    def task(group):
        acc = None
        for i in group:
            sl = slice(i, min(i + k, n))
            if rows is not None:
                piece = X[rows[sl]].astype(np.float64)
            else:
                piece = (X[:, sl] if by_cols else X[sl]).astype(np.float64)
            r = part(by_cols, sl, piece)
            if r is not None:
                acc = r if acc is None else acc + r
        return acc

    # Below a few pieces, handing them to threads costs more than the products (a 72 x 7129
    # certificate: 1.8 ms waiting on futures, against 0.3 ms of work in this thread).
    entries = n * (X.shape[0] if by_cols else X.shape[1])
    n_groups = 1 if entries <= SERIAL else min(len(starts), 4 * (os.cpu_count() or 1))
    groups = [starts[g::n_groups] for g in range(n_groups)] if len(starts) > 1 else [starts]
    results = _host_pool().map(task, groups) if len(groups) > 1 else map(task, groups)
    for acc in results:
        if acc is not None:
            out += acc
    return out


def sqnorms(X, axis):
    """Squared norms of the columns (axis=0) or rows (axis=1) of a dense X, as float64.

    The products run in X's own precision (a float32 sum of squares is good to about 1e-6
    relative, ample for the step sizes they set) on the host's threads, one slab each.
    """
    n = X.shape[1 - axis]
    subs = "ij,ij->j" if axis == 0 else "ij,ij->i"
    n_threads = 1 if X.size <= SERIAL else max(1, min(os.cpu_count() or 1, n))
    cuts = np.linspace(0, n, n_threads + 1).astype(int)

    def slab(i):
        sl = slice(cuts[i], cuts[i + 1])
        part = X[:, sl] if axis == 0 else X[sl]
        return np.einsum(subs, part, part)

    with np.errstate(over="ignore", invalid="ignore"):
        pieces = _host_pool().map(slab, range(n_threads)) if n_threads > 1 else [slab(0)]
        out = np.concatenate(list(pieces)).astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(out))
    if len(bad):
        # A square overflowed the data's precision (entries above ~1e19 in float32): redo
        # those in float64. A NaN or infinity in X stays non-finite and is found by the caller.
        part = (X[:, bad] if axis == 0 else X[bad]).astype(np.float64)
        out[bad] = np.einsum(subs, part, part)
    return out


def weighted_sqnorms(X, s):
    """``sum_j s_j X_ji^2`` of every column of X (dense, or CSC/CSR), as float64: the
    curvature of a datafit whose rows weigh s (primal models with sample weights).

    Dense X: slabs of columns on the host's threads, in X's precision (as :func:`sqnorms`).
    """
    if sp.issparse(X):
        with np.errstate(over="ignore"):
            out = np.asarray(X.multiply(X).T @ s, dtype=np.float64).ravel()
        if X.dtype != np.float64 and not np.isfinite(out).all():
            X64 = X.astype(np.float64)  # squares beyond float32: again in float64
            out = np.asarray(X64.multiply(X64).T @ s, dtype=np.float64).ravel()
        return out
    n = X.shape[1]
    sw = s.astype(X.dtype)
    n_threads = 1 if X.size <= SERIAL else max(1, min(os.cpu_count() or 1, n))
    cuts = np.linspace(0, n, n_threads + 1).astype(int)

    def slab(i):
        part = X[:, cuts[i] : cuts[i + 1]]
        return np.einsum("ij,ij,i->j", part, part, sw)

    with np.errstate(over="ignore", invalid="ignore"):
        pieces = _host_pool().map(slab, range(n_threads)) if n_threads > 1 else [slab(0)]
        out = np.concatenate(list(pieces)).astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(out))
    if len(bad) and X.dtype != np.float64:
        # As in sqnorms: a weighted square beyond float32 (large entries or weights), redone
        # in float64 for those columns.
        part = X[:, bad].astype(np.float64)
        out[bad] = np.einsum("ij,ij,i->j", part, part, s)
    return out


def matvec(X, x, block=1 << 18):
    """``X @ x`` in float64 for a float32/float64 X, without upcasting all of X at once."""
    x = np.asarray(x, dtype=np.float64)
    nz = np.flatnonzero(x)
    if len(nz) < 0.5 * len(x):
        # Sparse coefficients (a Lasso's): only their columns contribute.
        if len(nz) == 0:
            return np.zeros(X.shape[0])
        X, x = X[:, nz], x[nz]
    if sp.issparse(X) or X.dtype == np.float64:
        return np.asarray(X @ x, dtype=np.float64)
    out = np.zeros(X.shape[0])

    def part(by_cols, sl, piece):
        if by_cols:
            return piece @ x[sl]
        out[sl] = piece @ x

    return _over_chunks(X, block, part, out)


def rmatvec(X, y, block=1 << 18):
    """``X.T @ y`` in float64 for a float32/float64 X, without upcasting all of X at once."""
    y = np.asarray(y, dtype=np.float64)
    if sp.issparse(X) or X.dtype == np.float64:
        return np.asarray(X.T @ y, dtype=np.float64)
    out = np.zeros(X.shape[1])
    rows = None
    if X.flags.c_contiguous:
        nz = np.flatnonzero(y)
        if len(nz) < 0.5 * len(y):
            # Sparse weights (a dual SVM's support vectors, a third of the rows of the dense
            # benchmark): only their rows contribute.
            rows, y = nz, y[nz]

    def part(by_cols, sl, piece):
        if not by_cols:
            return y[sl] @ piece
        out[sl] = piece.T @ y

    return _over_chunks(X, block, part, out, rows)
