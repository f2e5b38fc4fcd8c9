"""Every input kind that :func:`duhl_cl.store.convert` reads, as slabs along its major axis.

:func:`source` picks the reader of an input: svmlight/libsvm text, CSV, ``.npy`` (memory-
mapped, either order), HDF5 or zarr arrays, a directory of such files (rows concatenated in
name order) or an array in memory (NumPy, a memmap, scipy CSR/CSC, an h5py or zarr 2-D
array). Each reader (:class:`Source`) yields slabs of about ``chunk_bytes``: dense arrays
or sparse (indptr, indices, values) triples with sorted, unique indices per coordinate, and
its labels where the input carries them; the writer's passes (duhl_cl.store.convert) never
see the input's kind. A damaged input is the io module's ValueError, naming the file and
the line.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .. import io as dio

__all__ = ["CSV", "HDF5", "NPY", "SVMLIGHT", "ZARR", "Source", "source"]

SVMLIGHT = (".svm", ".svm.gz", ".libsvm", ".libsvm.gz", ".svmlight", ".svmlight.gz", ".txt",
            ".txt.gz")  # fmt: skip
CSV = (".csv", ".csv.gz")
NPY = (".npy",)
HDF5 = (".h5", ".hdf5")
ZARR = (".zarr",)


class Source:
    """An input read in slabs along its major axis (rows; columns when ``by_cols``).

    ``chunks(tick)`` yields (chunk, labels or None): a dense chunk is an array (k, minor),
    a sparse one (indptr, indices, values) of k major coordinates, indices sorted and
    unique per coordinate; ``tick(done)`` is called with the units read of ``total``.
    ``n_samples``/``n_features`` are None where only a pass tells (then set by it).
    """

    name = "X"
    sparse = False
    by_cols = False
    n_samples = None
    n_features = None
    total = 0
    y = None

    def count(self, tick):
        """n_samples, by a pass (dense row sources whose length is not known)."""
        n = sum(len(c) for c, _ in self.chunks(tick))
        self.n_samples = n
        return n


class _Dense(Source):
    """A dense 2-D array (ndarray, memmap, h5py or zarr array): row slabs, or column slabs
    of a Fortran-ordered ndarray (``by_cols``)."""

    def __init__(self, X, name, by_cols, chunk_bytes, dtype, y=None):
        if len(X.shape) != 2:
            raise ValueError(f"{name}: X must be 2-D, it has shape {tuple(X.shape)}")
        kind = np.dtype(X.dtype).kind
        if kind not in "biuf":
            raise ValueError(f"{name}: X holds {np.dtype(X.dtype)}; it must be real numbers")
        self.X, self.name, self.by_cols = X, name, by_cols
        self.n_samples, self.n_features = (int(s) for s in X.shape)
        major, minor = (self.n_features, self.n_samples) if by_cols else X.shape
        itemsize = max(np.dtype(X.dtype).itemsize, dtype.itemsize)
        self.step = max(1, chunk_bytes // max(1, int(minor) * itemsize))
        self.total = int(major)
        self.y = _labels(y, self.n_samples, name)

    def chunks(self, tick):
        for a in range(0, self.total, self.step):
            b = min(a + self.step, self.total)
            slab = self.X[:, a:b].T if self.by_cols else self.X[a:b]
            yield np.asarray(slab), None
            tick(b)


class _Sparse(Source):
    """A scipy CSR (row chunks) or CSC (column chunks) matrix in memory."""

    sparse = True

    def __init__(self, X, name, chunk_bytes, dtype, y=None):
        if X.format not in ("csr", "csc"):
            X = X.tocsr()
        kind = np.dtype(X.dtype).kind
        if kind not in "biuf":
            raise ValueError(f"{name}: X holds {X.dtype}; it must be real numbers")
        self.X, self.name, self.by_cols = X, name, X.format == "csc"
        self.n_samples, self.n_features = (int(s) for s in X.shape)
        self.canonical = X.has_canonical_format
        per = max(1, chunk_bytes // (dtype.itemsize + 4))
        ptr = np.asarray(X.indptr, dtype=np.int64)
        self.bounds = _chunk_bounds(ptr, per)
        self.total = len(ptr) - 1
        self.y = _labels(y, self.n_samples, name)

    def chunks(self, tick):
        X = self.X
        for a, b in zip(self.bounds[:-1], self.bounds[1:], strict=True):
            if self.canonical:
                yield (X.indptr[a : b + 1], X.indices, X.data), None
            else:
                M = (X[:, a:b] if self.by_cols else X[a:b]).copy()
                M.sum_duplicates()
                yield (M.indptr, M.indices, M.data), None
            tick(b)


def _chunk_bounds(ptr, per):
    """Major-coordinate bounds of chunks of about ``per`` entries (and at most ``per``
    coordinates; at least one)."""
    n = len(ptr) - 1
    bounds = [0]
    while bounds[-1] < n:
        a = bounds[-1]
        b = int(np.searchsorted(ptr, ptr[a] + per, side="right")) - 1
        bounds.append(min(max(b, a + 1), a + per, n))
    return bounds


class _Svmlight(Source):
    """svmlight/libsvm text files, parsed a chunk of whole lines at a time (the io module's
    parser); n_samples and n_features (the widest index seen) are set by a pass."""

    sparse = True

    def __init__(self, paths, name, chunk_bytes):
        self.paths, self.name, self.chunk_bytes = paths, name, chunk_bytes
        self.total = sum(p.stat().st_size for p in paths)

    def chunks(self, tick):
        base, rows, width = 0, 0, 0
        for path in self.paths:
            with dio._reading(path), dio._open_bytes(path) as f:
                offset = 0
                for first_line, block in dio._line_chunks(f, self.chunk_bytes):
                    with _decoding(path, offset):
                        labels, indptr, indices, values = dio._parse_svmlight(
                            path, first_line, block
                        )
                    offset += len(block)
                    k = len(labels)
                    d = int(indices.max()) + 1 if len(indices) else 0
                    M = sp.csr_matrix((values, indices, indptr), shape=(k, d))
                    M.sum_duplicates()
                    rows, width = rows + k, max(width, d)
                    yield (M.indptr, M.indices, M.data), labels
                    tick(base + _position(f))
            base += path.stat().st_size
            tick(base)
        if rows == 0:
            raise ValueError(f"{self.name}: no samples found")
        self.n_samples, self.n_features = rows, width


class _Csv(Source):
    """CSV files (the io module's conventions: a header detected or told, the target the
    last column or the one named), parsed a chunk of whole lines at a time."""

    def __init__(self, paths, name, target, header, chunk_bytes):
        self.paths, self.name, self.chunk_bytes = paths, name, chunk_bytes
        self.total = sum(p.stat().st_size for p in paths)
        self.files = []
        width = None
        for path in paths:
            with dio._reading(path), dio._open_text(path) as f:
                first = f.readline()
            if not first.strip():
                raise ValueError(f"{path}: empty file (no header, no samples)")
            cells = [c.strip() for c in first.strip().split(",")]
            has_header = not dio._numbers(cells) if header is None else bool(header)
            names = cells if has_header else [str(i) for i in range(len(cells))]
            col = len(names) - 1
            if target is not None:
                if target not in names:
                    what = (
                        "columns: " + ", ".join(names) if has_header else "the file has no header"
                    )
                    raise ValueError(f"{path}: no column {target!r}; {what}")
                col = names.index(target)
            if width is not None and len(names) != width:
                raise ValueError(f"{path}: {len(names)} columns where {paths[0]} has {width}; "
                                 f"the files of a directory need the same columns")  # fmt: skip
            width = len(names)
            self.files.append((path, has_header, names, col))
        self.n_features = width - 1

    def _blocks(self, tick):
        """(path, has_header, names, col, text of whole lines) through the files, the
        header line left out."""
        base = 0
        for path, has_header, names, col in self.files:
            with dio._reading(path), dio._open_bytes(path) as f:
                offset = 0
                for first_line, block in dio._line_chunks(f, self.chunk_bytes):
                    with _decoding(path, offset):
                        text = block.decode("utf-8")
                    offset += len(block)
                    if has_header and first_line == 1:
                        text = text.split("\n", 1)[1] if "\n" in text else ""
                    yield path, has_header, names, col, text
                    tick(base + _position(f))
            base += path.stat().st_size
            tick(base)

    def count(self, tick):
        n = 0
        for *_, text in self._blocks(tick):
            n += sum(1 for line in text.split("\n") if line.split("#", 1)[0].strip())
        self._no_samples(n)
        self.n_samples = n
        return n

    def _no_samples(self, n):
        if n == 0:
            path, has_header, names, _ = self.files[0]
            if len(self.files) == 1 and has_header:
                raise ValueError(f"{path}: a header ({', '.join(names)}) and no samples")
            raise ValueError(f"{self.name}: no samples found")

    def chunks(self, tick):
        import io
        import warnings

        n = 0
        for path, has_header, names, col, text in self._blocks(tick):
            if "\r" in text:
                text = text.replace("\r\n", "\n")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # (a chunk of comments only)
                    data = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.float64,
                                      ndmin=2)  # fmt: skip
            except ValueError:
                raise ValueError(dio._bad_cell(path, int(has_header), len(names))) from None
            if data.shape[0] == 0:
                continue
            if data.shape[1] != len(names):
                raise ValueError(dio._bad_cell(path, int(has_header), len(names)))
            n += len(data)
            yield np.delete(data, col, axis=1), data[:, col].copy()
        self._no_samples(n)


class _Concat(Source):
    """Sources one after the other (a directory's files): their rows concatenated."""

    def __init__(self, sources, name):
        self.sources, self.name = sources, name
        self.sparse = sources[0].sparse
        self.n_samples = sum(s.n_samples for s in sources)
        self.n_features = max(s.n_features for s in sources)
        for s in sources:
            if s.n_features != self.n_features:
                raise ValueError(f"{s.name}: {s.n_features} features where another file of "
                                 f"{name} has {self.n_features}; the files need the same "
                                 f"columns")  # fmt: skip
        self.total = sum(s.total for s in sources)

    def chunks(self, tick):
        base = 0
        for s in self.sources:
            yield from s.chunks(lambda done, base=base: tick(base + done))
            base += s.total
            tick(base)


def _position(f):
    """How far into the file (compressed bytes for gzip) the reading is."""
    raw = getattr(f, "fileobj", None) or f
    try:
        return raw.tell()
    except (OSError, ValueError):
        return 0


@contextlib.contextmanager
def _decoding(path, offset):
    """A chunk that is not UTF-8 as the io module says it, at the byte's place in the file."""
    try:
        yield
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path}: not a text file (byte {offset + exc.start} does not decode as UTF-8); "
            f"pass svmlight or CSV text"
        ) from None


