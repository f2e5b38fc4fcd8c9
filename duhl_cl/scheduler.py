"""Which coordinates are resident on the device each round: DuHL and its baselines.

Every policy returns, for a round, an ordered list of coordinates; the working set keeps as
many of them, in that order, as fit its slots and pool. Policies:

- ``"duhl"``: the coordinates with the largest gap memory z (never evaluated: +inf, first),
  Duenner, Parnell & Jaggi (NIPS 2017);
- ``"sequential"``: the data in fixed blocks that fit, streamed round-robin (the usual
  out-of-core approach); every coordinate is visited once per cycle;
- ``"random"``: a uniformly random set each round (seeded);
- ``"full"``: everything, refused with a clear message when it does not fit.
"""

from __future__ import annotations

import numpy as np

from .ledger import MemoryBudgetError
from .profiles import format_size

__all__ = ["POLICIES", "make_policy"]

POLICIES = ("duhl", "sequential", "random", "full")


class _Policy:
    name = ""
    ranks_by_gap = False  # True: the policy reads the gap memory z

    def __init__(self, n_coords, fits, rng):
        self.n, self.fits, self.rng = n_coords, fits, rng

    def select(self, z, round_index, alpha=None):
        raise NotImplementedError


class Duhl(_Policy):
    """Largest gap memory first, zero gaps left out; ties broken by a fixed shuffle.

    With ``groups`` (a dual classifier's labels), the two classes take turns: the
    working set interleaves each class's largest gaps. A dual model with a bias feature
    couples every sample through one bias weight; ranked together, the largest gaps are
    often all of one class (the bias weight is off for it), and a pass over one class
    swings the bias weight past its optimum, making the other class's gaps the largest
    next round. On a 200000 x 1000 hinge SVM at 25% the bias weight swung between -0.93 and
    +0.93 for hundreds of rounds with the gap stuck at 1.3e5 (runs took 42 to more than
    90 s); with the classes taking turns, 15-17 s in every run.
    """

    name = "duhl"
    ranks_by_gap = True

    def __init__(self, n, fits, rng, *, limit=None, groups=None, grow=0):
        super().__init__(n, fits, rng)
        self.grow = int(grow)
        self.tiebreak = rng.permutation(n)
        self.limit = n if limit is None else max(1, min(int(limit), n))
        self.members = None
        if groups is not None:
            g = np.asarray(groups)[self.tiebreak]
            self.members = [self.tiebreak[g == v] for v in np.unique(g)]

    def _ranked(self, z, members):
        """``members`` by descending z (ties: their order), the top ``limit``; and how many > 0."""
        zt = -z[members]  # ascending zt = descending z
        k = min(self.limit, len(members))
        if k < len(members):
            # Only the top k can fit: a partition finds them in linear time.
            kth = np.partition(zt, k - 1)[k - 1]
            above = np.flatnonzero(zt < kth)
            ties = np.flatnonzero(zt == kth)[: k - len(above)]
            top = np.sort(np.concatenate([above, ties]))  # keeps the members' order for ties
        else:
            top = np.arange(len(members))
        top = top[np.argsort(zt[top], kind="stable")]
        return members[top], int(np.count_nonzero(zt[top] < 0))

    def select(self, z, round_index, alpha=None):
        z = np.asarray(z)
        # A coordinate whose gap is zero (a zero Lasso weight with |u| <= lambda, an SVM
        # sample at its bound on the right side of the margin) gains nothing from a pass:
        # leave it out, so the pass and the copies go to the coordinates that matter (this is
        # liblinear's shrinking, in DuHL's terms). Everything when no gap is positive.
        order = None
        if self.members is not None:
            lists = [c[:p] for c, p in (self._ranked(z, m) for m in self.members) if p]
            if lists:
                turn = np.concatenate([np.arange(len(c)) for c in lists])
                order = np.concatenate(lists)[np.argsort(turn, kind="stable")]
        if order is None:
            order, positive = self._ranked(z, self.tiebreak)
            if positive:
                order = order[:positive]
        if self.grow and alpha is not None:
            # A sparse model (l1 penalty): celer's working-set growth (Massias et al. 2018),
            # twice the coordinates already in the model (they go first), at least `grow`.
            # Memory that would hold more goes unused: a pass over thousands of coordinates
            # that stay zero costs more than the rounds it saves.
            inside = alpha[order] != 0
            size = max(self.grow, 2 * int(np.count_nonzero(alpha)))
            order = np.concatenate([order[inside], order[~inside]])[:size]
        return order[: self.fits(order)]


class Sequential(_Policy):
    """Fixed consecutive blocks that fit, each streamed once per cycle.

    The blocks are visited in a fresh random order every cycle: a fixed block order is
    cyclic block coordinate descent, which a coupling shared by all coordinates (a dual
    model's bias feature) slows down by more than an order of magnitude; shuffling the
    order keeps the baseline honest and still streams every block once per cycle.
    """

    name = "sequential"

    def __init__(self, n, fits, rng):
        super().__init__(n, fits, rng)
        self.blocks = []
        start = 0
        idx = np.arange(n)
        while start < n:
            k = max(1, fits(idx[start:]))
            self.blocks.append(idx[start : start + k])
            start += k
        self.cycle = np.arange(len(self.blocks))

    def select(self, z, round_index, alpha=None):
        nb = len(self.blocks)
        if round_index % nb == 0:
            self.cycle = self.rng.permutation(nb)
        return self.blocks[self.cycle[round_index % nb]]


class Random(_Policy):
    name = "random"

    def select(self, z, round_index, alpha=None):
        order = self.rng.permutation(self.n)
        return order[: self.fits(order)]


class Full(_Policy):
    name = "full"

    def __init__(self, n, fits, rng, *, need_bytes=None, budget=None):
        super().__init__(n, fits, rng)
        if fits(np.arange(n)) < n:
            raise MemoryBudgetError(
                f"policy 'full' needs all {n} coordinates resident, but the memory budget "
                f"({format_size(budget) if budget else '?'}) holds only {fits(np.arange(n))} of "
                f"them; raise the budget (about {format_size(need_bytes) if need_bytes else 'more'} "
                f"needed) or use policy 'duhl'"
            )
        self.all = np.arange(n)

    def select(self, z, round_index, alpha=None):
        return self.all


def make_policy(name, n_coords, fits, rng, **kw):
    """A policy by name; ``fits(order)`` says how many of ``order`` fit the device."""
    table = {"duhl": Duhl, "sequential": Sequential, "random": Random, "full": Full}
    if name not in table:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {name!r}")
    limit = kw.pop("limit", None)
    groups = kw.pop("groups", None)
    grow = kw.pop("grow", 0)
    if name == "full":
        return Full(n_coords, fits, rng, **kw)
    if name == "duhl":
        return Duhl(n_coords, fits, rng, limit=limit, groups=groups, grow=grow)
    return table[name](n_coords, fits, rng)
