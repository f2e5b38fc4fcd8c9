"""Primal models: coordinates are features (columns of X), ``A = X``.

:class:`SquaredL1L2` (Lasso, ElasticNet, Ridge) and :class:`LogisticL1`. Conventions:
``v = X b + b0 - y`` (squared loss) or ``v = X b + b0`` (logistic), ``w = grad f(v)`` and
``u = X^T w``; the per-coordinate gap is ``b_i u_i + g(b_i) + g*(-u_i)``, with the l1 penalty
Lipschitzed (``|b| <= B``) where there is no l2 term.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, xlogy

from .base import Model, _log1pexp

__all__ = ["SquaredL1L2", "LogisticL1"]


# ----------------------------------------------------------------------------- primal models
class _Primal(Model):
    primal = True
    l1 = 0.0
    l2 = 0.0

    @property
    def n_coords(self) -> int:
        return self.n_features

    def shared_dim(self) -> int:
        return self.n_samples

    def initial_alpha(self):
        return np.zeros(self.n_features)

    def kernel_params(self) -> dict:
        p = super().kernel_params()
        p.update(l1=self.l1, l2=self.l2, bound=self.bound)
        return p

    def set_penalty(self, l1: float, l2: float) -> None:
        """A new penalty on the same data (a regularization path): l1, l2 and the
        Lipschitzing bound B = f(0) / l1 they set."""
        self.l1, self.l2 = float(l1), float(l2)
        self.bound = self.f0 / self.l1 if (self.l2 == 0 and self.l1 > 0) else 0.0

    def penalty(self, b):
        return self.l1 * np.abs(b).sum() + 0.5 * self.l2 * (b @ b)

    def step(self, b, u, sqnorm):
        """Reference coordinate step (scalar): ``S(q b - u, l1) / (q + l2)``."""
        q = self.curvature(sqnorm)
        den = q + self.l2
        if den <= 0:
            return 0.0
        z = q * b - u
        return np.sign(z) * max(abs(z) - self.l1, 0.0) / den

    def gaps(self, b, u, coords=None):
        """Per-coordinate gaps ``b u + g(b) + g*(-u)`` (array in, array out; ``coords``, the
        coordinates they are of, matters to the dual models only)."""
        t = np.maximum(np.abs(u) - self.l1, 0.0)
        g = b * u + self.l1 * np.abs(b)
        if self.l2 > 0:
            return g + 0.5 * self.l2 * b * b + t * t / (2 * self.l2)
        # Lipschitzed l1: the gap is only finite inside the box |b| <= B.
        g = g + self.bound * t
        return np.where(np.abs(b) <= self.bound, g, np.inf)

    def total_gap(self, b, u, v):
        """Total duality gap at b, given ``u = X^T grad f(v)``.

        With a pure l1 penalty two valid certificates exist: the sum of the Lipschitzed
        per-coordinate gaps, and ``P(b) - D(t w)`` with the dual point ``w = grad f(v)``
        scaled into the feasible set ``||X^T t w||_inf <= l1``. Both bound ``P(b) - P*``; the
        second is not amplified by the Lipschitz bound B, so it is far less sensitive to
        rounding in u when many coordinates sit at the boundary ``|u_i| = l1``; the smaller
        is reported. The scale t is the best feasible one, ``argmax D(t w)`` over
        ``0 <= t <= l1 / ||u||_inf`` (:meth:`best_scale`), not the plain ``min(1, l1 /
        ||u||_inf)`` of scikit-learn and celer, whose dual value it never falls below.
        """
        return self.gap_from_parts(
            float(np.sum(self.gaps(b, u))), float(np.max(np.abs(u), initial=0.0)), b, v
        )

    def gap_from_parts(self, total, u_max, b, v):
        """:meth:`total_gap` from the sum of the per-coordinate gaps and ``max |u|`` (what
        the partitions of a distributed fit send, duhl_cl.dask.cocoa), b and v."""
        if self.l2 == 0 and self.l1 > 0:
            w = self.gradient(v)
            t_max = self.l1 / u_max if u_max > 0 else np.inf
            t = self.best_scale(w, t_max)
            plain = min(1.0, t_max)
            primal = self.objective(b, v)
            rescaled = primal + min(self.conjugate(w * t), self.conjugate(w * plain))
            total = min(total, rescaled)
        return max(total, 0.0)


class SquaredL1L2(_Primal):
    """``(1/2m)||y - Xb - b0||^2 + l1 ||b||_1 + l2/2 ||b||^2`` (Lasso, ElasticNet, Ridge)."""

    code = 1
    name = "squared"

    def __init__(self, l1: float, l2: float):
        self.l1, self.l2 = float(l1), float(l2)

    def setup(self, X, y, fit_intercept, sample_weight=None):
        super().setup(X, y, fit_intercept, sample_weight)
        s = self.sw
        if s is None:
            yc = self.y - self.y.mean() if fit_intercept else self.y
            f0 = 0.5 * self.inv_m * (yc @ yc)  # f at b = 0 with the optimal intercept
        else:
            yc = self.y - (s @ self.y) * self.inv_m if fit_intercept else self.y
            f0 = 0.5 * self.inv_m * (s @ (yc * yc))
        self.f0 = f0
        self.set_penalty(self.l1, self.l2)  # and the Lipschitzing bound B = f0 / l1
        # scikit-learn's Lasso stops when its gap <= tol * ||y||^2 (y centred with an
        # intercept); our objective is its objective divided by n_samples.
        self.scale = max(2 * f0, np.finfo(np.float64).tiny)

    def curvature(self, sqnorm):
        return sqnorm * self.inv_m

    def shared_from(self, Xb, b0):
        return Xb + b0 - self.y

    def gradient(self, v, rows=slice(None)):
        """``w = grad f(v)``; ``rows`` selects the samples v holds when v is a part."""
        if self.sw is None:
            return v * self.inv_m
        return v * self.inv_m * self.sw[rows]

    def datafit(self, v):
        if self.sw is None:
            return 0.5 * self.inv_m * (v @ v)
        return 0.5 * self.inv_m * (self.sw @ (v * v))

    def device_y(self):
        """What the device's row vector holds: y (not read), or the weights s."""
        return self.y if self.sw is None else self.sw

    def objective(self, b, v):
        return self.datafit(v) + self.penalty(b)

    def _wq(self, w):
        """``sum_j w_j^2 / s_j / inv_m``: ``m ||w||^2``, or weighted (w_j = 0 where s_j = 0)."""
        if self.sw is None:
            return self.n_samples * float(w @ w)
        pos = self.sw > 0
        return float(np.sum(w[pos] ** 2 / self.sw[pos])) / self.inv_m

    def conjugate(self, w):
        """``f*(w)`` for ``f(z) = (inv_m/2) sum s_j (z_j - y_j)^2``: ``sum w_j^2 / (2 inv_m
        s_j) + w^T y`` (``(m/2)||w||^2 + w^T y`` unweighted)."""
        return 0.5 * self._wq(w) + w @ self.y

    def best_scale(self, w, t_max):
        """``argmin_t f*(t w)`` over ``0 <= t <= t_max``: ``-w^T y / (m ||w||^2)`` (weighted
        alike), clipped."""
        ww = self._wq(w)
        if ww <= 0:
            return min(1.0, t_max)
        return float(np.clip(-float(w @ self.y) / ww, 0.0, t_max))

    def intercept_update(self, v, b0):
        """Optimal intercept for the current coefficients; returns (v, b0) shifted."""
        shift = -v.mean() if self.sw is None else -(self.sw @ v) * self.inv_m
        return v + shift, b0 + shift


