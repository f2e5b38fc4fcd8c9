"""The binary classifiers: LinearSVC and LogisticRegression.

- LinearSVC: ``1/2||w||^2 + C sum loss(y_j (x_j w + b))``, hinge or squared hinge, solved in
  the dual (liblinear's). The intercept is liblinear's: a constant feature of value
  ``intercept_scaling`` whose weight is penalised like the others.
- LogisticRegression(penalty="l2"): ``1/2||w||^2 + C sum log(1 + exp(-y_j (x_j w + b)))``
  solved in the dual with liblinear's bias feature; penalty="l1": ``||w||_1 + C sum log(...)``
  solved in the primal with an unpenalised intercept (as scikit-learn's saga solver).

As scikit-learn's, a fitted binary classifier has ``coef_`` of shape (1, n_features) and
``intercept_`` of shape (1,); ``decision_function`` is (n_samples,), > 0 for ``classes_[1]``.
With K > 2 classes, one-vs-rest (liblinear's): ``coef_`` (K, n_features), ``intercept_``
(K,), ``decision_function`` (n_samples, K), the K problems solved together over one
resident working set (duhl_cl.duhl.ovr).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.special import expit
from sklearn.base import ClassifierMixin

from .. import models
from ..duhl.ovr import OneVsRest
from ..duhl.prox_newton import solve_prox_newton
from ..store import (
    check_sample_weight,
    check_X,
    check_y_classes,
    class_weight_values,
    class_weights,
)
from .base import _Base, check_positive, refuse_dropping_on_disk
from .params import COMMON_DOC, make_init

__all__ = ["LinearSVC", "LogisticRegression"]


class _Classifier(ClassifierMixin, _Base):
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()  # ClassifierMixin's classifier tags, then ours
        tags.classifier_tags.multi_class = True
        return tags

    def fit(self, X, y, sample_weight=None, callback=None):
        """Fit on X of shape (n_samples, n_features) (dense, memmap or sparse) and y.

        Two classes: one binary problem. More: one-vs-rest as liblinear's, class k against
        the rest, the K problems solved in one fit over one resident working set
        (duhl_cl.duhl.ovr); ``dual_gap_`` and ``objective_`` are then (K,), one per class.
        ``sample_weight`` (n_samples,), >= 0, and ``class_weight`` multiply sample j's loss
        (liblinear's: its box is C s_j in the dual; weight 0 leaves a sample out; one-vs-rest,
        as liblinear, weights the positives of class k's problem by class k's weight).
        ``callback(record)`` is called after every round with that round's history record;
        returning False stops the fit (the model so far is kept, with its certificate).
        """
        X = check_X(X, check_finite=sp.issparse(X))
        classes, y_idx = check_y_classes(y, X.shape[0])
        s = check_sample_weight(sample_weight, X.shape[0])
        # The fit reads classes_ on the way; a fit that fails puts the previous one back, so
        # that a failed refit leaves the fitted model whole (coef_ with its own classes_).
        previous, coef = self.__dict__.get("classes_"), self.__dict__.get("coef_")
        self.classes_ = classes
        try:
            return self._fit_classes(X, classes, y_idx, s, callback)
        except BaseException:
            if self.__dict__.get("coef_") is coef:  # no new model stored (a callback's error
                if previous is None:  # comes after the model so far is: it keeps its classes)
                    del self.classes_
                else:
                    self.classes_ = previous
            raise

    def _fit_classes(self, X, classes, y_idx, s, callback):
        if len(classes) > 2:
            return self._fit_ovr(X, y_idx, s, callback)
        cw = class_weights(self.class_weight, classes, y_idx, s)
        if cw is not None:
            s = cw if s is None else s * cw
            if not (s > 0).any():
                raise ValueError("class_weight and sample_weight leave every sample at weight 0")
        ypm = np.where(y_idx == 1, 1.0, -1.0)
        return self._fit(X, ypm, self._make_model(X, s), callback, s)

    def _fit_ovr(self, X, y_idx, s, callback):
        """One-vs-rest over ``K = len(classes_)`` classes in one fit (duhl_cl.duhl.ovr)."""
        classes = self.classes_
        cw = class_weight_values(self.class_weight, classes, y_idx, s)
        probe = self._make_model(X, s)
        if cw is not None and not np.all(cw > 0):
            zero = [classes[k] for k in np.flatnonzero(cw <= 0)]
            raise ValueError(
                f"class_weight is 0 for {zero!r}: with more than two classes each class's "
                f"problem needs its positives; drop that class's samples instead"
            )
        device, dtype, refine = self._open(X)
        keep = None
        if s is not None and not probe.primal and not np.all(s > 0):
            refuse_dropping_on_disk(X)
            keep = np.flatnonzero(s > 0)  # weight 0: out of every class's dual
            X, y_idx, s = X[keep], y_idx[keep], s[keep]
        if s is not None and not (s > 0).any():
            raise ValueError("sample_weight leaves every sample at weight 0")
        fitted = []
        for k in range(len(classes)):
            yk, sk = ovr_problem(y_idx, k, s, cw)
            m = self._make_model(X, sk)
            m.setup(X, yk, self.fit_intercept, sk)
            fitted.append(m)
        m0 = fitted[0]
        rows = s
        if m0.primal and cw is not None and not np.all(cw == 1.0):
            # The primal store's squared norms are the steps' curvature: with each row's
            # largest weight over the classes they bound every class's (a valid, shorter
            # step where a class weighs the row less); the gradients and certificates take
            # each class's own weights.
            rows = (np.ones(len(y_idx)) if s is None else s) * np.maximum(cw[y_idx], 1.0)
        store = self._make_store(X, m0.primal, dtype, None if m0.primal else m0.y,
                                 getattr(m0, "bias", 0.0), rows if m0.primal else None)  # fmt: skip
        return self._fit_bound(OneVsRest(fitted, store), store, device, dtype, refine, keep, X,
                               callback)  # fmt: skip

    def _set_solution(self, coef, intercept):
        coef = np.asarray(coef, dtype=np.float64)
        self.coef_ = coef.reshape(1, -1) if coef.ndim == 1 else coef
        self.intercept_ = np.atleast_1d(np.asarray(intercept, dtype=np.float64)).copy()

    def decision_function(self, X):
        """Signed distances to the boundaries: shape (n_samples,) for two classes (> 0 means
        classes_[1]), (n_samples, n_classes) for more (one-vs-rest, one column per class)."""
        X = self._check_X_predict(X)
        if self.coef_.shape[0] == 1:
            return np.asarray(X @ self.coef_[0], dtype=np.float64).ravel() + self.intercept_[0]
        return np.asarray(X @ self.coef_.T, dtype=np.float64) + self.intercept_

    def predict(self, X):
        """Predicted class labels, shape (n_samples,)."""
        f = self.decision_function(X)  # checks that the estimator is fitted
        if f.ndim == 2:
            return self.classes_[np.argmax(f, axis=1)]
        return self.classes_[(f > 0).astype(int)]


def ovr_problem(y_idx, k, s, cw):
    """Class k's one-vs-rest labels (+1 for class k, -1 else) and sample weights: ``s`` with
    liblinear's class weight ``cw[k]`` on the positives (C w_k), 1 else."""
    yk = np.where(y_idx == k, 1.0, -1.0)
    if cw is None or np.all(cw == 1.0):
        return yk, s
    return yk, (np.ones(len(yk)) if s is None else s) * np.where(yk > 0, cw[k], 1.0)


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


