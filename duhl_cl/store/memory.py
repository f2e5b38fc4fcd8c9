"""The in-memory coordinate store: the data on the host as the slots the device reads.

Primal models read columns of X (dense column-major, or CSC), dual models rows (dense
row-major, or CSR). :class:`CoordinateStore` lays either out as slots: coordinate i's values
start at ``offs[i]`` (64-bit) and, when sparse, ``lens[i]`` (index, value) pairs follow. A
float32 input stays float32, sparse input is never densified, and an input already in the
needed layout and precision is used without a copy. It implements
:class:`duhl_cl.store.base.Store`.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..hostmem import page_empty
from .base import Store
from .checks import _all_finite, _refuse_nonfinite, _refuse_out_of_range, check_norms_fit
from .layout import relayout, wants_relayout
from .products import matvec, rmatvec, sqnorms, weighted_sqnorms

__all__ = ["CoordinateStore"]


class CoordinateStore(Store):
    """The coordinates of a problem as slots the device reads (see module docstring).

    Parameters
    ----------
    X : ndarray or CSR/CSC matrix of shape (n_samples, n_features)
    primal : bool
        Coordinates are columns (True) or rows (False).
    dtype : numpy dtype
        Device precision (float32 or float64).
    labels : ndarray of shape (n_samples,), optional
        Dual models: the +-1 label of each row.
    bias : float
        Dual models: value of the constant bias feature (0 for none), added to sqnorm.
    row_weights : ndarray of shape (n_samples,), optional
        Primal models with sample weights: sqnorm is ``sum_j s_j x_ji^2``, the curvature
        of the weighted datafit.

    Attributes
    ----------
    val : ndarray (dtype,) -- all values, slot after slot
    idx : ndarray (int32,) or None -- sparse row/column indices
    offs : ndarray (uint64, n_coords) -- where each slot starts in val/idx
    lens : ndarray (int32, n_coords) -- entries per slot (dim for dense)
    sqnorm : ndarray (float64, n_coords) -- squared norm of each coordinate's vector
    dim : int -- length of a dense slot (n_samples for primal, n_features for dual)
    """

    def __init__(self, X, *, primal: bool, dtype, labels=None, bias: float = 0.0,
                 row_weights=None):  # fmt: skip
        dtype = np.dtype(dtype)
        self.primal, self.dtype = primal, dtype
        self.sparse = sp.issparse(X)
        n, d = X.shape
        self.n_coords, self.dim = (d, n) if primal else (n, d)
        if self.sparse:
            M = X.tocsc() if primal else X.tocsr()
            if M.nnz > np.iinfo(np.int32).max:
                raise ValueError(
                    f"X has {M.nnz} nonzeros; the device indices are 32-bit per entry but "
                    f"offsets are 64-bit: split X into parts of fewer than 2**31 nonzeros"
                )
            with np.errstate(over="ignore"):  # out-of-range entries are refused below
                self.val = np.asarray(M.data, dtype=dtype)
            if self.val.dtype != M.data.dtype and not _all_finite(self.val):
                _refuse_out_of_range(M.data, dtype)
            self.idx = np.asarray(M.indices, dtype=np.int32)
            ptr = np.asarray(M.indptr, dtype=np.int64)
            self.offs = ptr[:-1].astype(np.uint64)
            self.lens = np.diff(ptr).astype(np.int32)
            sq = _sparse_sqnorms(M, primal)
            self.matrix = M
        else:
            axis = 0 if primal else 1
            if wants_relayout(X, primal):
                # X in the other order: one tiled transpose, the norms summed on the way.
                M, sq = relayout(X, "F" if primal else "C", dtype)
                bad = np.flatnonzero(~np.isfinite(sq))
                if len(bad):  # squares beyond the store's precision: again in float64
                    sq[bad] = sqnorms(M[:, bad] if primal else M[bad], axis=axis)
            else:
                M = _in_order(X, "F" if primal else "C", dtype)
                sq = sqnorms(M, axis=axis)
            self.val = M.ravel(order="F" if primal else "C")
            self.idx = None
            self.offs = np.arange(self.n_coords, dtype=np.uint64) * np.uint64(self.dim)
            self.lens = np.full(self.n_coords, self.dim, dtype=np.int32)
            if not np.isfinite(sq).all():
                # Finite squared norms (computed in float64 when float32 ones overflowed)
                # prove every entry finite: this is the fit's finite check, at no extra pass.
                if not _all_finite(X):
                    _refuse_nonfinite(X)
                if not _all_finite(M):
                    _refuse_out_of_range(X, dtype)
                # Left: squares beyond float64, refused below.
            self.matrix = M
        self.labels = None if labels is None else np.asarray(labels, dtype=np.float64)
        self.sqnorm = sq + (bias * bias if not primal else 0.0)
        if row_weights is not None and primal:
            self.sqnorm = weighted_sqnorms(self.matrix, np.asarray(row_weights, np.float64))
        if not np.isfinite(self.sqnorm).all():
            # Squared norms beyond float64 hold in no device precision. (Whether they fit
            # the device's float32 is the working set's check: a float32 store may run in
            # float64, and the bucketed kernel scales them.)
            check_norms_fit(self.sqnorm, self.val, np.float64, primal=primal)

    @property
    def nbytes(self) -> int:
        return self.val.nbytes + (self.idx.nbytes if self.idx is not None else 0)

    def coordinate(self, s):
        """(indices, values) of coordinate s; indices is a slice for dense storage."""
        o, n = int(self.offs[s]), int(self.lens[s])
        if self.sparse:
            return self.idx[o : o + n], self.val[o : o + n]
        return slice(0, self.dim), self.val[o : o + n]

    def combine(self, x):
        return matvec(self.matrix, x) if self.primal else rmatvec(self.matrix, x)

    def project(self, p, sel=None):
        M = self.matrix
        if sel is None:
            if np.ndim(p) == 2:
                P = np.asarray(p, dtype=np.float64)
                return np.asarray((M.T @ P) if self.primal else (M @ P), dtype=np.float64)
            return rmatvec(M, p) if self.primal else matvec(M, p)
        B = M[:, sel].T if self.primal else M[sel]
        return np.asarray(B @ p, dtype=np.float64)


def _sparse_sqnorms(M, primal):
    """Squared norms of a CSC's columns (primal) or a CSR's rows, as float64: in M's own
    precision, those that overflow it (float32 entries above ~1e19) again in float64."""
    with np.errstate(over="ignore"):
        sq = np.asarray(M.multiply(M).sum(axis=0 if primal else 1), dtype=np.float64).ravel()
    if M.dtype != np.float64 and not np.isfinite(sq).all():
        M = M.astype(np.float64)
        sq = np.asarray(M.multiply(M).sum(axis=0 if primal else 1), dtype=np.float64).ravel()
    return sq


def _in_order(X, order, dtype):
    """Dense ``X`` contiguous in ``order`` and ``dtype``: X itself where it is, else a copy on
    a page (which a CPU device reads in place as its pool, duhl_cl.device.ledger.alias)."""
    flag = "F_CONTIGUOUS" if order == "F" else "C_CONTIGUOUS"
    X = np.asarray(X)
    if X.dtype == dtype and X.flags[flag]:
        return X
    out = page_empty(X.shape, dtype, order)
    with np.errstate(over="ignore", invalid="ignore"):  # out-of-range entries refused later
        np.copyto(out, X, casting="unsafe")
    return out
