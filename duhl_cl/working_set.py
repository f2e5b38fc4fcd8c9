"""Unit B's memory: the resident working set of coordinates on the device, under a budget.

The budget (bytes) pays for, in this order: the shared vectors (v, the gradient w, and the
labels y of a primal model), a slot table (per resident coordinate: offset, length,
coefficient, squared norm, label, visit order, u and gap), a small staging area for
incoming data, and the pool that holds the coordinates' values (and indices when sparse).
The pool is split into parts no larger than the profile's largest single allocation; each
resident coordinate lives whole in one part: dense ones in fixed homes, sparse pieces placed
by :func:`place_pieces` into the free space.

Each round :meth:`DeviceWorkingSet.make_resident` evicts the coordinates that leave (their
coefficients were read back at the end of the previous pass), places only the coordinates
not yet resident into the space freed, and copies them in a handful of enqueue calls:
one upload of their values (and indices), one of their slot entries, and a scatter kernel
that moves them into place; an empty region filled in order is written directly. A pool in
host memory the device shares (a CPU device) is instead written in place through a map.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass

import numpy as np

from .ledger import Ledger, MemoryBudgetError, aligned_empty
from .profiles import KERNEL_VARIANTS, format_size
from .program import get_kernel

__all__ = [
    "plan_capacity",
    "Capacity",
    "DeviceWorkingSet",
    "KERNEL_VARIANTS_AVAILABLE",
    "device_orders",
]

KERNEL_VARIANTS_AVAILABLE = KERNEL_VARIANTS  # every variant a profile may name is built

# The pass kernel of each variant: (file, kernel name).
_PASS_KERNELS = {
    "serial": ("cd_pass.cl", "cd_pass"),
    "tpa": ("cd_pass_tpa.cl", "cd_pass_tpa"),
    "bucketed": ("cd_pass_bucketed.cl", "cd_pass_bucketed"),
}


def n_buckets(device) -> int:
    """Buckets of the "bucketed" variant: one per compute unit, and at least two.

    At least two so that the merge is exercised (and the variant differs from "serial")
    even on a one-unit sub-device.
    """
    return max(2, int(device.cl_device.max_compute_units))


def tpa_group_size(device) -> int:
    """Work-group size of the "tpa" variant: the profile's, else 64, as a power of two that
    the device accepts."""
    want = device.profile.work_group_size
    want = want if want > 1 else 64
    limit = int(device.cl_device.max_work_group_size)
    g = 1
    while g * 2 <= min(want, limit):
        g *= 2
    return g


@dataclass(frozen=True)
class Capacity:
    """How a budget is spent (bytes unless said otherwise)."""

    budget: int
    fixed: int  # shared vectors
    slot_bytes: int  # per slot
    n_slots: int  # slots in the table
    entry_bytes: int  # per stored entry (value, plus index when sparse)
    pool_entries: int  # entries in the pool, over all parts
    part_entries: int  # largest part, entries
    stage_entries: int  # staging area, entries
    minimum: int  # smallest budget that holds the vectors plus one coordinate
    parts: tuple = ()  # (bank, entries) of each pool part, in allocation order

    @property
    def total(self) -> int:
        return (
            self.fixed
            + self.n_slots * self.slot_bytes
            + (self.pool_entries + self.stage_entries) * self.entry_bytes
            + self.n_slots * _DESC_BYTES
            + 64
        )


# Per staged piece: src offset, dst offset, length (scatter descriptors); per incoming slot
# entry the slot index too. Sized by the slot table, as a round brings at most that many.
_DESC_BYTES = 4 + 8 + 4 + 3 * 8


# Work-group size of the one-work-item-per-piece kernels. Fixed, because PoCL compiles a
# kernel anew for every local size it is launched with (letting the runtime choose one per
# global size cost a compilation per distinct size: ~0.1 s each).
_WG = 32


def _grid(n):
    return (-(-max(n, 1) // _WG) * _WG,)


# Up to this many contiguous runs per pool part are copied directly; more are staged.
_DIRECT_RUNS = 4


def _slot_bytes(r: int, primal: bool) -> int:
    # offs 8, lens 4, alpha, sqnorm, label (dual), order 4, u, gap
    return 8 + 4 + r + r + (0 if primal else r) + 4 + r + r


def plan_capacity(
    store,
    model,
    dtype,
    budget: int,
    max_alloc: int,
    *,
    label="the device",
    copies: int = 0,
    banks: int = 1,
    bank_size: int | None = None,
) -> Capacity:
    """Split ``budget`` between vectors, slot table, staging and pool.

    ``copies`` private copies of the shared vector are paid for too (the "bucketed" variant).
    With ``banks`` memory banks of ``bank_size`` bytes (HBM pseudo-channels, DDR banks), the
    pool is cut into parts that each fit in one bank with its values and indices: the
    vectors, slot table and staging go to bank 0, pool parts fill bank 0's remainder and
    then the other banks (the ledger places each buffer in its bank).

    Raises MemoryBudgetError, with the minimum that would do, when the budget cannot hold the
    vectors plus one coordinate.
    """
    r = np.dtype(dtype).itemsize
    entry = r + (4 if store.sparse else 0)
    vdim = model.shared_dim()
    fixed = (2 + copies) * r * vdim + (r * store.dim if model.primal else r)
    slot = _slot_bytes(r, model.primal) + _DESC_BYTES
    # Device entries: an empty coordinate takes one (OpenCL has no zero-length pieces), so
    # a pool sized by the stored entries alone left one of them out for good.
    lens = np.maximum(store.lens.astype(np.int64), 1)
    max_len = int(lens.max(initial=1))
    fixed += 64  # alignment slack of the staging descriptors
    minimum = fixed + slot + 2 * entry * max_len  # one coordinate in the pool, one staged
    if budget < minimum:
        raise MemoryBudgetError(
            f"a memory budget of {format_size(budget)} cannot hold the shared vectors "
            f"({format_size(fixed)}) plus one coordinate (up to {max_len} entries, "
            f"{format_size(slot + 2 * entry * max_len)} with its staging); {label} needs at "
            f"least {format_size(minimum)} ({minimum} bytes)"
        )
    bank_size = int(bank_size or budget)
    part_cap = max(min(max_alloc // max(r, 4 if store.sparse else r), bank_size // entry), 1)
    if part_cap < max_len:
        raise MemoryBudgetError(
            f"the largest coordinate has {max_len} entries ({format_size(max_len * entry)}), "
            f"more than the largest single allocation ({format_size(max_alloc)}) or memory "
            f"bank ({format_size(bank_size)}) of {label}"
        )
    if not store.sparse:
        # Dense slots have fixed homes: a pool buffer holds whole slots only.
        part_cap -= part_cap % max(max_len, 1)
    avail = budget - fixed
    n = store.n_coords
    total_entries = int(lens.sum())
    if avail >= n * slot + (total_entries + max_len) * entry:
        # Everything fits: a staging area of one coordinate is enough for later swaps.
        stage = max_len
        cap = Capacity(
            budget, fixed, slot - _DESC_BYTES, n, entry, total_entries, part_cap, stage, minimum
        )
        return _bank_parts(cap, store, banks, bank_size, max_len, label)
    # Staging: an eighth of the budget (at most 64 MiB) keeps a round's copies to a few
    # batches; it must hold the largest coordinate.
    stage = int(min(max(max_len, avail // 8 // entry), max(max_len, (64 << 20) // entry)))
    rest = avail - stage * entry
    mean_len = max(total_entries / max(n, 1), 1.0)
    n_slots = int(min(n, max(1, rest // (slot + entry * mean_len))))
    pool = (rest - n_slots * slot) // entry
    while pool < max_len and n_slots > 1:
        n_slots = max(1, n_slots // 2)
        pool = (rest - n_slots * slot) // entry
    cap = Capacity(
        budget, fixed, slot - _DESC_BYTES, n_slots, entry, int(pool), part_cap, stage, minimum
    )
    return _bank_parts(cap, store, banks, bank_size, max_len, label)


def _bank_parts(cap, store, banks, bank_size, max_len, label):
    """Cut the pool into parts that fit the banks: bank 0 after the small buffers, then the
    others, each part at most ``part_entries`` (whole dense coordinates). The pool shrinks
    to what the banks hold."""
    small = cap.total - cap.pool_entries * cap.entry_bytes  # vectors, slots, staging, desc
    if small > bank_size:
        raise MemoryBudgetError(
            f"the shared vectors, slot table and staging area need {format_size(small)}, more "
            f"than one memory bank of {label} ({format_size(bank_size)}); use a smaller budget "
            f"or fewer samples"
        )
    unit = 1 if store.sparse else max(max_len, 1)
    left = cap.pool_entries
    parts = []
    for bank in range(banks):
        room = (bank_size - (small if bank == 0 else 0)) // cap.entry_bytes
        while left > 0 and room >= max_len:
            n = min(left, cap.part_entries, room)
            n -= n % unit
            if n < max_len:
                break
            parts.append((bank, int(n)))
            left -= n
            room -= n
        if left <= 0:
            break
    pool = sum(n for _, n in parts)
    if pool < max_len:
        raise MemoryBudgetError(
            f"no memory bank of {label} ({banks} x {format_size(bank_size)}) has room for one "
            f"coordinate ({max_len} entries) beside the vectors and tables "
            f"({format_size(small)}); use a larger budget or banks"
        )
    return dataclasses.replace(cap, pool_entries=int(pool), parts=tuple(parts))


class _Part:
    """One pool buffer (values, and indices when sparse) of ``capacity`` entries."""

    def __init__(self, val, idx, capacity):
        self.val, self.idx, self.capacity = val, idx, capacity


def _free_ranges(parts_cap, part, start, length):
    """Free ranges (part, start, length) of pools holding pieces at (part, start, length)."""
    order = np.lexsort((start, part))
    part, start, end = part[order], start[order], (start + length)[order]
    fp, fs, fe = [], [], []
    for p, cap in enumerate(parts_cap):
        sel = part == p
        s_p, e_p = start[sel], end[sel]
        fs.append(np.concatenate([[0], e_p]))
        fe.append(np.concatenate([s_p, [cap]]))
        fp.append(np.full(len(s_p) + 1, p))
    fp, fs, fe = (np.concatenate(x).astype(np.int64) for x in (fp, fs, fe))
    keep = fe > fs
    return fp[keep], fs[keep], (fe - fs)[keep]


def _entry_index(starts, lengths):
    """The position of every entry of pieces starting at ``starts`` with ``lengths``, piece
    after piece: starts[i], starts[i] + 1, ..., starts[i] + lengths[i] - 1, then piece i + 1."""
    lengths = np.asarray(lengths, dtype=np.int64)
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])  # each piece's first entry, packed
    return np.repeat(starts - first, lengths) + np.arange(int(lengths.sum()))


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


def place_pieces(lengths, free_part, free_start, free_len):
    """Where pieces of ``lengths`` (in priority order) go in the free ranges, or -1.

    Pieces of exactly a free range's length take such a range first (matched by length, in
    priority order: after evictions the holes are mostly of the sizes that come back in);
    the rest go next-fit, in priority order, through the remaining ranges in address order:
    as many consecutive pieces as fit into a range, then the next range; a piece larger
    than every remaining range is refused. Vectorised but for one step per range used.

    Returns (part, offset) arrays of the pieces' length, -1 where refused.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    n = len(lengths)
    out_part = np.full(n, -1, dtype=np.int64)
    out_off = np.full(n, -1, dtype=np.int64)
    if n == 0 or len(free_len) == 0:
        return out_part, out_off
    # 1. exact fits, matched within each length: the k-th piece of length L (priority
    #    order) takes the k-th free range of length L (address order).
    fo = np.lexsort((free_start, free_part, free_len))
    fl = free_len[fo]
    eo = np.argsort(lengths, kind="stable")
    el = lengths[eo]
    e_rank = np.arange(n) - np.searchsorted(el, el, side="left")
    first = np.searchsorted(fl, el, side="left")
    count = np.searchsorted(fl, el, side="right") - first
    hit = e_rank < count
    ranges = fo[first[hit] + e_rank[hit]]
    out_part[eo[hit]] = free_part[ranges]
    out_off[eo[hit]] = free_start[ranges]
    used = np.zeros(len(free_len), dtype=bool)
    used[ranges] = True
    # 2. next-fit for the rest through the unused ranges
    rest = np.flatnonzero(out_part < 0)
    if len(rest) == 0:
        return out_part, out_off
    gi = np.flatnonzero(~used)
    gi = gi[np.lexsort((free_start[gi], free_part[gi]))]
    gi = gi[free_len[gi] >= lengths[rest].min()]
    glen = free_len[gi]
    suffix_max = np.maximum.accumulate(glen[::-1])[::-1] if len(gi) else glen
    L = lengths[rest]
    csum = np.concatenate([[0], np.cumsum(L)])
    pos = 0
    for j in range(len(gi)):
        while pos < len(rest) and L[pos] > suffix_max[j]:
            pos += 1  # fits no remaining range: refused this round
        if pos >= len(rest):
            break
        if L[pos] > glen[j]:
            continue
        k = int(np.searchsorted(csum[pos + 1 :] - csum[pos], glen[j], side="right"))
        idx = rest[pos : pos + k]
        out_part[idx] = free_part[gi[j]]
        out_off[idx] = free_start[gi[j]] + csum[pos : pos + k] - csum[pos]
        pos += k
    return out_part, out_off


