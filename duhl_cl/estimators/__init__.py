"""scikit-learn estimators: Lasso, ElasticNet, Ridge, LinearSVC, LogisticRegression.

:mod:`.params` (the parameters every estimator has, declared once), :mod:`.base` (validation
and the fit driver they share, on scikit-learn's BaseEstimator), :mod:`.regressors` (Lasso,
ElasticNet, Ridge, with RegressorMixin), :mod:`.classifiers` (LinearSVC,
LogisticRegression, with ClassifierMixin), :mod:`.paths` (lasso_path, enet_path, LassoCV,
ElasticNetCV: regularization paths in one device session).

Objectives (m = n_samples), as in scikit-learn:

- Lasso: ``(1/2m)||y - Xw - b||^2 + alpha ||w||_1``
- ElasticNet: ``(1/2m)||y - Xw - b||^2 + alpha l1_ratio ||w||_1 + alpha (1 - l1_ratio)/2 ||w||^2``
- Ridge: ``||y - Xw - b||^2 + alpha ||w||^2`` (reported divided by 2m)
- LinearSVC: ``1/2||w||^2 + C sum loss(y_j (x_j w + b))``, hinge or squared hinge, solved in
  the dual (liblinear's). The intercept is liblinear's: a constant feature of value
  ``intercept_scaling`` whose weight is penalised like the others.
- LogisticRegression(penalty="l2"): ``1/2||w||^2 + C sum log(1 + exp(-y_j (x_j w + b)))``
  solved in the dual with liblinear's bias feature; penalty="l1": ``||w||_1 + C sum log(...)``
  solved in the primal with an unpenalised intercept (as scikit-learn's saga solver).

Stopping: the certified duality gap ``dual_gap_ <= tol * scale``, where scale is
``||y - mean(y)||^2 / m`` (``||y||^2 / m`` without intercept) for the squared loss, as in
scikit-learn's Lasso, and the objective at zero coefficients otherwise (``C m`` for the SVMs,
``C m log 2`` for the dual logistic, the intercept-only logistic loss for L1-logistic).
``dual_gap_`` and ``objective_`` are on the scale of the normalised objective the model
solves (Ridge: the objective above divided by 2m; L1-logistic: divided by C m).
"""

from .base import NotFittedError
from .classifiers import LinearSVC, LogisticRegression
from .paths import ElasticNetCV, LassoCV, enet_path, lasso_path
from .regressors import ElasticNet, Lasso, Ridge

__all__ = [
    "Lasso",
    "ElasticNet",
    "Ridge",
    "LinearSVC",
    "LogisticRegression",
    "LassoCV",
    "ElasticNetCV",
    "lasso_path",
    "enet_path",
    "NotFittedError",
]
