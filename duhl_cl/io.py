"""Reading and writing data sets and models for the command line.

Data: svmlight/libsvm text (``.svm``, ``.svm.gz``, ``.libsvm``, ``.txt``), ``.npz`` holding
``X`` (dense, or a scipy.sparse matrix saved with ``scipy.sparse.save_npz`` fields) and
``y``, a pair of ``.npy`` files (``X.npy`` given, ``y`` next to it as ``<stem>_y.npy`` or
``y.npy``), and CSV (``.csv``, ``.csv.gz``: header row, target in the last column unless
``target`` names it).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import scipy.sparse as sp

__all__ = ["load_dataset", "load_svmlight", "save_model", "load_model"]


def _open_text(path: Path):
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)


def load_svmlight(path, n_features=None, dtype=np.float64):
    """Read a svmlight/libsvm file into (CSR matrix, labels).

    Feature indices are 1-based as in libsvm; ``n_features`` widens the matrix (to match a
    training set when reading its test set).
    """
    path = Path(path)
    labels, indptr, indices, values = [], [0], [], []
    with _open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            try:
                labels.append(float(parts[0]))
                for tok in parts[1:]:
                    if tok.startswith("qid:"):
                        continue
                    k, v = tok.split(":", 1)
                    indices.append(int(k) - 1)
                    values.append(float(v))
            except ValueError:
                raise ValueError(
                    f"{path}:{lineno}: not svmlight format (expected 'label index:value ...'), "
                    f"got {line[:80]!r}"
                ) from None
            indptr.append(len(indices))
    if not labels:
        raise ValueError(f"{path}: no samples found")
    idx = np.asarray(indices, dtype=np.int64)
    if idx.size and idx.min() < 0:
        raise ValueError(f"{path}: feature indices must start at 1 (libsvm format)")
    d = int(idx.max()) + 1 if idx.size else 0
    if n_features is not None:
        d = max(d, n_features)
    X = sp.csr_matrix(
        (np.asarray(values, dtype=dtype), idx.astype(np.int32), np.asarray(indptr, dtype=np.int64)),
        shape=(len(labels), d),
    )
    X.sum_duplicates()
    return X, np.asarray(labels)


def load_dataset(path, *, n_features=None, target=None):
    """Load (X, y) from a file whose format the suffix tells (see module docstring)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data file {str(path)!r} does not exist")
    name = path.name.lower()
    if name.endswith((".svm", ".svm.gz", ".libsvm", ".libsvm.gz", ".svmlight", ".txt", ".txt.gz")):
        return load_svmlight(path, n_features=n_features)
    if name.endswith(".npz"):
        z = np.load(path, allow_pickle=False)
        if "y" not in z:
            raise ValueError(f"{path}: an .npz data file needs arrays 'X' and 'y'; found {list(z)}")
        if "X" in z:
            X = z["X"]
        elif {"data", "indices", "indptr", "shape", "format"} <= set(z):
            fmt = str(z["format"].item() if z["format"].shape == () else z["format"])
            fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
            cls = {"csr": sp.csr_matrix, "csc": sp.csc_matrix}.get(fmt)
            if cls is None:
                raise ValueError(f"{path}: sparse format {fmt!r}; save X as csr or csc")
            X = cls((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
        else:
            raise ValueError(
                f"{path}: an .npz data file needs 'X' (dense) or the fields of "
                f"scipy.sparse.save_npz (data, indices, indptr, shape, format) and 'y'; "
                f"found {list(z)}"
            )
        return X, z["y"]
    if name.endswith(".npy"):
        X = np.load(path, mmap_mode="r")
        for cand in (path.with_name(path.stem + "_y.npy"), path.with_name("y.npy")):
            if cand.exists() and cand != path:
                return X, np.load(cand)
        raise ValueError(
            f"{path}: for .npy data put the labels next to it as {path.stem}_y.npy or y.npy"
        )
    if name.endswith((".csv", ".csv.gz")):
        with _open_text(path) as f:
            header = f.readline().strip().split(",")
        data = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
        col = len(header) - 1
        if target is not None:
            if target not in header:
                raise ValueError(f"{path}: no column {target!r}; columns: {', '.join(header)}")
            col = header.index(target)
        y = data[:, col]
        X = np.delete(data, col, axis=1)
        return X, y
    raise ValueError(
        f"cannot tell the format of {str(path)!r}: use .svm/.svm.gz (svmlight), .npz (X, y), "
        f".npy (with a _y.npy beside it) or .csv/.csv.gz"
    )


def save_model(path, est, meta: dict) -> None:
    """Save a fitted estimator's parameters and attributes to ``path`` (.npz)."""
    arrays = {
        "coef": np.asarray(est.coef_),
        "intercept": np.asarray(est.intercept_),
        "classes": np.asarray(getattr(est, "classes_", np.array([]))),
    }
    import json

    arrays["meta"] = np.asarray(json.dumps(meta))
    np.savez(path, **arrays)


def load_model(path):
    """Inverse of :func:`save_model`: (coef, intercept, classes or None, meta dict).

    Regressors: coef (n_features,) and a float intercept; classifiers: coef (1, n_features)
    and intercept (1,).
    """
    import json

    z = np.load(path, allow_pickle=False)
    try:
        meta = json.loads(str(z["meta"]))
        classes = z["classes"] if z["classes"].size else None
        coef, intercept = z["coef"], z["intercept"]
    except KeyError as exc:
        raise ValueError(f"{path} is not a duhl-cl model file (missing {exc})") from None
    if classes is not None:
        # Classifiers: coef (n_classes or 1, n_features) and intercept (n_classes or 1,), as
        # scikit-learn's; files written before that (1-D coef, scalar intercept) still load.
        return np.atleast_2d(coef), np.atleast_1d(intercept).astype(np.float64), classes, meta
    return coef.ravel(), float(intercept), classes, meta
