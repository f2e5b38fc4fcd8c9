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
certificate's products bound the new ones (:class:`duhl_cl.duhl.bounds.ProductBounds`, the
reasoning of gap safe screening, Fercoq, Gramfort and Salmon 2015). A coordinate at 0 whose
worst case in that interval still has a zero gap (a Lasso feature with ``|u_i| + r_i <=
l1``, an SVM sample with margin ``mu_i - r_i >= 1``) has a zero gap; only the others, the
non-zero coordinates and the cached ones are read. The gap, computed with each unread
coordinate at its worst case, stays a valid bound (``objective - optimum <= gap``): the
penalties' and losses' conjugate terms are monotone in ``|u_i|`` (primal) or ``mu_i`` (dual)
there, and a pure l1 model's dual point is scaled by the larger ``max |u_i|``, so it stays
feasible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bounds import bounded_u

__all__ = [
    "Certificate",
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


def certified_u(model, store, point, alpha):
    """Every coordinate's u at ``point`` for a certificate at ``alpha``, and how many of them
    are worst-case bounds (see module docstring): every u exact, by a pass over the data,
    except over a disk tier, whose earlier certificates' products bound the coordinates
    (:func:`duhl_cl.duhl.bounds.bounded_u`).

    Returns
    -------
    u : ndarray (n_coords,), float64
    n_bounded : int
    """
    if not store.tiered:
        return coordinate_u(model, store, point), 0
    return bounded_u(model, store, point, alpha)


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