def _labels(y, n, name, where=None):
    if y is None:
        return None
    y = np.asarray(y, dtype=np.float64).ravel()
    if len(y) != n:
        raise ValueError(f"{where or name}: {len(y)} labels for the {n} rows of {name}")
    return y


def _kind(path):
    name = path.name.lower()
    for kind, ends in (("svmlight", SVMLIGHT), ("csv", CSV), ("npy", NPY), ("hdf5", HDF5),
                       ("zarr", ZARR)):  # fmt: skip
        if name.endswith(ends):
            return kind
    return None


def source(input, layout, target, header, chunk_bytes, dtype, y, stack):
    """The input as a :class:`Source`."""
    if not isinstance(input, (str, os.PathLike)):
        if isinstance(input, (list, tuple)):
            input = np.asarray(input)
        if sp.issparse(input):
            return _Sparse(input, f"<{type(input).__name__}>", chunk_bytes, dtype, y)
        if not all(hasattr(input, a) for a in ("shape", "dtype", "__getitem__")):
            raise TypeError(f"convert takes a path or a 2-D array, not {type(input).__name__}")
        return _Dense(input, f"<{type(input).__name__}>", _by_cols(input, layout),
                      chunk_bytes, dtype, y)  # fmt: skip
    if y is not None:
        raise ValueError("y is for an X in memory; a file's labels come with it (module "
                         "docstring)")  # fmt: skip
    path = Path(input)
    if not path.exists():
        raise FileNotFoundError(f"data file {str(path)!r} does not exist")
    kind = _kind(path)
    if path.is_dir() and kind != "zarr":
        return _directory(path, layout, target, header, chunk_bytes, dtype)
    if kind == "svmlight":
        return _Svmlight([path], str(path), chunk_bytes)
    if kind == "csv":
        return _Csv([path], str(path), target, header, chunk_bytes)
    if kind == "npy":
        X = _npy(path)
        ypath = next((c for c in (path.with_name(path.stem + "_y.npy"), path.with_name("y.npy"))
                      if c.exists() and c != path), None)  # fmt: skip
        yv = _npy(ypath, labels=True) if ypath is not None else None
        return _Dense(X, str(path), _by_cols(X, layout), chunk_bytes, dtype,
                      _labels(yv, X.shape[0], str(path), ypath) if X.ndim == 2 else None)  # fmt: skip
    if kind in ("hdf5", "zarr"):
        X, yv = _hdf5(path, stack) if kind == "hdf5" else _zarr(path)
        return _Dense(X, str(path), False, chunk_bytes, dtype, yv)
    raise ValueError(
        f"cannot tell the format of {str(path)!r}: use .svm/.svm.gz/.libsvm/.txt (svmlight), "
        f".csv/.csv.gz, .npy (labels in <stem>_y.npy or y.npy beside it), .h5 or .zarr "
        f"(arrays X and y), or a directory of such files"
    )


