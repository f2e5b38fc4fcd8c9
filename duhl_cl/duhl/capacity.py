"""How a device budget is spent: shared vectors, slot table, staging area and pool parts.

:func:`plan_capacity` is called once per fit by the working set (and by tests and the
estimators' budget checks) before any device buffer exists; it refuses, with the minimum
that would do, a budget that cannot hold the vectors plus one coordinate.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..device.ledger import MemoryBudgetError
from ..device.profiles import format_size

__all__ = ["Capacity", "DESC_BYTES", "class_pad", "desc_bytes", "plan_capacity"]


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
            + self.n_slots * DESC_BYTES
            + 64
        )


def desc_bytes(classes: int = 1) -> int:
    """Staging descriptor bytes of one incoming slot entry: the slot index, offset, length,
    squared norm, and a coefficient and a label per class (at most 8 bytes each). (A staged
    piece's src offset, dst offset and length take less.)"""
    return 4 + 8 + 4 + 8 + 2 * 8 * int(classes)


# The staging descriptors' bytes per slot: one round's incoming slot entries of one class
# (more classes: in batches, duhl_cl.duhl.pool_writes), or its staged pieces.
DESC_BYTES = desc_bytes(1)


def _slot_bytes(r: int, primal: bool, classes: int = 1) -> int:
    # offs 8, lens 4, sqnorm, u, gap (one class's at a time); per class: alpha, label (dual),
    # its visit list entry 4 (each class's launch shuffles and shrinks its own list)
    return 8 + 4 + 3 * r + classes * (r + (0 if primal else r) + 4)


def class_pad(nbytes: int, classes: int, align: int) -> int:
    """Bytes of one class's region of a buffer that holds ``classes`` of them: ``nbytes``
    rounded up to the device's sub-buffer alignment (one class: no padding)."""
    if classes <= 1:
        return int(nbytes)
    return -(-int(nbytes) // align) * align


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
    classes: int = 1,
    align: int = 128,
) -> Capacity:
    """Split ``budget`` between vectors, slot table, staging and pool.

    ``copies`` private copies of the shared vector are paid for too (the "bucketed" variant).
    With ``banks`` memory banks of ``bank_size`` bytes (HBM pseudo-channels, DDR banks), the
    pool is cut into parts that each fit in one bank with its values and indices: the
    vectors, slot table and staging go to bank 0, pool parts fill bank 0's remainder and
    then the other banks (the ledger places each buffer in its bank).

    With ``classes`` K > 1 (one-vs-rest problems over the same data, duhl_cl.duhl.ovr),
    every coordinate's coefficient, label, visit list entry, u and gap and the shared vector
    are held K times, each class's region padded to ``align`` bytes (the device's sub-buffer
    alignment); the pool, the data, is held once.

    Raises MemoryBudgetError, with the minimum that would do, when the budget cannot hold the
    vectors plus one coordinate.
    """
    r = np.dtype(dtype).itemsize
    entry = r + (4 if store.sparse else 0)
    vdim = model.shared_dim()
    K = max(int(classes), 1)
    fixed = (1 + copies) * r * vdim + K * r * vdim + K * (r * store.dim if model.primal else r)
    if K > 1:
        # Each class's region of the four class-wide buffers (shared vector, y or labels,
        # coefficients, visit list) padded to the sub-buffer alignment.
        fixed += 4 * K * (align - 1) + desc_bytes(K)  # ... and one slot's staged entries
    slot = _slot_bytes(r, model.primal, K) + DESC_BYTES
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
            budget, fixed, slot - DESC_BYTES, n, entry, total_entries, part_cap, stage, minimum
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
        budget, fixed, slot - DESC_BYTES, n_slots, entry, int(pool), part_cap, stage, minimum
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