SOLVERS = ("auto", "prox-newton", "cd")


class LogisticRegression(_Classifier):
    __doc__ = (
        "Binary logistic regression, L2 (dual, liblinear's) or L1 (primal) penalty." + _PARAMS
        + "    penalty : 'l2' or 'l1'\n    C : float > 0\n    intercept_scaling : float > 0\n"
        "        penalty='l2': value of liblinear's constant bias feature.\n"
        "    solver : 'auto', 'prox-newton' or 'cd'\n"
        "        penalty='l1': proximal Newton steps, each a weighted Lasso on the device\n"
        "        (duhl_cl.duhl.prox_newton; 'auto' takes it for data in memory), or coordinate\n"
        "        descent on the loss ('cd'; 'auto' takes it for an on-disk store and for\n"
        "        more than two classes). penalty='l2' is solved in the dual by coordinate\n"
        "        descent whatever this says." + _CLASS_WEIGHT
        + COMMON_DOC
    )  # fmt: skip
    __init__ = make_init(
        [("penalty", "l2")],
        [("C", 1.0), ("intercept_scaling", 1.0), ("class_weight", None), ("solver", "auto")],
    )

    def _make_model(self, X, sample_weight=None):
        C = check_positive("C", self.C)
        # (duhl_cl.dask's subclass has no solver: its partitions run coordinate descent.)
        solver = getattr(self, "solver", "cd")
        if solver not in SOLVERS:
            raise ValueError(
                f"solver must be one of {', '.join(map(repr, SOLVERS))}, got {solver!r}"
            )
        if self.penalty == "l2":
            return models.LogisticL2(C, check_positive("intercept_scaling", self.intercept_scaling))
        if self.penalty == "l1":
            # ||w||_1 + C sum log(...) = C m [ (1/m) sum log(...) + 1/(C m) ||w||_1 ]
            m = X.shape[0] if sample_weight is None else float(np.sum(sample_weight))
            return models.LogisticL1(1.0 / (C * m))
        raise ValueError(f"penalty must be 'l2' or 'l1', got {self.penalty!r}")

    def _solver_for(self, model, store):
        solver = getattr(self, "solver", "cd")
        if solver == "cd" or not isinstance(model, models.LogisticL1):
            return super()._solver_for(model, store)
        if not store.tiered:
            return solve_prox_newton
        if solver == "prox-newton":
            raise ValueError(
                "solver='prox-newton' reads the data once per Newton step's inner fit, which "
                "an on-disk store makes a pass over the disk each: use solver='cd' (or 'auto')"
            )
        return super()._solver_for(model, store)

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes), columns in the order of
        classes_; more than two classes: each class's one-vs-rest sigmoid, normalised to sum
        to 1 (scikit-learn's for liblinear)."""
        f = self.decision_function(X)
        p = expit(f)
        if f.ndim == 1:
            return np.column_stack([1 - p, p])
        return p / p.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X):
        """Logarithms of :meth:`predict_proba`."""
        return np.log(self.predict_proba(X))