class LogisticL1(_Primal):
    """``(1/m) sum log(1 + exp(-y_j (x_j b + b0))) + l1 ||b||_1``, labels in {-1, +1}."""

    code = 2
    name = "logistic-l1"
    pass_cost = (2, 16)

    def __init__(self, l1: float):
        self.l1, self.l2 = float(l1), 0.0

    def setup(self, X, y, fit_intercept, sample_weight=None):
        super().setup(X, y, fit_intercept, sample_weight)
        if fit_intercept:
            pos = self.y > 0
            p = np.mean(pos) if self.sw is None else (self.sw @ pos) * self.inv_m
            f0 = -(xlogy(p, p) + xlogy(1 - p, 1 - p))
        else:
            f0 = np.log(2.0)
        self.f0 = f0
        self.set_penalty(self.l1, 0.0)
        self.scale = f0

    def curvature(self, sqnorm):
        return 0.25 * sqnorm * self.inv_m

    def shared_from(self, Xb, b0):
        return Xb + b0

    def gradient(self, v, rows=slice(None)):
        """``w = grad f(v)``; ``rows`` selects the samples v holds when v is a part."""
        y = self.y[rows]
        if self.sw is None:
            return -y * self.inv_m * expit(-y * v)
        return -y * self.inv_m * self.sw[rows] * expit(-y * v)

    def datafit(self, v):
        if self.sw is None:
            return self.inv_m * _log1pexp(-self.y * v).sum()
        return self.inv_m * (self.sw @ _log1pexp(-self.y * v))

    def device_y(self):
        """What the device's row vector holds: y, or y s (the weight's sign is y's)."""
        return self.y if self.sw is None else self.y * self.sw

    def _p(self, w):
        """``p_j = -y_j w_j / (inv_m s_j)`` in [0, 1] where the conjugate is finite."""
        if self.sw is None:
            return -self.y * self.n_samples * w
        with np.errstate(divide="ignore", invalid="ignore"):
            p = -self.y * w / (self.inv_m * self.sw)
        return np.where(self.sw > 0, p, 0.0)

    def objective(self, b, v):
        return self.datafit(v) + self.penalty(b)

    def conjugate(self, w):
        """``f*(w) = inv_m sum s_j [p log p + (1-p) log(1-p)]``, ``p_j = -y_j w_j / (inv_m
        s_j)`` in [0, 1] (s = 1, ``p_j = -y_j m w_j`` unweighted)."""
        p = np.clip(self._p(w), 0.0, 1.0)
        terms = xlogy(p, p) + xlogy(1 - p, 1 - p)
        return self.inv_m * float(np.sum(terms) if self.sw is None else self.sw @ terms)

    def best_scale(self, w, t_max, iters=60):
        """``argmin_t f*(t w)`` over ``0 <= t <= t_max`` (and ``t p_j <= 1``), by bisection on
        the derivative ``(1/m) sum p_j log(t p_j / (1 - t p_j))``, increasing in t."""
        p = np.clip(self._p(w), 0.0, None)
        p_max = float(np.max(p, initial=0.0))
        if p_max <= 0:
            return min(1.0, t_max)
        hi = min(t_max, 1.0 / p_max)
        nz = p > 0
        pn = p[nz]
        sn = 1.0 if self.sw is None else self.sw[nz]

        def slope(t):
            tp = np.minimum(t * pn, 1.0 - 1e-16)
            return float(np.sum(sn * pn * (np.log(tp) - np.log1p(-tp))))

        if slope(hi) <= 0:
            return hi
        lo = 0.0
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            if slope(mid) > 0:
                hi = mid
            else:
                lo = mid
        return 0.5 * (lo + hi)

    def intercept_update(self, v, b0):
        """Optimal intercept for the current coefficients; returns (v, b0) shifted."""
        # 1-D Newton on the intercept: minimise sum log(1 + exp(-y (v + c))) over c; the
        # objective is convex in c and the Newton steps are damped to stay monotone.
        # Weighted: each sample's terms times s_j (1.0 multiplies exactly when unweighted).
        y, wt = self.y, 1.0 if self.sw is None else self.sw
        c = 0.0
        fc = (wt * _log1pexp(-y * v)).sum()
        for _ in range(100):
            s = expit(-y * (v + c))
            g = -(wt * y * s).sum()
            h = (wt * s * (1 - s)).sum()
            if h <= 0 or abs(g) <= 1e-14 * len(y):
                break
            step = g / h
            while True:
                fn = (wt * _log1pexp(-y * (v + c - step))).sum()
                if fn <= fc or abs(step) < 1e-16:
                    break
                step *= 0.5
            c -= step
            fc = fn
            if abs(step) < 1e-15 * (1 + abs(c)):
                break
        return v + c, b0 + c
