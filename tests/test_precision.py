"""The float32 floor: a default-precision fit that float32 arithmetic stalls finishes in
float64 by itself; an explicit float32 fit says why it stalled; the L1 certificate's dual
scale is the best feasible one.

The stalling problem is built like cal_housing (y in the hundreds of thousands, a small
alpha, correlated standardised features): float32 coefficients cannot make |X^T r / m| meet
alpha, so no dual point built from them is near feasible, while float64 converges in a few
rounds.
"""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from helpers import housing_like, repeated_margin_svm
from sklearn.linear_model import Lasso as SkLasso
from sklearn.svm import LinearSVC as SkLinearSVC

import duhl_cl as dc
from duhl_cl import models
from duhl_cl.device.profiles import parse_budget
from duhl_cl.duhl.local_solver import LocalSolver
from duhl_cl.store import CoordinateStore


def lasso_objective(X, y, coef, intercept, alpha):
    r = y - X @ coef - intercept
    return 0.5 * (r @ r) / len(y) + alpha * np.abs(coef).sum()


def test_default_precision_finishes_in_float64_where_float32_stalls(device):
    X, y = housing_like()
    est = dc.Lasso(alpha=0.01, device=device, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", dc.ConvergenceWarning)
        est.fit(X, y)
    ref = est.stats_["refinement"]
    assert est.converged_ and ref["dtype"] == "float64" and "refused" not in ref
    dtypes = [r["dtype"] for r in est.history_]
    k = dtypes.index("float64")
    assert set(dtypes[:k]) == {"float32"} and set(dtypes[k:]) == {"float64"}
    assert est.history_[k - 1]["round"] == ref["round"]
    sk = SkLasso(alpha=0.01, tol=1e-12, max_iter=100000).fit(X, y)
    f = lasso_objective(X, y, est.coef_, est.intercept_, 0.01)
    f_ref = lasso_objective(X, y, sk.coef_, sk.intercept_, 0.01)
    assert f == pytest.approx(est.objective_, rel=1e-9)
    assert f - f_ref <= est.dual_gap_ * (1 + 1e-9) + 1e-9 * abs(f_ref)  # a valid certificate
    assert abs(f - f_ref) <= 1e-6 * f_ref


def test_a_rotating_svm_at_the_float32_floor_finishes_in_float64(device):
    """A hinge SVM whose support vectors (copies of the same rows) rotate through a 5%
    budget: the coefficients keep moving, and a float32 shared vector drifting over the
    passes puts the exact gap of the rows the device has just visited far above what the
    device says of them; the default precision finishes in float64 (in float32, 1000 rounds
    ended at 5e-5 relative against the 1e-7 x C n target, measured)."""
    X0, y0, X, y = repeated_margin_svm(1024, 128, 32)
    est = dc.LinearSVC(C=1 / 32, loss="hinge", tol=1e-7, memory_budget="5%", device=device,
                       random_state=0)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error", dc.ConvergenceWarning)
        est.fit(X, y)
    ref = est.stats_["refinement"]
    assert est.converged_ and ref["dtype"] == "float64" and "refused" not in ref
    assert max(r["n_resident"] for r in est.history_) < 0.1 * len(y)  # a budget that binds
    # The repeated problem with C / 32 has the small one's optimum (C = 1).
    # (liblinear at tol 1e-12 ran out of iterations short of it; at 1e-8 it converges.)
    sk = SkLinearSVC(C=1.0, loss="hinge", dual=True, tol=1e-8, max_iter=10**6,
                     random_state=0).fit(X0, y0)  # fmt: skip

    def objective(w, b):
        m = np.where(y0 == 1, 1.0, -1.0) * (X0 @ w + b)
        return 0.5 * (w @ w + b * b) + np.maximum(1 - m, 0).sum()

    f, f_ref = objective(est.coef_[0], est.intercept_[0]), objective(sk.coef_[0], sk.intercept_[0])
    assert f == pytest.approx(est.objective_, rel=1e-9)
    assert f - f_ref <= est.dual_gap_ * (1 + 1e-9) + 1e-9 * f_ref  # a valid certificate
    assert abs(f - f_ref) <= 1e-5 * f_ref


def test_explicit_float32_names_the_float32_floor(device):
    X, y = housing_like()
    est = dc.Lasso(alpha=0.01, dtype="float32", device=device, random_state=0, max_iter=200)
    with pytest.warns(dc.ConvergenceWarning, match=r"float32 floor.*dtype='float64'"):
        est.fit(X, y)
    assert not est.converged_ and est.stats_["refinement"] is None
    assert {r["dtype"] for r in est.history_} == {"float32"}


def test_without_fp64_the_warning_names_the_fix(device, monkeypatch):
    X, y = housing_like()
    monkeypatch.setattr(type(device), "fp64", property(lambda self: False))
    est = dc.Lasso(alpha=0.01, device=device, random_state=0, max_iter=200)
    with pytest.warns(dc.ConvergenceWarning, match=r"float32 floor.*has no fp64.*rescale y"):
        est.fit(X, y)
    assert est.stats_["refinement"] is None


def test_float32_logistic_dual_reaches_alphas_below_cs_rounding(device):
    """A float32 logistic-regression dual whose far samples have optimal alphas of e^-100:
    the step keeps alpha off 0, but not at C's rounding (C 2^-22), where each such sample
    kept a gap of ~1e-6 (this problem: 7e-4 after 300 rounds against a 5e-6 target,
    measured before the fix); it converges in float32 and matches scikit-learn."""
    from sklearn.linear_model import LogisticRegression as SkLogisticRegression

    rng = np.random.default_rng(0)
    n, d = 72, 500
    y = np.where(rng.random(n) < 0.5, 1, -1)
    u = rng.standard_normal(d)
    u /= np.linalg.norm(u)
    far = np.where(np.arange(n) < n // 3, 1.0, 20.0)  # a third near the boundary
    X = (3 * far[:, None] * y[:, None] * u + 0.1 * rng.standard_normal((n, d))).astype(np.float32)
    est = dc.LogisticRegression(C=1.0, fit_intercept=False, tol=1e-7, dtype="float32",
                                max_iter=50, device=device, random_state=0)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error", dc.ConvergenceWarning)
        est.fit(X, y)
    assert est.converged_ and est.stats_["refinement"] is None
    sk = SkLogisticRegression(C=1.0, fit_intercept=False, tol=1e-12, max_iter=100000)
    sk.fit(X.astype(np.float64), y)

    def objective(w):
        return 0.5 * w @ w + np.logaddexp(0, -y * (X.astype(np.float64) @ w)).sum()

    f, f_ref = objective(est.coef_[0]), objective(sk.coef_[0])
    assert f - f_ref <= est.dual_gap_ * (1 + 1e-6) + 1e-9 * f_ref  # a valid certificate
    assert abs(f - f_ref) <= 1e-6 * f_ref


def test_sparse_lasso_at_tol_1e8_under_a_budget(device, regression_data):
    """A float32 Lasso at tol=1e-8 (beyond float32's reach) on sparse data at a 40% budget."""
    X, y = regression_data
    Xs = sp.csc_matrix(X)
    est = dc.Lasso(alpha=0.01, tol=1e-8, memory_budget="40%", device=device, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", dc.ConvergenceWarning)
        est.fit(Xs, y)
    assert est.converged_ and est.stats_["refinement"]["dtype"] == "float64"  # float32 stalls
    assert min(r["n_resident"] for r in est.history_) < X.shape[1]  # a budget that binds
    sk = SkLasso(alpha=0.01, tol=1e-14, max_iter=100000).fit(X, y)
    f = lasso_objective(X, y, est.coef_, est.intercept_, 0.01)
    f_ref = lasso_objective(X, y, sk.coef_, sk.intercept_, 0.01)
    assert f - f_ref <= est.dual_gap_ * (1 + 1e-9) + 1e-12
    assert abs(f - f_ref) <= 1e-7 * f_ref


def _pool_piece(ws, coord):
    """A resident coordinate's values (and indices) as the device pool holds them."""
    import pyopencl as cl

    slot = ws.coord_slot[coord]
    part, off, n = ws.parts[ws.slot_part[slot]], int(ws.slot_off[slot]), int(ws.entries[coord])
    val = np.empty(n, dtype=ws.dtype)
    cl.enqueue_copy(ws.queue, val, part.val, src_offset=off * ws.dtype.itemsize)
    idx = None
    if ws.store.sparse:
        idx = np.empty(n, dtype=np.int32)
        cl.enqueue_copy(ws.queue, idx, part.idx, src_offset=off * 4)
    return val, idx


@pytest.mark.parametrize("storage", ["dense", "sparse"])
def test_a_float64_working_set_over_a_float32_store(device, regression_data, storage):
    """The refinement's working set converts the float32 store's values as it copies them
    in (direct, staged and mapped writes): after rounds of random selections under a budget,
    every resident coordinate's pool entries are its store values exactly, and the passes
    run in float64."""
    X, y = regression_data
    X32 = X.astype(np.float32)
    Xin = np.asfortranarray(X32) if storage == "dense" else sp.csc_matrix(X32)
    model = models.SquaredL1L2(0.01, 0.0)
    model.setup(Xin, y, True)
    store = CoordinateStore(Xin, primal=True, dtype=np.float32)
    local = LocalSolver(model, store, device, policy="random", passes_per_round=2,
                        rng=np.random.default_rng(0), dtype=np.float64,
                        budget=parse_budget("50%", X.size * 8))  # fmt: skip
    try:
        local.start()
        ws = local.ws
        assert ws.dtype == np.float64 and ws.cap.entry_bytes >= 8
        for _ in range(8):
            local.run_round()
            assert 0 < len(ws.resident) < X.shape[1]  # the budget binds
            ws.finish()
            for c in ws.resident:
                val, idx = _pool_piece(ws, c)
                a, b = int(store.offs[c]), int(store.offs[c]) + int(store.lens[c])
                if storage == "dense":
                    assert np.array_equal(val, X32[:, c].astype(np.float64))
                elif b > a:
                    assert np.array_equal(val, store.val[a:b].astype(np.float64))
                    assert np.array_equal(idx, store.idx[a:b])
    finally:
        local.close()
        local.release()
    assert np.all(np.isfinite(local.alpha))


@pytest.mark.parametrize("kind", ["squared", "logistic"])
def test_the_best_dual_scale_is_valid_and_no_worse(kind):
    """The L1 certificate's dual point t w with the best feasible t: still an upper bound on
    P(b) - P*, and never above the plain scale min(1, l1 / ||u||_inf)'s."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((120, 15))
    if kind == "squared":
        y = X[:, :3] @ [1.0, -2.0, 0.5] + 0.1 * rng.standard_normal(120) + 3.0
        model, alpha = models.SquaredL1L2(0.05, 0.0), 0.05
        sk = SkLasso(alpha=alpha, tol=1e-14, max_iter=100000).fit(X, y)
        ref = lasso_objective(X, y, sk.coef_, sk.intercept_, alpha)
    else:
        y = np.where(X[:, 0] - X[:, 1] + 0.5 * rng.standard_normal(120) > 0, 1.0, -1.0)
        model = models.LogisticL1(0.02)
        ref = None
    model.setup(X, y, True)
    for trial in range(20):
        b = rng.standard_normal(15) * (0.3 if trial % 2 else 0.01)
        v, _ = model.intercept_update(model.shared_from(X @ b, 0.0), 0.0)
        w = model.gradient(v)
        u = X.T @ w
        t_max = model.l1 / np.max(np.abs(u))
        t = model.best_scale(w, t_max)
        assert 0 <= t <= t_max
        plain = min(1.0, t_max)
        assert model.conjugate(t * w) <= model.conjugate(plain * w) + 1e-12
        gap = model.total_gap(b, u, v)
        if ref is not None:
            assert model.objective(b, v) - ref <= gap + 1e-12


def test_a_slow_fit_that_still_moves_is_not_at_its_floor():
    """The stall rule: a best gap that has not halved in 4 certificate intervals is the
    floor only while the coefficients stand still (moved < FLOOR_MOVE); a slow fit whose
    coefficients still move (a rotating working set) stays in its precision."""
    from types import SimpleNamespace

    from duhl_cl.duhl.rounds import FLOOR_MOVE, STALL_CERTIFICATES, CertNote, Run

    def run_with(moves, hopeful=False, precision=False, stagnant=False):
        local = SimpleNamespace(n_rounds=0)
        run = Run(local, target=1.0, certify_every=10, t0=0.0, verbose=0, callback=None)
        for k, m in enumerate(moves, start=1):
            local.n_rounds = 10 * k
            # 10% better a certificate
            run.cert_log.append(
                CertNote(local.n_rounds, 10.0 * 0.9**k, m, hopeful, precision, stagnant)
            )
        run.cert, run.last_cert = SimpleNamespace(gap=run.cert_log[-1].best), local.n_rounds
        return run

    window = STALL_CERTIFICATES + 2
    assert run_with([1e-1] * window).stalled() is False  # progressing: moves
    assert run_with([FLOOR_MOVE / 100] * window).stalled() is True  # stuck: the floor
    assert run_with([FLOOR_MOVE / 100] * 2).stalled() is False  # too early to tell
    # Sooner where the device's estimate had met the target at the last two certificates
    # and the exact gap had not: three certificates tell, while the coefficients stand still.
    assert run_with([FLOOR_MOVE / 100] * 3, hopeful=True).stalled() is True
    assert run_with([FLOOR_MOVE / 100] * 3).stalled() is False
    assert run_with([1e-1] * 3, hopeful=True).stalled() is False  # still moving
    assert run_with([FLOOR_MOVE / 100] * 2, hopeful=True).stalled() is False
    # As soon where the gap estimate had stagnated at the last two (Run._stagnant).
    assert run_with([FLOOR_MOVE / 100] * 3, stagnant=True).stalled() is True
    assert run_with([1e-1] * 3, stagnant=True).stalled() is False
    # The precision's own sign at the last two certificates (the exact gaps of the visited
    # coordinates far above the device's) and a last certificate that did not halve the
    # best gap: the floor, however the coefficients move.
    assert run_with([1e-1] * 2, precision=True).stalled() is True
    assert run_with([1e-1] * 1, precision=True).stalled() is False
    last_only = run_with([1e-1] * 3)
    last_only.cert_log[-1] = last_only.cert_log[-1]._replace(precise=True)
    assert last_only.stalled() is False
    halved = run_with([1e-1] * 3, precision=True)
    halved.cert_log[-1] = halved.cert_log[-1]._replace(best=0.4 * halved.cert_log[-2].best)
    assert halved.stalled() is False


def test_the_gap_estimate_stagnates_only_above_the_target_without_halving():
    """Run._stagnant: the least of the last STAGNANT_ROUNDS estimates not below half the
    least before them, above the target; an estimate that still halves, one at the target
    and one not yet known (inf) are not stagnant."""
    from types import SimpleNamespace

    from duhl_cl.duhl.rounds import STAGNANT_ROUNDS, Run

    def run_with(estimates, target=1.0):
        run = Run(SimpleNamespace(n_rounds=0), target=target, certify_every=10, t0=0.0,
                  verbose=0, callback=None)  # fmt: skip
        run._estimates = list(estimates)
        return run._stagnant()

    flat = [8.0] + [7.0] * STAGNANT_ROUNDS
    assert run_with(flat) is True
    assert run_with(flat[1:]) is False  # too few rounds to tell
    assert run_with([8.0] + [3.0] * STAGNANT_ROUNDS) is False  # halved
    assert run_with(flat, target=7.0) is False  # met the target
    assert run_with([np.inf] * (STAGNANT_ROUNDS + 1)) is False  # never evaluated
    assert run_with([np.inf, 8.0] + [7.0] * STAGNANT_ROUNDS) is True
