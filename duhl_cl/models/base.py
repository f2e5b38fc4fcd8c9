"""The base of every model: what the round loop, the working set and the kernels read.

Every model is cast as ``min_alpha f(A alpha) + sum_i g_i(alpha_i)`` (docs/architecture.md,
"The maths"); a subclass holds one model's formulas in float64 (duhl_cl.models.primal,
duhl_cl.models.dual), the same formulas the device runs from ``kernels_cl/model.h``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log1p

__all__ = ["Model"]


def _log1pexp(z):
    """log(1 + exp(z)) without overflow."""
    z = np.asarray(z, dtype=np.float64)
    return np.maximum(z, 0) + log1p(np.exp(-np.abs(z)))


class Model:
    """Base: what the solver and the kernels need to know about a model.

    Attributes
    ----------
    code : int
        The ``MODEL`` define of ``kernels_cl/model.h`` (kernels read it only through
        :func:`duhl_cl.models.table.kernel_defines`).
    name : str
        The kernel model's name ("squared", "logistic-l1", "hinge", "squared-hinge",
        "logistic-l2"); its define is ``MODEL_`` + the name in capitals (``MODEL_HINGE``).
    primal : bool
        Coordinates are features (columns of X) when True, samples (rows) when False.
    """

    code = 0
    primal = True
    name = ""
    # A device pass's cost, in units of one squared-loss entry (a multiply-add read and
    # written): (per stored entry, per coordinate). Measured with the "serial" kernel
    # (Intel's CPU runtime, float64): a squared-loss or hinge entry ~2 ns, a coordinate's
    # fixed work (descriptors, step) ~25 ns; the logistic datafit's exp per entry doubles an
    # entry's cost (primal), the dual logistic's Newton solve costs ~100 ns a coordinate.
    pass_cost = (1, 16)

    def setup(self, X, y, fit_intercept: bool, sample_weight=None) -> None:
        """Bind the problem: sizes, labels, sample weights, scale of the stopping rule.

        ``sample_weight`` (n_samples,), >= 0, or None: the loss of sample j is multiplied
        by s_j. Primal models normalise by their sum (``inv_m = 1 / sum s``, scikit-learn's
        Lasso), so that integer weights are repeated rows; dual models give sample j the box
        ``C s_j`` (liblinear's), and take no sample of weight 0 (the estimator drops them).
        """
        self.n_samples, self.n_features = X.shape
        self.y = np.asarray(y, dtype=np.float64)
        self.fit_intercept = fit_intercept
        self.sw = None if sample_weight is None else np.asarray(sample_weight, np.float64)
        self.inv_m = 1.0 / (self.n_samples if self.sw is None else float(self.sw.sum()))

    @property
    def weighted(self) -> bool:
        """Sample weights are on (the kernels' WEIGHTED define)."""
        return getattr(self, "sw", None) is not None

    def feasible(self, alpha):
        """``alpha`` moved into the coefficients' domain (a warm start from another problem:
        the dual models' boxes); the primal models take any coefficients."""
        return alpha

    # -- quantities the device kernels take as arguments
    def kernel_params(self) -> dict:
        return dict(l1=0.0, l2=0.0, bound=0.0, C=0.0, bias=0.0, inv_m=self.inv_m)
