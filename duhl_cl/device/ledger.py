"""The device memory ledger: every device allocation goes through it.

OpenCL drivers do not enforce a memory budget of their own (PoCL happily over-commits), so
the package does: the sum of live allocations never exceeds the profile's budget, no single
buffer exceeds the largest allocation, and the peak is recorded. Memory comes in the
profile's banks (HBM pseudo-channels, DDR banks: an FPGA kernel port sees one bank): each
buffer lives in one bank, a bank never holds more than its size, and each bank's use and
peak are accounted.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..hostmem import PAGE, aligned_empty
from .profiles import format_size

__all__ = ["MemoryBudgetError", "Ledger", "live_ledgers_bytes", "aligned_empty"]


_ALL_LEDGERS: list = []
# The host arrays a device may read in place (Ledger.alias) start on a page: Intel's CPU
# runtime copied an array that started 16 bytes past one.
ALIAS_ALIGNMENT = PAGE


class MemoryBudgetError(MemoryError):
    """An allocation would exceed the device memory budget or the largest single allocation."""


class Ledger:
    """Accounts for the device buffers of one fit.

    Parameters
    ----------
    device : duhl_cl.device.discovery.Device
        The opened device; its profile gives ``budget`` and ``max_alloc`` (bytes).
    """

    def __init__(self, device):
        self.device = device
        self.budget = device.profile.budget
        self.max_alloc = device.profile.max_alloc
        self.banks = max(int(device.profile.banks), 1)
        self.bank_size = int(device.profile.bank_size)
        self.bank_used = [0] * self.banks
        self.bank_peak = [0] * self.banks
        self.live: dict[int, tuple[str, int, object, int]] = {}
        self.live_bytes = 0
        self.peak = 0
        # Events of non-blocking uploads still in flight: deleting one of pyopencl's
        # NannyEvents waits for its copy, which in an in-order queue means for every kernel
        # before it (each pass's visit-list upload waited for the previous pass: 1 ms a pass
        # on PoCL). They are dropped once the queue is known to be idle.
        self._in_flight = []
        self._backing = {}  # host memory of host_backed buffers, by id(buffer)
        self._aliases = {}  # host arrays that aliased buffers read in place, by id(buffer)
        self.bytes_h2d = 0
        self.bytes_d2h = 0
        _ALL_LEDGERS.append(self)

    def check(self, requests: dict[str, int]) -> None:
        """Refuse up front a set of allocations that cannot fit, saying how much is needed."""
        total = sum(requests.values())
        big = {k: n for k, n in requests.items() if n > self.max_alloc}
        if big:
            name, n = max(big.items(), key=lambda kv: kv[1])
            raise MemoryBudgetError(
                f"the {name} buffer needs {format_size(n)} in one allocation, more than the "
                f"largest single allocation of {self.device.profile.label()} "
                f"({format_size(self.max_alloc)}); use a device or profile with a larger "
                f"max_alloc, or fewer/smaller data"
            )
        if self.live_bytes + total > self.budget:
            parts = ", ".join(f"{k} {format_size(n)}" for k, n in requests.items())
            raise MemoryBudgetError(
                f"the data needs {format_size(total)} of device memory ({parts}) but the "
                f"budget of {self.device.profile.label()} is {format_size(self.budget)} "
                f"({format_size(self.budget - self.live_bytes)} free); use a profile with at "
                f"least {format_size(self.live_bytes + total)} of budget"
            )

    def _bank_for(self, name: str, nbytes: int, bank):
        """The bank that takes a buffer: ``bank`` if given, else the fullest that fits (so
        small buffers share a bank and whole banks stay free for the pool)."""
        free = [self.bank_size - u for u in self.bank_used]
        if bank is not None:
            if not 0 <= bank < self.banks:
                raise ValueError(f"bank {bank} of {self.banks}")
            if nbytes > free[bank]:
                raise MemoryBudgetError(
                    f"the {name} buffer ({format_size(nbytes)}) does not fit in memory bank "
                    f"{bank} of {self.device.profile.label()} ({format_size(free[bank])} free of "
                    f"{format_size(self.bank_size)})"
                )
            return bank
        fits = [b for b in range(self.banks) if free[b] >= nbytes]
        if not fits:
            raise MemoryBudgetError(
                f"the {name} buffer ({format_size(nbytes)}) fits in no memory bank of "
                f"{self.device.profile.label()} ({self.banks} x {format_size(self.bank_size)}, "
                f"at most {format_size(max(free))} free in one); use a profile with larger banks "
                f"or a smaller problem"
            )
        return min(fits, key=lambda b: (free[b], b))

    def alias(self, name: str, array, *, bank=None):
        """A read-only device buffer over host ``array`` itself, or None where the device would
        copy it.

        On a device sharing the host's memory (CL_DEVICE_HOST_UNIFIED_MEMORY) a buffer made
        with CL_MEM_USE_HOST_PTR over page-aligned memory is zero-copy: the kernels read the
        array where it is. Intel's CPU runtime copies an unaligned array at creation (800 MB:
        0.3-2.0 s, into freshly faulted pages), so only a page-aligned contiguous array
        qualifies. Counted in the budget as device memory, as any buffer; nothing may write
        it (the package never maps it).
        """
        import pyopencl as cl

        if not (
            self.device.cl_device.host_unified_memory
            and isinstance(array, np.ndarray)
            and array.flags.c_contiguous
            and array.ctypes.data % ALIAS_ALIGNMENT == 0
            and array.nbytes > 0
        ):
            return None
        nbytes = int(array.nbytes)
        b = self._admit(name, nbytes, bank)
        mf = cl.mem_flags
        buf = cl.Buffer(self.device.context, mf.READ_ONLY | mf.USE_HOST_PTR, hostbuf=array)
        self._aliases[id(buf)] = array
        self._track(name, nbytes, buf, b)
        return buf

    def _admit(self, name, nbytes, bank):
        """Check ``nbytes`` against the budget and choose its bank (the ledger in use again
        after free_all, as in a refinement phase)."""
        if self not in _ALL_LEDGERS:
            _ALL_LEDGERS.append(self)
        self.check({name: nbytes})
        return self._bank_for(name, nbytes, bank)

    def _track(self, name, nbytes, buf, bank):
        self.live[id(buf)] = (name, nbytes, buf, bank)
        self.live_bytes += nbytes
        self.peak = max(self.peak, self.live_bytes)
        self.bank_used[bank] += nbytes
        self.bank_peak[bank] = max(self.bank_peak[bank], self.bank_used[bank])

    def alloc(self, name: str, nbytes: int, host=None, *, bank=None, host_backed=False):
        """Allocate a device buffer of ``nbytes`` in a memory bank (``bank``, or the fullest
        one that holds it), copying ``host`` into it if given.

        ``host_backed``: on a device that shares the host's memory (CL_DEVICE_HOST_UNIFIED_
        MEMORY: CPUs, integrated GPUs) the buffer lives in page-aligned memory the package
        allocates (CL_MEM_USE_HOST_PTR), as vendors advise for zero-copy buffers. On PoCL
        the driver's own allocation is touched page by page on the first write: filling an
        800 MB pool took 0.60 s, against 0.13-0.15 s in NumPy-allocated memory (which asks the
        kernel for huge pages). Still counted in the budget as device memory.
        """
        import pyopencl as cl

        nbytes = max(int(nbytes), 1)  # OpenCL refuses zero-sized buffers
        b = self._admit(name, nbytes, bank)
        mf = cl.mem_flags
        ctx = self.device.context
        if host_backed and self.device.cl_device.host_unified_memory:
            backing = aligned_empty(nbytes, np.uint8, 4096)
            buf = cl.Buffer(ctx, mf.READ_WRITE | mf.USE_HOST_PTR, hostbuf=backing)
            self._backing[id(buf)] = backing  # the buffer's memory: alive as long as it
        else:
            buf = cl.Buffer(ctx, mf.READ_WRITE, size=nbytes)
        if host is not None:
            self.upload(buf, host, wait=True)
        self._track(name, nbytes, buf, b)
        return buf

    def upload(self, buf, host, *, wait=False, dst_offset=0) -> None:
        """Copy a host array into a device buffer (at ``dst_offset`` bytes), counting the bytes.

        A non-blocking copy keeps ``host`` alive until it completes (pyopencl's NannyEvent).
        """
        import pyopencl as cl

        evt = cl.enqueue_copy(self.device.queue, buf, host, is_blocking=wait, dst_offset=dst_offset)
        if not wait:
            self._in_flight.append(evt)
        self.bytes_h2d += host.nbytes

    def is_host_backed(self, buf) -> bool:
        """Whether ``buf`` lives in host memory the package allocated (see :meth:`alloc`)."""
        return id(buf) in self._backing

    @contextlib.contextmanager
    def mapped(self, buf, offset: int, nbytes: int, dtype):
        """A writable host view (``dtype``) of ``nbytes`` of ``buf`` from byte ``offset``.

        Mapping waits for the queue's earlier commands on ``buf``; the view is unmapped on
        leaving. On a host-backed buffer of a device sharing host memory the map is the
        buffer's own memory (PoCL: 0.1-0.3 ms, no copy), so writing through it replaces a
        staged copy and a scatter. The caller counts what it writes (:meth:`count_h2d`).
        """
        import pyopencl as cl

        q = self.device.queue
        dtype = np.dtype(dtype)
        view, _ = cl.enqueue_map_buffer(
            q, buf, cl.map_flags.WRITE, int(offset), (int(nbytes) // dtype.itemsize,), dtype
        )
        try:
            yield view
        finally:
            view.base.release(q)

    def count_h2d(self, nbytes: int) -> None:
        """Count bytes written to device memory through a map."""
        self.bytes_h2d += int(nbytes)

    def download(self, host, buf, *, src_offset=0) -> None:
        """Copy a device buffer (from ``src_offset`` bytes) into a host array (blocking),
        counting the bytes."""
        import pyopencl as cl

        cl.enqueue_copy(self.device.queue, host, buf, is_blocking=True, src_offset=src_offset)
        self.settled()  # a blocking copy in an in-order queue: everything before it is done
        self.bytes_d2h += host.nbytes

    def settled(self) -> None:
        """The queue has finished everything enqueued so far: forget the uploads' events."""
        self._in_flight.clear()

    def free(self, buf) -> None:
        name, nbytes, _, bank = self.live.pop(id(buf))
        self.live_bytes -= nbytes
        self.bank_used[bank] -= nbytes
        buf.release()
        self._backing.pop(id(buf), None)
        self._aliases.pop(id(buf), None)

    def free_all(self) -> None:
        import pyopencl as cl

        error = None
        try:
            self.device.queue.finish()
        except cl.Error as exc:
            error = exc  # a failing device: its buffers are released all the same, then raised
        self.settled()
        for _, _, buf, _ in list(self.live.values()):
            buf.release()
        self.live.clear()
        self._backing.clear()
        self._aliases.clear()
        self.live_bytes = 0
        self.bank_used = [0] * self.banks
        if self in _ALL_LEDGERS:
            _ALL_LEDGERS.remove(self)
        if error is not None:
            raise error


def live_ledgers_bytes() -> int:
    """Bytes held by every ledger not yet freed (0 between fits)."""
    return sum(led.live_bytes for led in _ALL_LEDGERS)
