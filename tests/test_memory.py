"""Device memory: live allocations do not grow over repeated fits; the ledger's accounts."""

import gc

import numpy as np
import pyopencl as cl
import pytest

import duhl_cl as dc
from duhl_cl.device.ledger import live_ledgers_bytes


def _live_buffers():
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, cl.Buffer) and o.int_ptr)


@pytest.mark.filterwarnings("ignore::duhl_cl.ConvergenceWarning")
def test_hundred_fits_do_not_grow_device_allocations(device, regression_data):
    X, y = regression_data
    Xs = X.astype(np.float32)
    dc.Lasso(alpha=0.1, device=device, random_state=0).fit(Xs, y)  # warm the caches
    before = _live_buffers()
    peaks = set()
    for i in range(100):
        est = (dc.Lasso if i % 2 else dc.LinearSVC)(device=device, random_state=i, max_iter=5)
        est.fit(Xs, y if i % 2 else y > 1.5)
        assert live_ledgers_bytes() == 0
        peaks.add(est.stats_["ledger_peak"])
    assert _live_buffers() == before
    assert len(peaks) == 2  # the same problem always needs the same device memory


def test_ledger_counts_what_is_moved(device, regression_data):
    X, y = regression_data
    est = dc.Ridge(alpha=1.0, device=device, dtype="float32").fit(X, y)
    # The float64 X is converted to a float32 store on a page: a device sharing the host's
    # memory reads it in place as its pool, any other gets the data at least once. The
    # peak covers data, coefficients and vectors either way.
    in_place = bool(device.cl_device.host_unified_memory)
    assert est.stats_["pool_in_place"] == in_place
    if in_place:
        assert est.stats_["bytes_h2d"] < X.size * 4
    else:
        assert est.stats_["bytes_h2d"] >= X.size * 4
    assert est.stats_["ledger_peak"] >= X.size * 4 + 4 * (X.shape[0] + X.shape[1])
    assert est.stats_["ledger_peak"] <= device.profile.budget


def test_no_needless_copies():
    """float32 stays float32, sparse stays sparse, data already in the device layout is shared."""
    import scipy.sparse as sp

    from duhl_cl.store import CoordinateStore, check_X

    rng = np.random.default_rng(0)
    Xf = np.asfortranarray(rng.standard_normal((50, 8)).astype(np.float32))
    assert check_X(Xf) is Xf
    store = CoordinateStore(check_X(Xf), primal=True, dtype=np.float32)
    assert np.shares_memory(store.val, Xf)  # columns of a Fortran array, used in place
    Xc = np.ascontiguousarray(Xf)
    store = CoordinateStore(check_X(Xc), primal=False, dtype=np.float32, labels=np.ones(50))
    assert np.shares_memory(store.val, Xc)  # rows of a C array, used in place
    S = sp.random(200, 30, density=0.1, format="csc", dtype=np.float32, random_state=0)
    store = CoordinateStore(check_X(S), primal=True, dtype=np.float32)
    assert store.sparse and np.shares_memory(store.val, S.data)
    R = S.tocsr()
    store = CoordinateStore(check_X(R), primal=False, dtype=np.float32, labels=np.ones(200))
    assert store.sparse and np.shares_memory(store.val, R.data) and store.val.dtype == np.float32


def _off_page(A):
    """A copy of ``A`` (same order) whose data does not start on a page."""
    order = "F" if A.flags.f_contiguous and not A.flags.c_contiguous else "C"
    for k in range(1, 8):
        raw = np.empty(A.size + k, dtype=A.dtype)
        out = raw[k:].reshape(A.shape[::-1] if order == "F" else A.shape)
        out = out.T if order == "F" else out
        if out.ctypes.data % 4096:
            np.copyto(out, A)
            return out
    raise AssertionError("no unaligned start found")


@pytest.mark.parametrize("kind", ["lasso", "svm"])
def test_a_store_read_in_place_fits_as_a_copied_pool(device, regression_data, kind):
    """A dense store on a page is the pool itself on a device sharing host memory (nothing
    copied into it); the fit certifies the same optimum as a fit whose pool is a copy, and
    matches scikit-learn."""
    from sklearn.linear_model import Lasso
    from sklearn.svm import LinearSVC

    X, y = regression_data
    Xc = np.ascontiguousarray(X, dtype=np.float32)  # a primal Lasso relays it out on a page
    if kind == "lasso":
        make = lambda: dc.Lasso(alpha=0.05, device=device, tol=1e-6, fit_intercept=False)  # noqa: E731
        target, aligned, copied = y - y.mean(), Xc, _off_page(np.asfortranarray(Xc))
    else:
        make = lambda: dc.LinearSVC(C=0.5, loss="hinge", device=device, tol=1e-6,  # noqa: E731
                                    fit_intercept=False, max_iter=10000)  # fmt: skip
        target, aligned, copied = np.where(y > 1.5, 1, -1), X, _off_page(Xc)
    a, b = make().fit(aligned, target), make().fit(copied, target)
    assert a.stats_["refinement"] is None  # one float32 phase, on the store itself
    shares = bool(device.cl_device.host_unified_memory)
    assert a.stats_["pool_in_place"] == shares and not b.stats_["pool_in_place"]
    X64 = np.asarray(Xc, dtype=np.float64)
    if kind == "lasso":
        ref = Lasso(alpha=0.05, fit_intercept=False, tol=1e-12, max_iter=100000).fit(X64, target)

        def obj(w):
            r = target - X64 @ w
            return 0.5 * r @ r / len(r) + 0.05 * np.abs(w).sum()
    else:
        ref = LinearSVC(C=0.5, loss="hinge", dual=True, fit_intercept=False, tol=1e-12,
                        max_iter=1000000).fit(X64, target)  # fmt: skip

        def obj(w):
            return 0.5 * w @ w + 0.5 * np.maximum(0, 1 - target * (X64 @ w)).sum()

    f_ref = obj(np.ravel(ref.coef_))
    for est in (a, b):
        assert obj(np.ravel(est.coef_).astype(np.float64)) <= f_ref * (1 + 1e-4) + 1e-6
    assert abs(obj(np.ravel(a.coef_)) - obj(np.ravel(b.coef_))) <= 1e-4 * f_ref
