"""The on-disk store (duhl_cl.store.disk) and its conversion (duhl_cl.store.convert): every
input kind, in both layouts and both precisions, holds exactly the coordinates of the
in-memory store of the same data; damage is refused, naming the block; an interrupted or
failed conversion leaves nothing; ``duhl-cl convert`` end to end. No OpenCL device needed.
"""

import errno
import gzip
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from duhl_cl import store
from duhl_cl.cli import build_parser, main
from duhl_cl.io import load_dataset, load_svmlight
from duhl_cl.store import CoordinateStore, StoreError, convert
from duhl_cl.store import disk as disk_mod
from duhl_cl.store.disk import StoreWriter, block_matrix, open_store

_BOUNDS = disk_mod._block_bounds
CHUNK = 700  # bytes of input at a time: many chunks, even for these small inputs
BLOCK = 1500  # bytes of values per block: many blocks


@pytest.fixture(autouse=True)
def _small_blocks(monkeypatch):
    monkeypatch.setattr(
        disk_mod, "_block_bounds", lambda lens, itemsize, *_: _BOUNDS(lens, itemsize, BLOCK)
    )


def _data(n=157, d=23, seed=0):
    """Sparse-ish data with an all-zero column inside and at the end, and a zero row."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * rng.choice([1e-3, 1.0, 50.0], size=(1, d))
    X[rng.random((n, d)) < 0.6] = 0.0
    X[:, 5 % d] = 0.0
    X[:, -1] = 0.0
    X[7] = 0.0
    y = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    return X, y


def _write_svmlight(path, X, y, shuffle=None):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt") as f:
        for row, label in zip(X, y, strict=True):
            feats = [f"{j + 1}:{float(v)!r}" for j, v in enumerate(row) if v != 0]
            if shuffle is not None:
                shuffle.shuffle(feats)
            f.write(f"{label:g} {' '.join(feats)}\n")


def assert_same(data, X, layout, dtype, y=None):
    """``data`` (a DiskData) holds the coordinates of CoordinateStore(X) exactly, read block
    by block, and its squared norms (float32: to 1e-6)."""
    dtype = np.dtype(dtype)
    mem = CoordinateStore(X, primal=layout == "cols", dtype=dtype)
    assert data.layout == layout and data.dtype == dtype
    assert data.shape == X.shape and data.sparse == sp.issparse(X)
    assert (data.n_coords, data.dim) == (mem.n_coords, mem.dim)
    np.testing.assert_array_equal(data.offs, mem.offs)
    np.testing.assert_array_equal(data.lens, mem.lens)
    np.testing.assert_allclose(data.sqnorm, mem.sqnorm, rtol=1e-6 if dtype == np.float32 else 1e-12)
    assert data.nnz == (int(mem.lens.sum()) if data.sparse else X.shape[0] * X.shape[1])
    n = max(data.block_entries(i) for i in range(len(data.blocks) - 1))
    val = np.empty(n, data.dtype)
    idx = np.empty(n, np.int32) if data.sparse else None
    for i in range(len(data.blocks) - 1):
        a, b = int(data.blocks[i]), int(data.blocks[i + 1])
        data.read_block(i, val, idx)
        B = block_matrix(data, a, b, val, idx)
        o = int(mem.offs[a])
        if data.sparse:
            e = int(mem.offs[b - 1]) + int(mem.lens[b - 1])
            ptr = np.concatenate([mem.offs[a:b].astype(np.int64), [e]]) - o
            np.testing.assert_array_equal(B.indptr, ptr)
            np.testing.assert_array_equal(B.indices, mem.idx[o:e])
            np.testing.assert_array_equal(B.data, mem.val[o:e])
        else:
            ref = mem.val[o : o + (b - a) * mem.dim].reshape(b - a, mem.dim)
            assert B.dtype == ref.dtype
            np.testing.assert_array_equal(B, ref)
    data.verify()
    if y is None:
        assert data.y is None
    else:
        np.testing.assert_array_equal(data.y, np.asarray(y, dtype=np.float64))


# -- every input kind: (what convert takes, X as loaded in memory, y)


def _dense_c(tmp_path):
    X, y = _data()
    return X, X, None


def _dense_f(tmp_path):
    X, y = _data()
    return np.asfortranarray(X), X, None


def _memmap(tmp_path):
    X, y = _data()
    m = np.memmap(tmp_path / "X.dat", dtype=np.float64, mode="w+", shape=X.shape)
    m[:] = X
    m.flush()
    return np.memmap(tmp_path / "X.dat", dtype=np.float64, mode="r", shape=X.shape), X, None


def _memmap_f(tmp_path):
    X, y = _data()
    m = np.memmap(tmp_path / "X.dat", dtype=np.float32, mode="w+", shape=X.shape, order="F")
    m[:] = X
    m.flush()
    r = np.memmap(tmp_path / "X.dat", dtype=np.float32, mode="r", shape=X.shape, order="F")
    return r, np.asarray(r), None


def _csr(tmp_path):
    X, y = _data()
    return sp.csr_matrix(X), sp.csr_matrix(X), None


def _csc(tmp_path):
    X, y = _data()
    return sp.csc_matrix(X), sp.csc_matrix(X), None


def _svmlight(tmp_path, name="train.svm"):
    X, y = _data()
    p = tmp_path / name
    _write_svmlight(p, X, y)
    Xr, yr = load_svmlight(p)
    return p, Xr, yr


def _svmlight_gz(tmp_path):
    return _svmlight(tmp_path, "train.svm.gz")


def _svmlight_unsorted(tmp_path):
    """Unsorted indices, and duplicates (libsvm sums them), in some lines."""
    X, y = _data()
    p = tmp_path / "unsorted.libsvm"
    rng = np.random.default_rng(3)
    with open(p, "w") as f:
        for row, label in zip(X, y, strict=True):
            feats = [f"{j + 1}:{float(v)!r}" for j, v in enumerate(row) if v != 0]
            if feats and rng.random() < 0.5:
                j = int(np.flatnonzero(row)[0])
                feats += [f"{j + 1}:0.25", f"{j + 1}:-0.125"]  # duplicates: summed
            rng.shuffle(feats)
            f.write(f"{label:g} {' '.join(feats)}\n")
    Xr, yr = load_svmlight(p)
    return p, Xr, yr


def _csv(tmp_path):
    X, y = _data()
    p = tmp_path / "train.csv"
    names = [f"f{j}" for j in range(X.shape[1])] + ["label"]
    with open(p, "w") as f:
        f.write(",".join(names) + "\n")
        for row, label in zip(X, y, strict=True):
            f.write(",".join(repr(float(v)) for v in row) + f",{label:g}\n")
    Xr, yr = load_dataset(p)
    return p, Xr, yr


def _npy(tmp_path):
    X, y = _data()
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    return tmp_path / "X.npy", X, y


def _npy_f(tmp_path):
    X, y = _data()
    np.save(tmp_path / "train.npy", np.asfortranarray(X.astype(np.float32)))
    np.save(tmp_path / "train_y.npy", y)
    Xr, yr = load_dataset(tmp_path / "train.npy")
    assert Xr.flags.f_contiguous
    return tmp_path / "train.npy", Xr, yr


def _svmlight_dir(tmp_path):
    """Two files, the first narrower (its last features are absent): n_features is the
    widest file's."""
    X, y = _data()
    X[:60, 12:] = 0.0
    d = tmp_path / "parts"
    d.mkdir()
    _write_svmlight(d / "b.svm", X[60:], y[60:])
    _write_svmlight(d / "a.svm", X[:60], y[:60])  # (name order, not writing order)
    A, ya = load_svmlight(d / "a.svm")
    B, yb = load_svmlight(d / "b.svm")
    A = sp.csr_matrix((A.data, A.indices, A.indptr), shape=(A.shape[0], B.shape[1]))
    assert A.shape[1] == B.shape[1] and load_svmlight(d / "a.svm")[0].shape[1] <= 12
    return d, sp.vstack([A, B]).tocsr(), np.concatenate([ya, yb])


