"""A data set into an on-disk store (duhl_cl.store.disk), streamed: X is never held whole.

:func:`convert` reads svmlight/libsvm text (``.svm``, ``.svm.gz``, ``.libsvm``, ``.txt``),
CSV (``.csv``, ``.csv.gz``), ``.npy`` (memory-mapped, C or Fortran order), HDF5 (``.h5``) or
zarr (``.zarr``) arrays, a directory of such files (one kind, rows concatenated in name
order), or an array in memory (NumPy, a memmap, scipy CSR/CSC, an h5py or zarr 2-D array), a
slab of about ``chunk_bytes`` at a time (the readers: duhl_cl.store.sources), and writes its
coordinates in the layout asked for: "rows" (one coordinate per sample: the dual models, the
SVMs and L2 logistic regression) or "cols" (one per feature: the primal models, Lasso,
ElasticNet, Ridge, L1 logistic regression). Memory is a few slabs plus O(n_samples +
n_features): the labels, the counts of a counting pass.

How an input becomes a layout:

- in the input's own order (rows of row-ordered input into a "rows" store; columns of a
  Fortran-ordered array or of a CSC matrix into a "cols" store): slabs are appended;
- transposed, dense: the store's files are preallocated and each row slab is scattered into
  its columns (a CSV file is counted first, for n_samples);
- transposed, sparse: a counting pass (each coordinate's entries, from ``np.bincount`` of
  the indices), then a second pass scatters the entries into place (svmlight text is
  parsed twice).

Duplicate or unsorted svmlight feature indices are summed and sorted, as
:func:`duhl_cl.io.load_svmlight` does (and so are a non-canonical CSR/CSC matrix's). A
damaged input is the io module's ValueError, naming the file and the line; a full disk an
OSError naming the store; an interrupted or failed conversion leaves nothing at
``store_dir`` (:class:`~duhl_cl.store.disk.StoreWriter` removes its partial directory, and
an existing store that ``overwrite`` would replace stays as it was).
"""

from __future__ import annotations

import contextlib
import errno
from pathlib import Path

import numpy as np

from .. import io as dio
from .disk import LAYOUTS, DiskData, StoreWriter
from .sources import source

__all__ = ["convert"]

_INT32_MAX = np.iinfo(np.int32).max


