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
    # At least the data went up once; the peak covers data, coefficients and vectors.
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
