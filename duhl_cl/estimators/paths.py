"""Regularization paths with scikit-learn's signatures: lasso_path, enet_path, LassoCV, ElasticNetCV.

:func:`enet_path` and :func:`lasso_path` return what scikit-learn's do (alphas, coefs of
shape (n_features, n_alphas), dual_gaps; n_iters with ``return_n_iter``) and, as theirs,
fit no intercept; the path runs in one device session (duhl_cl.duhl.path: the store and the
working set built once, each alpha warm-started from the previous one, every point
certified). :class:`LassoCV` and :class:`ElasticNetCV` choose alpha (and l1_ratio) by
cross-validated mean squared error, one path per fold, then refit on all the data.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..store import check_sample_weight, check_X, check_y_regression
from .params import COMMON, COMMON_DOC, make_init
from .regressors import ElasticNet, _Regressor

__all__ = ["alpha_grid", "enet_path", "lasso_path", "LassoCV", "ElasticNetCV"]


def alpha_grid(X, y, l1_ratio=1.0, eps=1e-3, n_alphas=100, fit_intercept=False,
               sample_weight=None):  # fmt: skip
    """scikit-learn's grid: ``n_alphas`` from ``alpha_max = max |X^T y_c| / (m l1_ratio)``
    (the smallest alpha whose solution is 0; y centred with an intercept, m the sum of the
    weights) down to ``eps alpha_max``, log-spaced, descending."""
    s = np.ones(X.shape[0]) if sample_weight is None else sample_weight
    yc = y - (s @ y) / s.sum() if fit_intercept else y
    Xty = np.asarray(X.T @ (s * yc)).ravel()
    alpha_max = float(np.max(np.abs(Xty), initial=0.0)) / (s.sum() * max(l1_ratio, 1e-3))
    if alpha_max <= 0:
        alpha_max = np.finfo(np.float64).resolution
    return np.logspace(np.log10(alpha_max), np.log10(alpha_max * eps), num=n_alphas)


def _checked(X, y, sample_weight=None):
    X = check_X(X, check_finite=sp.issparse(X))
    return X, check_y_regression(y, X.shape[0]), check_sample_weight(sample_weight, X.shape[0])


def _path(X, y, l1_ratio, alphas, coef_init=None, s=None, fit_intercept=False, **params):
    """PathPoints of an ElasticNet path (alphas descending as given) on checked X, y and
    weights s (:func:`_checked`). A path stopped by max_time or Ctrl-C has fewer points."""
    est = ElasticNet(alpha=float(alphas[0]), l1_ratio=l1_ratio, fit_intercept=fit_intercept,
                     **params)  # fmt: skip
    model = est._make_model(X, s)
    penalties = [(a * l1_ratio, a * (1 - l1_ratio)) for a in alphas]
    if coef_init is not None:
        coef_init = np.asarray(coef_init, dtype=np.float64).ravel()
        if coef_init.shape != (X.shape[1],):
            raise ValueError(f"coef_init has shape {coef_init.shape}; X has {X.shape[1]} features")
    return est._fit_path(X, y, model, penalties, coef_init, s)


def enet_path(X, y, *, l1_ratio=0.5, eps=1e-3, n_alphas=100, alphas=None, precompute="auto",
              Xy=None, copy_X=True, coef_init=None, verbose=False, return_n_iter=False,
              positive=False, check_input=True, **params):  # fmt: skip
    """The elastic-net path, as scikit-learn's ``enet_path`` (no intercept is fitted).

    Parameters
    ----------
    X : array or sparse matrix (n_samples, n_features); y : (n_samples,)
    l1_ratio, eps, n_alphas, alphas, coef_init, return_n_iter : as scikit-learn's (alphas
        may be an int: a grid of that many).
    precompute, Xy, copy_X, check_input, verbose : accepted for compatibility (no Gram matrix
        is formed; the data is never copied whole).
    positive : must be False (not supported).
    **params : any estimator parameter of :class:`duhl_cl.ElasticNet` (tol, max_iter per
        alpha, device, dtype, memory_budget, policy, ...), and ``fit_intercept`` (default
        False, as scikit-learn's path).

    Returns
    -------
    alphas : (n_alphas,), descending
    coefs : (n_features, n_alphas)
    dual_gaps : (n_alphas,), certified, on scikit-learn's scale (ours times n_samples)
    n_iters : list of int, rounds per alpha (with ``return_n_iter``)
    """
    if positive:
        raise ValueError("positive=True is not supported; use positive=False")
    if not 0 < l1_ratio <= 1:
        raise ValueError(f"l1_ratio must be in (0, 1] for a path, got {l1_ratio!r}")
    fit_intercept = params.pop("fit_intercept", False)
    if isinstance(alphas, (int, np.integer)) and not isinstance(alphas, bool):
        n_alphas, alphas = int(alphas), None  # scikit-learn 1.9: alphas=k is a grid of k
    X, y, _ = _checked(X, y)
    if alphas is None:
        alphas = alpha_grid(X, y, l1_ratio, eps, n_alphas, fit_intercept)
    alphas = np.sort(np.asarray(alphas, dtype=np.float64).ravel())[::-1]
    points = _path(X, y, l1_ratio, alphas, coef_init, None, fit_intercept, **params)
    alphas = alphas[: len(points)]  # all of them, unless max_time or Ctrl-C stopped the path
    coefs = np.column_stack([p.alpha for p in points])
    dual_gaps = np.array([p.gap for p in points]) * X.shape[0]
    if return_n_iter:
        return alphas, coefs, dual_gaps, [p.n_iter for p in points]
    return alphas, coefs, dual_gaps


def lasso_path(X, y, *, eps=1e-3, n_alphas=100, alphas=None, **kwargs):
    """The Lasso path, as scikit-learn's ``lasso_path``: :func:`enet_path` with l1_ratio=1."""
    return enet_path(X, y, l1_ratio=1.0, eps=eps, n_alphas=n_alphas, alphas=alphas, **kwargs)


class _PathCV(_Regressor):
    """Cross-validated choice of alpha (and l1_ratio) along paths, then a refit."""

    def _l1_ratios(self):
        return [1.0]

    def fit(self, X, y, sample_weight=None, callback=None):
        """Choose alpha (and l1_ratio) by ``cv``-fold mean squared error along one path per
        fold and l1_ratio, then refit on all of X, y (``callback`` follows the refit)."""
        from sklearn.model_selection import check_cv

        X, y, s = _checked(X, y, sample_weight)
        ratios = self._l1_ratios()
        n_alphas = self.alphas if isinstance(self.alphas, (int, np.integer)) else None
        grids = [
            alpha_grid(X, y, r, self.eps, n_alphas, self.fit_intercept, s) if n_alphas
            else np.sort(np.asarray(self.alphas, dtype=np.float64).ravel())[::-1]
            for r in ratios
        ]  # fmt: skip
        folds = list(check_cv(self.cv).split(X))
        params = {k: v for k, v in self.get_params().items() if k in _PATH_PARAMS}
        # A path that max_time stopped leaves its last alphas at +inf error.
        mse = np.full((len(ratios), len(grids[0]), len(folds)), np.inf)
        for i, (r, grid) in enumerate(zip(ratios, grids, strict=True)):
            for f, (train, test) in enumerate(folds):
                points = _path(X[train], y[train], r, grid, None,
                                  None if s is None else s[train], self.fit_intercept,
                                  **params)  # fmt: skip
                wt = np.ones(len(test)) if s is None else s[test]
                for k, p in enumerate(points):
                    resid = y[test] - (np.asarray(X[test] @ p.alpha).ravel() + p.intercept)
                    mse[i, k, f] = (wt @ (resid * resid)) / max(wt.sum(), np.finfo(float).tiny)
        best = np.unravel_index(np.argmin(mse.mean(axis=2)), mse.shape[:2])
        self.l1_ratio_, self.alpha_ = ratios[best[0]], float(grids[best[0]][best[1]])
        self.alphas_ = grids[0] if len(ratios) == 1 else np.array(grids)
        self.mse_path_ = mse[0] if len(ratios) == 1 else mse
        refit = ElasticNet(alpha=self.alpha_, l1_ratio=self.l1_ratio_, **params,
                           fit_intercept=self.fit_intercept)  # fmt: skip
        refit.fit(X, y, sample_weight=s, callback=callback)
        for k, v in vars(refit).items():
            if k.endswith("_") and not k.startswith("_"):
                setattr(self, k, v)
        return self


# The estimator parameters a path (and the refit) takes from a CV estimator: the common ones
# but fit_intercept (the CV estimator's own) and warm_start (a path warm-starts itself).
_PATH_PARAMS = tuple(n for n, _, _ in COMMON if n not in ("fit_intercept", "warm_start"))

_CV_DOC = """
    eps : float
        The grid runs from alpha_max down to eps * alpha_max.
    alphas : int or array-like
        How many alphas on the grid (default 100), or the alphas themselves.
    cv : int, cross-validation generator or iterable
        scikit-learn's ``cv`` (default 5 folds).

    Attributes (besides the refit's)
    ----------
    alpha_ : float
    alphas_ : ndarray (n_alphas,), or (n_l1_ratio, n_alphas)
    mse_path_ : ndarray (n_alphas, n_folds), or (n_l1_ratio, n_alphas, n_folds)
"""


class LassoCV(_PathCV):
    __doc__ = (
        "Lasso with alpha chosen by cross-validation along certified paths."
        "\n\n    Parameters\n    ----------" + _CV_DOC + COMMON_DOC
    )
    __init__ = make_init([], [("eps", 1e-3), ("alphas", 100), ("cv", 5)])


class ElasticNetCV(_PathCV):
    __doc__ = (
        "ElasticNet with alpha and l1_ratio chosen by cross-validation along certified paths."
        "\n\n    Parameters\n    ----------\n    l1_ratio : float or list of floats in (0, 1]"
        + _CV_DOC + COMMON_DOC
    )  # fmt: skip
    __init__ = make_init([], [("l1_ratio", 0.5), ("eps", 1e-3), ("alphas", 100), ("cv", 5)])

    def _l1_ratios(self):
        r = np.atleast_1d(np.asarray(self.l1_ratio, dtype=np.float64))
        if r.ndim != 1 or not np.all((r > 0) & (r <= 1)):
            raise ValueError(
                f"l1_ratio must be a number or numbers in (0, 1], got {self.l1_ratio!r}"
            )
        return [float(v) for v in r]
