"""scikit-learn protocol: clone, GridSearchCV, check_estimator, predictions, warnings."""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

import duhl_cl as dc
from duhl_cl.device.discovery import host_cpu_profile

ESTIMATORS = [
    lambda d: dc.Lasso(alpha=0.05, device=d),
    lambda d: dc.ElasticNet(alpha=0.05, device=d),
    lambda d: dc.Ridge(alpha=1.0, device=d),
    lambda d: dc.LinearSVC(C=0.5, loss="hinge", device=d),
    lambda d: dc.LinearSVC(C=0.5, device=d),
    lambda d: dc.LogisticRegression(C=0.5, device=d),
    lambda d: dc.LogisticRegression(penalty="l1", C=0.5, device=d),
]


def test_get_set_params_clone():
    est = dc.LinearSVC(C=3.0, loss="hinge", random_state=4)
    c = clone(est)
    assert c.get_params() == est.get_params() and c is not est
    c.set_params(C=0.5)
    assert c.C == 0.5 and est.C == 3.0
    with pytest.raises(ValueError, match="Invalid parameter 'gamma' for estimator LinearSVC"):
        c.set_params(gamma=1)
    assert repr(est) == "LinearSVC(C=3.0, loss='hinge', random_state=4)"


def test_grid_search(device, classification_data):
    X, y = classification_data
    gs = GridSearchCV(
        dc.LogisticRegression(device=device, random_state=0), {"C": [0.01, 0.1, 1.0]}, cv=3
    )
    gs.fit(X, y)
    assert gs.best_params_["C"] in (0.01, 0.1, 1.0) and gs.best_score_ > 0.7


def test_predict_proba_and_decision(device, classification_data):
    X, y = classification_data
    est = dc.LogisticRegression(C=0.5, device=device, dtype="float64", tol=1e-8).fit(X, y)
    p = est.predict_proba(X)
    f = est.decision_function(X)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert est.coef_.shape == (1, X.shape[1]) and est.intercept_.shape == (1,)
    assert f.shape == (X.shape[0],)
    np.testing.assert_allclose(p[:, 1], 1 / (1 + np.exp(-(X @ est.coef_[0] + est.intercept_[0]))))
    np.testing.assert_array_equal(est.predict(X), est.classes_[(f > 0).astype(int)])
    assert est.score(X, y) > 0.75


def test_pickle_roundtrip(device, regression_data):
    X, y = regression_data
    est = dc.Lasso(alpha=0.05, device=host_cpu_profile()).fit(X, y)
    est2 = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(est.predict(X), est2.predict(X))


def test_not_fitted(device):
    with pytest.raises(dc.NotFittedError, match="not fitted yet"):
        dc.Lasso().predict(np.ones((2, 2)))


def test_convergence_warning_and_history(device, regression_data):
    X, y = regression_data
    with pytest.warns(
        dc.ConvergenceWarning, match=r"Stopped after 1 rounds by max_iter=1 .*certified duality gap"
    ):
        est = dc.Lasso(alpha=0.01, max_iter=1, tol=1e-12, device=device).fit(X, y)
    assert not est.converged_ and est.n_iter_ == 1
    rec = est.history_[-1]
    assert rec["gap"] == est.dual_gap_
    assert {"round", "time", "gap", "objective"} <= set(rec)


def test_warm_start_continues(device, regression_data):
    X, y = regression_data
    est = dc.Lasso(
        alpha=0.05, tol=1e-10, dtype="float64", device=device, warm_start=True, random_state=0
    )
    est.fit(X, y)
    first = est.n_iter_
    est.fit(X, y)
    assert est.n_iter_ <= 2 < first  # already at the optimum: certified almost at once


