"""Regularization paths: scikit-learn's lasso_path / enet_path / LassoCV / ElasticNetCV as
references (alphas, shapes, objectives per point to 1e-6 relative in float64, the same CV
choice), every point certified, and one device session for the whole path."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn import linear_model as lm
from sklearn.model_selection import KFold

import duhl_cl as dc
from duhl_cl.duhl import local_solver


@pytest.fixture(scope="module")
def path_problem():
    rng = np.random.default_rng(5)
    n, d = 120, 300
    X = rng.standard_normal((n, d))
    X[rng.random((n, d)) < 0.7] = 0.0
    beta = np.zeros(d)
    beta[:8] = rng.uniform(-2, 2, 8)
    return X, X @ beta + 0.3 * rng.standard_normal(n)


def _objective(X, y, coef, alpha, l1_ratio):
    r = y - X @ coef
    l1, l2 = alpha * l1_ratio, alpha * (1 - l1_ratio)
    return 0.5 * (r @ r) / len(y) + l1 * np.abs(coef).sum() + 0.5 * l2 * (coef @ coef)


@pytest.mark.parametrize("budget", [None, "30%"])
@pytest.mark.parametrize("storage", ["dense", "sparse"])
@pytest.mark.parametrize("l1_ratio", [1.0, 0.7])
def test_path_matches_scikit_learn(device, path_problem, l1_ratio, storage, budget):
    X, y = path_problem
    Xin = X if storage == "dense" else sp.csc_matrix(X)
    alphas, coefs, gaps, n_iters = dc.enet_path(
        Xin, y, l1_ratio=l1_ratio, alphas=15, eps=1e-2, return_n_iter=True, dtype="float64",
        tol=1e-10, device=device, memory_budget=budget, random_state=0,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_alphas, ref_coefs, _ = lm.enet_path(X, y, l1_ratio=l1_ratio, alphas=15, eps=1e-2,
                                                tol=1e-14, max_iter=10**6)  # fmt: skip
    np.testing.assert_allclose(alphas, ref_alphas, rtol=1e-12)
    assert coefs.shape == ref_coefs.shape == (X.shape[1], 15) and gaps.shape == (15,)
    assert len(n_iters) == 15 and np.all(np.diff(alphas) < 0)
    for k, a in enumerate(alphas):
        f = _objective(X, y, coefs[:, k], a, l1_ratio)
        f_ref = _objective(X, y, ref_coefs[:, k], a, l1_ratio)
        assert abs(f - f_ref) <= 1e-6 * f_ref, (k, f, f_ref)
        # Certified, on scikit-learn's scale (its objective is ours times n_samples).
        assert (f - f_ref) * len(y) <= gaps[k] + 1e-12 * f_ref * len(y)
        assert gaps[k] <= 1e-10 * (y @ y)  # each point met the tolerance (tol * ||y||^2)


def test_a_path_is_one_device_session_warm_started(device, path_problem, monkeypatch):
    X, y = path_problem
    built = []
    real = local_solver.DeviceWorkingSet

    def counting(*args, **kwargs):
        built.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(local_solver, "DeviceWorkingSet", counting)
    kw = dict(dtype="float64", tol=1e-8, device=device, random_state=0)
    alphas, coefs, _, n_iters = dc.lasso_path(X, y, alphas=12, eps=1e-2, return_n_iter=True,
                                              **kw)  # fmt: skip
    assert len(built) == 1  # one store, one working set for the 12 points
    cold = [dc.Lasso(alpha=a, fit_intercept=False, **kw).fit(X, y).n_iter_ for a in alphas]
    # Warm starts: the path's rounds are fewer than the cold fits' (celer's and skglm's point).
    assert sum(n_iters) < sum(cold), (n_iters, cold)
    with pytest.raises(ValueError, match="positive=True is not supported"):
        dc.lasso_path(X, y, positive=True)


@pytest.mark.parametrize("name", ["lasso", "elasticnet"])
def test_cv_estimators_choose_as_scikit_learn(device, path_problem, name):
    X, y = path_problem
    y = y + 2.0  # with an intercept
    cv = KFold(3)
    kw = dict(cv=cv, alphas=10, eps=1e-2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "lasso":
            ours = dc.LassoCV(**kw, dtype="float64", tol=1e-10, device=device).fit(X, y)
            ref = lm.LassoCV(**kw, tol=1e-12, max_iter=10**6).fit(X, y)
        else:
            ours = dc.ElasticNetCV(l1_ratio=[0.5, 0.9], **kw, dtype="float64", tol=1e-10,
                                   device=device).fit(X, y)  # fmt: skip
            ref = lm.ElasticNetCV(l1_ratio=[0.5, 0.9], **kw, tol=1e-12, max_iter=10**6).fit(X, y)
    np.testing.assert_allclose(ours.alphas_, ref.alphas_, rtol=1e-12)
    assert ours.mse_path_.shape == ref.mse_path_.shape
    # Held-out errors move with the coefficients, which a certified objective pins only to
    # about sqrt(gap / curvature) (objectives agree to 1e-12 where the errors differ by 1e-6).
    np.testing.assert_allclose(ours.mse_path_, ref.mse_path_, rtol=1e-4)
    assert ours.alpha_ == pytest.approx(ref.alpha_) and ours.converged_
    if name == "elasticnet":
        assert ours.l1_ratio_ == ref.l1_ratio_
    r = ours.l1_ratio_ if name == "elasticnet" else 1.0
    f = _objective(X, y - ours.intercept_, ours.coef_, ours.alpha_, r)
    f_ref = _objective(X, y - ref.intercept_, ref.coef_, ref.alpha_, r)
    assert abs(f - f_ref) <= 1e-6 * f_ref
    assert ours.predict(X).shape == (X.shape[0],)
