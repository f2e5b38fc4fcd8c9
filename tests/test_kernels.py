"""The device kernels against NumPy references of the same computation.

- the pass of every kernel variant, in a given permutation, against its NumPy reference
  (float64, 1e-10), on a list of slots that is a strict, shuffled subset of the coordinates
  (the solver works on an explicit working set, never on "all columns"): "serial" against
  testing.reference_pass; "bucketed" against testing.reference_bucketed_pass; "tpa" against
  testing.reference_pass where the device runs its work-groups one after another (PoCL on one
  compute unit, as the pocl-cpu profile's sub-device), and on every device: the shared vector equals
  the one recomputed from the coefficients (no atomic update lost);
- coord_gap: u and the per-coordinate gaps against NumPy formulas written here;
- every .cl file compiles on its own, with no -D defines.
"""

import numpy as np
import pytest
import scipy.sparse as sp

from duhl_cl import models, testing
from duhl_cl.device.build import KernelBuildError, build_program
from duhl_cl.duhl.working_set import DeviceWorkingSet
from duhl_cl.resources import kernels_dir
from duhl_cl.store import CoordinateStore
from duhl_cl.testing import device_orders

pytestmark = pytest.mark.every_device


def make_model(name, X, y):
    n = X.shape[0]
    ypm = np.where(y > np.median(y), 1.0, -1.0)
    table = {
        "lasso": (models.SquaredL1L2(0.05, 0.0), y),
        "elasticnet": (models.SquaredL1L2(0.02, 0.03), y),
        "ridge": (models.SquaredL1L2(0.0, 0.5 / n), y),
        "logistic-l1": (models.LogisticL1(0.01), ypm),
        "svm-hinge": (models.Hinge(0.5, 1.0), ypm),
        "svm-squared-hinge": (models.SquaredHinge(0.5, 1.0), ypm),
        "logistic-l2": (models.LogisticL2(0.5, 1.0), ypm),
    }
    model, target = table[name]
    model.setup(X, target, True)
    return model, target


MODELS = list(models.model_names())  # every row of the model table


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((60, 25))
    X[rng.random(X.shape) < 0.5] = 0.0
    X[:, 7] = 0.0  # an all-zero column and row exercise the degenerate steps
    X[11, :] = 0.0
    y = X @ rng.standard_normal(25) + rng.standard_normal(60)
    return X, y


def make_store(model, target, Xs, dtype):
    """The coordinate store a fit of ``model`` would build from Xs."""
    return CoordinateStore(
        Xs,
        primal=model.primal,
        dtype=dtype,
        labels=None if model.primal else target,
        bias=getattr(model, "bias", 0.0),
    )


def _shared(model, X, target, alpha, b0):
    if model.primal:
        return model.shared_from(X @ alpha, b0)
    return np.r_[X.T @ (alpha * target), model.bias * (alpha @ target)]


def _start(model, X, target, rng):
    """A non-trivial starting point inside the feasible set of every model: (alpha, v)."""
    alpha = model.initial_alpha() + (
        rng.uniform(0, 0.2, model.n_coords)
        if not model.primal
        else 0.1 * rng.standard_normal(model.n_coords)
    )
    return alpha, _shared(model, X, target, alpha, 0.3)