def test_memmap_input(device, regression_data, tmp_path):
    X, y = regression_data
    mm = np.lib.format.open_memmap(
        tmp_path / "X.npy", mode="w+", dtype=np.float32, shape=X.shape, fortran_order=True
    )
    mm[:] = X
    est = dc.Lasso(alpha=0.05, device=device, random_state=0).fit(mm, y)
    ref = dc.Lasso(alpha=0.05, device=device, random_state=0).fit(X.astype(np.float32), y)
    np.testing.assert_allclose(est.coef_, ref.coef_)


@pytest.mark.parametrize("make", ESTIMATORS, ids=lambda f: "")
def test_check_estimator(device, make):
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dc.ConvergenceWarning)
        # The checks fit dozens of tiny, sometimes separable problems: a round budget keeps
        # them quick (a fit that runs out still returns a certified model, with a warning).
        check_estimator(make(device).set_params(max_iter=100, dtype="float64", tol=1e-12))


def test_interrupt_returns_certified_model(device, regression_data):
    X, y = regression_data

    def interrupt(record):
        if record["round"] == 2:
            raise KeyboardInterrupt

    est = dc.Lasso(alpha=0.01, tol=1e-14, dtype="float64", device=device, random_state=0)
    with pytest.warns(dc.ConvergenceWarning, match="interrupt"):
        est.fit(X, y, callback=interrupt)
    assert est.n_iter_ == 2 and est.history_[-1]["gap"] is not None
    # The certificate is valid against a tight reference fit.
    ref = dc.Lasso(alpha=0.01, tol=1e-12, dtype="float64", device=device).fit(X, y)
    assert est.objective_ - ref.objective_ <= est.dual_gap_


def test_a_callback_returning_false_stops_with_a_certificate(device, regression_data):
    X, y = regression_data
    seen = []

    def stop_at_3(record):
        seen.append(record["round"])
        return record["round"] < 3

    est = dc.Lasso(alpha=0.01, tol=1e-14, dtype="float64", device=device, random_state=0)
    with pytest.warns(dc.ConvergenceWarning, match="callback"):
        est.fit(X, y, callback=stop_at_3)
    assert est.n_iter_ == 3 and seen[:3] == [1, 2, 3]
    assert est.history_[-1]["gap"] is not None and est.history_[-1].get("final")
    ref = dc.Lasso(alpha=0.01, tol=1e-12, dtype="float64", device=device).fit(X, y)
    assert 0 <= est.objective_ - ref.objective_ <= est.dual_gap_


def test_a_callback_error_propagates_after_the_model_is_stored(device, classification_data):
    X, y = classification_data

    class Boom(Exception):
        pass

    def boom(record):
        if record["round"] == 2:
            raise Boom("from the callback")

    est = dc.LinearSVC(C=0.5, tol=1e-12, dtype="float64", device=device, random_state=0)
    with pytest.raises(Boom, match="from the callback"):
        est.fit(X, y, callback=boom)
    # The model so far, with its certificate, is there.
    assert est.n_iter_ == 2 and est.coef_.shape == (1, X.shape[1])
    assert np.isfinite(est.dual_gap_) and est.history_[-1]["gap"] == est.dual_gap_
    assert est.predict(X).shape == (X.shape[0],)
    ref = dc.LinearSVC(C=0.5, tol=1e-10, dtype="float64", device=device, random_state=0)
    ref.fit(X, y)
    # Valid up to the rounding of two float64 objective evaluations: this small problem can
    # be solved exactly by round 2 (certified gap 0.0, objectives 4e-15 apart; CI saw it).
    slack = 1e-13 * abs(ref.objective_)
    assert est.objective_ - ref.objective_ <= est.dual_gap_ * (1 + 1e-9) + slack


def test_estimators_are_scikit_learn_estimators():
    from sklearn.base import BaseEstimator, is_classifier, is_regressor

    for make in ESTIMATORS:
        est = make(None)
        assert isinstance(est, BaseEstimator)
        assert is_classifier(est) != is_regressor(est)
        # Every parameter in the signature, in get_params and in the repr of a change.
        names = set(est.get_params())
        assert {"tol", "max_iter", "memory_budget", "kernel_variant", "device"} <= names
        assert "tol=0.5" in repr(clone(est).set_params(tol=0.5))
    with pytest.raises(TypeError, match="memory_budgett"):
        dc.Lasso(memory_budgett="10%")
    with pytest.raises(TypeError):
        dc.Lasso(0.1, True)  # only alpha is positional, as scikit-learn's


