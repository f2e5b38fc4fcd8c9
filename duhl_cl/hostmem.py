"""Host memory at an alignment: staging for device copies, and arrays a device reads in place.

Used by the device ledger (duhl_cl.device.ledger: staging, host-backed pools, aliased
stores) and by the store's relayout (duhl_cl.store.layout), which allocates on a page so
that a CPU device can read the relaid store as its pool without a copy.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PAGE", "aligned_empty", "page_empty"]

PAGE = 4096


def aligned_empty(shape, dtype, alignment: int) -> np.ndarray:
    """An uninitialised host array whose data starts at a multiple of ``alignment`` bytes.

    Host staging memory for device copies: XRT-style FPGA flows copy from 4 KiB-aligned host
    memory directly and bounce anything else through an aligned copy of their own.
    """
    dtype = np.dtype(dtype)
    n = int(np.prod(shape)) * dtype.itemsize
    alignment = max(int(alignment), dtype.itemsize)
    raw = np.empty(n + alignment, dtype=np.uint8)
    start = -raw.ctypes.data % alignment
    return raw[start : start + n].view(dtype).reshape(shape)


def page_empty(shape, dtype, order="C") -> np.ndarray:
    """An uninitialised 2-D array on a page, contiguous in ``order`` ('C' or 'F'): one that a
    CPU device can read in place (duhl_cl.device.ledger.Ledger.alias)."""
    if order == "C":
        return aligned_empty(shape, dtype, PAGE)
    return aligned_empty(tuple(shape)[::-1], dtype, PAGE).T
