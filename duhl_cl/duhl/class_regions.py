"""Class regions: one buffer holding a region per one-vs-rest class, and its sub-buffers.

A mixin of :class:`duhl_cl.duhl.working_set.DeviceWorkingSet` (it reads the working set's
ledger, precision and class count): with K classes (duhl_cl.duhl.ovr) the shared vector, the
coefficients, the labels and the visit list each hold K regions, padded to the device's
sub-buffer alignment (CL_DEVICE_MEM_BASE_ADDR_ALIGN), and the kernels take class k's region
as a sub-buffer; one class: the buffer itself, no padding. Reads and writes of every class
go in one copy.
"""

from __future__ import annotations

import numpy as np

from .capacity import class_pad

__all__ = ["ClassRegions"]


class ClassRegions:
    """Class-wide buffers of the device working set (see the module docstring)."""

    def _classwise(self, name, nbytes, rows=None):
        """A buffer with one region of ``nbytes`` per class, each padded to the sub-buffer
        alignment, and the regions as sub-buffers (one class: the buffer itself); ``rows``
        (one array per class) are its initial contents. Returns (buffer, regions)."""
        K = self.n_classes
        stride = class_pad(nbytes, K, self._align)
        host = None
        if rows is not None:
            host = np.zeros(K * stride, dtype=np.uint8)
            for k, row in enumerate(rows):
                b = np.ascontiguousarray(row, dtype=self.dtype).view(np.uint8)
                host[k * stride : k * stride + b.nbytes] = b
        buf = self.ledger.alloc(name, K * stride, host)
        if K == 1:
            return buf, [buf]
        subs = [buf.get_sub_region(k * stride, nbytes) for k in range(K)]
        self._subs.extend(subs)
        return buf, subs

    def _stride(self, nbytes) -> int:
        """Bytes between two classes' regions of a class-wide buffer of ``nbytes`` a class."""
        return class_pad(nbytes, self.n_classes, self._align)

    def _download_classes(self, buf, count, dtype):
        """A class-wide buffer's regions of ``count`` items, as an array (n_classes, count)."""
        dtype = np.dtype(dtype)
        stride = self._stride(count * dtype.itemsize)
        if stride % dtype.itemsize:
            raise AssertionError("class regions must be a whole number of items apart")
        whole = np.empty(self.n_classes * stride // dtype.itemsize, dtype=dtype)
        self.ledger.download(whole, buf)
        return whole.reshape(self.n_classes, -1)[:, :count]

    def _upload_classes(self, buf, rows, count, dtype, wait=False, region=None):
        """Write ``count`` items at the start of every class's region (of ``region`` items,
        default ``count``) of a class-wide buffer, in one copy from offset 0 (the simulator's
        uninitialised-value check misses writes at an offset)."""
        dtype = np.dtype(dtype)
        rows = np.asarray(rows, dtype=dtype).reshape(self.n_classes, count)
        if self.n_classes == 1:
            self.ledger.upload(buf, np.ascontiguousarray(rows[0]), wait=wait)
            return
        per = self._stride((region or count) * dtype.itemsize) // dtype.itemsize
        whole = np.zeros((self.n_classes, per), dtype=dtype)
        whole[:, :count] = rows
        self.ledger.upload(buf, whole.ravel(), wait=wait)
