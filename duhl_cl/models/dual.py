"""Dual models: coordinates are samples (rows of X), columns ``y_j x_j`` (liblinear's duals).

:class:`Hinge`, :class:`SquaredHinge`, :class:`LogisticL2`. Conventions: ``w = sum_j alpha_j
y_j x_j`` with the bias feature as an extra entry, margins ``mu_j = y_j x_j^T w``; the gap is
``P(w) - D(alpha)``, the sum of the per-sample gaps.
"""

from __future__ import annotations

import numpy as np
from scipy.special import xlogy

from .base import Model, _log1pexp

__all__ = ["Hinge", "SquaredHinge", "LogisticL2"]


# ------------------------------------------------------------------------------- dual models
class _Dual(Model):
    primal = False

    def __init__(self, C: float, bias: float):
        self.C, self.bias = float(C), float(bias)

    @property
    def n_coords(self) -> int:
        return self.n_samples

    def shared_dim(self) -> int:
        return self.n_features + 1

    def setup(self, X, y, fit_intercept, sample_weight=None):
        super().setup(X, y, fit_intercept, sample_weight)
        if self.sw is not None and not np.all(self.sw > 0):
            raise ValueError("a dual model takes no sample of weight 0 (drop those samples)")
        self.bound = 0.0
        if not fit_intercept:
            self.bias = 0.0
        self.scale = self.primal_at_zero()

    def kernel_params(self) -> dict:
        p = super().kernel_params()
        p.update(C=self.C, bias=self.bias)
        return p

    def initial_alpha(self):
        return np.zeros(self.n_samples)

    def Cs(self, coords=slice(None)):
        """Each sample's box: C, or ``C s_j`` for the samples ``coords`` when weighted."""
        return self.C if self.sw is None else self.C * self.sw[coords]

    def total_C(self) -> float:
        """``sum_j C s_j`` (``C n`` unweighted)."""
        return self.C * (self.n_samples if self.sw is None else float(self.sw.sum()))

    def slot_labels(self, labels, coords):
        """What the device's slot labels hold: y_j, or y_j s_j (weighted; s_j > 0)."""
        return labels if self.sw is None else labels * self.sw[coords]

    def total_gap(self, alpha, mu, w):
        """``P(w) - D(alpha)``, the sum of the per-sample gaps, from the margins mu."""
        return self.gap_from_parts(float(np.sum(self.gaps(alpha, mu))), 0.0, alpha, w)

    def gap_from_parts(self, total, u_max, alpha, w):
        """:meth:`total_gap` from the sum of the per-sample gaps (``u_max`` is not needed)."""
        return max(float(total), 0.0)

    def loss_sum(self, mu, coords=slice(None)):
        """``sum_j C_j loss(mu_j)`` over the samples ``coords``: P(w) less 1/2 ||w||^2."""
        C = self.Cs(coords)
        return float(np.sum(C * self.loss(mu)))

    def primal_objective(self, w, mu):
        """``P(w) = 1/2 ||w||^2 + sum_j C_j loss(mu_j)``; w includes the bias weight."""
        if self.sw is None:
            return 0.5 * (w @ w) + self.C * self.loss(mu).sum()
        return 0.5 * (w @ w) + self.Cs() @ self.loss(mu)


class Hinge(_Dual):
    """Hinge-loss SVM dual: ``min 1/2||w||^2 - sum alpha, 0 <= alpha <= C`` (liblinear)."""

    code = 3
    name = "hinge"

    def loss(self, mu):
        return np.maximum(1 - mu, 0)

    def primal_at_zero(self):
        return self.total_C()

    def feasible(self, alpha):
        return np.clip(alpha, 0.0, self.Cs())

    def step(self, a, mu, Q, C=None):
        C = self.C if C is None else C
        if Q <= 0:
            return C if mu < 1 else 0.0
        return min(max(a - (mu - 1) / Q, 0.0), C)

    def gaps(self, a, mu, coords=slice(None)):
        """Per-sample gaps of the samples ``coords`` (a, mu of those samples)."""
        return self.Cs(coords) * np.maximum(1 - mu, 0) + a * (mu - 1)


class SquaredHinge(_Dual):
    """Squared-hinge SVM dual: ``min 1/2||w||^2 + sum alpha^2/(4C) - sum alpha, alpha >= 0``."""

    code = 4
    name = "squared-hinge"

    def loss(self, mu):
        return np.maximum(1 - mu, 0) ** 2

    def primal_at_zero(self):
        return self.total_C()

    def feasible(self, alpha):
        return np.maximum(alpha, 0.0)

    def step(self, a, mu, Q, C=None):
        D = 0.5 / (self.C if C is None else C)
        return max(a - (mu - 1 + a * D) / (Q + D), 0.0)

    def gaps(self, a, mu, coords=slice(None)):
        """Per-sample gaps of the samples ``coords`` (a, mu of those samples)."""
        C = self.Cs(coords)
        h = np.maximum(1 - mu, 0)
        return C * h * h + a * a / (4 * C) + a * (mu - 1)


class LogisticL2(_Dual):
    """L2-regularised logistic regression dual (liblinear's dual CD, Yu, Huang & Lin 2011):
    ``min 1/2||w||^2 + sum [a log a + (C-a) log(C-a)] - nC log C, 0 < a < C``."""

    code = 5
    name = "logistic-l2"
    pass_cost = (1, 64)
    newton_step = True  # the step is a Newton loop on the device (model.h, INNER_ITERS)

    def loss(self, mu):
        return _log1pexp(-mu)

    def primal_at_zero(self):
        return self.total_C() * np.log(2.0)

    def initial_alpha(self):
        # Strictly inside (0, C), as liblinear starts.
        if self.sw is None:
            return np.full(self.n_samples, min(1e-3 * self.C, 1e-8))
        return np.minimum(1e-3 * self.Cs(), 1e-8)

    def feasible(self, alpha):
        # Strictly inside (0, C_j), kept C_j 2^-50 off the ends as the step keeps z (model.h).
        C = self.Cs()
        zmin = C * 2.0**-50
        return np.clip(alpha, zmin, C - zmin)

    def step(self, a, mu, Q, C=None, iters=50, eps=1e-12, rtol=2.0**-45):
        C = self.C if C is None else C
        zmin = C * 2.0**-50  # z and C - z kept off 0, as the kernel does (model.h)
        zold, sgn = a, 1.0
        if 0.5 * Q * ((C - a) - a) + mu < 0:
            zold, sgn = C - a, -1.0
        zold = max(zold, zmin)
        z = zold
        if C - z < 0.5 * C:
            z *= 0.1
        z = min(max(z, zmin), C - zmin)
        gp = Q * (z - zold) + sgn * mu + np.log(z / (C - z))
        for _ in range(iters):
            if abs(gp) < eps:
                break
            gpp = Q + C / ((C - z) * z)
            tz = z - gp / gpp
            zn = min(max(z * 0.1 if tz <= 0 else tz, zmin), C - zmin)
            settled = abs(zn - z) <= rtol * z  # moved less than z's precision (model.h)
            z = zn
            if settled:
                break
            gp = Q * (z - zold) + sgn * mu + np.log(z / (C - z))
        return z if sgn > 0 else C - z

    def gaps(self, a, mu, coords=slice(None)):
        """Per-sample gaps of the samples ``coords`` (a, mu of those samples)."""
        C = self.Cs(coords)
        return C * _log1pexp(-mu) + a * mu + xlogy(a, a) + xlogy(C - a, C - a) - xlogy(C, C)
