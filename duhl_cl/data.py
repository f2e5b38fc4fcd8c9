"""The data on the host: input checks and the per-coordinate storage the device reads.

Primal models read columns of X (dense column-major, or CSC), dual models rows (dense
row-major, or CSR). :class:`CoordinateStore` lays either out as slots: coordinate i's values
start at ``offs[i]`` (64-bit) and, when sparse, ``lens[i]`` (index, value) pairs follow. A
float32 input stays float32, sparse input is never densified, and an input already in the
needed layout and precision is used without a copy.
"""

from __future__ import annotations

import numbers
import os
import warnings

import numpy as np
import scipy.sparse as sp

__all__ = [
    "check_X",
    "check_y_regression",
    "check_y_binary",
    "CoordinateStore",
    "matvec",
    "rmatvec",
]


class DataConversionWarning(UserWarning):
    """The input was converted in a way the caller may not expect."""


def _dtype_for(dtype):
    if dtype is None:
        return None
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return dt


def _all_finite(a):
    """True when no entry is NaN or infinite (a finite sum proves it in one cheap pass)."""
    if a.size == 0:
        return True
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.sum(a)):
            return True
    return bool(np.isfinite(a).all())  # the sum overflowed or met a NaN/inf: look closely


def check_X(X, *, name="X", check_finite=True):
    """Validate a design matrix.

    Returns a 2-D float32/float64 ndarray (memmaps pass through) or a CSR/CSC matrix.
    Integer and object input becomes float64; complex, NaN and infinity are refused.
    ``check_finite=False`` leaves the finite check to the caller: a fit's
    :class:`CoordinateStore` makes it for free, from the squared norms it computes anyway.
    """
    if sp.issparse(X):
        if X.format not in ("csr", "csc"):
            X = X.tocsr() if X.format != "coo" else X.tocsc()
        if X.dtype not in (np.float32, np.float64):
            if np.iscomplexobj(X.data):
                raise ValueError(f"Complex data not supported: {name} has dtype {X.dtype}")
            X = X.astype(np.float64)
        data = X.data
    else:
        if hasattr(X, "__array__") and not isinstance(X, np.ndarray):
            X = np.asarray(X)
        elif not isinstance(X, np.ndarray):
            X = np.asarray(X)
        if np.iscomplexobj(X):
            raise ValueError(f"Complex data not supported: {name} has dtype {X.dtype}")
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float64)  # raises TypeError on non-numbers, naming them
        data = X
    if X.ndim != 2:
        raise ValueError(
            f"Expected a 2D array for {name}, got {X.ndim}D array instead with shape "
            f"{X.shape}. Reshape your data with X.reshape(-1, 1) for a single feature or "
            f"X.reshape(1, -1) for a single sample"
        )
    n, d = X.shape
    if n == 0 or d == 0:
        raise ValueError(
            f"Found array with {n} sample(s) and {d} feature(s) (shape=({n}, {d})) while a "
            f"minimum of 1 is required. {name} must have at least one sample and one feature."
        )
    if check_finite and not _all_finite(data):
        _refuse_nonfinite(data, name)
    return X


def _refuse_out_of_range(data, dtype):
    raise ValueError(
        f"X has entries (largest |x| = {float(np.abs(data).max()):.3g}) beyond the range of "
        f"{dtype}, the device precision; rescale X (e.g. standardise it) or fit with "
        f"dtype='float64'"
    )


def _refuse_nonfinite(data, name="X"):
    bad = "NaN" if np.isnan(data).any() else "infinity"
    raise ValueError(
        f"Input {name} contains {bad} (NaN or inf values are not allowed); remove or "
        f"impute them first, e.g. with sklearn.impute.SimpleImputer"
    )


def _check_y_shape(y, n_samples):
    if y is None:
        raise ValueError(
            "This estimator requires y to be passed, but the target y is None; pass one target "
            "per row of X"
        )
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn(
            "A column-vector y was passed when a 1d array was expected. Please change the "
            "shape of y to (n_samples,), for example using ravel().",
            DataConversionWarning,
            stacklevel=3,
        )
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(f"y should be a 1d array of shape (n_samples,), got shape {y.shape}")
    if y.shape[0] != n_samples:
        raise ValueError(
            f"X and y have inconsistent numbers of samples: X has {n_samples} rows, y has "
            f"{y.shape[0]} entries; pass one target per row of X"
        )
    return y