def _by_cols(X, layout):
    """Read a dense array by columns: a Fortran-ordered ndarray into a "cols" store."""
    flags = getattr(X, "flags", None)
    return (layout == "cols" and isinstance(X, np.ndarray) and flags.f_contiguous
            and not flags.c_contiguous)  # fmt: skip


def _npy(path, labels=False):
    try:
        a = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a .npy file NumPy can read ({exc})") from None
    if labels:
        return np.asarray(a, dtype=np.float64).ravel()
    return a


def _directory(path, layout, target, header, chunk_bytes, dtype):
    """A directory of data files of one kind, in name order: their rows concatenated."""
    if (path / "meta.json").exists():
        raise ValueError(f"{path} is a store already; convert its source, or open it with "
                         f"duhl_cl.store.open")  # fmt: skip
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    kinds = {p: _kind(p) for p in files}
    unknown = [p.name for p, k in kinds.items() if k is None]
    if unknown:
        raise ValueError(f"{path}: {', '.join(unknown[:5])} not data files of a known kind; "
                         f"a directory holds svmlight, CSV or .npy files only")  # fmt: skip
    if not files:
        raise ValueError(f"{path}: an empty directory (no data files)")
    found = set(kinds.values())
    if len(found) > 1:
        raise ValueError(f"{path}: files of several kinds ({', '.join(sorted(found))}); a "
                         f"directory holds svmlight, CSV or .npy files, of one kind")  # fmt: skip
    if found & {"hdf5", "zarr"}:
        raise ValueError(f"{path}: a directory of {found.pop()} files; convert each file, or "
                         f"one directory of svmlight, CSV or .npy files")  # fmt: skip
    kind = found.pop()
    if kind == "svmlight":
        return _Svmlight(files, str(path), chunk_bytes)
    if kind == "csv":
        return _Csv(files, str(path), target, header, chunk_bytes)
    xs = [p for p in files if not p.name.endswith("_y.npy") and p.name != "y.npy"]
    if not xs:
        raise ValueError(f"{path}: labels (_y.npy) and no data files")
    arrays = [_npy(p) for p in xs]
    for p, a in zip(xs, arrays, strict=True):
        if a.ndim != 2:
            raise ValueError(f"{p}: X must be 2-D, it has shape {a.shape}")
    own = [p.with_name(p.stem + "_y.npy") for p in xs]
    if all(c.exists() for c in own):
        ys = [_labels(_npy(c, labels=True), a.shape[0], str(p), c)
              for p, a, c in zip(xs, arrays, own, strict=True)]  # fmt: skip
    elif any(c.exists() for c in own):
        missing = [c.name for c in own if not c.exists()]
        raise ValueError(f"{path}: labels for some files and not for {', '.join(missing[:5])}")
    elif (path / "y.npy").exists():
        n = sum(a.shape[0] for a in arrays)
        ys = [_labels(_npy(path / "y.npy", labels=True), n, str(path), path / "y.npy")]
    else:
        ys = None
    sources = [
        _Dense(a, str(p), False, chunk_bytes, dtype) for p, a in zip(xs, arrays, strict=True)
    ]
    src = _Concat(sources, str(path))
    if ys is not None:
        src.y = np.concatenate(ys)
    return src