def _npy_dir(tmp_path):
    X, y = _data()
    d = tmp_path / "parts"
    d.mkdir()
    np.save(d / "p0.npy", X[:50])
    np.save(d / "p0_y.npy", y[:50])
    np.save(d / "p1.npy", np.asfortranarray(X[50:]))
    np.save(d / "p1_y.npy", y[50:])
    return d, X, y


INPUTS = [_dense_c, _dense_f, _memmap, _memmap_f, _csr, _csc, _svmlight, _svmlight_gz,
          _svmlight_unsorted, _csv, _npy, _npy_f, _svmlight_dir, _npy_dir]  # fmt: skip


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["rows", "cols"])
@pytest.mark.parametrize("make", INPUTS, ids=[f.__name__.lstrip("_") for f in INPUTS])
def test_every_input_round_trips(tmp_path, make, layout, dtype):
    inp, X, y = make(tmp_path)
    calls = []
    data = convert(inp, tmp_path / "store", layout=layout, dtype=dtype, chunk_bytes=CHUNK,
                   progress=lambda done, total: calls.append((done, total)))  # fmt: skip
    assert len(data.blocks) > 3  # (several blocks, several chunks)
    assert_same(data, X, layout, dtype, y)
    assert_same(open_store(tmp_path / "store"), X, layout, dtype, y)
    # Progress only grows, and ends at its total.
    done = [c[0] for c in calls]
    assert len(calls) > 3 and done == sorted(done) and calls[-1][0] == calls[-1][1]
    assert len({c[1] for c in calls}) == 1
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_duplicates_are_summed_and_sorted(tmp_path):
    p = tmp_path / "dup.svm"
    p.write_text("1 4:1.5 2:2 4:0.5 1:1\n-1 3:1\n1 2:1 2:2 2:3\n")
    for layout in ("rows", "cols"):
        data = convert(p, tmp_path / layout, layout=layout, dtype="float64")
        val = np.empty(data.nnz)
        idx = np.empty(data.nnz, np.int32)
        data.read_run(0, data.n_coords, val, idx)
        M = block_matrix(data, 0, data.n_coords, val, idx)
        want = np.array([[1.0, 2.0, 0.0, 2.0], [0.0, 0.0, 1.0, 0.0], [0.0, 6.0, 0.0, 0.0]])
        np.testing.assert_array_equal(M.toarray(), want if layout == "rows" else want.T)
        assert M.has_sorted_indices and data.nnz == 5


