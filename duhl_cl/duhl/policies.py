"""Which coordinates are resident on the device each round: DuHL and its baselines.

Every policy returns, for a round, an ordered list of coordinates; the working set keeps as
many of them, in that order, as fit its slots and pool. Policies:

- ``"duhl"``: the largest duality gaps of the gap memory z (Duenner, Parnell & Jaggi, NIPS
  2017), per device entry: celer's grown working set where an l1 model's support fits, else
  a gap-proportional draw that fills the budget, with a reserve for the coordinates that
  waited longest (:class:`Duhl`, README "The selection rule");
- ``"sequential"``: the data in fixed blocks that fit, streamed round-robin (the usual
  out-of-core approach); every coordinate is visited once per cycle;
- ``"random"``: a uniformly random set each round (seeded);
- ``"full"``: everything, refused with a clear message when it does not fit.
"""

from __future__ import annotations

import numpy as np

from ..device.ledger import MemoryBudgetError
from ..device.profiles import format_size

__all__ = ["POLICIES", "RESERVE", "make_policy", "wait_bound"]

POLICIES = ("duhl", "sequential", "random", "full")

# The share of the pool's entries that goes, each round, to the coordinates with positive
# gap memory that waited longest since their last visit (Duhl): what bounds any wait.
RESERVE = 0.125


class _Policy:
    name = ""
    ranks_by_gap = False  # True: the policy reads the gap memory z
    complete = False  # True: the last selection is the whole active problem (celer's set)

    def __init__(self, n_coords, fits, rng):
        self.n, self.fits, self.rng = n_coords, fits, rng

    def select(self, z, round_index, alpha=None):
        raise NotImplementedError

    def visited(self, coords, round_index):
        """Told which coordinates the passes of ``round_index`` visited (placement may refuse
        some of a selection); only the gap-ranked policy keeps track."""


