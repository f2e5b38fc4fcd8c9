"""The regressors: Lasso, ElasticNet, Ridge (squared loss, primal coordinate descent).

Objectives (m = n_samples), as in scikit-learn:

- Lasso: ``(1/2m)||y - Xw - b||^2 + alpha ||w||_1``
- ElasticNet: ``(1/2m)||y - Xw - b||^2 + alpha l1_ratio ||w||_1 + alpha (1 - l1_ratio)/2 ||w||^2``
- Ridge: ``||y - Xw - b||^2 + alpha ||w||^2`` (reported divided by 2m)
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.base import RegressorMixin

from .. import models
from ..store import check_sample_weight, check_X, check_y_regression
from .base import _Base, check_positive
from .params import COMMON_DOC, make_init

__all__ = ["Lasso", "ElasticNet", "Ridge"]


class _Regressor(RegressorMixin, _Base):
    def fit(self, X, y, sample_weight=None, callback=None):
        """Fit on X of shape (n_samples, n_features) (dense, memmap or sparse) and y (n_samples,).

        ``sample_weight`` (n_samples,), >= 0: sample j's squared error counts s_j times
        (scikit-learn's meaning: the datafit is normalised by sum s, so integer weights are
        repeated rows; weight 0 leaves a sample out). ``callback(record)`` is called after
        every round with that round's history record; returning False stops the fit (the
        model so far is kept, with its certificate).
        """
        # Dense X: the coordinate store's squared norms make the finite check (one pass less).
        X = check_X(X, check_finite=sp.issparse(X))
        y = check_y_regression(y, X.shape[0])
        s = check_sample_weight(sample_weight, X.shape[0])
        return self._fit(X, y, self._make_model(X, s), callback, s)

    def predict(self, X):
        """Predictions, shape (n_samples,)."""
        X = self._check_X_predict(X)
        return np.asarray(X @ self.coef_, dtype=np.float64).ravel() + self.intercept_


_PARAMS = "\n\n    Parameters\n    ----------\n"


class Lasso(_Regressor):
    __doc__ = (
        "Lasso: ``(1/2m)||y - Xw - b||^2 + alpha ||w||_1``." + _PARAMS + "    alpha : float > 0"
        + COMMON_DOC
    )  # fmt: skip
    __init__ = make_init([("alpha", 1.0)])

    def _make_model(self, X, sample_weight=None):
        return models.SquaredL1L2(check_positive("alpha", self.alpha), 0.0)


class ElasticNet(_Regressor):
    __doc__ = (
        "ElasticNet: ``(1/2m)||y - Xw - b||^2 + alpha rho ||w||_1 + alpha (1-rho)/2 ||w||^2``."
        + _PARAMS + "    alpha : float > 0\n    l1_ratio : float in [0, 1]" + COMMON_DOC
    )  # fmt: skip
    __init__ = make_init([("alpha", 1.0)], [("l1_ratio", 0.5)])

    def _make_model(self, X, sample_weight=None):
        alpha = check_positive("alpha", self.alpha)
        r = self.l1_ratio
        if isinstance(r, bool) or not isinstance(r, (int, float, np.number)) or not 0 <= r <= 1:
            raise ValueError(f"l1_ratio must be in [0, 1], got {r!r}")
        return models.SquaredL1L2(alpha * r, alpha * (1 - r))


class Ridge(_Regressor):
    __doc__ = (
        "Ridge: ``||y - Xw - b||^2 + alpha ||w||^2`` (scikit-learn's Ridge)." + _PARAMS
        + "    alpha : float > 0" + COMMON_DOC
    )  # fmt: skip
    __init__ = make_init([("alpha", 1.0)])

    def _make_model(self, X, sample_weight=None):
        # ||r||^2 + alpha ||w||^2 = 2m [ (1/2m)||r||^2 + (alpha/m)/2 ||w||^2 ]; weighted,
        # m is sum s (scikit-learn's Ridge: sum s_j r_j^2 + alpha ||w||^2).
        m = X.shape[0] if sample_weight is None else float(np.sum(sample_weight))
        return models.SquaredL1L2(0.0, check_positive("alpha", self.alpha) / m)