def _hdf5(path, stack):
    try:
        import h5py
    except ImportError:
        raise ValueError(f"{path}: reading HDF5 needs h5py (pip install h5py)") from None
    f = stack.enter_context(h5py.File(path, "r"))
    X, y = _named_arrays(f, path)
    return X, (None if y is None else np.asarray(y[...], dtype=np.float64).ravel())


def _zarr(path):
    try:
        import zarr
    except ImportError:
        raise ValueError(f"{path}: reading zarr needs zarr (pip install zarr)") from None
    z = zarr.open(str(path), mode="r")
    if hasattr(z, "shape"):  # an array, not a group
        return z, None
    X, y = _named_arrays(z, path)
    return X, (None if y is None else np.asarray(y[...], dtype=np.float64).ravel())


def _named_arrays(group, path):
    """X (and y, when there) of an HDF5 file or zarr group: the arrays named so, or its one
    2-D array."""
    names = list(group.keys())
    if "X" in names:
        return group["X"], (group["y"] if "y" in names else None)
    two_d = [k for k in names if len(getattr(group[k], "shape", ())) == 2]
    if len(two_d) == 1:
        return group[two_d[0]], (group["y"] if "y" in names else None)
    raise ValueError(f"{path}: name the data array 'X' (and the labels 'y'); it holds "
                     f"{', '.join(names) or 'nothing'}")  # fmt: skip