# The device against a float64 NumPy reference of the same step on the same (rounded) data:
# float64 agrees to rounding, float32 to its own precision over three passes.
PASS_TOL = {np.float64: (1e-10, 1e-9), np.float32: (2e-5, 2e-4)}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("name", MODELS)
def test_pass_matches_numpy_reference(device, problem, name, sparse, kernel_variant, dtype):
    X, y = problem
    X = X.astype(dtype).astype(np.float64)  # the data the device holds
    tol, shared_tol = PASS_TOL[dtype]
    model, target = make_model(name, X, y)
    Xs = sp.csr_matrix(X) if sparse else X
    store = make_store(model, target, Xs, dtype)
    rng = np.random.default_rng(0)
    alpha, v = _start(model, X, target, rng)
    dev = DeviceWorkingSet(device, model, store, variant=kernel_variant)
    # PoCL runs the work-groups of a one-compute-unit device one after another, in order;
    # OpenCL promises no order (Intel's CPU runtime interleaves them even on one unit).
    in_order = device.cl_device.max_compute_units == 1 and "Portable" in device.info.platform
    sequential = kernel_variant == "serial" or (kernel_variant == "tpa" and in_order)
    try:
        # A working set: a strict subset of the coordinates, resident in shuffled slots.
        resident = rng.permutation(model.n_coords)[: model.n_coords - 4]
        dev.make_resident(resident, alpha)
        dev.set_shared(v)
        for _ in range(3):
            order = rng.permutation(resident)
            dev.run_pass(None, order=order)
            got = dev.read_alpha(np.full(model.n_coords, np.nan))
            assert np.isnan(np.delete(got, resident)).all()  # nothing else was touched
            if kernel_variant == "bucketed":
                testing.reference_bucketed_pass(model, store, alpha, v, order, dev.n_buckets)
            elif sequential:
                testing.reference_pass(model, store, alpha, v, order)
            else:
                # Work-groups in parallel: no sequential reference; the coefficients are taken
                # as the device left them and the shared vector must match them exactly.
                alpha[resident] = got[resident]
                v = _shared(model, X, target, alpha, 0.3)
            np.testing.assert_allclose(got[resident], alpha[resident], rtol=tol, atol=tol)
            shared = dev.get_shared()
            np.testing.assert_allclose(shared, v, rtol=tol, atol=tol)
            # Every variant keeps the shared vector equal to the one its coefficients make.
            np.testing.assert_allclose(
                shared, _shared(model, X, target, alpha, 0.3), rtol=shared_tol, atol=shared_tol
            )
    finally:
        dev.release()
    assert np.any(alpha != model.initial_alpha())  # the pass did move


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("name", ["lasso", "svm-hinge", "svm-squared-hinge", "logistic-l2"])
def test_passes_shuffled_on_the_device_match_numpy(device, problem, name, sparse, dtype):
    """The "serial" kernel's several passes in one launch, each shuffling the visit list on
    the device (and shrinking, for the SVMs), against testing.reference_passes over
    testing.device_orders (the shuffle's NumPy twin) from the same seed."""
    X, y = problem
    X = X.astype(dtype).astype(np.float64)
    tol = PASS_TOL[dtype][0]
    model, target = make_model(name, X, y)
    store = make_store(model, target, sp.csr_matrix(X) if sparse else X, dtype)
    rng = np.random.default_rng(4)
    alpha, v = _start(model, X, target, rng)
    dev = DeviceWorkingSet(device, model, store, variant="serial")
    try:
        resident = rng.permutation(model.n_coords)[: model.n_coords - 5]
        dev.make_resident(resident, alpha)
        dev.set_shared(v)
        listed = dev.slot_coord[np.flatnonzero(dev.slot_active)]  # the list the launch gets
        seed = np.random.default_rng(9).integers(1, 1 << 32)
        dev.run_passes(np.random.default_rng(9), 5)
        got = dev.read_alpha(np.full(model.n_coords, np.nan))
        shared = dev.get_shared()
        entries = np.empty(len(listed), np.int32)  # the list as the launch left it
        dev.ledger.download(entries, dev.b_order)
    finally:
        dev.release()
    orders = device_orders(listed, 5, seed)
    assert len({tuple(o) for o in orders}) == 5  # five different shuffles
    assert all(sorted(o) == sorted(resident) for o in orders)
    out = testing.reference_passes(model, store, alpha, v, orders)
    # The samples the launch shrank (stored as ~slot) are the reference's, and there are some.
    assert set(dev.slot_coord[~entries[entries < 0]].tolist()) == out
    assert bool(out) == (name in ("svm-hinge", "svm-squared-hinge")), out
    np.testing.assert_allclose(got[resident], alpha[resident], rtol=tol, atol=tol)
    np.testing.assert_allclose(shared, v, rtol=tol, atol=tol)


def test_device_orders_is_a_fisher_yates_shuffle():
    """The NumPy twin of the kernel's shuffle: seed 0 keeps the list; otherwise each pass is
    a permutation of the previous one, and over many seeds every position takes every item
    about equally often (no gross bias)."""
    base = np.arange(6)
    assert all(np.array_equal(o, base) for o in device_orders(base, 3, 0))
    counts = np.zeros((6, 6))
    for seed in range(1, 3001):
        (o,) = device_orders(base, 1, seed)
        counts[np.arange(6), o] += 1
    assert np.all(np.abs(counts / 3000 - 1 / 6) < 0.04), counts / 3000


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logistic_dual_step_stays_inside_the_box(device, problem, dtype, kernel_variant):
    """Coefficients at (or within rounding of) 0 and C: every step stays finite and strictly
    inside (0, C). In float32, alpha = 1e-8 with C = 1 makes C - alpha round to C; the
    Newton step then took log(0) and every later step was NaN (w8a, 8 passes a round)."""
    X, y = problem
    model, target = make_model("logistic-l2", X, y)
    C = model.C
    store = make_store(model, target, X, dtype)
    n = model.n_coords
    alpha = np.resize([0.0, C, 1e-8 * C, C - 1e-8 * C, 0.5 * C], n).astype(np.float64)
    v = _shared(model, X, target, alpha, 0.0)
    dev = DeviceWorkingSet(device, model, store, variant=kernel_variant)
    try:
        dev.make_resident(np.arange(n), alpha)
        dev.set_shared(v)
        rng = np.random.default_rng(0)
        for _ in range(20):
            dev.run_pass(rng)
        got = dev.read_alpha(np.zeros(n))
        w = dev.get_shared()
    finally:
        dev.release()
    assert np.isfinite(got).all() and np.isfinite(w).all()
    assert np.all(got > 0) and np.all(got < C), (got.min(), got.max())
    # The same step in float64 on the host, from the same (boundary) points: finite too.
    ref = [model.step(a, mu, Q) for a, mu, Q in [(0.0, 5.0, 1.0), (C, -5.0, 1.0), (C, 0.0, 0.0)]]
    assert all(0 < r < C for r in ref)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("name", MODELS)