def test_max_time_stops_with_a_certificate(device, regression_data):
    X, y = regression_data
    # float32 explicitly: a default fit refines in float64, which can reach even tol=1e-16.
    with pytest.warns(dc.ConvergenceWarning, match="max_time"):
        est = dc.Lasso(
            alpha=0.001, tol=1e-16, max_iter=10**6, max_time=0.3, dtype="float32", device=device
        ).fit(X, y)
    assert est.history_[-1]["gap"] is not None and np.isfinite(est.dual_gap_)


@pytest.mark.parametrize("name", ["hinge", "squared_hinge", "logistic"])
def test_a_warm_start_outside_the_dual_box_is_moved_into_it(device, classification_data, name):
    """A warm start from a wider box (a fit at C = 10 reused at C = 0.01): coefficients the
    passes may never visit again would sit outside [0, C], where the per-sample gap formula
    goes negative and the certificate would no longer bound the error. The local solver
    moves them into the box (Model.feasible) before anything is computed from them."""
    from duhl_cl import models
    from duhl_cl.duhl.local_solver import LocalSolver
    from duhl_cl.store import CoordinateStore

    X, y = classification_data
    ypm = np.where(y == 1, 1.0, -1.0)
    model = {"hinge": models.Hinge, "squared_hinge": models.SquaredHinge,
             "logistic": models.LogisticL2}[name](0.01, 1.0)  # fmt: skip
    model.setup(X, ypm, True)
    store = CoordinateStore(X, primal=False, dtype=np.float64, labels=ypm, bias=1.0)
    local = LocalSolver(model, store, device, rng=np.random.default_rng(0))
    try:
        wide = np.linspace(-1.0, 10.0, len(y))  # some below 0, most above C = 0.01
        _, cert = local.start(wide)
        assert np.all(local.alpha >= 0) and np.all(local.alpha >= model.feasible(local.alpha))
        if name != "squared_hinge":
            assert np.all(local.alpha <= 0.01)
        assert np.all(model.gaps(cert.alpha, cert.u) >= -1e-12)  # every gap a valid bound
    finally:
        local.close()
        local.release()


def test_stats_say_when_a_fit_is_small_for_the_device(device, classification_data):
    """stats_ reports the share of the fit's time the device's passes took (pass_time of
    the rounds), and a note where a short fit was mostly the rounds' fixed costs."""
    from duhl_cl.estimators.base import SMALL_FIT, SMALL_SHARE, small_for_device

    X, y = classification_data
    est = dc.LinearSVC(C=1.0, device=device, random_state=0).fit(X, y)
    st = est.stats_
    passes = sum(r["pass_time"] for r in est.history_)
    assert all(0 <= r["pass_time"] <= r["device_time"] for r in est.history_)
    fit_time = st["time"] - st["kernel_build_time"]
    assert st["device_share"] == pytest.approx(passes / fit_time)
    small = fit_time < SMALL_FIT and st["device_share"] < SMALL_SHARE
    assert (st["small_for_device"] is not None) == small
    # The rule itself, on made-up rounds.
    rounds = [{"pass_time": 0.001}] * 3
    share, note = small_for_device(rounds, 0.012)
    assert share == pytest.approx(0.25) and "25% of the fit's 12.0 ms over 3 rounds" in note
    assert small_for_device(rounds, 0.005)[1] is None  # mostly passes
    assert small_for_device([{"pass_time": 0.1}] * 3, 1.0)[1] is None  # not short
    assert small_for_device([], 0.0) == (0.0, None)
