"""Unit B's memory: the resident working set of coordinates on the device, under a budget.

The budget is split by :func:`duhl_cl.duhl.capacity.plan_capacity` into the shared vectors,
a slot table (per resident coordinate: offset, length, coefficient, squared norm, label,
visit order, u and gap), a small staging area and the pool of the coordinates' values (and
indices when sparse), in parts no larger than the profile's largest allocation; each
resident coordinate lives whole in one part: dense ones in fixed homes, sparse pieces placed
by :func:`duhl_cl.duhl.placement.place_pieces`.

Each round the round loop calls :meth:`DeviceWorkingSet.make_resident` with the policy's
selection: coordinates that leave the selection stay on the device until their room is
needed (one that comes back costs no copy); the incoming ones are placed in the free room
(the pool repacked when that room is cut into holes) and written by the pool writes
(:mod:`duhl_cl.duhl.pool_writes`). Then :meth:`run_passes` enqueues the pass routine of the
profile's kernel variant (:mod:`duhl_cl.kernels`), and :meth:`resident_gaps` reads back the
visited coordinates' u (and gaps).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..device.build import get_kernel
from ..device.ledger import Ledger
from ..kernels import base_defines, pass_routine
from ..store.checks import check_norms_fit
from .capacity import DESC_BYTES, desc_bytes, plan_capacity
from .class_regions import ClassRegions
from .launches import Launches
from .placement import free_ranges, place_pieces
from .pool_writes import DIRECT_RUNS, PoolWrites

__all__ = ["DeviceWorkingSet", "SwapStats"]


class _Part:
    """One pool buffer (values, and indices when sparse) of ``capacity`` entries."""

    def __init__(self, val, idx, capacity, aliased=False):
        self.val, self.idx, self.capacity = val, idx, capacity
        # The store's own memory (DeviceWorkingSet._store_in_place): never written.
        self.aliased = aliased


@dataclass
class SwapStats:
    n_swapped_in: int = 0
    n_evicted: int = 0
    n_refused: int = 0  # selected but no contiguous space this round
    bytes_swapped_in: int = 0


class DeviceWorkingSet(PoolWrites, Launches, ClassRegions):
    """Device buffers, kernels and the resident set for one model on one coordinate store.

    Parameters
    ----------
    device : duhl_cl.device.discovery.Device
    model : duhl_cl.models.Model (``setup`` done)
    store : duhl_cl.store.CoordinateStore
    budget : int, optional
        Bytes of device memory this fit may use; default: the profile's budget.
    ledger : Ledger, optional
    variant : {None, "serial", "tpa", "bucketed"}
        The pass kernel; None takes the profile's.
    dtype : numpy dtype, optional
        The device's precision (default: the store's).
    """

    def __init__(self, device, model, store, budget=None, ledger=None, variant=None, dtype=None,
                 models=None):  # fmt: skip
        import pyopencl as cl

        self.cl = cl
        self.device, self.model, self.store = device, model, store
        # One-vs-rest (duhl_cl.duhl.ovr): one model per class over the same data; every
        # class-wide buffer holds a region per class, the pool holds the data once.
        self.models = list(models) if models is not None else [model]
        self.n_classes = len(self.models)
        self.active_classes = list(range(self.n_classes))
        self._align = max(int(device.cl_device.mem_base_addr_align) // 8, 64)
        self.queue = device.queue
        self.ledger = ledger or Ledger(device)
        if budget is not None:
            self.ledger.budget = (
                min(int(budget), self.ledger.budget) if budget else self.ledger.budget
            )
        # The device's precision: the store's, or another one (a float64 refinement of a
        # float32 store: values are converted as they are copied in, never on the host whole).
        self.dtype = np.dtype(dtype) if dtype is not None else store.dtype
        self.real = self.dtype.type
        self.variant = variant or device.profile.kernel_variant
        routine = pass_routine(self.variant)
        why = routine.unsupported(device, self.dtype)
        if why is not None:
            raise ValueError(
                f"kernel variant {self.variant!r} in {self.dtype.name} cannot run here: {why}; "
                f"use dtype='float32'" + ("" if self.variant != "tpa" else
                                          " or kernel_variant='serial' or 'bucketed'")
            )  # fmt: skip
        self.n_buckets = routine.copies(device)
        # Before any buffer or build: squared norms (step curvatures) that overflow the
        # device precision would make every step 0, a fit of zeros without an error.
        check_norms_fit(store.sqnorm, getattr(store, "val", None), self.dtype, primal=store.primal,
                        buckets=self.n_buckets, fp64=device.fp64)  # fmt: skip
        self.cap = plan_capacity(
            store,
            model,
            self.dtype,
            self.ledger.budget,
            self.ledger.max_alloc,
            label=device.profile.label(),
            copies=self.n_buckets,
            banks=device.profile.banks,
            bank_size=device.profile.bank_size,
            classes=self.n_classes,
            align=self._align,
        )
        self._check_loop_limit(device, model, store)
        self._build_kernels(routine)
        self.dim = store.dim
        self.vdim = model.shared_dim()
        self._simulated = "oclgrind" in device.info.platform.lower()
        self._allocate()
        self.set_kernel_params()
        self._slot_table()
        self._order_flat = None  # the slot list last uploaded to b_order, if still valid
        self._starts = []
        # The Oclgrind simulator's uninitialised-value tracking misses host writes at a
        # buffer offset (a write of 8 floats at byte 64, then a kernel reading them: 8
        # reports), so under it every incoming coordinate takes the staged path, whose copy
        # is a kernel it can check; the direct path is host writes only.
        self._direct_runs = 0 if self._simulated else DIRECT_RUNS

    def _check_loop_limit(self, device, model, store):
        """On a device that ends a work-item's loops after ``loop_limit`` iterations (Mesa
        22.3's llvmpipe: 65535), launches are cut to stay under half of it (launches.py);
        a coordinate too long for even one work-item's gap is refused."""
        limit = device.loop_limit
        self._loop_budget = None if limit is None else limit // 2
        longest = int(store.lens.max()) if len(store.lens) else 0
        if limit is not None and 2 * longest + 8 + self.vdim_copy(model) > limit // 2:
            raise ValueError(
                f"{device.info.name} ends any work-item's loops after {limit} iterations "
                f"(measured; Mesa's llvmpipe caps them), and a coordinate here has "
                f"{longest} entries, too many for one work-item; fit on another "
                f"device (PoCL: pip install pocl-binary-distribution)"
            )

    def vdim_copy(self, model) -> int:
        """Loop iterations a bucket spends copying the shared vector each launch."""
        return model.shared_dim() if self.n_buckets else 0

    def set_kernel_params(self):
        """Take the model's scalars as the kernels' arguments (again after a change of
        penalty: a regularization path keeps its working set from one penalty to the next)."""
        R = self.real
        # The pass kernels take l1, l2, C, bias; coord_gap also the l1 bound (primal_gap).
        # Per class: one-vs-rest problems may differ in their weights (1/m, the l1 penalty).
        self._params = []
        for m in self.models:
            p = m.kernel_params()
            self._params.append((
                [R(p["l1"]), R(p["l2"]), R(p["C"]), R(p["bias"])],
                [R(p["l1"]), R(p["l2"]), R(p["bound"]), R(p["C"]), R(p["bias"])],
                R(p["inv_m"]),
            ))  # fmt: skip
        self._pass_params, self._gap_params, self.inv_m = self._params[0]

    def _build_kernels(self, routine):
        """The pass routine and the gap, gradient and scatter kernels of this fit's build."""
        device = self.device
        base = base_defines(self.model, self.dtype, self.store.sparse)
        self.passes = routine(device, base, get_kernel)
        self.k_gap = get_kernel(device, "gap.cl", base, "coord_gap")
        self.k_grad = get_kernel(device, "gap.cl", base, "datafit_gradient")
        self.k_scatter_real = get_kernel(device, "scatter.cl", base, "scatter_real")
        self.k_scatter_int = get_kernel(device, "scatter.cl", base, "scatter_int")
        self.k_scatter_slots = get_kernel(device, "scatter.cl", base, "scatter_slots")

    def _slot_table(self):
        """The resident-set bookkeeping on the host: slots, their coordinates and homes."""
        S = self.cap.n_slots
        self.slot_coord = np.full(S, -1, dtype=np.int64)  # coordinate in each slot
        self.slot_active = np.zeros(S, dtype=bool)  # visited by the passes
        # Device entries of each coordinate: an empty piece takes one (OpenCL has no
        # zero-length pieces).
        self.entries = np.maximum(self.store.lens.astype(np.int64), 1)
        self.coord_slot = np.full(self.store.n_coords, -1, dtype=np.int64)
        self.slot_part = np.zeros(S, dtype=np.int64)
        self.slot_off = np.zeros(S, dtype=np.int64)
        # Sparse pieces vary in size: each round places them in the free ranges (place_pieces).
        self.n_homes = S
        if not self.store.sparse:
            # Dense coordinates are all one size: each slot gets a fixed home in the pool, so
            # a swap is array bookkeeping, without a free list.
            per_part = [part.capacity // max(self.dim, 1) for part in self.parts]
            self.slot_part = np.repeat(np.arange(len(per_part)), per_part)[:S]
            self.slot_off = np.concatenate(
                [np.arange(k, dtype=np.int64) * max(self.dim, 1) for k in per_part]
            )[:S]
            self.n_homes = len(self.slot_part)

    # ------------------------------------------------------------------ allocation
    def _allocate(self):
        cap, L, r = self.cap, self.ledger, self.dtype.itemsize
        S = cap.n_slots
        self._subs = []
        try:
            self.b_v, self.v_k = self._classwise("shared vector", r * self.vdim)
            self.b_w = L.alloc("gradient", r * self.vdim)
            # Primal: the row vector the datafit gradient reads (y, or the sample weights).
            if self.model.primal:
                ys = [m.device_y() for m in self.models]
                self.b_y, self.y_k = self._classwise("labels y", r * len(ys[0]), ys)
            else:
                self.b_y = L.alloc("labels y", r, np.zeros(1, dtype=self.dtype))
                self.y_k = [self.b_y] * self.n_classes
            self.b_offs = L.alloc("slot offsets", 8 * S)
            self.b_lens = L.alloc("slot lengths", 4 * S)
            self.b_alpha, self.alpha_k = self._classwise("slot coefficients", r * S)
            self.b_sqnorm = L.alloc("slot squared norms", r * S)
            if self.model.primal:
                self.b_label, self.label_k = self.b_y, self.y_k
            else:
                self.b_label, self.label_k = self._classwise("slot labels", r * S)
            self.b_order, self.order_k = self._classwise("visit order", 4 * S)
            # One class's outputs at a time: the round reads each class's back before the
            # next class's gap launch (duhl_cl.duhl.launches.resident_gaps).
            self.b_u = L.alloc("slot u", r * S)
            self.b_gap = L.alloc("slot gaps", r * S)
            if self.n_buckets:
                self.b_copies = L.alloc("bucket copies of v", r * self.vdim * self.n_buckets)
            # (at least one incoming slot entry of every class)
            desc = max(DESC_BYTES * S, desc_bytes(self.n_classes))
            self.b_desc = L.alloc("staging descriptors", desc + 64)
            self.b_stage_val = L.alloc("staging values", r * cap.stage_entries)
            self.b_stage_idx = (
                L.alloc("staging indices", 4 * cap.stage_entries) if self.store.sparse else None
            )
            self.parts = []
            # Not under the simulator: host-backed memory reads as written (initialised) to
            # Oclgrind's uninitialised-value check, which the pool must not escape.
            backed = not self._simulated
            whole = self._store_in_place(cap)
            if whole is not None:
                val = L.alias(
                    "pool part 0 values (the store, in place)", whole, bank=cap.parts[0][0]
                )
                if val is not None:
                    # Every coordinate at its own home, read where the store holds it.
                    self.parts.append(_Part(val, val, whole.size, aliased=True))
                    return
            for bank, n in cap.parts:
                k = len(self.parts)
                val = L.alloc(f"pool part {k} values", r * n, bank=bank, host_backed=backed)
                idx = (
                    L.alloc(f"pool part {k} indices", 4 * n, bank=bank, host_backed=backed)
                    if self.store.sparse
                    else val
                )
                self.parts.append(_Part(val, idx, n))
        except BaseException:
            self.release()
            raise

    def _store_in_place(self, cap):
        """The store's values, where the device may read them in place as the pool: a dense
        in-memory store in the device's precision that the first pool part and the slots hold
        whole, on a real device (under Oclgrind the pool is its own memory); else None.

        A dense fit whose data fits then copies nothing into the pool: the store's layout is
        already the pool's (coordinate j at home j). A store that relaid the user's array
        (duhl_cl.store.layout) is page-aligned for this; the user's own array rarely is.
        """
        st = self.store
        if st.sparse or st.tiered or self._simulated or not cap.parts:
            return None
        val = getattr(st, "val", None)
        if not isinstance(val, np.ndarray) or val.dtype != self.dtype:
            return None
        n = st.n_coords * max(st.dim, 1)
        if val.size != n or cap.parts[0][1] < n or cap.n_slots < st.n_coords:
            return None
        return val

    # ------------------------------------------------------------------ residency
    @property
    def resident(self) -> np.ndarray:
        """Coordinates on the device now (ascending slot order)."""
        return self.slot_coord[self.slot_coord >= 0]

    @property
    def visited(self) -> np.ndarray:
        """The resident coordinates the passes visit: the last selection (ascending slot order)."""
        return self.slot_coord[self.slot_active]

    def fits(self, coords) -> int:
        """How many of ``coords``, taken in order, fit the slots and pool (ignoring placement)."""
        lens = self.entries[coords]
        by_size = np.searchsorted(np.cumsum(lens), self.cap.pool_entries, side="right")
        return int(min(by_size, self.n_homes, len(coords)))

    def make_resident(self, coords, alpha) -> SwapStats:
        """Make ``coords`` (as far as placement allows) resident, and the set the passes visit.

        Coordinates no longer selected stay on the device while their room is not needed:
        a coordinate that comes back (a gap that turns positive again) costs no copy. Room is
        made by evicting unselected coordinates only when the incoming ones do not fit.
        ``alpha`` (float64, all coordinates) gives the coefficients of incoming coordinates.
        """
        coords = np.asarray(coords, dtype=np.int64)
        stats = SwapStats()
        if not np.all(self.coord_slot[coords] >= 0):  # else only the visit set may change
            want = np.zeros(self.store.n_coords, dtype=bool)
            want[coords] = True
            if not self.store.sparse:
                stats = self._make_resident_dense(coords, want, alpha, stats)
            else:
                stats = self._make_resident_sparse(coords, want, alpha, stats)
        active = np.zeros_like(self.slot_active)
        slots = self.coord_slot[coords]
        active[slots[slots >= 0]] = True
        if not np.array_equal(active, self.slot_active):
            self.slot_active = active
            self._order_flat = None  # the visit list on the device no longer matches
        return stats

    def _evict_unwanted(self, want, stats, count=None):
        """Evict resident coordinates not in ``want`` (the first ``count`` in slot order, or
        all); their coefficients were read back after the last pass."""
        sc = self.slot_coord
        evict = np.flatnonzero((sc >= 0) & ~want[np.maximum(sc, 0)])
        if count is not None:
            evict = evict[: max(int(count), 0)]
        self.coord_slot[sc[evict]] = -1
        sc[evict] = -1
        self.slot_active[evict] = False
        stats.n_evicted += len(evict)

    def _make_resident_sparse(self, coords, want, alpha, stats) -> SwapStats:
        entering = coords[self.coord_slot[coords] < 0]
        # First into the room that is free; when that is not enough, evict every unselected
        # coordinate and place the rest (pieces vary in size: no cheaper exact choice). When
        # the free slots or entries cannot hold them all anyway, evict first and place once
        # (placement is most of a round's host work on small sparse sets).
        sc = self.slot_coord
        occ = sc >= 0
        free_entries = self.cap.pool_entries - int(self.entries[sc[occ]].sum())
        short = len(entering) > np.count_nonzero(~occ)
        short = short or self.entries[entering].sum() > free_entries
        if short:
            self._evict_unwanted(want, stats)
        placed = [self._place_sparse(entering)]
        left = entering[self.coord_slot[entering] < 0]
        if len(left) and not short:
            self._evict_unwanted(want, stats)
            placed.append(self._place_sparse(left))
        placed = np.concatenate(placed)
        refused = entering[self.coord_slot[entering] < 0]
        if len(refused) and 2 * self.entries[refused].sum() > self.entries[entering].sum():
            # The room is there (the policy sized the selection) but cut into holes between
            # the pieces that stay: repack the whole selection into an emptied pool. Without
            # this, a selection that fills most of the pool could refuse its largest pieces
            # round after round (a Zipf text Lasso at 50%: stuck at 4e-2 relative gap).
            self._evict_unwanted(np.zeros_like(want), stats)
            placed = self._place_sparse(coords)
            entering = coords
        stats.n_refused = len(entering) - len(placed)
        if len(placed):
            stats.n_swapped_in = len(placed)
            stats.bytes_swapped_in = self._upload(placed, alpha)
        return stats

    def _place_sparse(self, entering):
        """Place what fits of ``entering`` into free slots and ranges; (coord, slot, part,
        offset) rows of those placed."""
        sc = self.slot_coord
        lens = self.entries
        free_slots = np.flatnonzero(sc < 0)
        occ = np.flatnonzero(sc >= 0)
        free = free_ranges(
            [pt.capacity for pt in self.parts],
            self.slot_part[occ].astype(np.int64),
            self.slot_off[occ].astype(np.int64),
            lens[sc[occ]],
        )
        # In the policy's order: when fragmentation refuses some, the lowest ranked go without.
        cand = entering[: len(free_slots)]
        part, off = place_pieces(lens[cand], *free)
        ok = part >= 0
        cs = cand[ok]
        slots = free_slots[: len(cs)]
        sc[slots] = cs
        self.coord_slot[cs] = slots
        self.slot_part[slots], self.slot_off[slots] = part[ok], off[ok]
        return np.column_stack([cs, slots, part[ok], off[ok]]).astype(np.int64).reshape(-1, 4)

    def _make_resident_dense(self, coords, want, alpha, stats) -> SwapStats:
        H = self.n_homes
        sc = self.slot_coord
        entering = coords[self.coord_slot[coords] < 0]
        # Dense homes are all one size: evict just as many unselected coordinates as needed.
        short = len(entering) - int(np.count_nonzero(sc[:H] < 0))
        if short > 0:
            self._evict_unwanted(want, stats, count=short)
        free = np.flatnonzero(sc[:H] < 0)
        k = min(len(entering), len(free))
        stats.n_refused = len(entering) - k
        if k:
            # In storage order: consecutive coordinates into consecutive homes go up as one
            # copy straight from the store (the visit order is shuffled per pass anyway).
            cs, slots = np.sort(entering[:k]), free[:k]
            if self.parts[0].aliased:
                slots = cs  # each coordinate's home is where the store holds it
            sc[slots] = cs
            self.coord_slot[cs] = slots
            placed = np.column_stack([cs, slots, self.slot_part[slots], self.slot_off[slots]])
            stats.n_swapped_in = k
            stats.bytes_swapped_in = self._upload(placed, alpha)
        return stats

    # ------------------------------------------------------------------ state transfers
    def set_shared(self, v):
        """Send the shared vector (vdim,), or one per class (n_classes, vdim)."""
        self._upload_classes(self.b_v, v, self.vdim, self.dtype, wait=True)

    def get_shared(self):
        """The shared vector (vdim,), or one per class (n_classes, vdim)."""
        out = self._download_classes(self.b_v, self.vdim, self.dtype)
        return out[0].copy() if self.n_classes == 1 else out.copy()

    def read_alpha(self, alpha):
        """Copy the resident coefficients into ``alpha`` (float64, all coordinates; one row
        per class when several)."""
        out = self._download_classes(self.b_alpha, self.cap.n_slots, self.dtype)
        occ = self.slot_coord >= 0
        if alpha.ndim == 1:
            alpha[self.slot_coord[occ]] = out[0, occ]
        else:
            alpha[:, self.slot_coord[occ]] = out[:, occ]
        return alpha

    def finish(self):
        self.queue.finish()
        self.ledger.settled()

    def release(self):
        for sub in getattr(self, "_subs", ()):
            sub.release()
        self._subs = []
        self.ledger.free_all()
