"""A disk tier's certificate that reads only what it must: the product bounds.

Each product ``(c_i, bias) . p`` moves by at most ``||(c_i, bias)|| ||p - p'||`` between two
points, so an earlier certificate's products bound the new ones (:class:`ProductBounds`,
the reasoning of gap safe screening, Fercoq, Gramfort and Salmon 2015). A coordinate at 0
whose worst case in that interval still has a zero gap (a Lasso feature with ``|u_i| + r_i
<= l1``, an SVM sample with margin ``mu_i - r_i >= 1``) has a zero gap and is not read;
the gap computed with each unread coordinate at its worst case stays a valid bound
(duhl_cl.duhl.certificate's module docstring says why). :func:`bounded_u` is what
:func:`duhl_cl.duhl.certificate.certified_u` calls over a disk tier
(duhl_cl.store.tiered, which keeps the record between certificates);
:func:`predicted_cert_bytes` and :func:`last_read_bytes` tell the rounds (duhl_cl.duhl.rounds)
what the next one would read and what the last one did, so that they can time it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "BOUNDED_SHARE",
    "LONG_COORDINATE",
    "POINTS_BYTES",
    "ProductBounds",
    "bounded_u",
    "cache_key",
    "last_read_bytes",
    "predicted_cert_bytes",
]


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
    # Bytes the certificate that made this record read, where not those of its exact
    # coordinates (a zero point's products are known without a read: 0).
    read_bytes: int | None = None

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
        # (At q = 0 either sign: a coordinate at 0's gap depends on |u| only.)
        return np.where(q >= 0, 1.0, -1.0) * (np.abs(q) + radius)
    y = store.labels
    return y * q - np.abs(y) * radius


def _undecided(model, store, prev, point, alpha, norms):
    """The coordinates a certificate at ``point`` must read (non-zero, cached, or whose
    bound leaves the gap open), and every coordinate's bound radius there."""
    radius = prev.radius(point, norms)
    with np.errstate(invalid="ignore", over="ignore"):
        open_gap = ~(model.gaps(alpha, _worst(model, store, prev.q, radius)) <= 0)
    return np.flatnonzero((alpha != 0) | open_gap | store.cached_mask), radius


def _bounded_read_ok(store, read) -> bool:
    """Whether reading only ``read`` beats a stream of the store (BOUNDED_SHARE)."""
    long = store.nbytes >= LONG_COORDINATE * store.n_coords
    return long or store.disk_bytes(read) <= BOUNDED_SHARE * store.nbytes


# Halvings of the search for the distance at which a closed gap opens (cache_key): enough to
# order the coordinates to about 0.1% of that distance.
OPENING_STEPS = 16
# Coordinates searched at a time (cache_key).
KEY_PIECE = 1 << 16


def cache_key(model, store, alpha, u, z, at=None):
    """What a disk tier's host cache ranks coordinates by after a certificate (higher is
    held first, duhl_cl.store.host.HostCache.rank): the gap where it is positive; 0 for a
    non-zero coordinate with a closed gap (every certificate reads it); below 0, for a
    coordinate at 0 with a closed gap, minus the distance ``||p - p'||`` the point may move
    before its bound opens the gap (:func:`bounded_u` reads it from there on). So the cache
    holds, after the active coordinates, those the next bounded certificate is likeliest to
    read: an SVM's rows nearest the margin, a Lasso's columns nearest ``|u| = l1``. Ranked
    by the gap alone, those ties fell in storage order, and a 16 GiB SVM's certificates
    all streamed the store: the undecided rows missed the cache (322 s and 183 GiB read to
    a relative gap of 1e-4; 221 s and 101 GiB with this key).

    Parameters
    ----------
    alpha, u, z : ndarray (n,) -- coefficients, the certificate's u (worst cases where
        bounded) and its per-coordinate gaps, of coordinates ``at``
    at : slice, optional -- which coordinates (default: all of them)

    Returns
    -------
    ndarray (n,), float64
    """
    at = slice(None) if at is None else at
    key = np.where(np.isnan(z), np.inf, z).astype(np.float64)
    closed = np.flatnonzero((key <= 0) & (alpha == 0))
    if not len(closed):
        return key
    key[closed] = 0.0
    bias = 0.0 if model.primal else model.bias
    # (Absolute indices: the dual models' C_j are per sample.)
    where = closed + (at.start or 0) if isinstance(at, slice) else np.asarray(at)[closed]
    norms = np.maximum(store.coordinate_norms(bias)[where], np.finfo(np.float64).tiny)
    uc = np.asarray(u, dtype=np.float64)[closed]
    # (A dual model's margin moves by |y_i| times the product's bound.)
    scale = norms if model.primal else norms * np.maximum(np.abs(store.labels[where]), 1e-300)
    # The search's range: well past the distance any coordinate's u needs to open its gap.
    hi = 4.0 * (np.abs(uc) + float(np.max(np.abs(u[np.isfinite(u)]), initial=1.0))) / scale
    a = np.asarray(alpha, dtype=np.float64)[closed]
    # In pieces: the search's temporaries stay small beside a fit's O(n) vectors.
    for s in range(0, len(closed), KEY_PIECE):
        e = s + KEY_PIECE
        key[closed[s:e]] = -_opening(model, uc[s:e], a[s:e], scale[s:e], hi[s:e], where[s:e])
    return key