def test_empty_coordinates_sparse_cols(tmp_path):
    X, _ = _data()
    data = convert(sp.csr_matrix(X), tmp_path / "s", layout="cols", chunk_bytes=CHUNK)
    assert data.shape == X.shape
    assert data.lens[5] == 0 and data.lens[-1] == 0 and data.sqnorm[5] == 0.0
    assert_same(data, sp.csr_matrix(X), "cols", "float32")


def test_csv_target_and_no_header(tmp_path):
    X, y = _data(n=40, d=4)
    p = tmp_path / "t.csv.gz"
    with gzip.open(p, "wt") as f:
        for row, label in zip(X, y, strict=True):
            f.write(f"{label:g}," + ",".join(repr(float(v)) for v in row) + "\r\n")
    Xr, yr = load_dataset(p, target="0", header=False)
    np.testing.assert_array_equal(yr, y)
    for layout in ("rows", "cols"):
        data = convert(p, tmp_path / layout, layout=layout, target="0", header=False,
                       chunk_bytes=100)  # fmt: skip
        assert_same(data, Xr, layout, "float32", y)


def test_array_like_read_in_row_slabs(tmp_path):
    """An h5py/zarr-like array (shape, dtype, slicing) is read in row slabs of about
    chunk_bytes, never whole."""
    X, y = _data()

    class Slabs:
        shape, dtype, ndim = X.shape, X.dtype, 2

        def __init__(self):
            self.reads = []

        def __getitem__(self, key):
            a = X[key]
            self.reads.append(a.nbytes)
            return a

    A = Slabs()
    for layout in ("rows", "cols"):
        A.reads.clear()
        data = convert(A, tmp_path / layout, layout=layout, chunk_bytes=2000, y=y)
        assert_same(data, X, layout, "float32", y)
        assert len(A.reads) > 5 and max(A.reads) <= 2000


