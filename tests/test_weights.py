"""sample_weight and class_weight: scikit-learn's meaning, on the device, under a budget.

References: scikit-learn's estimators with the same weights (objectives written out here,
float64, 1e-6 relative, and our certificate valid against them); integer weights against the
rows repeated; zero weights against the rows removed. Weights reach the device through the
WEIGHTED kernels (kernels_cl/model.h): the primal models' row vector, the dual models' slot
labels.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn import linear_model as lm
from sklearn import svm

import duhl_cl as dc


@pytest.fixture(scope="module")
def weighted_problem():
    rng = np.random.default_rng(7)
    n, d = 200, 24
    X = rng.standard_normal((n, d))
    X[rng.random((n, d)) < 0.5] = 0.0
    beta = np.zeros(d)
    beta[:5] = rng.uniform(-2, 2, 5)
    y = X @ beta + 0.3 * rng.standard_normal(n) + 1.0
    labels = (X @ rng.standard_normal(d) + 0.7 * rng.standard_normal(n) > 0.1).astype(int)
    s = rng.integers(0, 4, n).astype(float)  # zeros included
    return X, y, labels, s


def _sq(X, y, s, coef, b, l1, l2):
    r = y - X @ coef - b
    return 0.5 * (s @ (r * r)) / s.sum() + l1 * np.abs(coef).sum() + 0.5 * l2 * (coef @ coef)


def _margins(X, labels, coef, b):
    return np.where(labels == 1, 1.0, -1.0) * (X @ coef + b)


# name: (ours, scikit-learn's, objective(X, y or labels, s, coef, b) on our estimator's scale)
CASES = {
    "lasso": (
        lambda **k: dc.Lasso(alpha=0.05, **k),
        lambda: lm.Lasso(alpha=0.05, tol=1e-14, max_iter=10**6),
        lambda X, y, s, c, b: _sq(X, y, s, c, b, 0.05, 0.0),
    ),
    "elasticnet": (
        lambda **k: dc.ElasticNet(alpha=0.05, l1_ratio=0.5, **k),
        lambda: lm.ElasticNet(alpha=0.05, l1_ratio=0.5, tol=1e-14, max_iter=10**6),
        lambda X, y, s, c, b: _sq(X, y, s, c, b, 0.025, 0.025),
    ),
    "ridge": (
        lambda **k: dc.Ridge(alpha=2.0, **k),
        lambda: lm.Ridge(alpha=2.0, tol=1e-14),
        lambda X, y, s, c, b: _sq(X, y, s, c, b, 0.0, 2.0 / s.sum()),
    ),
    "svm-hinge": (
        lambda **k: dc.LinearSVC(C=0.05, loss="hinge", **k),
        # Seeded: liblinear's hinge dual ends where its shuffles take it (0.05% apart here).
        lambda: svm.LinearSVC(C=0.05, loss="hinge", tol=1e-14, max_iter=10**5, random_state=0),
        lambda X, t, s, c, b: 0.5 * (c @ c + b * b)
        + 0.05 * (s @ np.maximum(1 - _margins(X, t, c, b), 0)),
    ),
    "svm-squared-hinge": (
        lambda **k: dc.LinearSVC(C=0.05, **k),
        lambda: svm.LinearSVC(C=0.05, tol=1e-14, max_iter=10**7),
        lambda X, t, s, c, b: 0.5 * (c @ c + b * b)
        + 0.05 * (s @ np.maximum(1 - _margins(X, t, c, b), 0) ** 2),
    ),
    "logistic-l2": (
        lambda **k: dc.LogisticRegression(C=0.1, **k),
        lambda: lm.LogisticRegression(C=0.1, solver="liblinear", dual=True, tol=1e-14,
                                      max_iter=10**6),  # fmt: skip
        lambda X, t, s, c, b: 0.5 * (c @ c + b * b)
        + 0.1 * (s @ np.logaddexp(0, -_margins(X, t, c, b))),
    ),
    # liblinear's primal L1 logistic without an intercept is exactly ours. Seeded, at tol
    # 1e-10: at 1e-12 or below, 3 to 5 seeds of 40 ran its newGLMNET to max_iter (25-35 s),
    # and every seed at 1e-10 ends within 4e-16 of the 1e-14 objective.
    "logistic-l1": (
        lambda **k: dc.LogisticRegression(penalty="l1", C=0.5, fit_intercept=False, **k),
        lambda: lm.LogisticRegression(penalty="l1", C=0.5, solver="liblinear", tol=1e-10,
                                      max_iter=10**6, fit_intercept=False, random_state=0),  # fmt: skip
        lambda X, t, s, c, b: np.abs(c).sum() + 0.5 * (s @ np.logaddexp(0, -_margins(X, t, c, b))),
    ),
}  # fmt: skip


def _target(name, problem):
    X, y, labels, s = problem
    return y if name in ("lasso", "elasticnet", "ridge") else labels


def _solution(est):
    c, b = (
        np.ravel(est.coef_),
        np.ravel(est.intercept_)[0] if np.ndim(est.intercept_) else est.intercept_,
    )
    return c, float(b)


@pytest.mark.parametrize("budget", [None, "50%"])
@pytest.mark.parametrize("storage", ["dense", "sparse"])
@pytest.mark.parametrize("name", list(CASES))
def test_weighted_fit_matches_scikit_learn(device, weighted_problem, name, storage, budget):
    X, _, _, s = weighted_problem
    t = _target(name, weighted_problem)
    ours, ref, objective = CASES[name]
    Xin = X if storage == "dense" else sp.csr_matrix(X)
    est = ours(dtype="float64", tol=1e-10, memory_budget=budget, device=device, random_state=0)
    est.fit(Xin, t, sample_weight=s)
    assert est.converged_
    if budget is not None:
        assert min(r["n_resident"] for r in est.history_) < (
            X.shape[1]
            if name in ("lasso", "elasticnet", "ridge", "logistic-l1")
            else np.count_nonzero(s)
        )  # the budget binds
    sk = ref().fit(X, t, sample_weight=s)
    f = objective(X, t, s, *_solution(est))
    f_ref = objective(X, t, s, np.ravel(sk.coef_), float(np.ravel(sk.intercept_)[0]))
    assert abs(f - f_ref) <= 1e-6 * abs(f_ref), (f, f_ref)


@pytest.mark.parametrize("name", list(CASES))
def test_integer_weights_are_repeated_rows_and_zero_weights_removed_rows(
    device, weighted_problem, name
):
    X, _, _, s = weighted_problem
    t = _target(name, weighted_problem)
    ours = CASES[name][0]
    kw = dict(dtype="float64", tol=1e-11, device=device, random_state=0, memory_budget="50%")
    weighted = ours(**kw).fit(sp.csr_matrix(X), t, sample_weight=s)
    rep = np.repeat(np.arange(len(s)), s.astype(int))  # weight 0: the row is gone
    repeated = ours(**kw).fit(sp.csr_matrix(X[rep]), t[rep])
    assert weighted.objective_ == pytest.approx(repeated.objective_, rel=1e-7)
    cw, cr = _solution(weighted), _solution(repeated)
    np.testing.assert_allclose(cw[0], cr[0], rtol=1e-4, atol=1e-5)
    keep = s > 0
    removed = ours(**kw).fit(X[keep], t[keep], sample_weight=s[keep])
    assert weighted.objective_ == pytest.approx(removed.objective_, rel=1e-9)


def test_bad_sample_weights_are_clear_errors(device, weighted_problem):
    X, y, labels, s = weighted_problem
    est = dc.Lasso(alpha=0.05, device=device)
    for bad, msg in [
        (-s - 1, "sample_weight must be >= 0; sample 0"),
        (np.where(np.arange(len(s)) == 3, np.nan, s), "NaN or infinity \\(first at sample 3\\)"),
        (s[:-1], "sample_weight has shape \\(199,\\) but X has 200 samples"),
        (np.zeros_like(s), "zero for every sample"),
        ("heavy", "sample_weight must be numbers"),
    ]:
        with pytest.raises(ValueError, match=msg):
            est.fit(X, y, sample_weight=bad)
    with pytest.raises(ValueError, match="class_weight names \\[7\\], which y does not hold"):
        dc.LinearSVC(class_weight={0: 1.0, 7: 2.0}, device=device).fit(X, labels)
    with pytest.raises(ValueError, match="class_weight must be None, 'balanced' or a dict"):
        dc.LinearSVC(class_weight="heavy", device=device).fit(X, labels)


@pytest.mark.parametrize("class_weight", ["balanced", {0: 3.0, 1: 0.5}])
@pytest.mark.parametrize("name", ["svm-squared-hinge", "logistic-l2"])
def test_class_weight_matches_scikit_learn(device, weighted_problem, name, class_weight):
    X, _, labels, s = weighted_problem
    ours, ref, objective = CASES[name]
    est = ours(dtype="float64", tol=1e-10, device=device, class_weight=class_weight)
    est.fit(X, labels, sample_weight=s)
    sk = ref().set_params(class_weight=class_weight).fit(X, labels, sample_weight=s)
    from sklearn.utils.class_weight import compute_class_weight

    cw = compute_class_weight(class_weight, classes=np.array([0, 1]), y=labels, sample_weight=s)
    sc = s * cw[labels]
    f = objective(X, labels, sc, *_solution(est))
    f_ref = objective(X, labels, sc, np.ravel(sk.coef_), float(sk.intercept_[0]))
    assert abs(f - f_ref) <= 1e-6 * abs(f_ref), (f, f_ref)


def test_sample_weight_is_routed_through_pipeline_and_grid_search(device, weighted_problem):
    import sklearn
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y, _, s = weighted_problem
    with sklearn.config_context(enable_metadata_routing=True):
        est = dc.Lasso(alpha=0.05, dtype="float64", tol=1e-10, device=device)
        est.set_fit_request(sample_weight=True).set_score_request(sample_weight=True)
        scaler = StandardScaler().set_fit_request(sample_weight=False)
        pipe = make_pipeline(scaler, est).fit(X, y, sample_weight=s)
        direct = dc.Lasso(alpha=0.05, dtype="float64", tol=1e-10, device=device).fit(
            StandardScaler().fit_transform(X), y, sample_weight=s
        )
        assert pipe[-1].objective_ == pytest.approx(direct.objective_, rel=1e-9)
        search = GridSearchCV(est, {"alpha": [0.05, 0.2]}, cv=3).fit(X, y, sample_weight=s)
        assert search.best_params_["alpha"] in (0.05, 0.2)
        # The refit on all the data took the weights: it is the direct weighted fit.
        best = dc.Lasso(alpha=search.best_params_["alpha"], dtype="float64", tol=1e-10,
                        device=device).fit(X, y, sample_weight=s)  # fmt: skip
        assert search.best_estimator_.objective_ == pytest.approx(best.objective_, rel=1e-9)