def convert(input, store_dir, *, layout, dtype="float32", overwrite=False, target=None,
            header=None, chunk_bytes=dio.CHUNK_BYTES, progress=None, y=None,
            block_bytes=None) -> DiskData:  # fmt: skip
    """Write ``input`` as a store at ``store_dir`` and return it opened.

    Parameters
    ----------
    input : path (str or Path) or array
        A data file, a directory of data files of one kind, or X in memory (module
        docstring). A ``.npy`` file's labels are ``<stem>_y.npy`` or ``y.npy`` beside it
        (in a directory: each file's ``<stem>_y.npy``, or one ``y.npy`` for them all), an
        HDF5 file's or zarr group's the array ``y`` beside ``X``; none there: no labels.
    store_dir : path -- the store's directory; must not exist unless ``overwrite``
    layout : "rows" (dual models) or "cols" (primal models)
    block_bytes : int, optional -- values per checksummed block (default
        duhl_cl.store.disk.BLOCK_BYTES)
    dtype : "float32" or "float64" -- the stored values' precision
    overwrite : bool -- replace an existing store (only once the new one is complete)
    target, header : CSV only, as :func:`duhl_cl.io.load_dataset` (the target column's
        name, default the last; whether the first row is a header, default: detected)
    chunk_bytes : int -- about how much input is read at a time
    progress : callable(done, total), optional
        Called as the input is read: ``done`` of ``total`` units, a unit being a byte of the
        input files or a row (a column, when read by columns) of an array. Each pass over
        the input (two where a transpose needs a counting pass) counts the input's size,
        and so does the closing pass over the store (its checksums and squared norms):
        ``total`` is (passes + 1) x size, and ``done`` only grows, to ``total``. An
        exception from it (KeyboardInterrupt) ends the conversion, leaving nothing.
    y : array of shape (n_samples,), optional -- labels of an in-memory X

    Returns
    -------
    DiskData -- the store, opened (:func:`duhl_cl.store.disk.open_store`)
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be 'rows' or 'cols', got {layout!r}")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    chunk_bytes = max(1, int(chunk_bytes))
    if overwrite:
        _check_replaceable(Path(store_dir))
    # (values beyond float32 become infinities, which finish refuses, naming the coordinate)
    with contextlib.ExitStack() as stack, np.errstate(over="ignore"):
        src = source(input, layout, target, header, chunk_bytes, dtype, y, stack)
        with _writing(store_dir):
            writer = StoreWriter(store_dir, layout=layout, dtype=dtype, sparse=src.sparse,
                                 overwrite=overwrite, source=src.name,
                                 **({} if block_bytes is None else {"block_bytes": block_bytes}))  # fmt: skip
            w = stack.enter_context(writer)
        transposed = (layout == "rows") == src.by_cols
        if not transposed:
            labels, ticks = _append(w, src, progress)
        elif not src.sparse:
            labels, ticks = _scatter_dense(w, src, progress)
        else:
            labels, ticks = _scatter_sparse(w, src, progress)
        if src.y is not None:
            y_all = src.y
        elif labels and all(lab is not None for lab in labels):
            y_all = np.concatenate(labels).astype(np.float64, copy=False)
        else:
            y_all = None
        del labels
        with _writing(store_dir):
            return w.finish(y=y_all, progress=ticks.closing)


STORE_FILES = {"meta.json", "values.bin", "indices.bin", "offsets.npy", "sqnorm.npy", "y.npy"}


def _check_replaceable(path):
    """``overwrite`` replaces a store (whole or damaged) or an empty directory, never other
    files: a mistyped STORE_DIR must not remove a directory of data."""
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir() and not path.is_symlink():
        other = [p.name for p in path.iterdir() if p.name not in STORE_FILES or p.is_dir()]
        if not other:
            return
        what = f"a directory holding {', '.join(sorted(other)[:3])}" + (
            ", ..." if len(other) > 3 else ""
        )
    else:
        what = "not a directory"
    raise ValueError(
        f"{path} exists and is not a store ({what}); overwrite replaces only a store: remove "
        f"it yourself or write the store elsewhere"
    )


# -- the three ways of writing


def _append(w, src, progress):
    """Slabs in the store's own order, appended."""
    ticks = _Ticks(progress, src.total, 1)
    labels = []
    for chunk, lab in src.chunks(ticks.next_pass()):
        with _writing(w.path):
            if src.sparse:
                w.append_sparse(*chunk)
            else:
                w.append_dense(chunk)
        labels.append(lab)
    _check_samples(src)
    if src.by_cols:  # columns appended: a "cols" store of a known shape
        w.n_samples, w.n_features = src.n_samples, src.n_features
    else:  # rows appended: n_features is known now (svmlight's: the widest index seen)
        w.n_features = src.n_features
    return labels, ticks


def _scatter_dense(w, src, progress):
    """Row slabs of a dense row-ordered input into a preallocated "cols" store."""
    n = src.n_samples
    ticks = _Ticks(progress, src.total, 1 if n is not None else 2)
    if n is None:  # (CSV: count the rows first)
        n = src.count(ticks.next_pass())
    _check_samples(src, n)
    w.n_samples, w.n_features = n, src.n_features
    with _writing(w.path):
        w.preallocate()
    labels, row0 = [], 0
    for chunk, lab in src.chunks(ticks.next_pass()):
        if row0 + len(chunk) > n:
            raise ValueError(f"{src.name}: more rows than counted ({n}); did it change during "
                             f"the conversion?")  # fmt: skip
        with _writing(w.path):
            w.scatter_dense(row0, chunk)
        row0 += len(chunk)
        labels.append(lab)
    if row0 != n:
        raise ValueError(f"{src.name}: {row0} rows read, {n} counted; did it change during "
                         f"the conversion?")  # fmt: skip
    return labels, ticks


