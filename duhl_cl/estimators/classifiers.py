"""The binary classifiers: LinearSVC and LogisticRegression.

- LinearSVC: ``1/2||w||^2 + C sum loss(y_j (x_j w + b))``, hinge or squared hinge, solved in
  the dual (liblinear's). The intercept is liblinear's: a constant feature of value
  ``intercept_scaling`` whose weight is penalised like the others.
- LogisticRegression(penalty="l2"): ``1/2||w||^2 + C sum log(1 + exp(-y_j (x_j w + b)))``
  solved in the dual with liblinear's bias feature; penalty="l1": ``||w||_1 + C sum log(...)``
  solved in the primal with an unpenalised intercept (as scikit-learn's saga solver).

As scikit-learn's, a fitted binary classifier has ``coef_`` of shape (1, n_features) and
``intercept_`` of shape (1,); ``decision_function`` is (n_samples,), > 0 for ``classes_[1]``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.base import ClassifierMixin

from .. import models
from ..store import check_sample_weight, check_X, check_y_binary, class_weights
from .base import _Base, check_positive
from .params import COMMON_DOC, make_init

__all__ = ["LinearSVC", "LogisticRegression"]


class _Classifier(ClassifierMixin, _Base):
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()  # ClassifierMixin's classifier tags, then ours
        tags.classifier_tags.multi_class = False
        return tags

    def fit(self, X, y, sample_weight=None, callback=None):
        """Fit on X of shape (n_samples, n_features) (dense, memmap or sparse) and y of two classes.

        ``sample_weight`` (n_samples,), >= 0, and ``class_weight`` multiply sample j's loss
        (liblinear's: its box is C s_j in the dual; weight 0 leaves a sample out).
        ``callback(record)`` is called after every round with that round's history record;
        returning False stops the fit (the model so far is kept, with its certificate).
        """
        X = check_X(X, check_finite=sp.issparse(X))
        classes, ypm = check_y_binary(y, X.shape[0])
        s = check_sample_weight(sample_weight, X.shape[0])
        cw = class_weights(self.class_weight, classes, (ypm > 0).astype(int), s)
        if cw is not None:
            s = cw if s is None else s * cw
            if not (s > 0).any():
                raise ValueError("class_weight and sample_weight leave every sample at weight 0")
        self.classes_ = classes
        return self._fit(X, ypm, self._make_model(X, s), callback, s)

    def _set_solution(self, coef, intercept):
        self.coef_ = np.asarray(coef, dtype=np.float64).reshape(1, -1)
        self.intercept_ = np.array([intercept], dtype=np.float64)

    def decision_function(self, X):
        """Signed distance to the boundary, shape (n_samples,); > 0 means classes_[1]."""
        X = self._check_X_predict(X)
        return np.asarray(X @ self.coef_[0], dtype=np.float64).ravel() + self.intercept_[0]

    def predict(self, X):
        """Predicted class labels, shape (n_samples,)."""
        f = self.decision_function(X)  # checks that the estimator is fitted
        return self.classes_[(f > 0).astype(int)]


_PARAMS = "\n\n    Parameters\n    ----------\n"
_CLASS_WEIGHT = (
    "\n    class_weight : None, 'balanced' or dict {class: weight}\n        Multiplies the "
    "loss of each class's samples (scikit-learn's, with the sample weights)."
)


class LinearSVC(_Classifier):
    __doc__ = (
        "Linear SVM trained in the dual: ``1/2||w||^2 + C sum loss(y_j (x_j w + b))``." + _PARAMS
        + "    C : float > 0\n    loss : 'hinge' or 'squared_hinge'\n    intercept_scaling : "
        "float > 0\n        Value of liblinear's constant bias feature." + _CLASS_WEIGHT + COMMON_DOC
    )  # fmt: skip
    __init__ = make_init(
        [("C", 1.0)],
        [("loss", "squared_hinge"), ("intercept_scaling", 1.0), ("class_weight", None)],
    )

    def _make_model(self, X, sample_weight=None):
        C = check_positive("C", self.C)
        bias = check_positive("intercept_scaling", self.intercept_scaling)
        if self.loss == "hinge":
            return models.Hinge(C, bias)
        if self.loss == "squared_hinge":
            return models.SquaredHinge(C, bias)
        raise ValueError(f"loss must be 'hinge' or 'squared_hinge', got {self.loss!r}")


class LogisticRegression(_Classifier):
    __doc__ = (
        "Binary logistic regression, L2 (dual, liblinear's) or L1 (primal) penalty." + _PARAMS
        + "    penalty : 'l2' or 'l1'\n    C : float > 0\n    intercept_scaling : float > 0\n"
        "        penalty='l2': value of liblinear's constant bias feature." + _CLASS_WEIGHT
        + COMMON_DOC
    )  # fmt: skip
    __init__ = make_init(
        [("penalty", "l2")], [("C", 1.0), ("intercept_scaling", 1.0), ("class_weight", None)]
    )

    def _make_model(self, X, sample_weight=None):
        C = check_positive("C", self.C)
        if self.penalty == "l2":
            return models.LogisticL2(C, check_positive("intercept_scaling", self.intercept_scaling))
        if self.penalty == "l1":
            # ||w||_1 + C sum log(...) = C m [ (1/m) sum log(...) + 1/(C m) ||w||_1 ]
            m = X.shape[0] if sample_weight is None else float(np.sum(sample_weight))
            return models.LogisticL1(1.0 / (C * m))
        raise ValueError(f"penalty must be 'l2' or 'l1', got {self.penalty!r}")

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, 2), columns in the order of classes_."""
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1 - p, p])

    def predict_log_proba(self, X):
        """Logarithms of :meth:`predict_proba`."""
        return np.log(self.predict_proba(X))