def test_gap_kernel_matches_numpy(device, problem, name, sparse, dtype):
    X, y = problem
    model, target = make_model(name, X, y)
    Xs = sp.csc_matrix(X) if sparse else X
    store = make_store(model, target, Xs, dtype)
    rng = np.random.default_rng(1)
    if model.primal:
        alpha = 0.2 * rng.standard_normal(model.n_coords)
        alpha[::3] = 0.0
        v = model.shared_from(X @ alpha, 0.1)
        w = model.gradient(v)
        u_ref = X.T @ w
    else:
        alpha = rng.uniform(0.01, 0.49, model.n_coords)
        w = np.r_[X.T @ (alpha * target), model.bias * (alpha @ target)]
        v = w
        u_ref = target * (X @ w[:-1] + model.bias * w[-1])
    gap_ref = _gap_formula(name, model, alpha, u_ref)
    resident = rng.permutation(model.n_coords)[:-3]
    dev = DeviceWorkingSet(device, model, store)
    try:
        dev.make_resident(resident, alpha)
        dev.set_shared(v)
        slots, u, g = dev.resident_gaps()
    finally:
        dev.release()
    assert sorted(slots) == sorted(resident)
    rtol, atol = (1e-10, 1e-12) if dtype == np.float64 else (2e-4, 2e-5)
    np.testing.assert_allclose(u, u_ref[slots], rtol=rtol, atol=atol)
    np.testing.assert_allclose(g, gap_ref[slots], rtol=rtol, atol=atol * 10)
    np.testing.assert_allclose(model.gaps(alpha, u_ref), gap_ref, rtol=1e-12, atol=1e-14)


def _gap_formula(name, model, a, u):
    """Per-coordinate gaps written out from docs/architecture.md ("The maths"), independently of duhl_cl/models/."""
    if name == "lasso":
        B = model.bound
        return a * u + 0.05 * np.abs(a) + B * np.maximum(np.abs(u) - 0.05, 0)
    if name == "elasticnet":
        l1, l2 = 0.02, 0.03
        return (
            a * u + l1 * np.abs(a) + l2 / 2 * a**2 + np.maximum(np.abs(u) - l1, 0) ** 2 / (2 * l2)
        )
    if name == "ridge":
        l2 = model.l2
        return a * u + l2 / 2 * a**2 + u**2 / (2 * l2)
    if name == "logistic-l1":
        B = model.bound
        return a * u + 0.01 * np.abs(a) + B * np.maximum(np.abs(u) - 0.01, 0)
    C = 0.5
    if name == "svm-hinge":
        return C * np.maximum(0, 1 - u) + a * (u - 1)
    if name == "svm-squared-hinge":
        return C * np.maximum(0, 1 - u) ** 2 + a**2 / (4 * C) + a * (u - 1)
    ent = a * np.log(a) + (C - a) * np.log(C - a) - C * np.log(C)
    return C * np.log1p(np.exp(-u)) + a * u + ent


@pytest.mark.parametrize("path", sorted(p.name for p in kernels_dir().glob("*.cl")))
def test_each_kernel_file_compiles_alone(device, path):
    build_program(device, path, {})


def test_build_failure_keeps_source_and_options(device):
    with pytest.raises(KernelBuildError) as err:
        build_program(device, "cd_pass.cl", {"MODEL": "not_a_model"})
    msg = str(err.value)
    assert "-DMODEL=not_a_model" in msg and "kept at" in msg
    kept = msg.split("kept at ")[1].split("\n")[0]
    assert "cd_pass" in open(kept).read()


def test_device_defines_follow_the_platform():
    """HOST_CPU (plain unaligned vector loads and prefetches in kernels_cl/slot.h) is set for
    the CPU platforms known to honour it, and not for Rusticl (llvmpipe: its process died in
    the first dense pass with it), Oclgrind or a GPU; an explicit define wins over it."""
    from types import SimpleNamespace

    from duhl_cl.kernels import device_defines

    def dev(platform, type_):
        return SimpleNamespace(info=SimpleNamespace(platform=platform, type=type_))

    assert device_defines(dev("Intel(R) OpenCL", "CPU")) == {"HOST_CPU": 1}
    assert device_defines(dev("Portable Computing Language", "CPU")) == {"HOST_CPU": 1}
    assert device_defines(dev("rusticl", "CPU")) == {}
    assert device_defines(dev("Oclgrind", "CPU")) == {}
    assert device_defines(dev("Intel(R) OpenCL Graphics", "GPU")) == {}
