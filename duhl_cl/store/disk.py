"""The on-disk store: a problem's coordinates in files, in the layout the solver reads.

A store is a directory::

    meta.json     shape, dtype, layout ("cols": columns, the primal models'; "rows": rows,
                  the dual models'), sparse or dense, the blocks and their CRC-32 checksums
    values.bin    every stored value, coordinate after coordinate (dtype, little-endian)
    indices.bin   sparse only: the row (cols) or column (rows) index of each value (int32)
    offsets.npy   sparse only: where each coordinate starts, uint64 (n_coords + 1,)
    sqnorm.npy    each coordinate's squared norm, float64 (n_coords,)
    y.npy         the labels, float64 (n_samples,), when the input had them

The coordinates are grouped in *blocks* of consecutive coordinates of about
:data:`BLOCK_BYTES` of values; each block has its checksums, and the streaming passes (the
certificate, a host refresh without a host cache) read a block at a time, sequentially. A
block's checksum is verified the first time it is read whole in a process.

:class:`StoreWriter` writes one in a hidden ``.NAME.partial-PID`` directory beside the
target and renames it into place only once complete (``meta.json`` last, with
``"complete": true``): an interrupted or failed conversion leaves nothing that opens.
:func:`open_store` returns a :class:`DiskData`, which the estimators' ``fit`` takes as X.
Reads are positional reads (``os.preadv``) into buffers the caller owns, so that the
process holds only what the package asked for, and :attr:`DiskData.bytes_read` counts them.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import zlib
from pathlib import Path

import numpy as np

__all__ = ["BLOCK_BYTES", "DiskData", "StoreError", "StoreWriter", "open_store"]

FORMAT = "duhl-cl-store"
VERSION = 1
# Values per block: large enough that a sequential read runs at the disk's speed (this
# machine's virtual disk: 3 GB/s from 1 MiB reads up), small enough that two blocks in
# flight (one read ahead) are a small part of any host budget.
BLOCK_BYTES = 16 << 20
LAYOUTS = ("rows", "cols")


class StoreError(ValueError):
    """A store that cannot be used as it is: damaged, incomplete, or of another layout."""


def layout_for(primal: bool) -> str:
    return "cols" if primal else "rows"


def _block_bounds(lens, itemsize, block_bytes=BLOCK_BYTES):
    """Coordinate bounds of blocks of about ``block_bytes`` of values (at least one
    coordinate each)."""
    n = len(lens)
    csum = np.concatenate([[0], np.cumsum(np.asarray(lens, dtype=np.int64))]) * itemsize
    bounds = [0]
    while bounds[-1] < n:
        a = bounds[-1]
        b = int(np.searchsorted(csum, csum[a] + block_bytes, side="right")) - 1
        bounds.append(min(max(b, a + 1), n))
    return np.asarray(bounds, dtype=np.int64)


def _read_exact(fd, buf, offset, what):
    """Fill ``buf`` (a writable contiguous array) from ``fd`` at ``offset``; a short read
    is the file ending early (a truncated store)."""
    view = memoryview(buf).cast("B")
    done = 0
    while done < len(view):
        # (Linux reads at most ~2 GiB per call.)
        n = os.preadv(fd, [view[done : done + (1 << 30)]], offset + done)
        if n == 0:
            raise StoreError(f"{what}: the file ends early (truncated); convert it again")
        done += n
    return done


class DiskData:
    """An opened on-disk store (see the module docstring): what ``fit(X, y)`` takes as X.

    Attributes
    ----------
    path : Path
    shape : (n_samples, n_features)
    dtype : numpy dtype of the values
    layout : "rows" or "cols"
    sparse : bool
    n_coords, dim : int -- coordinates (rows or columns) and the length of a dense one
    nnz : int -- stored entries
    lens : ndarray (int32, n_coords) -- entries of each coordinate
    offs : ndarray (uint64, n_coords) -- where each coordinate starts, in entries
    sqnorm : ndarray (float64, n_coords)
    y : ndarray (float64, n_samples) or None -- the labels the input had
    blocks : ndarray (int64, n_blocks + 1) -- coordinate bounds of the blocks
    bytes_read : int -- bytes read from the store's files by this process
    """

    ndim = 2

    def __init__(self, path, meta):
        self.path = Path(path)
        self.meta = meta
        self.shape = (int(meta["n_samples"]), int(meta["n_features"]))
        self.dtype = np.dtype(meta["dtype"])
        self.layout = meta["layout"]
        self.sparse = bool(meta["sparse"])
        self.n_coords, self.dim = (
            (self.shape[1], self.shape[0]) if self.layout == "cols" else self.shape
        )
        self.nnz = int(meta["nnz"])
        self.blocks = np.asarray([b[0] for b in meta["blocks"]] + [self.n_coords], np.int64)
        self._crc = [(b[1], b[2]) for b in meta["blocks"]]
        self._verified = np.zeros(len(self._crc), dtype=bool)
        self.sqnorm = self._small("sqnorm.npy", (self.n_coords,), np.float64)
        if self.sparse:
            ptr = self._small("offsets.npy", (self.n_coords + 1,), np.uint64)
            if int(ptr[-1]) != self.nnz or np.any(np.diff(ptr.astype(np.int64)) < 0):
                raise StoreError(f"store {self.path}: offsets.npy is damaged; convert again")
            self.offs = ptr[:-1].copy()
            self.lens = np.diff(ptr.astype(np.int64)).astype(np.int32)
        else:
            self.offs = np.arange(self.n_coords, dtype=np.uint64) * np.uint64(self.dim)
            self.lens = np.full(self.n_coords, self.dim, dtype=np.int32)
        self.y = self._small("y.npy", (self.shape[0],), np.float64) if meta.get("has_y") else None
        self.bytes_read = 0
        self._lock = threading.Lock()
        self._fds = {}
        self._check_sizes()

    # -- opening
    def _small(self, name, shape, dtype):
        p = self.path / name
        try:
            a = np.load(p, allow_pickle=False)
        except FileNotFoundError:
            raise StoreError(f"store {self.path}: {name} is missing; convert again") from None
        except ValueError as exc:
            raise StoreError(
                f"store {self.path}: {name} is damaged ({exc}); convert again"
            ) from None
        if a.shape != shape or a.dtype != dtype:
            raise StoreError(
                f"store {self.path}: {name} holds {a.dtype} {a.shape}, not {np.dtype(dtype)} "
                f"{shape}; convert again"
            )
        return a

    def _files(self):
        yield "values.bin", self.dtype.itemsize
        if self.sparse:
            yield "indices.bin", 4

    def _check_sizes(self):
        for name, size in self._files():
            p = self.path / name
            want = self.nnz * size
            have = p.stat().st_size if p.exists() else -1
            if have == want:
                continue
            if have < 0:
                raise StoreError(f"store {self.path}: {name} is missing; convert again")
            # The first block that the file does not hold whole.
            ends = (self.offs[self.blocks[1:] - 1].astype(np.int64)
                    + self.lens[self.blocks[1:] - 1]) * size  # fmt: skip
            first = int(np.searchsorted(ends, have, side="right"))
            if have < want:
                raise StoreError(
                    f"store {self.path}: {name} is truncated ({have} of {want} bytes): block "
                    f"{first} (coordinates {self.blocks[first]}..{self.blocks[first + 1] - 1}) "
                    f"and after are missing; convert again"
                )
            raise StoreError(
                f"store {self.path}: {name} has {have} bytes, {want} expected; convert again"
            )

    def _fd(self, name, sequential=False):
        """A descriptor of ``name`` for streamed blocks (``sequential``) or for reads of
        given coordinates: the latter is advised RANDOM, so that the kernel reads only
        what is asked (with its default readahead, fetching scattered 4 KiB rows of a 16
        GiB SVM store made the disk read 2.6 times the bytes the package asked for)."""
        fd = self._fds.get((name, sequential))
        if fd is None:
            fd = self._fds[(name, sequential)] = os.open(self.path / name, os.O_RDONLY)
            advice = "POSIX_FADV_SEQUENTIAL" if sequential else "POSIX_FADV_RANDOM"
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, getattr(os, advice))
        return fd

    def close(self):
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    def __getstate__(self):  # (a process pool or Dask worker reopens the files)
        state = self.__dict__.copy()
        state["_fds"], state["_lock"] = {}, None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self):
        kind = f"sparse, {self.nnz} entries" if self.sparse else "dense"
        return (
            f"DiskData({str(self.path)!r}, shape={self.shape}, {self.dtype}, "
            f"layout={self.layout!r}, {kind}, {self.nbytes / 2**30:.2f} GiB)"
        )

    @property
    def nbytes(self) -> int:
        return self.nnz * (self.dtype.itemsize + (4 if self.sparse else 0))

    def entry_bytes(self) -> int:
        return self.dtype.itemsize + (4 if self.sparse else 0)

    # -- reading
    def read_run(self, a, b, val_out, idx_out=None, sequential=False) -> int:
        """Read coordinates ``a..b-1`` (consecutive in the files) into ``val_out`` (and
        ``idx_out`` when sparse); returns the bytes read. ``sequential``: part of a pass
        through the store (see :meth:`_fd`)."""
        if b <= a:
            return 0
        start = int(self.offs[a])
        n = int(self.offs[b - 1]) + int(self.lens[b - 1]) - start
        what = f"store {self.path}: coordinates {a}..{b - 1}"
        got = _read_exact(self._fd("values.bin", sequential), val_out[:n],
                          start * self.dtype.itemsize, what)  # fmt: skip
        if self.sparse:
            got += _read_exact(self._fd("indices.bin", sequential), idx_out[:n], start * 4, what)
        with self._lock:
            self.bytes_read += got
        return got

    def block_entries(self, i) -> int:
        a, b = int(self.blocks[i]), int(self.blocks[i + 1])
        return int(self.offs[b - 1]) + int(self.lens[b - 1]) - int(self.offs[a])

    def read_block(self, i, val_out, idx_out=None) -> int:
        """Read block ``i`` whole, verifying its checksums the first time; returns bytes."""
        a, b = int(self.blocks[i]), int(self.blocks[i + 1])
        got = self.read_run(a, b, val_out, idx_out, sequential=True)
        if not self._verified[i]:
            n = self.block_entries(i)
            crc_v = zlib.crc32(memoryview(val_out[:n]).cast("B"))
            crc_i = zlib.crc32(memoryview(idx_out[:n]).cast("B")) if self.sparse else 0
            for name, want, have in (("values.bin", self._crc[i][0], crc_v),
                                     ("indices.bin", self._crc[i][1], crc_i)):  # fmt: skip
                if want != have:
                    raise StoreError(
                        f"store {self.path}: block {i} (coordinates {a}..{b - 1}) of {name} "
                        f"does not match its checksum (the file was changed or damaged); "
                        f"convert again"
                    )
            self._verified[i] = True
        return got

    def verified(self, i) -> bool:
        """Whether block ``i``'s checksums were checked in this process."""
        return bool(self._verified[i])

    def verify(self) -> None:
        """Read every block and check its checksums (a StoreError names the first bad one)."""
        n = max((self.block_entries(i) for i in range(len(self._crc))), default=0)
        val = np.empty(n, self.dtype)
        idx = np.empty(n, np.int32) if self.sparse else None
        for i in range(len(self._crc)):
            self.read_block(i, val, idx)

    def __matmul__(self, w):
        """``X @ w`` (predictions), streamed block by block: float64 (n_samples,) for w of
        shape (n_features,), (n_samples, K) for (n_features, K)."""
        w = np.asarray(w, dtype=np.float64)
        if w.shape[:1] != (self.shape[1],) or w.ndim > 2:
            raise ValueError(f"X has {self.shape[1]} features, w has shape {w.shape}")
        out = np.zeros((self.shape[0],) + w.shape[1:])
        n = max((self.block_entries(i) for i in range(len(self._crc))), default=0)
        val = np.empty(n, self.dtype)
        idx = np.empty(n, np.int32) if self.sparse else None
        for i in range(len(self._crc)):
            a, b = int(self.blocks[i]), int(self.blocks[i + 1])
            self.read_block(i, val, idx)
            B = block_matrix(self, a, b, val, idx).astype(np.float64)
            if self.layout == "rows":
                out[a:b] = B @ w
            else:
                out += B.T @ w[a:b]
        return out