@dataclass
class SwapStats:
    n_swapped_in: int = 0
    n_evicted: int = 0
    n_refused: int = 0  # selected but no contiguous space this round
    bytes_swapped_in: int = 0


class DeviceWorkingSet:
    """Device buffers, kernels and the resident set for one model on one coordinate store.

    Parameters
    ----------
    device : duhl_cl.discovery.Device
    model : duhl_cl.models.Model (``setup`` done)
    store : duhl_cl.data.CoordinateStore
    budget : int, optional
        Bytes of device memory this fit may use; default: the profile's budget.
    ledger : Ledger, optional
    """

    def __init__(self, device, model, store, budget=None, ledger=None, variant=None):
        import pyopencl as cl

        self.cl = cl
        self.device, self.model, self.store = device, model, store
        self.queue = device.queue
        self.ledger = ledger or Ledger(device)
        if budget is not None:
            self.ledger.budget = (
                min(int(budget), self.ledger.budget) if budget else self.ledger.budget
            )
        self.dtype = store.dtype
        self.real = self.dtype.type
        self.variant = variant or device.profile.kernel_variant
        if self.variant not in KERNEL_VARIANTS_AVAILABLE:
            raise ValueError(
                f"kernel_variant must be one of {', '.join(map(repr, KERNEL_VARIANTS_AVAILABLE))}"
                f" (or None for the profile's), got {self.variant!r}"
            )
        if self.variant == "tpa" and self.dtype == np.float64:
            ext = device.cl_device.extensions
            if "cl_khr_int64_base_atomics" not in ext:
                raise ValueError(
                    f"kernel variant 'tpa' in float64 needs 64-bit atomics "
                    f"(cl_khr_int64_base_atomics), which {device.info.name} lacks; use "
                    f"dtype='float32' or kernel_variant='serial' or 'bucketed'"
                )
        self.n_buckets = n_buckets(device) if self.variant == "bucketed" else 0
        self.group = tpa_group_size(device) if self.variant == "tpa" else 1
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
        )
        defines = {
            "MODEL": model.code,
            "USE_DOUBLE": int(self.dtype == np.float64),
            "SPARSE": int(store.sparse),
        }
        pass_file, pass_name = _PASS_KERNELS[self.variant]
        pass_defines = dict(defines, WG=self.group) if self.variant == "tpa" else defines
        self.k_pass = get_kernel(device, pass_file, pass_defines, pass_name)
        if self.variant == "bucketed":
            self.k_merge = get_kernel(device, pass_file, defines, "merge_buckets")
        self.k_gap = get_kernel(device, "gap.cl", defines, "coord_gap")
        self.k_grad = get_kernel(device, "gap.cl", defines, "datafit_gradient")
        self.k_scatter_real = get_kernel(device, "scatter.cl", defines, "scatter_real")
        self.k_scatter_int = get_kernel(device, "scatter.cl", defines, "scatter_int")
        self.k_scatter_slots = get_kernel(device, "scatter.cl", defines, "scatter_slots")
        self.dim = store.dim
        self.vdim = model.shared_dim()
        self._simulated = "oclgrind" in device.info.platform.lower()
        self._allocate()
        p = model.kernel_params()
        R = self.real
        # The pass kernels take l1, l2, C, bias; coord_gap also the l1 bound (primal_gap).
        self._pass_params = [R(p["l1"]), R(p["l2"]), R(p["C"]), R(p["bias"])]
        self._gap_params = [R(p["l1"]), R(p["l2"]), R(p["bound"]), R(p["C"]), R(p["bias"])]
        self.inv_m = R(p["inv_m"])
        # Resident-set bookkeeping on the host.
        S = self.cap.n_slots
        self.slot_coord = np.full(S, -1, dtype=np.int64)  # coordinate in each slot
        self.slot_active = np.zeros(S, dtype=bool)  # visited by the passes
        # Device entries of each coordinate: an empty piece takes one (OpenCL has no
        # zero-length pieces).
        self.entries = np.maximum(store.lens.astype(np.int64), 1)
        self.coord_slot = np.full(store.n_coords, -1, dtype=np.int64)
        self.slot_part = np.zeros(S, dtype=np.int64)
        self.slot_off = np.zeros(S, dtype=np.int64)
        # Sparse pieces vary in size: each round places them in the free ranges (place_pieces).
        self.n_homes = S
        if not store.sparse:
            # Dense coordinates are all one size: each slot gets a fixed home in the pool, so
            # a swap is array bookkeeping, without a free list.
            per_part = [part.capacity // max(self.dim, 1) for part in self.parts]
            self.slot_part = np.repeat(np.arange(len(per_part)), per_part)[:S]
            self.slot_off = np.concatenate(
                [np.arange(k, dtype=np.int64) * max(self.dim, 1) for k in per_part]
            )[:S]
            self.n_homes = len(self.slot_part)
        self._order_flat = None  # the slot list last uploaded to b_order, if still valid
        self._starts = []
        # The Oclgrind simulator's uninitialised-value tracking misses host writes at a
        # buffer offset (a write of 8 floats at byte 64, then a kernel reading them: 8
        # reports), so under it every incoming coordinate takes the staged path, whose copy
        # is a kernel it can check; the direct path is host writes only.
        self._direct_runs = 0 if self._simulated else _DIRECT_RUNS

    # ------------------------------------------------------------------ allocation
    def _allocate(self):
        cap, L, r = self.cap, self.ledger, self.dtype.itemsize
        S = cap.n_slots
        try:
            self.b_v = L.alloc("shared vector", r * self.vdim)
            self.b_w = L.alloc("gradient", r * self.vdim)
            y = self.model.y if self.model.primal else np.zeros(1)
            self.b_y = L.alloc("labels y", r * len(y), np.asarray(y, dtype=self.dtype))
            self.b_offs = L.alloc("slot offsets", 8 * S)
            self.b_lens = L.alloc("slot lengths", 4 * S)
            self.b_alpha = L.alloc("slot coefficients", r * S)
            self.b_sqnorm = L.alloc("slot squared norms", r * S)
            self.b_label = L.alloc("slot labels", r * S) if not self.model.primal else self.b_y
            self.b_order = L.alloc("visit order", 4 * S)
            self.b_u = L.alloc("slot u", r * S)
            self.b_gap = L.alloc("slot gaps", r * S)
            if self.n_buckets:
                self.b_copies = L.alloc("bucket copies of v", r * self.vdim * self.n_buckets)
            self.b_desc = L.alloc("staging descriptors", _DESC_BYTES * S + 64)
            self.b_stage_val = L.alloc("staging values", r * cap.stage_entries)
            self.b_stage_idx = (
                L.alloc("staging indices", 4 * cap.stage_entries) if self.store.sparse else None
            )
            self.parts = []
            # Not under the simulator: host-backed memory reads as written (initialised) to
            # Oclgrind's uninitialised-value check, which the pool must not escape.
            backed = not self._simulated
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
        free = _free_ranges(
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
            sc[slots] = cs
            self.coord_slot[cs] = slots
            placed = np.column_stack([cs, slots, self.slot_part[slots], self.slot_off[slots]])
            stats.n_swapped_in = k
            stats.bytes_swapped_in = self._upload(placed, alpha)
        return stats

    def coordinate_bytes(self, coords) -> int:
        """Bytes copied to make ``coords`` resident: their entries and slot entries."""
        coords = np.asarray(coords, dtype=np.int64)
        n_entries = int(self.entries[coords].sum())
        return n_entries * self.cap.entry_bytes + len(coords) * self._slot_upload_bytes()

    def _slot_upload_bytes(self):
        r = self.dtype.itemsize
        return 4 + 8 + 4 + 3 * r

    def _pack(self, fields):
        """Pack arrays back to back, each at an offset aligned to 8 bytes; (bytes, offsets)."""
        offsets, pos = [], 0
        for f in fields:
            offsets.append(pos)
            pos += -(-f.nbytes // 8) * 8
        packed = aligned_empty(max(pos, 8), np.uint8, self.device.profile.host_alignment)
        packed[:] = 0
        for f, o in zip(fields, offsets, strict=True):
            packed[o : o + f.nbytes] = np.ascontiguousarray(f).view(np.uint8)
        if packed.nbytes > self.b_desc.size:
            raise AssertionError("staging descriptors larger than their buffer")
        return packed, [np.uint64(o) for o in offsets]

    def _upload(self, placed, alpha) -> int:
        """Copy the placed coordinates in; returns the bytes of their entries and slot entries."""
        q, st, L = self.queue, self.store, self.ledger
        arr = np.array(placed, dtype=np.int64).reshape(-1, 4)
        coords, slots, parts, offs = arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3]
        lens = self.entries[coords]
        r = self.dtype.itemsize
        n = len(coords)
        labels = st.labels[coords] if st.labels is not None else np.zeros(n)
        packed, o = self._pack(
            [
                slots.astype(np.int32),
                offs.astype(np.uint64),
                st.lens[coords].astype(np.int32),
                alpha[coords].astype(self.dtype),
                st.sqnorm[coords].astype(self.dtype),
                labels.astype(self.dtype),
            ]
        )
        L.upload(self.b_desc, packed)
        swapped = n * self._slot_upload_bytes()
        self.k_scatter_slots(
            q, _grid(n), (_WG,), self.b_desc, *o, np.int32(n),
            self.b_offs, self.b_lens, self.b_alpha, self.b_sqnorm, self.b_label,
            np.int32(0 if self.model.primal else 1),
        )  # fmt: skip
        # Values (and indices): per pool part, written in place through a map when the part
        # is in host memory the device shares; else uploaded directly when the part's pieces
        # are contiguous and in order (a fresh pool), otherwise staged and scattered.
        for p in np.unique(parts):
            sel = np.flatnonzero(parts == p)
            order = np.argsort(offs[sel], kind="stable")
            cs, dst, ln = coords[sel][order], offs[sel][order], lens[sel][order]
            entries = int(ln.sum())
            swapped += entries * (r + (4 if st.sparse else 0))
            part = self.parts[p]
            if self._writable(part):
                self._write_in_place(part, cs, dst, ln)
                continue
            # Runs of pieces that are contiguous on the device go up directly, one copy each,
            # when there are only a few (a fresh or freshly emptied pool); a run of consecutive
            # coordinates is copied straight from the store, without gathering it first.
            breaks = np.flatnonzero(dst[1:] != dst[:-1] + ln[:-1]) + 1
            if len(breaks) < self._direct_runs:
                src = np.concatenate([[0], np.cumsum(ln)])
                vals = idx = None
                for a, b in zip(np.r_[0, breaks], np.r_[breaks, len(cs)], strict=True):
                    run = self._store_run(cs[a:b], ln[a:b])
                    if run is None:
                        if vals is None:
                            vals, idx = self._gather(cs, ln)
                        lo, hi = int(src[a]), int(src[b])
                        run = vals[lo:hi], (idx[lo:hi] if idx is not None else None)
                    L.upload(part.val, run[0], dst_offset=int(dst[a]) * r)
                    if run[1] is not None:
                        L.upload(part.idx, run[1], dst_offset=int(dst[a]) * 4)
                continue
            start = 0
            while start < len(cs):
                # As many pieces as the staging area holds (at least one: it holds the largest),
                # gathered on their own so that every staged copy starts aligned.
                fit = np.searchsorted(np.cumsum(ln[start:]), self.cap.stage_entries, side="right")
                end = start + max(1, int(fit))
                vals, idx = self._gather(cs[start:end], ln[start:end])
                L.upload(self.b_stage_val, vals)
                if idx is not None:
                    L.upload(self.b_stage_idx, idx)
                k = end - start
                packed, o = self._pack(
                    [
                        np.concatenate([[0], np.cumsum(ln[start:end])[:-1]]).astype(np.uint64),
                        dst[start:end].astype(np.uint64),
                        ln[start:end].astype(np.int32),
                    ]
                )
                L.upload(self.b_desc, packed)
                self.k_scatter_real(
                    q, _grid(k), (_WG,), self.b_stage_val, part.val, self.b_desc, *o, np.int32(k)
                )
                if idx is not None:
                    self.k_scatter_int(
                        q,
                        _grid(k),
                        (_WG,),
                        self.b_stage_idx,
                        part.idx,
                        self.b_desc,
                        *o,
                        np.int32(k),
                    )
                start = end
        return swapped

    def _writable(self, part) -> bool:
        """Whether ``part`` is in host memory the device shares: it is written through a map."""
        L = self.ledger
        return L.is_host_backed(part.val) and (not self.store.sparse or L.is_host_backed(part.idx))

    def _write_in_place(self, part, cs, dst, ln):
        """Write pieces ``cs`` (lengths ``ln``, in ascending ``dst`` order) into a host-backed
        pool part through one map: one host copy each, instead of gathering them into staging,
        uploading that and scattering it on the device (dense hinge SVM at a 10% budget: the
        gather alone was a fifth of the fit, into freshly faulted staging pages)."""
        st, r, L = self.store, self.dtype.itemsize, self.ledger
        lo, hi = int(dst[0]), int(dst[-1] + ln[-1])
        n = hi - lo
        with contextlib.ExitStack() as maps:
            val = maps.enter_context(L.mapped(part.val, lo * r, n * r, self.dtype))
            if not st.sparse:
                d = max(st.dim, 1)
                X2 = st.val.reshape(st.n_coords, d)
                view = val.reshape(n // d, d)
                home = (dst - lo) // d
                breaks = np.flatnonzero(np.diff(home) != 1) + 1
                if len(breaks) < 64:
                    # Runs of consecutive homes: each one straight from the store into place,
                    # as one block copy where the coordinates are consecutive too (np.take
                    # of consecutive rows ran at half a block copy's speed: 800 MB, 0.25 s
                    # against 0.12 s).
                    for a, b in zip(np.r_[0, breaks], np.r_[breaks, len(cs)], strict=True):
                        out = view[home[a] : home[a] + b - a]
                        if np.all(np.diff(cs[a:b]) == 1):
                            np.copyto(out, X2[cs[a] : cs[b - 1] + 1])
                        else:
                            np.take(X2, cs[a:b], axis=0, out=out)
                else:
                    # Scattered homes: through a small buffer that stays in cache.
                    blk = max(1, (1 << 20) // (d * r))
                    tmp = np.empty((min(blk, len(cs)), d), dtype=self.dtype)
                    for a in range(0, len(cs), blk):
                        k = min(blk, len(cs) - a)
                        np.take(X2, cs[a : a + k], axis=0, out=tmp[:k])
                        view[home[a : a + k]] = tmp[:k]
                L.count_h2d(int(ln.sum()) * r)
                return
            idx = maps.enter_context(L.mapped(part.idx, lo * 4, n * 4, np.int32))
            src, pad = self._entry_sources(cs, ln)
            at = _entry_index(dst - lo, ln)
            if pad is not None:
                # empty coordinates occupy one entry (OpenCL has no zero-length pieces): zeros
                val[at[pad]] = 0
                idx[at[pad]] = 0
                at, src = at[~pad], src[~pad]
            val[at] = st.val[src]
            idx[at] = st.idx[src]
            L.count_h2d(int(ln.sum()) * (r + 4))

    def _entry_sources(self, cs, ln):
        """The store entry of each device entry of pieces ``cs`` (lengths ``ln``), and a mask
        of the padding entries of empty coordinates (None when there are none)."""
        st = self.store
        src = _entry_index(st.offs[cs].astype(np.int64), ln)
        real_len = st.lens[cs].astype(np.int64)
        if np.all(real_len == ln):
            return src, None
        return src, ~np.repeat(real_len > 0, ln)  # src is meaningless where padding

    def _store_run(self, cs, ln):
        """The store's own (values, indices) of consecutive coordinates, or None."""
        st = self.store
        if len(cs) == 0 or np.any(np.diff(cs) != 1):
            return None
        if st.sparse and not np.array_equal(st.lens[cs], ln):
            return None  # an empty coordinate takes a padding entry on the device
        a = int(st.offs[cs[0]])
        b = a + int(ln.sum())
        return st.val[a:b], (st.idx[a:b] if st.sparse else None)

    def _gather(self, cs, ln):
        """The values (and indices) of coordinates ``cs``, back to back in host staging memory
        aligned as the profile says."""
        st = self.store
        align = self.device.profile.host_alignment
        if not st.sparse:
            vals = aligned_empty((len(cs), st.dim), self.dtype, align)
            np.take(st.val.reshape(st.n_coords, st.dim), cs, axis=0, out=vals)
            return vals.ravel(), None
        rep, pad = self._entry_sources(cs, ln)
        vals = aligned_empty(len(rep), self.dtype, align)
        idx = aligned_empty(len(rep), np.int32, align)
        if pad is None:
            np.take(st.val, rep, out=vals)
            np.take(st.idx, rep, out=idx)
            return vals, idx
        # empty coordinates occupy one entry (OpenCL has no zero-length pieces): zeros
        vals[:] = 0
        idx[:] = 0
        vals[~pad] = st.val[rep[~pad]]
        idx[~pad] = st.idx[rep[~pad]]
        return vals, idx

    # ------------------------------------------------------------------ state transfers
    def set_shared(self, v):
        self.ledger.upload(self.b_v, np.ascontiguousarray(v, dtype=self.dtype), wait=True)

    def get_shared(self):
        out = np.empty(self.vdim, dtype=self.dtype)
        self.ledger.download(out, self.b_v)
        return out

    def read_alpha(self, alpha):
        """Copy the resident coefficients into ``alpha`` (float64, all coordinates)."""
        S = self.cap.n_slots
        out = np.empty(S, dtype=self.dtype)
        self.ledger.download(out, self.b_alpha)
        occ = self.slot_coord >= 0
        alpha[self.slot_coord[occ]] = out[occ]
        return alpha

    # ------------------------------------------------------------------ kernels
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
        for (p, g), start in self._starts:
            args = self._pass_args(p, start, len(g))
            if self.variant == "serial":
                self.k_pass(self.queue, (1,), (1,), *args, np.int32(1), np.uint32(0))
            elif self.variant == "tpa":
                self.k_pass(self.queue, (len(g) * self.group,), (self.group,), *args)
            else:
                nb = min(self.n_buckets, len(g))
                sigma = self.real(nb)
                self.k_pass(
                    self.queue, (nb,), (1,), *args, self.b_copies, np.int32(self.vdim), sigma
                )
                self.k_merge(
                    self.queue, _grid(self.vdim), (_WG,), self.b_v, self.b_copies,
                    np.int32(self.vdim), np.int32(nb), self.real(1.0 / nb),
                )  # fmt: skip
        if order is not None:
            self._order_flat = None  # an explicit order need not cover the resident set

    def _pass_args(self, p, start, count):
        """The pass kernels' common arguments for ``count`` slots of pool part ``p`` listed
        from ``start`` in the visit list."""
        part = self.parts[p]
        return (
            part.val, part.idx, self.b_offs, self.b_lens, self.b_order, np.int32(start), np.int32(count),
            self.b_alpha, self.b_sqnorm, self.b_label, self.b_v, np.int32(self.dim),
            *self._pass_params, self.inv_m,
        )  # fmt: skip

    @property
    def passes_in_one_launch(self) -> bool:
        """Whether :meth:`run_passes` does a round's passes in one launch: the "serial"
        variant with the visited set in one pool part."""
        occ = np.flatnonzero(self.slot_active)
        parts = self.slot_part[occ]
        return self.variant == "serial" and len(occ) > 0 and bool(np.all(parts == parts[0]))

    def run_passes(self, rng, n_passes):
        """Enqueue ``n_passes`` shuffled passes over the visited set; returns at once.

        The "serial" variant on a visited set in one pool part does them in one launch that
        shuffles the list on the device before each pass (:func:`device_orders`); otherwise
        one :meth:`run_pass` (host shuffle, one launch per part) each.
        """
        if not self.passes_in_one_launch:
            for _ in range(n_passes):
                self.run_pass(rng)
            return
        if self._order_flat is None:
            self._set_order(self._by_part())
        (p, g), start = self._starts[0]
        seed = np.uint32(rng.integers(1, 1 << 32))
        args = self._pass_args(p, start, len(g))
        self.k_pass(self.queue, (1,), (1,), *args, np.int32(n_passes), seed)
        self._order_flat = None  # shuffled on the device: the host's copy is stale

    def _set_order(self, groups):
        """Upload the visit list (slot groups by pool part) and remember it for the gap kernel."""
        flat = np.concatenate([g for _, g in groups]).astype(np.int32)
        self.ledger.upload(self.b_order, flat)
        offsets = np.concatenate([[0], np.cumsum([len(g) for _, g in groups])[:-1]])
        self._order_flat = flat
        self._starts = list(zip(groups, offsets.tolist(), strict=True))

    def resident_gaps(self, gaps=True):
        """(coordinates, u, gap) of every visited coordinate, in device precision.

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
        if self.model.primal:
            self.k_grad(
                q,
                _grid(self.dim),
                (_WG,),
                self.b_v,
                self.b_y,
                self.b_w,
                np.int32(self.dim),
                self.inv_m,
            )
            w = self.b_w
        else:
            w = self.b_v
        flat = self._order_flat
        for (p, g), start in self._starts:
            part = self.parts[p]
            self.k_gap(
                q, _grid(len(g)), (_WG,),
                part.val, part.idx, self.b_offs, self.b_lens, self.b_order, np.int32(start), np.int32(len(g)),
                self.b_alpha, self.b_label, w, np.int32(self.dim), *self._gap_params, self.b_u, self.b_gap,
            )  # fmt: skip
        # outputs sit at the position of each slot in the list
        u = np.empty(len(flat), dtype=self.dtype)
        self.ledger.download(u, self.b_u)
        g = None
        if gaps:
            g = np.empty(len(flat), dtype=self.dtype)
            self.ledger.download(g, self.b_gap)
        return self.slot_coord[flat], u, g

    def finish(self):
        self.queue.finish()
        self.ledger.settled()

    def release(self):
        self.ledger.free_all()