def _scatter_sparse(w, src, progress):
    """Sparse input in the transpose of the store's layout: a counting pass, then the
    entries scattered into place (rows of CSR/svmlight into a "cols" store, columns of a
    CSC matrix into a "rows" store)."""
    ticks = _Ticks(progress, src.total, 2)
    lens, n_major = _count_entries(src, ticks.next_pass())
    n_minor = src.n_features if not src.by_cols else src.n_samples
    if n_minor is not None and len(lens) < n_minor:
        lens = np.concatenate([lens, np.zeros(n_minor - len(lens), np.int64)])
    _check_samples(src, n_major if not src.by_cols else None)
    if n_major > _INT32_MAX:
        what = "samples" if not src.by_cols else "features"
        raise ValueError(f"{src.name}: {n_major} {what}; a store's indices are 32-bit: split "
                         f"the data into parts of fewer than 2**31 {what}")  # fmt: skip
    if src.by_cols:  # CSC into a "rows" store
        w.n_samples, w.n_features = len(lens), n_major
    else:
        w.n_samples, w.n_features = n_major, len(lens)
    with _writing(w.path):
        w.preallocate(lens)
    labels, major0 = [], 0
    seen = np.zeros(len(lens), np.int64)
    for (indptr, indices, values), lab in src.chunks(ticks.next_pass()):
        idx = _entries(indptr, indices)
        if len(idx):
            if int(idx.max()) >= len(lens):
                seen[:] = -1
                break
            seen += np.bincount(idx, minlength=len(lens))
        with _writing(w.path):
            w.scatter_sparse(major0, indptr, indices, values)
        major0 += len(indptr) - 1
        labels.append(lab)
    if major0 != n_major or not np.array_equal(seen, lens):
        raise ValueError(f"{src.name}: the second pass read other entries than the first; did "
                         f"it change during the conversion?")  # fmt: skip
    return labels, ticks


def _entries(indptr, indices):
    return np.asarray(indices[int(indptr[0]) : int(indptr[-1])])


def _count_entries(src, tick):
    """The counting pass: the entries of each minor index, and the major coordinates."""
    lens = np.zeros(0, np.int64)
    n_major = 0
    for (indptr, indices, _), _ in src.chunks(tick):
        idx = _entries(indptr, indices)
        if len(idx):
            counts = np.bincount(idx)
            if len(counts) > len(lens):
                lens = np.concatenate([lens, np.zeros(len(counts) - len(lens), np.int64)])
            lens[: len(counts)] += counts
        n_major += len(indptr) - 1
    return lens, n_major


def _check_samples(src, n=None):
    n = src.n_samples if n is None else n
    if n == 0:
        raise ValueError(f"{src.name}: no samples found")


class _Ticks:
    """The progress of ``passes`` passes over the input of ``per_pass`` units each, and the
    closing pass over the store (as long as one over the input)."""

    def __init__(self, fn, per_pass, passes):
        self.fn, self.per_pass = fn, max(int(per_pass), 1)
        self.total = self.per_pass * (passes + 1)
        self.base, self.done = -self.per_pass, 0

    def next_pass(self):
        self.base += self.per_pass
        base = self.base

        def tick(done):
            if self.fn is not None:
                self.done = max(self.done, base + min(int(done), self.per_pass))
                self.fn(self.done, self.total)

        return tick

    def closing(self, done, total):
        if self.fn is not None:
            part = self.per_pass * done // total if total else self.per_pass
            self.done = max(self.done, self.base + self.per_pass + part)
            self.fn(self.done, self.total)


@contextlib.contextmanager
def _writing(store):
    """An OSError while writing the store as one that names it (and, for a full disk, the
    fix); an OSError that already says so (preallocate's) passes as it is."""
    try:
        yield
    except OSError as exc:
        if exc.errno is None:
            raise
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            msg = (f"the disk is full writing the store {store} ({exc.strerror}); free space "
                   f"or write the store elsewhere")  # fmt: skip
        else:
            msg = f"writing the store {store}: {exc.strerror or exc}" + (
                f": {exc.filename}" if exc.filename else ""
            )
        raise OSError(exc.errno, msg) from exc