def block_matrix(data, a, b, val, idx=None, base=None):
    """Coordinates ``a..b-1`` (read into ``val``/``idx`` from entry ``base``, default
    their own first entry) as a (b - a, dim) matrix: dense ndarray or CSR (one row each)."""
    import scipy.sparse as sp

    k = b - a
    if not data.sparse:
        return val[: k * data.dim].reshape(k, data.dim)
    o = data.offs[a:b].astype(np.int64)
    o = o - (int(o[0]) if base is None else base) if k else o
    n = int(o[-1] + data.lens[b - 1]) if k else 0
    ptr = np.concatenate([o, [n]]).astype(np.int64)
    return sp.csr_matrix((val[:n], idx[:n], ptr), shape=(k, data.dim))


def open_store(path) -> DiskData:
    """Open the store at ``path`` (a directory :func:`duhl_cl.store.convert` wrote)."""
    path = Path(path)
    meta_path = path / "meta.json"
    if not path.is_dir():
        raise StoreError(f"{path} is not a store (no such directory); write one with "
                         f"duhl-cl convert INPUT {path} --layout rows|cols")  # fmt: skip
    if not meta_path.exists():
        partial = ".partial-" in path.name
        raise StoreError(
            f"{path} is not a complete store (no meta.json"
            + ("; it is what an interrupted conversion left" if partial else "")
            + "); convert again"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreError(f"store {path}: meta.json is damaged ({exc}); convert again") from None
    if meta.get("format") != FORMAT:
        raise StoreError(f"{path}: meta.json is not a duhl-cl store's")
    if meta.get("version") != VERSION:
        raise StoreError(
            f"store {path} has format version {meta.get('version')}, this duhl-cl reads "
            f"{VERSION}; convert again"
        )
    if not meta.get("complete"):
        raise StoreError(f"store {path} is incomplete (its conversion did not finish); "
                         f"convert again")  # fmt: skip
    return DiskData(path, meta)


class StoreWriter:
    """Write a store (module docstring) without holding its data: coordinates are appended
    in order (:meth:`append_dense`, :meth:`append_sparse`) or, for a layout that is the
    input's transpose, scattered into preallocated files (:meth:`preallocate`,
    :meth:`scatter_dense`, :meth:`scatter_sparse`); :meth:`finish` checksums the blocks,
    computes the squared norms in one sequential read, and renames the store into place.
    Use as a context manager: an exception (Ctrl-C, a full disk) removes what was written.

    Parameters
    ----------
    path : str or Path -- the store's directory (must not exist, unless ``overwrite``)
    layout : "rows" or "cols"
    dtype : float32 or float64
    sparse : bool
    n_samples, n_features : int or None -- None when not known yet (appending rows)
    block_bytes : int -- values per checksummed block (tests make small blocks)
    """

    def __init__(self, path, *, layout, dtype, sparse, n_samples=None, n_features=None,
                 overwrite=False, source="", block_bytes=BLOCK_BYTES):  # fmt: skip
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be 'rows' or 'cols', got {layout!r}")
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        if self.path.exists() and not overwrite:
            raise FileExistsError(
                f"{self.path} exists; remove it or pass overwrite=True (--overwrite)"
            )
        self.layout, self.sparse, self.source = layout, bool(sparse), str(source)
        self.n_samples, self.n_features = n_samples, n_features
        self.overwrite, self.block_bytes = overwrite, int(block_bytes)
        self.tmp = self.path.parent / f".{self.path.name}.partial-{os.getpid()}"
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)
        self._val = open(self.tmp / "values.bin", "wb")
        self._idx = open(self.tmp / "indices.bin", "wb") if self.sparse else None
        self._lens = []  # appended coordinates' lengths (sparse)
        self._n_appended = 0
        self._prealloc = None
        self.y = None

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is not None:
            self.abort()
        return False

    def abort(self):
        for f in (self._val, self._idx):
            if f is not None and not f.closed:
                f.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    @property
    def dim(self):
        return self.n_samples if self.layout == "cols" else self.n_features

    # -- appending whole coordinates, in order
    def append_dense(self, block):
        """Append coordinates: ``block`` of shape (k, dim), one coordinate per row."""
        block = np.ascontiguousarray(block, dtype=self.dtype)
        self._val.write(memoryview(block).cast("B"))
        self._n_appended += block.shape[0]

    def append_sparse(self, indptr, indices, values):
        """Append coordinates in CSR form (one coordinate per row of it)."""
        indptr = np.asarray(indptr, dtype=np.int64)
        lo, hi = int(indptr[0]), int(indptr[-1])
        self._val.write(memoryview(np.ascontiguousarray(values[lo:hi], self.dtype)).cast("B"))
        self._idx.write(memoryview(np.ascontiguousarray(indices[lo:hi], np.int32)).cast("B"))
        self._lens.append(np.diff(indptr).astype(np.int64))
        self._n_appended += len(indptr) - 1

    # -- scattering (the input's transpose)
    def preallocate(self, lens=None):
        """Files of the final size: dense (n_coords * dim values); sparse: ``lens`` entries
        per coordinate (the counting pass's result)."""
        n_coords = self.n_features if self.layout == "cols" else self.n_samples
        if self.sparse:
            self._lens = [np.asarray(lens, dtype=np.int64)]
            nnz = int(self._lens[0].sum())
            self._cursor = np.concatenate([[0], np.cumsum(self._lens[0])[:-1]]).astype(np.int64)
        else:
            nnz = n_coords * self.dim
        need = nnz * (self.dtype.itemsize + (4 if self.sparse else 0))
        free = shutil.disk_usage(self.tmp).free
        if need > free:
            raise OSError(
                f"not enough disk space for the store {self.path}: it needs {need} bytes, "
                f"{free} are free; free space or write it elsewhere"
            )
        self._val.close()
        if self._idx is not None:
            self._idx.close()
        shape = (nnz,)
        for name, size in (("values.bin", self.dtype.itemsize), ("indices.bin", 4)):
            if nnz and (name == "values.bin" or self.sparse):
                # Reserve the blocks now: a memory map over a sparse file that the disk
                # cannot fill later ends the process with SIGBUS, past any cleanup.
                fd = os.open(self.tmp / name, os.O_RDWR)
                try:
                    os.posix_fallocate(fd, 0, nnz * size)
                finally:
                    os.close(fd)
        self._mv = (
            np.memmap(self.tmp / "values.bin", dtype=self.dtype, mode="w+", shape=shape)
            if nnz
            else None
        )
        self._mi = (np.memmap(self.tmp / "indices.bin", dtype=np.int32, mode="w+", shape=shape)
                    if self.sparse and nnz else None)  # fmt: skip
        self._prealloc = n_coords
        self._n_appended = n_coords

    def scatter_dense(self, row0, rows):
        """Write input rows ``row0..`` (shape (k, n_features)) into the columns of a "cols"
        store."""
        if self._mv is None:
            return
        k = rows.shape[0]
        view = self._mv.reshape(self.n_features, self.n_samples)
        view[:, row0 : row0 + k] = np.asarray(rows, dtype=self.dtype).T

    def scatter_sparse(self, row0, indptr, indices, values):
        """Write CSR input rows ``row0..`` into the columns of a sparse "cols" store (their
        places from the counting pass; rows arrive in order, so each column's entries stay
        sorted by row)."""
        if self._mv is None:
            return
        indptr = np.asarray(indptr, dtype=np.int64)
        lo, hi = int(indptr[0]), int(indptr[-1])
        cols = np.asarray(indices[lo:hi], dtype=np.int64)
        rows = np.repeat(np.arange(row0, row0 + len(indptr) - 1), np.diff(indptr))
        order = np.argsort(cols, kind="stable")
        cs = cols[order]
        # Each entry's rank among this chunk's entries of its column.
        starts = np.searchsorted(cs, cs, side="left")
        rank = np.arange(len(cs)) - starts
        dest = self._cursor[cs] + rank
        self._mv[dest] = np.asarray(values[lo:hi], dtype=self.dtype)[order]
        self._mi[dest] = rows[order].astype(np.int32)
        self._cursor += np.bincount(cs, minlength=len(self._cursor))

    # -- the end
    def finish(self, y=None, progress=None) -> DiskData:
        """Checksum the blocks, compute the squared norms, write the metadata and rename the
        store into place; returns it opened."""
        if self._prealloc is None:
            self._val.close()
            if self._idx is not None:
                self._idx.close()
        else:
            for m in (self._mv, self._mi):
                if m is not None:
                    m.flush()
            self._mv = self._mi = None
        n_coords = self._n_appended
        if self.layout == "rows":
            self.n_samples = n_coords if self.n_samples is None else self.n_samples
        else:
            self.n_features = n_coords if self.n_features is None else self.n_features
        if n_coords != (self.n_features if self.layout == "cols" else self.n_samples):
            raise RuntimeError(f"store {self.path}: {n_coords} coordinates written, "
                               f"{self.n_features if self.layout == 'cols' else self.n_samples} expected")  # fmt: skip
        if self.sparse:
            lens = np.concatenate(self._lens) if self._lens else np.zeros(0, np.int64)
            ptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.uint64)
            np.save(self.tmp / "offsets.npy", ptr)
            nnz = int(ptr[-1])
        else:
            lens = np.full(n_coords, self.dim, dtype=np.int64)
            nnz = n_coords * self.dim
        if y is not None:
            y = np.asarray(y, dtype=np.float64).ravel()
            if len(y) != self.n_samples:
                raise ValueError(f"{len(y)} labels for {self.n_samples} samples")
            np.save(self.tmp / "y.npy", y)
        bounds = _block_bounds(lens, self.dtype.itemsize, self.block_bytes)
        meta = {
            "format": FORMAT, "version": VERSION, "complete": False,
            "n_samples": int(self.n_samples), "n_features": int(self.n_features),
            "layout": self.layout, "dtype": self.dtype.name, "sparse": self.sparse,
            "nnz": nnz, "has_y": y is not None, "source": self.source,
            "blocks": [[int(a), 0, 0] for a in bounds[:-1]],
        }  # fmt: skip
        np.save(self.tmp / "sqnorm.npy", np.zeros(n_coords))
        data = DiskData(self.tmp, meta)
        sq = np.zeros(n_coords)
        n = max((data.block_entries(i) for i in range(len(bounds) - 1)), default=0)
        val = np.empty(n, self.dtype)
        idx = np.empty(n, np.int32) if self.sparse else None
        for i in range(len(bounds) - 1):
            a, b = int(bounds[i]), int(bounds[i + 1])
            data.read_run(a, b, val, idx)
            m = data.block_entries(i)
            meta["blocks"][i][1] = zlib.crc32(memoryview(val[:m]).cast("B"))
            meta["blocks"][i][2] = zlib.crc32(memoryview(idx[:m]).cast("B")) if self.sparse else 0
            sq[a:b] = _sqnorms(block_matrix(data, a, b, val, idx))
            if progress is not None:
                progress(b, n_coords)
        data.close()
        if not np.isfinite(sq).all():
            bad = int(np.flatnonzero(~np.isfinite(sq))[0])
            raise ValueError(
                f"{self.source or 'the input'}: coordinate {bad} has a non-finite entry (NaN, "
                f"infinity, or beyond float64 when squared); clean or rescale the data"
            )
        np.save(self.tmp / "sqnorm.npy", sq)
        meta["complete"] = True
        with open(self.tmp / "meta.json", "w") as f:
            json.dump(meta, f)
            f.flush()
            os.fsync(f.fileno())
        old = None
        if self.path.exists():  # overwrite: the old store goes only once the new is whole
            old = self.path.parent / f".{self.path.name}.old-{os.getpid()}"
            os.replace(self.path, old)
        os.replace(self.tmp, self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return open_store(self.path)


def _sqnorms(B):
    """Squared norms of a block's coordinates (its rows), float64."""
    import scipy.sparse as sp

    if sp.issparse(B):
        sq = np.asarray(B.multiply(B).sum(axis=1), dtype=np.float64).ravel()
        if B.dtype != np.float64 and not np.isfinite(sq).all():
            B = B.astype(np.float64)
            sq = np.asarray(B.multiply(B).sum(axis=1), dtype=np.float64).ravel()
        return sq
    # Summed in float64 (a float32 sum over a column of millions of rows is off by 1e-5).
    return np.einsum("ij,ij->i", B, B, dtype=np.float64)