@pytest.mark.parametrize(
    "make, layout",
    [("c", "rows"), ("c", "cols"), ("f", "rows"), ("f", "cols"), ("csr", "cols"), ("svm", "cols")],
)
def test_memory_stays_bounded(tmp_path, monkeypatch, make, layout):
    """Converting a 16 MiB dense input (sparse: 12 MiB, or 6 MB of svmlight text) holds a
    few chunks and blocks (here 256 KiB) and O(n + d), not X."""
    import tracemalloc

    chunk = 256 << 10
    monkeypatch.setattr(
        disk_mod, "_block_bounds", lambda lens, size, *_: _BOUNDS(lens, size, chunk)
    )

    rng = np.random.default_rng(0)
    n, d = 20_000, 100
    if make in ("c", "f"):
        X = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", dtype=np.float64,
                                      shape=(n, d), fortran_order=make == "f")  # fmt: skip
        X[:] = rng.standard_normal((n, d))
        X.flush()
        del X
        inp = tmp_path / "X.npy"
    else:
        n = n // 2 if make == "csr" else n // 8  # (tracemalloc slows the text parser 7x)
        idx = np.sort(rng.integers(0, 20 * d, size=(n, d)), axis=1).ravel()
        X = sp.csr_matrix((rng.standard_normal(n * d), idx, np.arange(n + 1) * d))
        X.sum_duplicates()
        inp = X
        if make == "svm":
            from sklearn.datasets import dump_svmlight_file  # (and the parser's imports)

            inp = tmp_path / "X.svm"
            dump_svmlight_file(X, np.ones(X.shape[0]), str(inp), zero_based=False)
            del X
    convert(inp, tmp_path / "warm", layout=layout, chunk_bytes=chunk)  # (imports, caches)
    tracemalloc.start()
    try:
        convert(inp, tmp_path / "s", layout=layout, chunk_bytes=chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 12 * chunk + 40 * (n + 20 * d), peak  # (chunks, and O(n + d) arrays)


def test_hdf5(tmp_path):
    h5py = pytest.importorskip("h5py")
    X, y = _data()
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["X"], f["y"] = X, y
    for layout in ("rows", "cols"):
        data = convert(tmp_path / "d.h5", tmp_path / layout, layout=layout, chunk_bytes=CHUNK)
        assert_same(data, X, layout, "float32", y)


def test_zarr(tmp_path):
    zarr = pytest.importorskip("zarr")
    X, y = _data()
    g = zarr.open_group(str(tmp_path / "d.zarr"), mode="w")
    g.create_array("X", data=X) if hasattr(g, "create_array") else g.array("X", X)
    g.create_array("y", data=y) if hasattr(g, "create_array") else g.array("y", y)
    for layout in ("rows", "cols"):
        data = convert(tmp_path / "d.zarr", tmp_path / layout, layout=layout, chunk_bytes=CHUNK)
        assert_same(data, X, layout, "float32", y)


def test_store_package_exports(tmp_path):
    X, _ = _data(n=10, d=3)
    store.convert(X, tmp_path / "s", layout="rows")
    data = store.open(tmp_path / "s")
    assert isinstance(data, store.DiskData) and issubclass(store.StoreError, ValueError)
    assert open is not store.open  # (the builtin is untouched here)


# -- damage and interruption


def _converted(tmp_path, sparse=False, layout="cols"):
    X, _ = _data()
    data = convert(sp.csr_matrix(X) if sparse else X, tmp_path / "s", layout=layout,
                   chunk_bytes=CHUNK)  # fmt: skip
    assert len(data.blocks) > 4
    return tmp_path / "s", data


@pytest.mark.parametrize("sparse", [False, True])
def test_truncated_values_names_the_block(tmp_path, sparse):
    path, data = _converted(tmp_path, sparse)
    size = (path / "values.bin").stat().st_size
    os.truncate(path / "values.bin", size // 2)
    with pytest.raises(StoreError, match=r"values\.bin is truncated.*block \d+ \(coordinates"):
        open_store(path)


@pytest.mark.parametrize("name", ["values.bin", "indices.bin"])
def test_flipped_byte_names_the_block(tmp_path, name):
    path, data = _converted(tmp_path, sparse=True)
    blk = 2
    size = 4 if name == "indices.bin" else data.dtype.itemsize
    start = int(data.offs[data.blocks[blk]]) * size
    with open(path / name, "r+b") as f:
        f.seek(start + 1)
        b = f.read(1)
        f.seek(start + 1)
        f.write(bytes([b[0] ^ 0x10]))
    data = open_store(path)
    n = max(data.block_entries(i) for i in range(len(data.blocks) - 1))
    val, idx = np.empty(n, data.dtype), np.empty(n, np.int32)
    data.read_block(1, val, idx)  # the others read
    with pytest.raises(StoreError, match=rf"block {blk} .* of {name} does not match its checksum"):
        data.read_block(blk, val, idx)
    with pytest.raises(StoreError, match=rf"block {blk} "):
        open_store(path).verify()


def test_missing_meta_and_leftover_partial_refused(tmp_path):
    path, _ = _converted(tmp_path)
    (path / "meta.json").unlink()
    with pytest.raises(StoreError, match="no meta.json"):
        open_store(path)
    # What a killed conversion leaves: a .partial directory, refused as such.
    w = StoreWriter(tmp_path / "other", layout="rows", dtype="float32", sparse=False,
                    n_features=3)  # fmt: skip
    w.append_dense(np.ones((4, 3)))
    with pytest.raises(StoreError, match="interrupted conversion"):
        open_store(w.tmp)
    with pytest.raises(StoreError, match="no such directory"):
        open_store(tmp_path / "other")
    w.abort()
    assert not w.tmp.exists()


def _leftovers(tmp_path):
    return sorted(p.name for p in tmp_path.iterdir() if ".partial" in p.name or ".old" in p.name)


@pytest.mark.parametrize("at", ["input", "closing"])
@pytest.mark.parametrize("make", [_dense_c, _csr, _svmlight, _csv], ids=lambda f: f.__name__)
def test_interrupted_conversion_leaves_nothing(tmp_path, make, at):
    inp, X, y = make(tmp_path)
    for layout in ("rows", "cols"):
        calls = []

        def progress(done, total, calls=calls):
            calls.append(done)
            # (the closing pass over the store is the last of total's parts)
            closing = done > total * 0.8 and done < total
            if (at == "input" and len(calls) == 3) or (at == "closing" and closing):
                raise KeyboardInterrupt

        target = tmp_path / f"store-{layout}"
        with pytest.raises(KeyboardInterrupt):
            convert(inp, target, layout=layout, chunk_bytes=CHUNK, progress=progress)
        with pytest.raises(StoreError):
            open_store(target)
        assert not target.exists() and _leftovers(tmp_path) == []


def test_interrupted_overwrite_keeps_the_old_store(tmp_path):
    X, _ = _data()
    convert(X, tmp_path / "s", layout="rows")

    def stop(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        convert(2 * X, tmp_path / "s", layout="rows", overwrite=True, progress=stop)
    assert_same(open_store(tmp_path / "s"), X, "rows", "float32")
    assert _leftovers(tmp_path) == []
    data = convert(2 * X, tmp_path / "s", layout="rows", overwrite=True)
    assert_same(data, 2 * X, "rows", "float32")
    assert _leftovers(tmp_path) == []


def test_existing_store_refused_without_overwrite(tmp_path):
    X, _ = _data(n=10, d=3)
    convert(X, tmp_path / "s", layout="rows")
    with pytest.raises(FileExistsError, match="overwrite"):
        convert(X, tmp_path / "s", layout="rows")


def test_overwrite_replaces_only_a_store(tmp_path):
    """A mistyped STORE_DIR with overwrite must not remove a directory of other files."""
    X, _ = _data(n=10, d=3)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.svm").write_text("1 1:1\n")
    (tmp_path / "file").write_text("x")
    for target in ("data", "file"):
        with pytest.raises(ValueError, match="is not a store.*overwrite replaces only a store"):
            convert(X, tmp_path / target, layout="rows", overwrite=True)
    assert (tmp_path / "data" / "train.svm").exists() and (tmp_path / "file").exists()
    (tmp_path / "empty").mkdir()
    convert(X, tmp_path / "empty", layout="rows", overwrite=True)
    path, _ = _converted(tmp_path)
    (path / "meta.json").unlink()  # (a damaged store is replaced)
    convert(X, path, layout="cols", overwrite=True)
    assert open_store(path).layout == "cols"


def test_full_disk_names_the_store(tmp_path, monkeypatch):
    X, _ = _data()

    def full(self, block):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(StoreWriter, "append_dense", full)
    with pytest.raises(OSError, match=r"disk is full writing the store .*s.*free space") as e:
        convert(X, tmp_path / "s", layout="rows")
    assert e.value.errno == errno.ENOSPC and str(tmp_path / "s") in str(e.value)
    assert not (tmp_path / "s").exists() and _leftovers(tmp_path) == []


def test_preallocate_refuses_beyond_free_space(tmp_path, monkeypatch):
    import shutil

    X, _ = _data()
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1, 1, 10))
    with pytest.raises(OSError, match="not enough disk space for the store"):
        convert(X, tmp_path / "s", layout="cols")
    assert not (tmp_path / "s").exists() and _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "name, text, match",
    [
        ("bad.svm", "1 1:2 2:3\n1 1:2\n+1 2:x\n", r"bad\.svm:3: not svmlight format"),
        ("bad.svm", "1 0:2\n", r"bad\.svm:1: feature index 0"),
        ("bad.csv", "a,b,y\n1,2,3\n4,oops,6\n", r"bad\.csv:3: column 2 is 'oops'"),
        ("bad.csv", "a,b,y\n1,2,3\n4,5\n", r"bad\.csv:3: 2 columns where the first row has 3"),
        ("empty.svm", "", r"no samples"),
        ("head.csv", "a,b,y\n", r"a header \(a, b, y\) and no samples"),
        ("bad.svm.gz", "not gzip", r"not a gzip file"),
        ("bin.svm", b"1 1:2\n" * 5 + b"1 \xff:1\n", r"byte 32 does not decode as UTF-8"),
        ("X.xyz", "", r"cannot tell the format"),
    ],
)
def test_bad_input_is_the_io_error(tmp_path, name, text, match):
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    for layout in ("rows", "cols"):
        with pytest.raises(ValueError, match=match):
            convert(p, tmp_path / "s", layout=layout, chunk_bytes=8)
        assert not (tmp_path / "s").exists() and _leftovers(tmp_path) == []


