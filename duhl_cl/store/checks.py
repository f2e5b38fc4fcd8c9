"""Input checks: what a fit accepts as X and y, and the messages for what it refuses.

Called by the estimators before a fit (:func:`check_X`, :func:`check_y_regression`,
:func:`check_y_binary`) and by :class:`duhl_cl.store.CoordinateStore`, which makes the finite
check for free from the squared norms it computes anyway.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
import scipy.sparse as sp

__all__ = [
    "DataConversionWarning",
    "check_X",
    "check_y_regression",
    "check_y_binary",
    "check_y_classes",
    "check_sample_weight",
    "check_norms_fit",
    "class_weights",
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
    from .disk import DiskData

    if isinstance(X, DiskData):
        return X  # an on-disk store: checked when written (finite, shape, dtype)
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


def check_norms_fit(sqnorm, values, dtype, *, primal, buckets=0, fp64=True):
    """Refuse squared norms (``sqnorm``, float64) that overflow the device precision.

    The device keeps each coordinate's squared norm in ``dtype`` as the curvature of its
    steps (times the bucket count in the "bucketed" kernel, ``buckets``); one that overflows
    to infinity makes every step 0, so the fit would end with all-zero (or meaningless)
    coefficients and no error. Costs a max over the norms; ``values`` (the stored entries)
    are read only to name the largest |x| when refusing. ``fp64``: whether the device could
    run float64 instead (then the message offers it).
    """
    dtype = np.dtype(dtype)
    top = float(np.finfo(dtype).max)
    factor = max(1, int(buckets))
    big = float(np.max(sqnorm, initial=0.0))
    with np.errstate(over="ignore"):
        if big * factor <= top:  # (NaN compares False: refused too)
            return
    kind = "column" if primal else "row"
    if np.isfinite(big):
        times = f" (times the {factor} buckets of kernel_variant 'bucketed')" if big <= top else ""
        largest = f"{big:.3g}{times}, beyond {dtype.name}'s {top:.3g}"
    else:
        times, largest = "", f"beyond float64's {np.finfo(np.float64).max:.3g}"
    fixes = ["rescale X (e.g. with sklearn.preprocessing.StandardScaler or MaxAbsScaler)"]
    if dtype == np.float32 and fp64:
        fixes.append("fit with dtype='float64'")
    if times:
        fixes.append("use kernel_variant='serial'")
    fix = ", ".join(fixes[:-1]) + " or " + fixes[-1] if len(fixes) > 1 else fixes[0]
    with np.errstate(over="ignore"):
        # (A disk tier has no values in memory: the norm says it.)
        maxabs = (
            np.sqrt(float(np.max(sqnorm)))
            if values is None
            else float(np.max(np.abs(values), initial=0.0))
        )
    raise ValueError(
        f"X has entries so large (largest |x| {'about' if values is None else '='} {maxabs:.3g}) that their squared norms "
        f"overflow {dtype.name}, the device precision: the largest squared {kind} norm is "
        f"{largest}; as a step's curvature it would make every step 0 (all-zero "
        f"coefficients, without an error); {fix}"
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
    classes, y_idx = check_y_classes(y, n_samples)
    if len(classes) > 2:
        raise ValueError(
            f"Only binary classification is supported here. y has {len(classes)} classes "
            f"({', '.join(map(str, classes[:5]))}{', ...' if len(classes) > 5 else ''}); pass "
            f"labels of exactly two classes (e.g. one class against the rest)"
        )
    return classes, np.where(y_idx == 1, 1.0, -1.0)


def check_y_classes(y, n_samples):
    """Validate class labels (two or more classes); returns (classes, y_idx), the sorted
    classes and each sample's index into them, as scikit-learn's ``np.unique``."""
    y = _check_y_shape(y, n_samples)
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError("Input y contains NaN or infinity; remove those samples first")
    if y.dtype.kind == "f" and not np.all(y == np.round(y)):
        raise ValueError(
            "Unknown label type: continuous. The classifiers here need class labels; for a "
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
    return classes, y_idx


def check_sample_weight(sample_weight, n_samples):
    """Validate ``fit``'s sample_weight: None, a number, or (n_samples,) finite weights >= 0
    that are not all 0. Returns None (no weights) or a float64 array."""
    if sample_weight is None:
        return None
    if isinstance(sample_weight, numbers.Number) and not isinstance(sample_weight, bool):
        sample_weight = np.full(n_samples, float(sample_weight))
    try:
        s = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"sample_weight must be numbers, one per sample; got {type(sample_weight).__name__}"
        ) from None
    if s.ndim != 1 or len(s) != n_samples:
        raise ValueError(
            f"sample_weight has shape {s.shape} but X has {n_samples} samples; pass one "
            f"weight per sample, shape ({n_samples},)"
        )
    if not np.isfinite(s).all():
        bad = int(np.flatnonzero(~np.isfinite(s))[0])
        raise ValueError(
            f"sample_weight contains NaN or infinity (first at sample {bad}); pass finite weights"
        )
    if (s < 0).any():
        bad = int(np.flatnonzero(s < 0)[0])
        raise ValueError(
            f"sample_weight must be >= 0; sample {bad} has {s[bad]:g} (weight 0 leaves a sample "
            f"out)"
        )
    if not (s > 0).any():
        raise ValueError(
            "sample_weight is zero for every sample: nothing to fit; give some samples a "
            "positive weight"
        )
    return s


def class_weights(class_weight, classes, y_idx, sample_weight):
    """Per-sample factors from ``class_weight`` (None, "balanced" or {class: weight}), as
    scikit-learn's (compute_class_weight, with the sample weights); None when there are none.
    A dict naming a class that y does not hold is refused."""
    cw = class_weight_values(class_weight, classes, y_idx, sample_weight)
    return None if cw is None else cw[y_idx]


def class_weight_values(class_weight, classes, y_idx, sample_weight):
    """Each class's factor (len(classes),) from ``class_weight``, or None (see
    :func:`class_weights`)."""
    if class_weight is None:
        return None
    if isinstance(class_weight, dict):
        absent = [k for k in class_weight if k not in set(classes.tolist())]
        if absent:
            raise ValueError(
                f"class_weight names {absent!r}, which y does not hold; the classes are "
                f"{classes.tolist()!r}"
            )
        bad = {
            k: v
            for k, v in class_weight.items()
            if not (isinstance(v, (int, float, np.number)) and np.isfinite(v) and v >= 0)
        }
        if bad:
            raise ValueError(f"class_weight values must be finite numbers >= 0, got {bad!r}")
    elif class_weight != "balanced":
        raise ValueError(
            f"class_weight must be None, 'balanced' or a dict {{class: weight}}, got "
            f"{class_weight!r}"
        )
    from sklearn.utils.class_weight import compute_class_weight

    cw = compute_class_weight(class_weight, classes=classes, y=classes[y_idx],
                              sample_weight=sample_weight)  # fmt: skip
    return np.asarray(cw, dtype=np.float64)