class Duhl(_Policy):
    """DuHL's gap-ranked residency for a device that holds only part of what matters.

    Scores: each coordinate's gap memory z per device entry it occupies (equal for dense data,
    so the plain gap; with sparse data a pass and the pool both pay by entries, so this is the
    gap bought per byte of device memory). Coordinates with zero gap are left out (shrinking;
    everything when no gap is positive), never-evaluated ones (+inf) go first.

    - Where the support fits (an l1 model whose grown set fits the budget whole): celer's
      working-set growth, the coordinates in the model first, then the largest scores, twice
      the support and at least ``grow`` (Massias et al. 2018). Memory that would hold more
      goes unused: a pass over thousands of coordinates that stay zero costs more than the
      rounds it saves.
    - Otherwise (the budget binds): the working set is drawn without replacement with
      probability proportional to the score (Efraimidis-Spirakis keys E_i / s_i, E_i
      exponential), filling the budget. Large gaps are nearly certain to be drawn, as in
      DuHL's top-gap rule (Duenner, Parnell & Jaggi 2017); where gaps are flat (a logistic
      dual, where every sample keeps a positive gap) the draw mixes like uniform sampling.
      This is gap-based importance sampling (Perekrestenko, Cevher & Jaggi 2017; AdaSDCA,
      Csiba et al. 2015): deterministic top-gap selection with the gaps the host knows (one
      round stale or more) swapped whole working sets back and forth and stalled a logistic
      dual at a 10% budget, and support-first growth locked the rotation once the support
      filled the budget.
    - No starvation: the first ``reserve`` of the pool's entries (at least one coordinate)
      goes to the coordinates with positive gap memory that have waited longest since their
      last visit, so a coordinate whose gap memory stays positive enters the working set
      within :func:`wait_bound` rounds (``1 + (n - 1) // k``, k the reserve's coordinates).

    With ``groups`` (a dual classifier's labels), the two classes take turns: the working
    set interleaves each class's reserve and draw (each class has its share of the reserve,
    so :func:`wait_bound` holds per class with ``reserve / 2``). A dual model with a bias
    feature couples every sample through one bias weight; drawn together, the largest gaps are often all of one
    class (the bias weight is off for it), and a pass over one class swings the bias weight
    past its optimum, making the other class's gaps the largest next round (a 200000 x 1000
    hinge SVM at 25% took 42 to more than 90 s, or stalled; with turns, 15-17 s).

    Parameters
    ----------
    n, fits, rng : see :func:`make_policy`.
    limit : int, optional
        The most coordinates the device holds (its slots).
    groups : array of shape (n,), optional
        Labels whose classes take turns.
    grow : int
        celer's smallest working set for an l1 model; 0 = no growth rule.
    sizes : array of shape (n,), optional
        Device entries of each coordinate (default 1 each).
    pool_entries : int, optional
        Entries the pool holds (for the reserve; default: the sum of ``sizes``).
    reserve : float
        Fraction of the pool for the longest-waiting coordinates.
    run : int
        Consecutive coordinates that share one draw key (a disk tier's:
        :meth:`duhl_cl.store.tiered.TieredStore.run_length`, a read's worth of a seek), so
        that the coordinates a round draws from disk come in runs of that many, read at
        once: drawn one by one, a 16 GiB SVM's first rounds read 110-150 thousand 4 KiB
        rows apiece, 10 s a round. Within a run the larger scores still go first (a 16
        GiB SVM drawn by whole runs, each by its summed score, took 72 rounds and 174 s to
        a relative gap of 1e-4, against 53 rounds and 133 s); with
        ``groups``, every class's draw takes the same runs' keys. The holes a run's
        unselected coordinates leave are read through where short
        (duhl_cl.store.tiered.TieredStore.fetch).
    """

    name = "duhl"
    ranks_by_gap = True

    def __init__(self, n, fits, rng, *, limit=None, groups=None, grow=0, sizes=None,
                 pool_entries=None, reserve=RESERVE, run=1):  # fmt: skip
        super().__init__(n, fits, rng)
        self.run = max(1, int(run))
        self.grow = int(grow)
        self.limit = n if limit is None else max(1, min(int(limit), n))
        self.sizes = np.ones(n) if sizes is None else np.maximum(np.asarray(sizes, float), 1)
        self.pool = float(pool_entries if pool_entries is not None else self.sizes.sum())
        self.reserve = float(reserve)
        self.labels = None if groups is None else np.asarray(groups)
        # Round of each coordinate's last visit (-1: never), for the reserve.
        self.last_visit = np.full(n, -1, dtype=np.int64)
        self.tiebreak = rng.permutation(n)  # the celer branch's order among equal scores
        self.rank = np.empty(n, dtype=np.int64)
        self.rank[self.tiebreak] = np.arange(n)

    def visited(self, coords, round_index):
        """The coordinates the passes of ``round_index`` visited (what was placed)."""
        self.last_visit[np.asarray(coords, dtype=np.int64)] = round_index

    def select(self, z, round_index, alpha=None):
        z = np.asarray(z, dtype=np.float64)
        score = z / self.sizes
        pos = np.flatnonzero(score > 0)
        if len(pos) == 0:
            # Nothing to gain anywhere (or nothing known): everything, as it fits.
            order = self.tiebreak
            return order[: self.fits(order)]
        self.complete = False
        if self.grow and alpha is not None:
            grown = self._grown(score, pos, alpha)
            if grown is not None:
                self.complete = True
                return grown
        room = self.reserve * self.pool
        # One key per run for the whole draw: the classes' turns take the same runs.
        run_keys = self.rng.exponential(size=-(-self.n // self.run)) if self.run > 1 else None
        if self.labels is None:
            order = _first_once(self._oldest(pos, room), self._draw(score, pos, run_keys))
        else:
            # Each class: its share of the reserve, then its draw; the classes interleaved.
            lab = self.labels[pos]
            classes = np.unique(lab)
            lists = [
                _first_once(self._oldest(c, room / len(classes)), self._draw(score, c, run_keys))
                for c in (pos[lab == v] for v in classes)
            ]
            turn = np.concatenate([np.arange(len(c)) for c in lists])
            order = np.concatenate(lists)[np.argsort(turn, kind="stable")]
        return order[: self.fits(order)]

    def _grown(self, score, pos, alpha):
        """celer's grown working set when it fits the budget whole, else None: the support
        (with positive gaps) first, then the largest scores outside it, ``2 |support|`` in
        all and at least ``grow``; each part by descending score (ties: a fixed shuffle)."""
        size = max(self.grow, 2 * int(np.count_nonzero(alpha)))
        nonzero = alpha[pos] != 0
        inside, outside = pos[nonzero], pos[~nonzero]
        inside = inside[self._by_score(score, inside, len(inside))][:size]
        outside = outside[self._by_score(score, outside, size - len(inside))]
        grown = np.concatenate([inside, outside])
        return grown if self.fits(grown) == len(grown) else None

    def _by_score(self, score, coords, k):
        """Positions of the ``k`` largest scores of ``coords``, largest first."""
        if k <= 0 or len(coords) == 0:
            return np.zeros(0, dtype=np.int64)
        # Ties broken by the fixed shuffle: a tiny, coordinate-specific nudge of the key
        # would not be exact, so the shuffle's rank orders equal scores instead.
        k = min(k, len(coords))
        top = _smallest(-score[coords], k) if k < len(coords) else np.arange(len(coords))
        return top[np.lexsort((self.rank[coords[top]], -score[coords[top]]))]

    def _draw(self, score, coords, run_keys=None):
        """``coords`` in the order of a score-proportional draw without replacement (the
        first ``limit``); never-evaluated (+inf) ones first. ``run_keys``: one key per run
        of ``run`` coordinates (select draws them once for every class)."""
        s = score[coords]
        if run_keys is not None:
            keys = run_keys[coords // self.run]
        else:
            keys = self.rng.exponential(size=len(coords))
        finite = np.isfinite(s)
        keys = np.where(finite, keys / np.where(finite, s, 1.0), -1.0)
        return coords[_smallest(keys, self.limit)]

    def _oldest(self, coords, room):
        """Those of ``coords`` that waited longest since their last visit, as many as fit in
        ``room`` entries (at least one); none when the reserve is off."""
        if self.reserve <= 0 or len(coords) == 0:
            return coords[:0]
        k = max(1, min(len(coords), int(room / max(self.sizes[coords].min(), 1.0)) + 1))
        cand = coords[_smallest(self.last_visit[coords].astype(np.float64), k)]
        fit = np.searchsorted(np.cumsum(self.sizes[cand]), room, side="right")
        return cand[: max(1, int(fit))]


def _first_once(*parts):
    """The parts concatenated, each coordinate at its first place only."""
    order = np.concatenate(parts)
    _, first = np.unique(order, return_index=True)
    return order[np.sort(first)]


def wait_bound(n_coords, largest, pool_entries, reserve=RESERVE) -> int:
    """Rounds within which a coordinate whose gap memory stays positive enters the working
    set under Duhl, for ``n_coords`` coordinates of at most ``largest`` entries each and a
    pool of ``pool_entries``.

    Each round the reserve takes the positive coordinates that waited longest since their
    last visit: at least one, and ``k = floor(reserve * pool_entries / largest)`` when that
    is more. Only coordinates last visited before it can be ahead of a waiting coordinate,
    at most ``n_coords - 1`` of them, and each one served goes behind it for good; so it is
    served within ``1 + (n_coords - 1) // k`` rounds. (Assumes every selected coordinate is
    placed, as dense coordinates always are; a fragmented sparse pool may refuse one for a
    round.)
    """
    k = max(1, int(reserve * pool_entries // max(int(largest), 1)))
    return 1 + max(int(n_coords) - 1, 0) // k


def _smallest(keys, k):
    """Indices of the ``k`` smallest ``keys``, in ascending order (ties: index order)."""
    k = min(int(k), len(keys))
    if k < len(keys):
        part = np.argpartition(keys, k - 1)[:k]
    else:
        part = np.arange(len(keys))
    return part[np.lexsort((part, keys[part]))]


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
    duhl_kw = {k: kw.pop(k) for k in ("limit", "groups", "grow", "sizes", "pool_entries",
                                      "reserve", "run") if k in kw}  # fmt: skip
    if name == "full":
        return Full(n_coords, fits, rng, **kw)
    if name == "duhl":
        return Duhl(n_coords, fits, rng, **duhl_kw)
    return table[name](n_coords, fits, rng)