def check_y_regression(y, n_samples):
    """Validate a regression target: 1-D, finite, one per sample; float64."""
    y = _check_y_shape(y, n_samples)
    if np.iscomplexobj(y):
        raise ValueError("Complex data not supported in y")
    y = y.astype(np.float64)
    if not np.isfinite(y).all():
        raise ValueError("Input y contains NaN or infinity; remove those samples first")
    return y


def check_y_binary(y, n_samples):
    """Validate binary labels; returns (classes, y_pm) with y_pm in {-1.0, +1.0}.

    ``classes[1]`` is the positive class, as in scikit-learn.
    """
    y = _check_y_shape(y, n_samples)
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError("Input y contains NaN or infinity; remove those samples first")
    if y.dtype.kind == "f" and not np.all(y == np.round(y)):
        raise ValueError(
            "Unknown label type: continuous. The classifiers here need two classes; for a "
            "continuous target use Lasso, ElasticNet or Ridge"
        )
    if y.dtype == object:
        kinds = {type(v) for v in y}
        if not (
            all(issubclass(k, str) for k in kinds)
            or all(issubclass(k, numbers.Integral) for k in kinds)
        ):
            raise ValueError(
                f"Unknown label type: mixed or unsupported types {sorted(k.__name__ for k in kinds)}"
            )
    classes, y_idx = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(
            f"y contains only one class ({classes[0]!r}); a binary classifier needs samples "
            f"of two classes"
        )
    if len(classes) > 2:
        raise ValueError(
            f"Only binary classification is supported. y has {len(classes)} classes "
            f"({', '.join(map(str, classes[:5]))}{', ...' if len(classes) > 5 else ''}); pass "
            f"labels of exactly two classes (e.g. one class against the rest)"
        )
    return classes, np.where(y_idx == 1, 1.0, -1.0)


_POOL = None


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

    n_groups = min(len(starts), 4 * (os.cpu_count() or 1))
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
    n_threads = max(1, min(os.cpu_count() or 1, n))
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


class CoordinateStore:
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

    Attributes
    ----------
    val : ndarray (dtype,) -- all values, slot after slot
    idx : ndarray (int32,) or None -- sparse row/column indices
    offs : ndarray (uint64, n_coords) -- where each slot starts in val/idx
    lens : ndarray (int32, n_coords) -- entries per slot (dim for dense)
    sqnorm : ndarray (float64, n_coords) -- squared norm of each coordinate's vector
    dim : int -- length of a dense slot (n_samples for primal, n_features for dual)
    """

    def __init__(self, X, *, primal: bool, dtype, labels=None, bias: float = 0.0):
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
            sq = np.asarray(M.multiply(M).sum(axis=0 if primal else 1), dtype=np.float64).ravel()
            self.matrix = M
        else:
            with np.errstate(over="ignore"):  # out-of-range entries are refused below
                M = (
                    np.asfortranarray(X, dtype=dtype)
                    if primal
                    else np.ascontiguousarray(X, dtype=dtype)
                )
            self.val = M.ravel(order="F" if primal else "C")
            self.idx = None
            self.offs = np.arange(self.n_coords, dtype=np.uint64) * np.uint64(self.dim)
            self.lens = np.full(self.n_coords, self.dim, dtype=np.int32)
            sq = sqnorms(M, axis=0 if primal else 1)
            if not np.isfinite(sq).all():
                # Finite squared norms (computed in float64 when float32 ones overflowed)
                # prove every entry finite: this is the fit's finite check, at no extra pass.
                if not _all_finite(X):
                    _refuse_nonfinite(X)
                if not _all_finite(M):
                    _refuse_out_of_range(X, dtype)
                raise ValueError(
                    f"X has entries so large (largest |x| = {float(np.abs(M).max()):.3g}) that "
                    f"their squared norms overflow float64; rescale X (e.g. standardise it)"
                )
            self.matrix = M
        self.labels = None if labels is None else np.asarray(labels, dtype=np.float64)
        self.sqnorm = sq + (bias * bias if not primal else 0.0)

    @property
    def nbytes(self) -> int:
        return self.val.nbytes + (self.idx.nbytes if self.idx is not None else 0)

    def coordinate(self, s):
        """(indices, values) of coordinate s; indices is a slice for dense storage."""
        o, n = int(self.offs[s]), int(self.lens[s])
        if self.sparse:
            return self.idx[o : o + n], self.val[o : o + n]
        return slice(0, self.dim), self.val[o : o + n]
