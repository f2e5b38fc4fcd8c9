"""NumPy references of the device kernels, for the tests (celer's utils/testing).

Nothing at run time imports this module. :func:`reference_pass` is exact sequential
coordinate descent in float64 (``cd_pass``), :func:`reference_passes` one launch of several
passes with the kernel's shrinking, :func:`reference_bucketed_pass` the bucketed variant and
its merge, and :func:`device_orders` the NumPy twin of the serial kernel's on-device shuffle.
"""

from __future__ import annotations

import numpy as np

from .models import Hinge, SquaredHinge

__all__ = ["device_orders", "reference_bucketed_pass", "reference_pass", "reference_passes"]


def device_orders(order, n_passes, seed):
    """The visit order of each pass of the "serial" kernel given ``order`` and ``seed``.

    Its NumPy twin: with seed 0 the list as given every pass; otherwise, before each pass, a
    Fisher-Yates shuffle of the (previous pass's) list in place, j = x mod (i + 1) for i
    from the end down to 1, x the next value of a 32-bit xorshift (13, 17, 5) from ``seed``.
    """
    order = np.array(order)
    x = int(seed) & 0xFFFFFFFF
    out = []
    for _ in range(n_passes):
        if seed:
            for i in range(len(order) - 1, 0, -1):
                x ^= (x << 13) & 0xFFFFFFFF
                x ^= x >> 17
                x ^= (x << 5) & 0xFFFFFFFF
                j = x % (i + 1)
                order[i], order[j] = order[j], order[i]
        out.append(order.copy())
    return out


def reference_pass(model, store, alpha, v, order, sigma=1.0):
    """NumPy reference of ``cd_pass``: exact sequential coordinate descent in float64.

    Parameters
    ----------
    model : Model
    store : duhl_cl.store.CoordinateStore
        The coordinates' storage (slots).
    alpha : ndarray of shape (n_slots,)
        Updated in place.
    v : ndarray of shape (dim,) or (dim + 1,) for dual models
        The shared vector, updated in place.
    order : ndarray of int
        The slots to visit, in order.
    sigma : float
        CoCoA's sigma': descent on the local subproblem ``(1/sigma) f(v + sigma X d)``
        (curvature times sigma, v moves by sigma times the step); 1 is plain descent.
    """
    for s in order:
        rows, x = store.coordinate(s)
        x = x.astype(np.float64)
        a = alpha[s]
        if model.primal:
            u = x @ model.gradient(v[rows], rows)
            a_new = model.step(a, u, sigma * store.sqnorm[s])
            d = sigma * (a_new - a)
            v[rows] += d * x
        else:
            yl = store.labels[s]
            mu = yl * (x @ v[rows] + model.bias * v[-1])
            a_new = model.step(a, mu, sigma * store.sqnorm[s])
            d = sigma * (a_new - a) * yl
            v[rows] += d * x
            v[-1] += d * model.bias
        alpha[s] = a_new
    return alpha, v


def reference_passes(model, store, alpha, v, orders):
    """NumPy reference of one launch of ``cd_pass`` doing ``len(orders)`` passes (float64).

    :func:`reference_pass` over each order (``device_orders``), with the kernel's
    shrinking for the hinge and squared-hinge duals: from the second pass on, a sample at a
    bound whose dual gradient G points out of the box by more than the previous pass's
    largest projected-gradient violation is left out of the remaining passes (model.h,
    ``dual_shrinks``; liblinear). ``alpha`` and ``v`` are updated in place; returns the set
    of samples left out.
    """
    shrink = not model.primal and model.code in (Hinge.code, SquaredHinge.code)
    out = set()
    hi, lo = np.inf, -np.inf
    for order in orders:
        pg_max, pg_min = -np.inf, np.inf
        for s in order:
            if s in out:
                continue
            if shrink:
                rows, x = store.coordinate(s)
                mu = store.labels[s] * (x.astype(np.float64) @ v[rows] + model.bias * v[-1])
                a, C = alpha[s], model.C
                G = mu - 1 + (a * 0.5 / C if model.code == SquaredHinge.code else 0.0)
                pg = G
                if a == 0:
                    if G > hi:
                        out.add(s)
                        continue
                    pg = min(G, 0.0)
                elif model.code == Hinge.code and a == C:
                    if G < lo:
                        out.add(s)
                        continue
                    pg = max(G, 0.0)
                pg_max, pg_min = max(pg_max, pg), min(pg_min, pg)
            reference_pass(model, store, alpha, v, [s])
        hi = pg_max if pg_max > 0 else np.inf
        lo = pg_min if pg_min < 0 else -np.inf
    return out


def reference_bucketed_pass(model, store, alpha, v, order, n_buckets):
    """NumPy reference of ``cd_pass_bucketed`` and ``merge_buckets`` (float64).

    ``order`` is cut into ``B = min(n_buckets, len(order))`` consecutive buckets; each runs
    :func:`reference_pass` with ``sigma = B`` on its own copy of ``v``; then
    ``v += sum_b (v_b - v) / B``. ``alpha`` and ``v`` are updated in place.
    """
    n = len(order)
    nb = min(n_buckets, n)
    if nb == 0:
        return alpha, v
    v0 = v.copy()
    acc = np.zeros_like(v0)
    for b in range(nb):
        vb = v0.copy()
        reference_pass(model, store, alpha, vb, order[n * b // nb : n * (b + 1) // nb], sigma=nb)
        acc += vb - v0
    v[:] = v0 + acc / nb
    return alpha, v
