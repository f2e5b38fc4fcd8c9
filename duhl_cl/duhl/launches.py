"""The kernel launches on the resident set: visit lists, coordinate-descent passes, gaps.

A mixin of :class:`duhl_cl.duhl.working_set.DeviceWorkingSet` (it reads the working set's
buffers, slot table and pass routine): :meth:`Launches.run_pass` and
:meth:`Launches.run_passes` enqueue the profile's pass variant (duhl_cl.kernels) over the
visited slots, grouped by pool part; :meth:`Launches.resident_gaps` runs the gap kernel
(after the datafit gradient, primal models) over the same visit list and reads back each
visited coordinate's u and gap. Every launch is enqueued and returns at once; the round loop
waits with ``finish``.
"""

from __future__ import annotations

import numpy as np

from ..kernels import WG, grid

__all__ = ["Launches"]


class Launches:
    """Pass and gap launches over the visited slots (mixed into DeviceWorkingSet)."""

    def _by_part(self, rng=None):
        """Visited slots grouped by pool part (shuffled within and across parts if rng)."""
        occ = np.flatnonzero(self.slot_active)
        groups = []
        part_ids = np.unique(self.slot_part[occ])
        if rng is not None:
            part_ids = rng.permutation(part_ids)
        for p in part_ids:
            slots = occ[self.slot_part[occ] == p]
            groups.append((int(p), rng.permutation(slots) if rng is not None else slots))
        return groups

    def run_pass(self, rng, order=None):
        """Enqueue one coordinate-descent pass over the resident set; returns at once.

        The visit order is a shuffle of the resident slots (one launch per pool part, parts
        in shuffled order), or, when ``order`` gives coordinates, exactly that order (all
        resident in one part): the kernel tests use it.
        """
        if order is not None:
            slots = self.coord_slot[np.asarray(order)]
            assert np.all(slots >= 0), "every coordinate in order must be resident"
            groups = [(int(self.slot_part[slots[0]]), slots)] if len(slots) else []
        else:
            groups = self._by_part(rng)
        if not groups:
            return
        self._set_order(groups)
        # One list serves every class: a single pass without a device shuffle leaves it as
        # it is (the serial kernel shrinks from a launch's second pass on).
        for k in self.active_classes:
            state = (self.b_copies, self.v_k[k], self.vdim, self.real) if self.n_buckets else None
            for (p, g), start in self._starts:
                for first, count in self._launch_pieces(g):
                    args = self._pass_args(p, start + first, count, k)
                    self.passes.enqueue(self.queue, args, count, state=state)
        if order is not None:
            self._order_flat = None  # an explicit order need not cover the resident set

    # The dual logistic step's Newton loop runs at most this many times (model.h INNER_ITERS).
    NEWTON_ITERS = 50

    def _loop_cost(self, slots) -> np.ndarray:
        """Loop iterations one work-item spends on each slot in a serial pass, an upper
        bound: its entries twice (the dot product and the update), the step's Newton
        iterations (dual logistic), and a few more."""
        newton = self.NEWTON_ITERS if getattr(self.model, "newton_step", False) else 0
        return 2 * self.entries[self.slot_coord[slots]] + 8 + newton

    def _launch_pieces(self, slots):
        """(first, count) pieces of a visit list that one launch each can walk on a device
        that caps a work-item's loop iterations (``Device.loop_limit``: Rusticl's llvmpipe),
        in list order, so that consecutive launches on the in-order queue are still one exact
        sequential pass; the whole list elsewhere and for the "tpa" variant (a work-group a
        coordinate)."""
        if self._loop_budget is None or self.variant == "tpa":
            return [(0, len(slots))]
        cost = np.cumsum(self._loop_cost(slots))
        # A bucket first copies the shared vector (vdim iterations) in every launch.
        budget = self._loop_budget - (self.vdim if self.n_buckets else 0)
        pieces, first = [], 0
        while first < len(slots):
            done = cost[first - 1] if first else 0
            end = max(int(np.searchsorted(cost, done + budget, side="right")), first + 1)
            pieces.append((first, end - first))
            first = end
        return pieces

    def _pass_args(self, p, start, count, k=0, order=None):
        """The pass kernels' common arguments for ``count`` slots of pool part ``p`` listed
        from ``start`` in the visit list (``order``: a class's own list, else class 0's),
        for class ``k``'s coefficients, labels, shared vector and penalty."""
        part = self.parts[p]
        pass_params, _, inv_m = self._params[k]
        return (
            part.val, part.idx, self.b_offs, self.b_lens,
            self.order_k[0] if order is None else order, np.int32(start), np.int32(count),
            self.alpha_k[k], self.b_sqnorm, self.label_k[k], self.v_k[k], np.int32(self.dim),
            *pass_params, inv_m,
        )  # fmt: skip

    @property
    def passes_in_one_launch(self) -> bool:
        """Whether :meth:`run_passes` does a round's passes in one launch: the "serial"
        variant with the visited set in one pool part."""
        occ = np.flatnonzero(self.slot_active)
        parts = self.slot_part[occ]
        return self.passes.one_launch and len(occ) > 0 and bool(np.all(parts == parts[0]))

    def _passes_per_launch(self, n_passes) -> int:
        """How many of ``n_passes`` passes over the visited set one launch may do under the
        device's loop cap (all of them where there is none; 0: not even one)."""
        if self._loop_budget is None:
            return n_passes
        occ = np.flatnonzero(self.slot_active)
        per_pass = int(self._loop_cost(occ).sum()) + len(occ)  # the walk and the shuffle
        return min(n_passes, self._loop_budget // max(per_pass, 1))

    def run_passes(self, rng, n_passes):
        """Enqueue ``n_passes`` shuffled passes over the visited set; returns at once.

        The "serial" variant on a visited set in one pool part does them in one launch that
        shuffles the list on the device before each pass (:func:`device_orders`), or, under
        a device's loop cap, in as few such launches as the cap allows (llvmpipe: a float32
        logistic-regression test's 256-pass rounds took 0.2 s each as 256 launches with host
        shuffles, 80 times Intel's CPU runtime); otherwise one :meth:`run_pass` (host
        shuffle, one launch per part) each.
        """
        per_launch = self._passes_per_launch(n_passes) if self.passes_in_one_launch else 0
        if per_launch < 1:
            for _ in range(n_passes):
                self.run_pass(rng)
            return
        if self._order_flat is None:
            self._set_order(self._by_part())
        (p, g), start = self._starts[0]
        if self.n_classes > 1:
            # Each class shuffles (and shrinks) its own copy of the list on the device.
            flat = self._order_flat
            self._upload_classes(self.b_order, np.tile(flat, (self.n_classes, 1)), len(flat),
                                 np.int32, region=self.cap.n_slots)  # fmt: skip
        for done in range(0, n_passes, per_launch):
            # Consecutive launches on the in-order queue continue from the list as the last
            # one left it (shuffled, its shrunk samples still marked).
            n = min(per_launch, n_passes - done)
            for k in self.active_classes:
                seed = np.uint32(rng.integers(1, 1 << 32))
                args = self._pass_args(p, start, len(g), k, order=self.order_k[k])
                self.passes.enqueue(self.queue, args, len(g), n_passes=n, seed=seed)
        self._order_flat = None  # shuffled on the device: the host's copy is stale

    def _set_order(self, groups):
        """Upload the visit list (slot groups by pool part) and remember it for the gap kernel."""
        flat = np.concatenate([g for _, g in groups]).astype(np.int32)
        self.ledger.upload(self.b_order, flat)  # class 0's list, which every class reads
        offsets = np.concatenate([[0], np.cumsum([len(g) for _, g in groups])[:-1]])
        self._order_flat = flat
        self._starts = list(zip(groups, offsets.tolist(), strict=True))

    def resident_gaps(self, gaps=True, k=0):
        """(coordinates, u, gap) of every visited coordinate for class ``k``, in device
        precision.

        ``gaps=False`` leaves the gaps on the device (None is returned for them): the round
        loop needs only u.
        """
        q = self.queue
        if self._order_flat is None:
            # No pass since the resident set last changed: list the resident slots now. After
            # a pass, the list it uploaded covers exactly the resident set and is reused.
            groups = self._by_part()
            if not groups:
                return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
            self._set_order(groups)
        _, gap_params, inv_m = self._params[k]
        if self.model.primal:
            self.k_grad(q, grid(self.dim), (WG,), self.v_k[k], self.y_k[k], self.b_w,
                        np.int32(self.dim), inv_m)  # fmt: skip
            w = self.b_w
        else:
            w = self.v_k[k]
        flat = self._order_flat
        for (p, g), start in self._starts:
            part = self.parts[p]
            self.k_gap(
                q, grid(len(g)), (WG,),
                part.val, part.idx, self.b_offs, self.b_lens, self.order_k[0], np.int32(start), np.int32(len(g)),
                self.alpha_k[k], self.label_k[k], w, np.int32(self.dim), *gap_params, self.b_u, self.b_gap,
            )  # fmt: skip
        # outputs sit at the position of each slot in the list (one class's at a time: the
        # blocking read-back below comes before the next class's launch)
        u = np.empty(len(flat), dtype=self.dtype)
        self.ledger.download(u, self.b_u)
        g = None
        if gaps:
            g = np.empty(len(flat), dtype=self.dtype)
            self.ledger.download(g, self.b_gap)
        return self.slot_coord[flat], u, g
