"""The models: objective, coordinate step and per-coordinate duality gap, in float64 NumPy.

Every model is cast as ``min_alpha f(A alpha) + sum_i g_i(alpha_i)`` (docs/architecture.md, "The maths").
Primal models (coordinates = features, A = X): :class:`SquaredL1L2` (Lasso, ElasticNet,
Ridge) and :class:`LogisticL1`. Dual models (coordinates = samples, columns y_j x_j):
:class:`Hinge`, :class:`SquaredHinge`, :class:`LogisticL2`. The same formulas run on the
device in ``kernels_cl/model.h``; these are the host's float64 versions, used for the
certificate, and the reference the kernel tests compare against.

Conventions. Primal: ``v = X b + b0 - y`` (squared loss) or ``v = X b + b0`` (logistic),
``w = grad f(v)`` and ``u = X^T w``. Dual: ``w = sum_j alpha_j y_j x_j`` (with the bias
feature as an extra entry), margins ``mu_j = y_j x_j^T w``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, log1p, xlogy

__all__ = [
    "Model",
    "SquaredL1L2",
    "LogisticL1",
    "Hinge",
    "SquaredHinge",
    "LogisticL2",
]


def _log1pexp(z):
    """log(1 + exp(z)) without overflow."""
    z = np.asarray(z, dtype=np.float64)
    return np.maximum(z, 0) + log1p(np.exp(-np.abs(z)))


class Model:
    """Base: what the solver and the kernels need to know about a model.

    Attributes
    ----------
    code : int
        The ``MODEL`` define of ``kernels_cl/model.h``.
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

    def setup(self, X, y, fit_intercept: bool) -> None:
        """Bind the problem: sizes, labels, scale of the stopping rule."""
        self.n_samples, self.n_features = X.shape
        self.y = np.asarray(y, dtype=np.float64)
        self.fit_intercept = fit_intercept
        self.inv_m = 1.0 / self.n_samples

    # -- quantities the device kernels take as arguments
    def kernel_params(self) -> dict:
        return dict(l1=0.0, l2=0.0, bound=0.0, C=0.0, bias=0.0, inv_m=self.inv_m)


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

    def gaps(self, b, u):
        """Per-coordinate gaps ``b u + g(b) + g*(-u)`` (array in, array out)."""
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
        per-coordinate gaps, and ``P(b) - D(w / s)`` with the dual point ``w = grad f(v)``
        rescaled into the feasible set ``||X^T w||_inf <= l1`` (s = max(1, ||u||_inf / l1)).
        Both bound ``P(b) - P*``; the second is far less sensitive to rounding in u when many
        coordinates sit at the boundary ``|u_i| = l1``, so the smaller is reported.
        """
        total = float(np.sum(self.gaps(b, u)))
        if self.l2 == 0 and self.l1 > 0:
            s = max(1.0, float(np.max(np.abs(u), initial=0.0)) / self.l1)
            rescaled = self.objective(b, v) + self.conjugate(self.gradient(v) / s)
            total = min(total, rescaled)
        return max(total, 0.0)


class SquaredL1L2(_Primal):
    """``(1/2m)||y - Xb - b0||^2 + l1 ||b||_1 + l2/2 ||b||^2`` (Lasso, ElasticNet, Ridge)."""

    code = 1
    name = "squared"

    def __init__(self, l1: float, l2: float):
        self.l1, self.l2 = float(l1), float(l2)

    def setup(self, X, y, fit_intercept):
        super().setup(X, y, fit_intercept)
        yc = self.y - self.y.mean() if fit_intercept else self.y
        f0 = 0.5 * self.inv_m * (yc @ yc)  # f at b = 0 with the optimal intercept
        self.bound = f0 / self.l1 if (self.l2 == 0 and self.l1 > 0) else 0.0
        # scikit-learn's Lasso stops when its gap <= tol * ||y||^2 (y centred with an
        # intercept); our objective is its objective divided by n_samples.
        self.scale = max(2 * f0, np.finfo(np.float64).tiny)
        self.f0 = f0

    def curvature(self, sqnorm):
        return sqnorm * self.inv_m

    def shared_from(self, Xb, b0):
        return Xb + b0 - self.y

    def gradient(self, v, rows=slice(None)):
        """``w = grad f(v)``; ``rows`` selects the samples v holds when v is a part."""
        return v * self.inv_m

    def datafit(self, v):
        return 0.5 * self.inv_m * (v @ v)

    def objective(self, b, v):
        return self.datafit(v) + self.penalty(b)

    def conjugate(self, w):
        """``f*(w)`` for ``f(z) = (1/2m)||z - y||^2``: ``(m/2)||w||^2 + w^T y``."""
        return 0.5 * self.n_samples * (w @ w) + w @ self.y

    def intercept_update(self, v, b0):
        """Optimal intercept for the current coefficients; returns (v, b0) shifted."""
        shift = -v.mean()
        return v + shift, b0 + shift


class LogisticL1(_Primal):
    """``(1/m) sum log(1 + exp(-y_j (x_j b + b0))) + l1 ||b||_1``, labels in {-1, +1}."""

    code = 2
    name = "logistic-l1"
    pass_cost = (2, 16)

    def __init__(self, l1: float):
        self.l1, self.l2 = float(l1), 0.0

    def setup(self, X, y, fit_intercept):
        super().setup(X, y, fit_intercept)
        if fit_intercept:
            p = np.mean(self.y > 0)
            f0 = -(xlogy(p, p) + xlogy(1 - p, 1 - p))
        else:
            f0 = np.log(2.0)
        self.f0 = f0
        self.bound = f0 / self.l1
        self.scale = f0

    def curvature(self, sqnorm):
        return 0.25 * sqnorm * self.inv_m

    def shared_from(self, Xb, b0):
        return Xb + b0

    def gradient(self, v, rows=slice(None)):
        """``w = grad f(v)``; ``rows`` selects the samples v holds when v is a part."""
        y = self.y[rows]
        return -y * self.inv_m * expit(-y * v)

    def datafit(self, v):
        return self.inv_m * _log1pexp(-self.y * v).sum()

    def objective(self, b, v):
        return self.datafit(v) + self.penalty(b)

    def conjugate(self, w):
        """``f*(w) = (1/m) sum p log p + (1-p) log(1-p)``, ``p_j = -y_j m w_j`` in [0, 1]."""
        p = np.clip(-self.y * self.n_samples * w, 0.0, 1.0)
        return self.inv_m * float(np.sum(xlogy(p, p) + xlogy(1 - p, 1 - p)))

    def intercept_update(self, v, b0):
        """Optimal intercept for the current coefficients; returns (v, b0) shifted."""
        # 1-D Newton on the intercept: minimise sum log(1 + exp(-y (v + c))) over c; the
        # objective is convex in c and the Newton steps are damped to stay monotone.
        y = self.y
        c = 0.0
        fc = _log1pexp(-y * v).sum()
        for _ in range(100):
            s = expit(-y * (v + c))
            g = -(y * s).sum()
            h = (s * (1 - s)).sum()
            if h <= 0 or abs(g) <= 1e-14 * len(y):
                break
            step = g / h
            while True:
                fn = _log1pexp(-y * (v + c - step)).sum()
                if fn <= fc or abs(step) < 1e-16:
                    break
                step *= 0.5
            c -= step
            fc = fn
            if abs(step) < 1e-15 * (1 + abs(c)):
                break
        return v + c, b0 + c


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

    def setup(self, X, y, fit_intercept):
        super().setup(X, y, fit_intercept)
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

    def total_gap(self, alpha, mu, w):
        """``P(w) - D(alpha)``, the sum of the per-sample gaps, from the margins mu."""
        return max(float(np.sum(self.gaps(alpha, mu))), 0.0)

    def primal_objective(self, w, mu):
        """``P(w) = 1/2 ||w||^2 + C sum loss(mu_j)``; w includes the bias weight."""
        return 0.5 * (w @ w) + self.C * self.loss(mu).sum()


class Hinge(_Dual):
    """Hinge-loss SVM dual: ``min 1/2||w||^2 - sum alpha, 0 <= alpha <= C`` (liblinear)."""

    code = 3
    name = "hinge"

    def loss(self, mu):
        return np.maximum(1 - mu, 0)

    def primal_at_zero(self):
        return self.C * self.n_samples

    def step(self, a, mu, Q):
        if Q <= 0:
            return self.C if mu < 1 else 0.0
        return min(max(a - (mu - 1) / Q, 0.0), self.C)

    def gaps(self, a, mu):
        return self.C * np.maximum(1 - mu, 0) + a * (mu - 1)


class SquaredHinge(_Dual):
    """Squared-hinge SVM dual: ``min 1/2||w||^2 + sum alpha^2/(4C) - sum alpha, alpha >= 0``."""

    code = 4
    name = "squared_hinge"

    def loss(self, mu):
        return np.maximum(1 - mu, 0) ** 2

    def primal_at_zero(self):
        return self.C * self.n_samples

    def step(self, a, mu, Q):
        D = 0.5 / self.C
        return max(a - (mu - 1 + a * D) / (Q + D), 0.0)

    def gaps(self, a, mu):
        h = np.maximum(1 - mu, 0)
        return self.C * h * h + a * a / (4 * self.C) + a * (mu - 1)


class LogisticL2(_Dual):
    """L2-regularised logistic regression dual (liblinear's dual CD, Yu, Huang & Lin 2011):
    ``min 1/2||w||^2 + sum [a log a + (C-a) log(C-a)] - nC log C, 0 < a < C``."""

    code = 5
    name = "logistic-l2"
    pass_cost = (1, 64)

    def loss(self, mu):
        return _log1pexp(-mu)

    def primal_at_zero(self):
        return self.C * self.n_samples * np.log(2.0)

    def initial_alpha(self):
        # Strictly inside (0, C), as liblinear starts.
        return np.full(self.n_samples, min(1e-3 * self.C, 1e-8))

    def step(self, a, mu, Q, iters=50, eps=1e-12, rtol=2.0**-45):
        C = self.C
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

    def gaps(self, a, mu):
        C = self.C
        return C * _log1pexp(-mu) + a * mu + xlogy(a, a) + xlogy(C - a, C - a) - xlogy(C, C)
