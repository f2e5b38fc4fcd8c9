"""The certificate, and the products it is made of: the shared vector and each coordinate's u.

This is the one home of the formulas that tie coefficients to the shared vector and the
shared vector to the coordinates (docs/architecture.md, "The maths"):

- :func:`shared_vector`: primal ``v = X alpha + b0 (- y)``; dual ``w = [X^T (alpha y);
  bias alpha^T y]``, the bias feature's weight last.
- :func:`dual_point`: what the coordinates are multiplied with: ``grad f(v)`` (primal) or
  ``w`` (dual).
- :func:`coordinate_u`: primal ``u = X^T grad f(v)``; dual margins ``mu = y (X w + bias
  w_b)``; of every coordinate in float64 (threads, duhl_cl.store.products), or of one block
  in the point's own precision (the host refresh, duhl_cl.duhl.refresh).
- :func:`certificate`: the exact float64 gap and objective at given coefficients (the
  shared vector recomputed), valid: ``objective - optimum <= gap``.
- :func:`gaps_against`: every coordinate's gap against a given shared vector (what a
  distributed driver asks of a local solver).

Over a disk tier (duhl_cl.store.tiered) a certificate need not read every coordinate: each
product moves by at most ``||c_i|| ||p - p'||`` between two points, so the last
certificate's products bound the new ones (:class:`ProductBounds`, the reasoning of gap
safe screening, Fercoq, Gramfort and Salmon 2015). A coordinate at 0 whose worst case in
that interval still has a zero gap (a Lasso feature with ``|u_i| + r_i <= l1``, an SVM
sample with margin ``mu_i - r_i >= 1``) has a zero gap; only the others, the non-zero
coordinates and the cached ones are read. The gap, computed with each unread coordinate at
its worst case, stays a valid bound (``objective - optimum <= gap``): the penalties' and
losses' conjugate terms are monotone in ``|u_i|`` (primal) or ``mu_i`` (dual) there, and a
pure l1 model's dual point is scaled by the larger ``max |u_i|``, so it stays feasible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "BOUNDED_SHARE",
    "Certificate",
    "LONG_COORDINATE",
    "ProductBounds",
    "certificate",
    "coordinate_u",
    "coordinate_u_many",
    "dual_point",
    "gaps_against",
    "rescore",
    "shared_vector",
]


@dataclass
class Certificate:
    """A float64 evaluation of the model at given coefficients."""

    gap: float
    objective: float
    alpha: np.ndarray
    intercept: float
    shared: np.ndarray  # v (primal) or w (dual) recomputed exactly from alpha
    u: np.ndarray  # every coordinate's u (primal: X^T grad f(v); dual: margins), float64
    # Coordinates whose u is a worst-case bound, not read (a disk tier; see module docstring).
    n_bounded: int = 0


def shared_vector(model, store, alpha, intercept=0.0) -> np.ndarray:
    """The shared vector at ``alpha`` in float64: v (primal, with ``intercept``) or w (dual).

    Parameters
    ----------
    model : duhl_cl.models.Model (``setup`` done)
    store : duhl_cl.store.Store
    alpha : ndarray (n_coords,)
    intercept : float
        The primal intercept b0 (the dual's bias weight is part of w).

    Returns
    -------
    ndarray (n_samples,) for primal models, (n_features + 1,) for dual models.
    """
    if model.primal:
        return model.shared_from(store.combine(alpha), intercept)
    y = store.labels
    w = np.empty(model.shared_dim())
    w[:-1] = store.combine(alpha * y)
    w[-1] = model.bias * (alpha @ y)
    return w


def dual_point(model, shared) -> np.ndarray:
    """What u is the product with: ``grad f(v)`` (primal) or ``w`` itself (dual)."""
    return model.gradient(shared) if model.primal else shared


def coordinate_u(model, store, point, block=None) -> np.ndarray:
    """u of the coordinates against ``point`` (:func:`dual_point` of a shared vector).

    Parameters
    ----------
    point : ndarray
        ``grad f(v)`` (n_samples,) for primal models, ``w`` (n_features + 1,) for dual.
    block : (int, int), slice or index array, optional
        Only these coordinates, computed in ``point``'s precision (the refresh ranks with
        it); None: every coordinate, in float64 (the certificate: the host's threads, or a
        disk tier's streaming pass).

    Returns
    -------
    ndarray (float64): primal ``X^T point``; dual margins ``y (X w + bias w_b)``.
    """
    sel = None if block is None else block if not isinstance(block, tuple) else slice(*block)
    if model.primal:
        return store.project(point, sel)
    labels = store.labels if sel is None else store.labels[sel]
    return labels * (store.project(point[:-1], sel) + model.bias * float(point[-1]))


def coordinate_u_many(heads, points, block) -> list:
    """u of the coordinates ``block = (a, b)`` for several problems over the same data: one
    (model, store) and point each (one-vs-rest classes, whose stores differ only in their
    labels); the block is read once for all of them (a product with the points' matrix).

    Returns
    -------
    list of ndarray (b - a,), float64, one per problem.
    """
    if len(heads) == 1:
        (model, store), point = heads[0], points[0]
        return [coordinate_u(model, store, point, block)]
    if not heads:
        return []
    model, store = heads[0]
    sel = block if not isinstance(block, tuple) else slice(*block)
    P = np.column_stack(points)
    if model.primal:
        U = store.project(P, sel)
        return [U[:, i] for i in range(len(heads))]
    XW = store.project(P[:-1], sel)
    return [
        st.labels[sel] * (XW[:, i] + m.bias * float(P[-1, i])) for i, (m, st) in enumerate(heads)
    ]


def rescore(model, cert) -> Certificate:
    """``cert`` under the model's current penalty: the shared vector, each coordinate's u and
    (primal) the optimal intercept do not depend on it, so only the gap and the objective are
    evaluated again, without a pass over the data (the next point of a path)."""
    a, u, shared = cert.alpha, cert.u, cert.shared
    if model.primal:
        return Certificate(model.total_gap(a, u, shared), float(model.objective(a, shared)),
                           a, cert.intercept, shared, u)  # fmt: skip
    return Certificate(model.total_gap(a, u, shared), float(model.primal_objective(shared, u)),
                       a, cert.intercept, shared, u)  # fmt: skip


def gaps_against(model, store, alpha, shared):
    """Every coordinate's u and gap at ``alpha`` against a given shared vector.

    Returns
    -------
    u, gaps : ndarray (n_coords,), float64
    """
    u = coordinate_u(model, store, dual_point(model, np.asarray(shared, dtype=np.float64)))
    return u, model.gaps(np.asarray(alpha, dtype=np.float64), u)


# A certificate over a disk tier reads the coordinates its bounds leave undecided unless that
# is more than this share of the store's bytes on disk: it streams the whole store then
# (sequential reads, every bound made exact again). Short coordinates read one by one cost
# far more a byte than a stream: a 16 GiB SVM's certificates that read 10-14% of its 4 KiB
# rows that way took 38-54 s, against 15-20 s for a stream. Not where the coordinates
# average at least LONG_COORDINATE bytes (a column store of many rows): each is then one
# long read whatever the order, and reading the undecided ones only is never more (a 16 GiB
# Lasso's columns are 16 MiB each).
BOUNDED_SHARE = 0.05
LONG_COORDINATE = 1 << 20


# Host bytes the reference points of the bounds may take (a primal point is n_samples long):
# at most 8 points, at least 1. More points keep each bound at its own distance instead of
# the sum of the steps since (an SVM's rows alternated between bounded and streamed
# certificates with one point, measured on the tests' problem).
POINTS_BYTES = 64 << 20


@dataclass
class ProductBounds:
    """Every coordinate's product with a point of an earlier certificate over a disk tier:
    ``|(c_i, bias) . points[ref_i] - q_i| <= slack_i`` (slack 0 where read exactly), so that
    at a new point p, ``|(c_i, bias) . p - q_i| <= slack_i + ||(c_i, bias)|| ||p -
    points[ref_i]||``.

    q is the raw product, before the labels: ``X^T p`` (primal) or ``X w + bias w_b``
    (dual), so one record serves any labels over the same data."""

    points: list
    q: np.ndarray
    ref: np.ndarray
    slack: np.ndarray
    bias: float

    @classmethod
    def exact(cls, point, q, bias):
        n = len(q)
        return cls([point], q, np.zeros(n, dtype=np.int8), np.zeros(n), bias)

    def radius(self, point, norms):
        dist = np.array([np.linalg.norm(point - p) for p in self.points])
        return self.slack + norms * dist[self.ref]

    def moved_to(self, point, read, q_read, norms):
        """The record once coordinates ``read`` are exact at ``point`` (a new reference);
        the points no coordinate refers to are dropped, and beyond the points' bytes the
        oldest one's coordinates move onto ``point`` with their distance added to slack."""
        q, ref, slack = self.q.copy(), self.ref.copy(), self.slack.copy()
        points = [*self.points, point]
        new = len(points) - 1
        q[read], ref[read], slack[read] = q_read, new, 0.0
        most = int(np.clip(POINTS_BYTES // max(8 * len(point), 1), 1, 8))
        while True:
            used = np.zeros(len(points), dtype=bool)
            used[ref] = True
            used[new] = True
            keep = np.flatnonzero(used)
            if len(keep) <= most:
                break
            old = int(keep[0])
            moving = ref == old
            slack[moving] += norms[moving] * np.linalg.norm(point - points[old])
            ref[moving] = new
        renumber = np.full(len(points), -1, dtype=np.int8)
        renumber[keep] = np.arange(len(keep))
        return ProductBounds([points[k] for k in keep], q, renumber[ref], slack, self.bias)


def _raw_products(model, store, point, sel=None):
    """``(c_i, bias) . point`` in float64 of coordinates ``sel`` (None: every one, streamed)."""
    point = np.asarray(point, dtype=np.float64)
    if model.primal:
        return store.project(point, sel)
    return store.project(point[:-1], sel) + model.bias * float(point[-1])


def _worst(model, store, q, radius):
    """u at each coordinate's worst case within its bound: primal ``|u|`` largest (the sign
    of q kept), dual the smallest margin."""
    if model.primal:
        return np.sign(q) * (np.abs(q) + radius)
    y = store.labels
    return y * q - np.abs(y) * radius


def certified_u(model, store, point, alpha):
    """Every coordinate's u at ``point`` for a certificate at ``alpha``, and how many of them
    are worst-case bounds (see module docstring): every u exact, by a pass over the data,
    except over a disk tier that holds :class:`ProductBounds` from an earlier certificate.

    Returns
    -------
    u : ndarray (n_coords,), float64
    n_bounded : int
    """
    if not store.tiered:
        return coordinate_u(model, store, point), 0
    point = np.array(point, dtype=np.float64)
    bias = 0.0 if model.primal else model.bias
    prev = store.product_bounds
    if prev is not None and prev.bias == bias:
        norms = store.coordinate_norms(bias)
        radius = prev.radius(point, norms)
        with np.errstate(invalid="ignore", over="ignore"):
            open_gap = ~(model.gaps(alpha, _worst(model, store, prev.q, radius)) <= 0)
        read = np.flatnonzero((alpha != 0) | open_gap | store.cached_mask)
        long = store.nbytes >= LONG_COORDINATE * store.n_coords
        if long or store.disk_bytes(read) <= BOUNDED_SHARE * store.nbytes:
            bounds = prev.moved_to(point, read, _raw_products(model, store, point, read), norms)
            store.product_bounds = bounds
            radius[read] = 0.0
            return _worst(model, store, bounds.q, radius), store.n_coords - len(read)
    q = _raw_products(model, store, point)
    store.product_bounds = ProductBounds.exact(point, q, bias)
    return _worst(model, store, q, 0.0), 0


def certificate(model, store, alpha, intercept=0.0) -> Certificate:
    """Exact float64 gap and objective at ``alpha`` (the shared vector is recomputed).

    For primal models with an intercept, the intercept is first set to its optimum for
    ``alpha`` (which only lowers the objective), so that the dual point is feasible; the
    ``intercept`` given is then not used. The certificate holds its own copy of ``alpha``
    (a solver's coefficients change in place after it).
    """
    alpha = np.array(alpha, dtype=np.float64)
    if model.primal:
        v, b0 = shared_vector(model, store, alpha, 0.0), 0.0
        if model.fit_intercept:
            v, b0 = model.intercept_update(v, 0.0)
        u, n_bounded = certified_u(model, store, dual_point(model, v), alpha)
        gap = model.total_gap(alpha, u, v)
        return Certificate(gap, float(model.objective(alpha, v)), alpha, b0, v, u, n_bounded)
    w = shared_vector(model, store, alpha)
    mu, n_bounded = certified_u(model, store, w, alpha)
    gap = model.total_gap(alpha, mu, w)
    # (An unread sample's loss at its worst margin is 0, so the primal objective is exact.)
    return Certificate(gap, float(model.primal_objective(w, mu)), alpha, model.bias * w[-1], w, mu,
                       n_bounded)  # fmt: skip