def test_nonfinite_refused(tmp_path):
    X, _ = _data(n=20, d=4)
    X[3, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        convert(X, tmp_path / "s", layout="rows")
    X[3, 2] = 1e39  # beyond float32
    with pytest.raises(ValueError, match="non-finite"):
        convert(X, tmp_path / "s", layout="cols", dtype="float32")
    assert not (tmp_path / "s").exists() and _leftovers(tmp_path) == []
    convert(X, tmp_path / "s", layout="cols", dtype="float64")


def test_bad_arguments(tmp_path):
    X, _ = _data(n=10, d=3)
    with pytest.raises(ValueError, match="layout"):
        convert(X, tmp_path / "s", layout="columns")
    with pytest.raises(ValueError, match="dtype"):
        convert(X, tmp_path / "s", layout="rows", dtype="float16")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        convert(tmp_path / "nope.svm", tmp_path / "s", layout="rows")
    with pytest.raises(ValueError, match="2-D"):
        convert(np.ones(5), tmp_path / "s", layout="rows")
    with pytest.raises(ValueError, match="labels for the 10 rows"):
        convert(X, tmp_path / "s", layout="rows", y=np.ones(9))
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "a.svm").write_text("1 1:1\n")
    (tmp_path / "mixed" / "b.csv").write_text("1,2\n")
    with pytest.raises(ValueError, match="several kinds"):
        convert(tmp_path / "mixed", tmp_path / "s", layout="rows")
    assert not (tmp_path / "s").exists() and _leftovers(tmp_path) == []


