"""Unit B: the device side of a fit, coordinate-descent passes and gaps on resident slots.

The device holds a working set of coordinates in slots (here, in the "Core" issue, every
coordinate is resident and slot i holds coordinate i), the coefficients of the resident
slots, and the shared vector v. Passes take an explicit list of slots to visit.
"""

from __future__ import annotations

import warnings

import numpy as np

from .ledger import Ledger
from .program import get_kernel

__all__ = ["DeviceSolver", "KERNEL_VARIANTS_AVAILABLE"]

KERNEL_VARIANTS_AVAILABLE = ("serial",)


class DeviceSolver:
    """Device buffers and kernels for one model on one coordinate store.

    Parameters
    ----------
    device : duhl_cl.discovery.Device
    model : duhl_cl.models.Model
        Bound to the problem (``setup`` called).
    store : duhl_cl.data.CoordinateStore
        Host storage of the coordinates, in the device precision.
    ledger : duhl_cl.ledger.Ledger, optional
        Every allocation goes through it; a new one is made if not given.
    """

    def __init__(self, device, model, store, ledger=None):
        import pyopencl as cl

        self.cl = cl
        self.device, self.model, self.store = device, model, store
        self.ledger = ledger or Ledger(device)
        self.dtype = store.dtype
        self.real = self.dtype.type
        self.variant = device.profile.kernel_variant
        if self.variant not in KERNEL_VARIANTS_AVAILABLE:
            # Per-device parameters are data with fallbacks: the exact serial pass runs on
            # every device, so a profile asking for a variant not built yet still trains.
            warnings.warn(
                f"kernel variant {self.variant!r} of profile {device.profile.name!r} is not "
                f"available in this version (available: {', '.join(KERNEL_VARIANTS_AVAILABLE)}); "
                f"using 'serial'",
                stacklevel=4,
            )
            self.variant = "serial"
        self.n_slots = store.n_coords
        self.dim = store.dim
        self.vdim = model.shared_dim()
        defines = {
            "MODEL": model.code,
            "USE_DOUBLE": int(self.dtype == np.float64),
            "SPARSE": int(store.sparse),
        }
        self.k_pass = get_kernel(device, "cd_pass.cl", defines, "cd_pass")
        self.k_gap = get_kernel(device, "gap.cl", defines, "coord_gap")
        self.k_grad = get_kernel(device, "gap.cl", defines, "datafit_gradient")

        n, r = self.n_slots, self.dtype.itemsize
        ylab = store.labels if not model.primal else model.y
        requests = {
            "data values": store.val.nbytes,
            "data indices": store.idx.nbytes if store.idx is not None else 0,
            "slot offsets": 8 * n,
            "slot lengths": 4 * n,
            "coefficients": r * n,
            "squared norms": r * n,
            "labels": r * len(ylab),
            "shared vector": r * self.vdim,
            "gradient": r * self.vdim,
            "visit order": 4 * n,
            "gaps": 2 * r * n,
        }
        self.ledger.check(requests)
        L = self.ledger
        try:
            self.b_val = L.alloc("data values", store.val.nbytes, store.val)
            self.b_idx = (
                L.alloc("data indices", store.idx.nbytes, store.idx)
                if store.idx is not None
                else L.alloc("data indices", 4)
            )
            self.b_offs = L.alloc("slot offsets", 8 * n, store.offs)
            self.b_lens = L.alloc("slot lengths", 4 * n, store.lens)
            self.b_alpha = L.alloc("coefficients", r * n)
            self.b_sqnorm = L.alloc("squared norms", r * n, store.sqnorm.astype(self.dtype))
            self.b_ylab = L.alloc("labels", r * len(ylab), np.asarray(ylab, dtype=self.dtype))
            self.b_v = L.alloc("shared vector", r * self.vdim)
            self.b_w = L.alloc("gradient", r * self.vdim)
            self.b_order = L.alloc("visit order", 4 * n)
            self.b_u = L.alloc("gaps", r * n)
            self.b_gap = L.alloc("gaps", r * n)
        except BaseException:
            self.release()
            raise
        p = model.kernel_params()
        R = self.real
        self._params = [R(p["l1"]), R(p["l2"]), R(p["bound"]), R(p["C"]), R(p["bias"])]
        self.inv_m = R(p["inv_m"])
        self._slots = np.arange(n, dtype=np.int32)

    # -- state transfers (counted by the ledger)
    def set_alpha(self, alpha):
        self.ledger.upload(self.b_alpha, np.ascontiguousarray(alpha, dtype=self.dtype), wait=True)

    def get_alpha(self):
        out = np.empty(self.n_slots, dtype=self.dtype)
        self.ledger.download(out, self.b_alpha)
        return out

    def set_shared(self, v):
        self.ledger.upload(self.b_v, np.ascontiguousarray(v, dtype=self.dtype), wait=True)

    def get_shared(self):
        out = np.empty(self.vdim, dtype=self.dtype)
        self.ledger.download(out, self.b_v)
        return out

    # -- kernels
    def run_pass(self, order):
        """One serial coordinate-descent pass over the slots in ``order`` (int32)."""
        order = np.ascontiguousarray(order, dtype=np.int32)
        self.ledger.upload(self.b_order, order)
        self.k_pass(
            self.device.queue, (1,), (1,),
            self.b_val, self.b_idx, self.b_offs, self.b_lens, self.b_order, np.int32(len(order)),
            self.b_alpha, self.b_sqnorm, self.b_ylab, self.b_v, np.int32(self.dim),
            *self._params, self.inv_m,
        )  # fmt: skip

    def gaps(self, slots=None):
        """Per-slot (u, gap) in device precision for ``slots`` (default: every slot)."""
        slots = self._slots if slots is None else np.ascontiguousarray(slots, dtype=np.int32)
        q = self.device.queue
        if self.model.primal:
            self.k_grad(
                q,
                (self.dim,),
                None,
                self.b_v,
                self.b_ylab,
                self.b_w,
                np.int32(self.dim),
                self.inv_m,
            )
            w = self.b_w
        else:
            w = self.b_v
        self.ledger.upload(self.b_order, slots)
        self.k_gap(
            q, (len(slots),), None,
            self.b_val, self.b_idx, self.b_offs, self.b_lens, self.b_order, np.int32(len(slots)),
            self.b_alpha, self.b_ylab, w, np.int32(self.dim), *self._params, self.b_u, self.b_gap,
        )  # fmt: skip
        u = np.empty(len(slots), dtype=self.dtype)
        g = np.empty(len(slots), dtype=self.dtype)
        self.ledger.download(u, self.b_u)
        self.ledger.download(g, self.b_gap)
        return u, g

    def release(self):
        self.ledger.free_all()
