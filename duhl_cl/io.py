"""Reading and writing data sets and models for the command line.

Data: svmlight/libsvm text (``.svm``, ``.svm.gz``, ``.libsvm``, ``.txt``), ``.npz`` holding
``X`` (dense, or a scipy.sparse matrix saved with ``scipy.sparse.save_npz`` fields) and
``y``, a pair of ``.npy`` files (``X.npy`` given, ``y`` next to it as ``<stem>_y.npy`` or
``y.npy``), and CSV (``.csv``, ``.csv.gz``: a header row when the first row is not numbers,
target in the last column unless ``target`` names it). svmlight text is parsed
:data:`CHUNK_BYTES` at a time, so a file of many GiB is never held as text. A damaged or misnamed file is a
ValueError that names the file, and the line where a line is at fault.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import zlib
from pathlib import Path

import numpy as np
import scipy.sparse as sp

__all__ = ["load_dataset", "load_svmlight", "save_model", "load_model"]


def _open_text(path: Path):
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)


def _open_bytes(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


@contextlib.contextmanager
def _reading(path: Path):
    """Read errors of a data file as one message that names the file and the fix."""
    try:
        yield
    except gzip.BadGzipFile:
        raise ValueError(
            f"{path}: not a gzip file (the name ends in .gz); decompress or rename it"
        ) from None
    except (EOFError, zlib.error):
        raise ValueError(
            f"{path}: the gzip stream is truncated or damaged; download or write it again"
        ) from None
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path}: not a text file (byte {exc.start} does not decode as UTF-8); "
            f"pass svmlight or CSV text"
        ) from None


# Text is parsed this many bytes at a time (whole lines), so that a file of many GiB is never
# held as text or as Python objects: only its parsed arrays grow.
CHUNK_BYTES = 64 << 20


def _line_chunks(f, chunk_bytes):
    """(line number of the chunk's first line, bytes of whole lines), through the file."""
    lineno = 1
    while block := f.read(chunk_bytes):
        if not block.endswith(b"\n"):
            block += f.readline()
        yield lineno, block
        lineno += block.count(b"\n")


_INDEX_MAX = np.iinfo(np.int32).max


def _chunk_arrays(path, labels, indptr, indices, values, dtype):
    """A chunk's arrays in their final types (int32 indices, ``dtype`` values), so that the
    whole read never holds a wider copy of them."""
    indices = np.asarray(indices)
    if indices.size and int(indices.max()) >= _INDEX_MAX:
        raise ValueError(
            f"{path}: feature index {int(indices.max()) + 1} is beyond 2**31 - 1; renumber "
            f"the features"
        )
    return (np.asarray(labels, dtype=np.float64), np.asarray(indptr, dtype=np.int64),
            indices.astype(np.int32, copy=False), np.asarray(values, dtype=dtype))  # fmt: skip


def _parse_svmlight(path, first_line, block, dtype=np.float64):
    """One chunk: (labels, indptr, indices, values) with indptr from 0.

    scikit-learn's compiled parser reads it; a chunk that it refuses (unsorted indices, which
    libsvm allows by summing, or a malformed line) is read again line by line, here, to give
    the line at fault.
    """
    from sklearn.datasets import load_svmlight_file

    try:
        X, y = load_svmlight_file(io.BytesIO(block), zero_based=False, dtype=dtype)
        return _chunk_arrays(path, y, X.indptr, X.indices, X.data, dtype)
    except ValueError:
        pass
    labels, indptr, indices, values = [], [0], [], []
    for lineno, line in enumerate(block.decode("utf-8").splitlines(), first_line):
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
        if any(k < 0 for k in indices[indptr[-1] :]):
            raise ValueError(
                f"{path}:{lineno}: feature index 0; svmlight (libsvm) feature indices start at 1"
            )
        indptr.append(len(indices))
    return _chunk_arrays(path, labels, indptr, np.asarray(indices, dtype=np.int64), values, dtype)


def load_svmlight(path, n_features=None, dtype=np.float64, *, chunk_bytes=CHUNK_BYTES):
    """Read a svmlight/libsvm file into (CSR matrix, labels).

    Feature indices are 1-based as in libsvm; ``n_features`` widens the matrix (to match a
    training set when reading its test set). The text is read ``chunk_bytes`` at a time.
    """
    path = Path(path)
    parts = []
    with _reading(path), _open_bytes(path) as f:
        for first_line, block in _line_chunks(f, chunk_bytes):
            parts.append(_parse_svmlight(path, first_line, block, dtype))
    labels = np.concatenate([p[0] for p in parts]) if parts else np.empty(0)
    if not labels.size:
        raise ValueError(f"{path}: no samples found")
    offsets = np.cumsum([0] + [p[1][-1] for p in parts])
    indptr = np.concatenate(
        [[0]] + [p[1][1:] + off for p, off in zip(parts, offsets[:-1], strict=True)]
    )
    idx = np.concatenate([p[2] for p in parts])
    values = np.concatenate([p[3] for p in parts])
    del parts
    d = int(idx.max()) + 1 if idx.size else 0
    if n_features is not None:
        d = max(d, n_features)
    X = sp.csr_matrix((values, idx, indptr), shape=(labels.size, d))
    X.sum_duplicates()
    return X, labels


def load_dataset(path, *, n_features=None, target=None, header=None):
    """Load (X, y) from a file whose format the suffix tells (see module docstring).

    ``header`` (CSV): True, False, or None to detect it (a first row that does not parse as
    numbers is a header, one that does is data).
    """
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
        return _load_csv(path, target, header)
    raise ValueError(
        f"cannot tell the format of {str(path)!r}: use .svm/.svm.gz (svmlight), .npz (X, y), "
        f".npy (with a _y.npy beside it) or .csv/.csv.gz"
    )


def _numbers(cells):
    try:
        [float(c) for c in cells]
    except ValueError:
        return False
    return True


def _load_csv(path, target, header):
    """A CSV file: (X, y), the target the last column or the one ``target`` names."""
    with _reading(path), _open_text(path) as f:
        first = f.readline()
        cells = [c.strip() for c in first.strip().split(",")]
        if not first.strip():
            raise ValueError(f"{path}: empty file (no header, no samples)")
        has_header = not _numbers(cells) if header is None else bool(header)
        names = cells if has_header else [str(i) for i in range(len(cells))]
        rows = 0 if has_header else 1
        for line in f:
            if line.strip():
                rows += 1
    if rows == 0:
        raise ValueError(f"{path}: a header ({', '.join(names)}) and no samples")
    skip = 1 if has_header else 0
    try:
        with _reading(path):
            data = np.loadtxt(path, delimiter=",", skiprows=skip, dtype=np.float64, ndmin=2)
    except ValueError:
        raise ValueError(_bad_cell(path, skip, len(names))) from None
    col = len(names) - 1
    if target is not None:
        if target not in names:
            what = "columns: " + ", ".join(names) if has_header else "the file has no header"
            raise ValueError(f"{path}: no column {target!r}; {what}")
        col = names.index(target)
    return np.delete(data, col, axis=1), data[:, col]


def _bad_cell(path, skip, n_cols):
    """The message of the first cell np.loadtxt refused: the file's line and column."""
    with _open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            if lineno <= skip or not line.strip():
                continue
            cells = line.rstrip("\r\n").split(",")
            if len(cells) != n_cols:
                return (f"{path}:{lineno}: {len(cells)} columns where the first row has "
                        f"{n_cols}; every row needs the same columns")  # fmt: skip
            for j, c in enumerate(cells, 1):
                try:
                    float(c)
                except ValueError:
                    return (f"{path}:{lineno}: column {j} is {c.strip()[:40]!r}, not a number; "
                            f"CSV data must be numeric")  # fmt: skip
    return f"{path}: could not be read as numeric CSV"


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