# -- duhl-cl convert


def test_cli_convert(tmp_path, capsys):
    p, X, y = _svmlight(tmp_path)
    out = tmp_path / "store"
    assert main(["convert", str(p), str(out), "--layout", "cols", "--dtype", "float64"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"wrote {out}: 157 rows x {X.shape[1]} features, sparse float64 (")
    assert ", cols layout, " in line and line.endswith(" s")
    assert_same(open_store(out), X, "cols", "float64", y)
    # An existing STORE_DIR: refused (2, one line) unless --overwrite.
    assert main(["convert", str(p), str(out), "--layout", "rows"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--overwrite" in err and err.count("\n") == 1
    assert open_store(out).layout == "cols"
    assert main(["convert", str(p), str(out), "--layout", "rows", "--overwrite"]) == 0
    assert ", rows layout, " in capsys.readouterr().out
    assert open_store(out).layout == "rows"


def test_cli_errors(tmp_path, capsys, monkeypatch):
    out = tmp_path / "store"
    assert main(["convert", str(tmp_path / "missing.svm"), str(out), "--layout", "rows"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: data file") and "does not exist" in err
    assert err.count("\n") == 1 and not out.exists()
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\nx,3\n")
    assert main(["convert", str(bad), str(out), "--layout", "cols"]) == 2
    assert "bad.csv:3: column 1" in capsys.readouterr().err and not out.exists()
    with pytest.raises(SystemExit) as e:  # (argparse: a missing --layout)
        main(["convert", str(bad), str(out)])
    assert e.value.code == 2
    # Ctrl-C: 130, nothing left.
    p, _, _ = _svmlight(tmp_path)

    def interrupt(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(StoreWriter, "finish", interrupt)
    assert main(["convert", str(p), str(out), "--layout", "rows"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not out.exists() and _leftovers(tmp_path) == []


def test_cli_help_says_every_option():
    sub = next(a for a in build_parser()._actions if a.dest == "cmd")
    q = sub.choices["convert"]
    opts = [a for a in q._actions if a.dest != "help"]
    assert {a.dest for a in opts} >= {"input", "store_dir", "layout", "dtype", "overwrite",
                                      "target", "header"}  # fmt: skip
    assert all(a.help for a in opts)
    assert "convert" in build_parser().format_help()


def test_cli_progress_bar_on_a_terminal():
    import io

    from duhl_cl.cli.convert import _Bar

    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    bar = _Bar("train.svm", out)
    bar(5, 10)
    bar(6, 10)  # (within 0.1 s: not redrawn)
    bar(10, 10)
    bar.end()
    text = out.getvalue()
    assert "converting train.svm:  50.0%" in text and "100.0%" in text and "60.0%" not in text
    assert text.endswith("\r\033[K")
    quiet = io.StringIO()
    _Bar("x", quiet)(1, 2)
    assert quiet.getvalue() == ""


def test_cli_subprocess_end_to_end(tmp_path):
    X, y = _data()
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "X_y.npy", y)
    cmd = [sys.executable, "-m", "duhl_cl.cli", "convert", str(tmp_path / "X.npy"),
           str(tmp_path / "s"), "--layout", "cols"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"wrote {tmp_path / 's'}: 157 rows x 23 features, dense float32")
    assert r.stderr == ""  # (no progress line off a terminal)
    assert_same(open_store(tmp_path / "s"), X, "cols", "float32", y)