def _opening(model, u, a, scale, hi, where):
    """The distance at which each closed gap (a coordinate at 0) opens, searched by
    halvings of its logarithm in ``[1e-12 hi, hi]``, ``hi`` first raised by up to 1e6
    where the gap does not open there yet (a block's own ``hi``, duhl_cl.store.host.offer,
    may fall short of a threshold its |u| are far below)."""

    def opens(dist):
        # (A coordinate at 0's gap depends on |u| only: the primal worst case is |u| + r.)
        worst = np.abs(u) + scale * dist if model.primal else u - scale * dist
        with np.errstate(invalid="ignore", over="ignore"):
            return ~(model.gaps(a, worst, where) <= 0)

    for _ in range(2):
        hi = np.where(opens(hi), hi, hi * 1e3)
    lo = hi * 1e-12
    for _ in range(OPENING_STEPS):
        mid = np.sqrt(lo * hi)
        o = opens(mid)
        hi = np.where(o, mid, hi)
        lo = np.where(o, lo, mid)
    return np.sqrt(lo * hi)


def _streamed_products(model, store, point, alpha):
    """:func:`_raw_products` of every coordinate, streamed; where the store fills its host
    cache from streams (``fills_from_streams``, set by the single-problem local solver),
    each block's rows are offered to the cache with their fresh :func:`cache_key` as the
    stream has them (duhl_cl.store.host.HostCache.offer)."""
    cache = getattr(store, "cache", None)
    if not getattr(store, "fills_from_streams", False) or not cache.begin_fill():
        return _raw_products(model, store, point)
    point = np.asarray(point, dtype=np.float64)
    alpha = np.asarray(alpha, dtype=np.float64)
    extra = 0.0 if model.primal else model.bias * float(point[-1])

    def offer(a, b, q, B):
        u = q if model.primal else store.labels[a:b] * (q + extra)
        z = model.gaps(alpha[a:b], u, slice(a, b))
        cache.offer(a, b, cache_key(model, store, alpha[a:b], u, z, slice(a, b)), B)

    try:
        q = store.project(point if model.primal else point[:-1], None, on_block=offer)
    finally:
        cache.end_fill()
    return q if model.primal else q + extra


def bounded_u(model, store, point, alpha):
    """:func:`duhl_cl.duhl.certificate.certified_u` over a disk tier: every coordinate's u at
    ``point``, the coordinates the store's :class:`ProductBounds` decide at their worst case
    (not read), unless the undecided ones are too many to read one by one (then a stream of
    every coordinate, the bounds made exact again).

    Returns
    -------
    u : ndarray (n_coords,), float64
    n_bounded : int
    """
    point = np.array(point, dtype=np.float64)
    bias = 0.0 if model.primal else model.bias
    if not np.any(point):
        # Every product with a zero point is 0, read or not: a dual model's start (w = 0).
        # (A 16 GiB SVM's start streamed the store for them: 16 GiB, 12 s.)
        q = np.zeros(store.n_coords)
        store.product_bounds = ProductBounds.exact(point, q, bias)
        store.product_bounds.read_bytes = 0
        return _worst(model, store, q, 0.0), 0
    prev = store.product_bounds
    if prev is not None and prev.bias == bias:
        norms = store.coordinate_norms(bias)
        read, radius = _undecided(model, store, prev, point, alpha, norms)
        if _bounded_read_ok(store, read):
            bounds = prev.moved_to(point, read, _raw_products(model, store, point, read), norms)
            store.product_bounds = bounds
            radius[read] = 0.0
            return _worst(model, store, bounds.q, radius), store.n_coords - len(read)
    q = _streamed_products(model, store, point, alpha)
    store.product_bounds = ProductBounds.exact(point, q, bias)
    return _worst(model, store, q, 0.0), 0


def predicted_cert_bytes(model, store, point, alpha) -> int:
    """The bytes of coordinates that :func:`bounded_u` would read at about ``point`` (the
    device's own dual point between certificates, not the exact one), from the host cache
    or from disk: what the bounds leave undecided there, or the whole store where it would
    stream. Nothing is read."""
    bias = 0.0 if model.primal else model.bias
    prev = store.product_bounds
    if prev is None or prev.bias != bias:
        return store.nbytes
    point = np.asarray(point, dtype=np.float64)
    read, _ = _undecided(model, store, prev, point, alpha, store.coordinate_norms(bias))
    return store.coordinate_bytes(read) if _bounded_read_ok(store, read) else store.nbytes


def last_read_bytes(store) -> int:
    """The bytes of coordinates the last certificate read (those exact at its point)."""
    b = store.product_bounds
    if b is None:
        return 0
    if b.read_bytes is not None:
        return b.read_bytes
    exact = (b.ref == len(b.points) - 1) & (b.slack == 0)
    return store.nbytes if exact.all() else store.coordinate_bytes(np.flatnonzero(exact))
