"""Writing coordinates into the device pool: slot entries, then values (and indices).

A mixin of :class:`duhl_cl.duhl.working_set.DeviceWorkingSet` (it reads the working set's
buffers, kernels and store): :meth:`PoolWrites._upload` is called once per round with the
placed coordinates. Per pool part the values go in place through a map when the part is
host memory the device shares (CPU devices), up directly as a few contiguous runs (a fresh
pool), or through the staging area and the scatter kernels.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

from ..device.ledger import aligned_empty
from ..kernels import WG, grid
from ..store.products import _host_pool
from .capacity import desc_bytes
from .placement import entry_index

__all__ = ["PoolWrites"]

# Up to this many contiguous runs per pool part are copied directly; more are staged.
DIRECT_RUNS = 4


class PoolWrites:
    """Pool writes of the device working set (see the module docstring)."""

    def coordinate_bytes(self, coords) -> int:
        """Bytes copied to make ``coords`` resident: their entries and slot entries."""
        coords = np.asarray(coords, dtype=np.int64)
        n_entries = int(self.entries[coords].sum())
        return n_entries * self.cap.entry_bytes + len(coords) * self._slot_upload_bytes()

    def _slot_upload_bytes(self):
        # slot, offset, length, squared norm; a coefficient and a label per class
        r = self.dtype.itemsize
        return 4 + 8 + 4 + r + 2 * r * self.n_classes

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
        arr = np.array(placed, dtype=np.int64).reshape(-1, 4)
        coords, parts, offs = arr[:, 0], arr[:, 2], arr[:, 3]
        # The slot entries, in batches the staging descriptors hold (one batch for one class:
        # they are sized by the slot table for one class's entries).
        batch = max(1, (self.b_desc.size - 64) // self._desc_per_slot)
        swapped = 0
        for a in range(0, len(arr), batch):
            swapped += self._upload_slots(arr[a : a + batch], alpha)
        lens = self.entries[coords]
        r, st = self.dtype.itemsize, self.store
        # Values (and indices): per pool part, written in place through a map when the part
        # is in host memory the device shares; else uploaded directly when the part's pieces
        # are contiguous and in order (a fresh pool), otherwise staged and scattered.
        for p in np.unique(parts):
            sel = np.flatnonzero(parts == p)
            order = np.argsort(offs[sel], kind="stable")
            cs, dst, ln = coords[sel][order], offs[sel][order], lens[sel][order]
            part = self.parts[p]
            if part.aliased:
                # The store itself: the values are in place, nothing moves.
                if not np.array_equal(dst, cs * max(st.dim, 1)):
                    raise AssertionError("a coordinate placed away from its home in the store")
                continue
            swapped += int(ln.sum()) * (r + (4 if st.sparse else 0))
            self._upload_part(part, cs, dst, ln)
        return swapped

    @property
    def _desc_per_slot(self) -> int:
        return desc_bytes(self.n_classes)

    def _upload_slots(self, arr, alpha) -> int:
        """Write the slot entries of placed rows ``arr`` (coord, slot, part, offset); returns
        their bytes."""
        q, st, L = self.queue, self.store, self.ledger
        coords, slots, offs = arr[:, 0], arr[:, 1], arr[:, 3]
        r = self.dtype.itemsize
        n, K = len(coords), self.n_classes
        # Per class (rows): the coefficients, and the labels (dual: y_j, or y_j s_j with
        # sample weights, model.h; the primal models keep theirs by row, not per slot).
        a = np.asarray(alpha).reshape(K, -1)[:, coords]
        labels = np.zeros((K, n))
        if not self.model.primal:
            labels = np.array([m.slot_labels(m.y[coords], coords) for m in self.models])
        packed, o = self._pack(
            [
                slots.astype(np.int32),
                offs.astype(np.uint64),
                st.lens[coords].astype(np.int32),
                a.astype(self.dtype).ravel(),
                st.sqnorm[coords].astype(self.dtype),
                labels.astype(self.dtype).ravel(),
            ]
        )
        L.upload(self.b_desc, packed)
        swapped = n * self._slot_upload_bytes()
        # Every class's coefficients and labels, each from its row of the packed fields, into
        # its region of the class-wide buffers (regions a whole number of reals apart).
        stride = self._stride(r * self.cap.n_slots) // r if K > 1 else 0
        self.k_scatter_slots(
            q, grid(n), (WG,), self.b_desc, *o, np.int32(n),
            self.b_offs, self.b_lens, self.b_alpha, self.b_sqnorm, self.b_label,
            np.int32(0 if self.model.primal else 1), np.int32(K), np.int32(stride),
        )  # fmt: skip
        return swapped

    def _upload_part(self, part, cs, dst, ln):
        """Write pieces ``cs`` (lengths ``ln``, at entry offsets ``dst`` ascending) into one
        pool part: in place through a map, directly by runs, or staged and scattered.

        A disk tier's coordinates (duhl_cl.store.tiered) are fetched a bounded piece at a
        time, from its host cache or disk, and written from there."""
        st = self.store
        if not st.tiered:
            self._upload_from(st, part, cs, dst, ln)
            return
        # Fetched in the store's order, so that consecutive coordinates are one read
        # however scattered their homes (the device's draw takes them in runs, see
        # duhl_cl.duhl.policies.Duhl; fetched in home order, a 16 GiB SVM's rounds read
        # 110-135 thousand rows as 78 thousand reads, 6 s a round); each piece is then
        # written in home order.
        by_coord = np.argsort(cs, kind="stable")
        for a, b in st.chunk_bounds(ln[by_coord]):
            sub = by_coord[a:b]
            src = st.fetch(cs[sub], incoming=True)
            try:
                o = np.argsort(sub, kind="stable")
                self._upload_from(src, part, o, dst[sub[o]], ln[sub[o]])
            finally:
                st.release(src)

    def _upload_from(self, st, part, cs, dst, ln):
        """:meth:`_upload_part` from ``st``: the store, or a disk tier's fetched pieces."""
        q, r, L = self.queue, self.dtype.itemsize, self.ledger
        if self._writable(part):
            self._write_in_place(st, part, cs, dst, ln)
            return
        # Runs of pieces that are contiguous on the device go up directly, one copy each,
        # when there are only a few (a fresh or freshly emptied pool); a run of consecutive
        # coordinates is copied straight from the store, without gathering it first.
        breaks = np.flatnonzero(dst[1:] != dst[:-1] + ln[:-1]) + 1
        if len(breaks) < self._direct_runs:
            src = np.concatenate([[0], np.cumsum(ln)])
            vals = idx = None
            for a, b in zip(np.r_[0, breaks], np.r_[breaks, len(cs)], strict=True):
                run = self._store_run(st, cs[a:b], ln[a:b])
                if run is None:
                    if vals is None:
                        vals, idx = self._gather(st, cs, ln)
                    lo, hi = int(src[a]), int(src[b])
                    run = vals[lo:hi], (idx[lo:hi] if idx is not None else None)
                L.upload(part.val, run[0], dst_offset=int(dst[a]) * r)
                if run[1] is not None:
                    L.upload(part.idx, run[1], dst_offset=int(dst[a]) * 4)
            return
        start = 0
        while start < len(cs):
            # As many pieces as the staging area holds (at least one: it holds the largest),
            # gathered on their own so that every staged copy starts aligned.
            fit = np.searchsorted(np.cumsum(ln[start:]), self.cap.stage_entries, side="right")
            end = start + max(1, int(fit))
            vals, idx = self._gather(st, cs[start:end], ln[start:end])
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
                q, grid(k), (WG,), self.b_stage_val, part.val, self.b_desc, *o, np.int32(k)
            )
            if idx is not None:
                self.k_scatter_int(
                    q,
                    grid(k),
                    (WG,),
                    self.b_stage_idx,
                    part.idx,
                    self.b_desc,
                    *o,
                    np.int32(k),
                )
            start = end

    def _writable(self, part) -> bool:
        """Whether ``part`` is in host memory the device shares: it is written through a map."""
        L = self.ledger
        return L.is_host_backed(part.val) and (not self.store.sparse or L.is_host_backed(part.idx))

    def _write_in_place(self, st, part, cs, dst, ln):
        """Write pieces ``cs`` (lengths ``ln``, in ascending ``dst`` order) into a host-backed
        pool part through one map: one host copy each, instead of gathering them into staging,
        uploading that and scattering it on the device (dense hinge SVM at a 10% budget: the
        gather alone was a fifth of the fit, into freshly faulted staging pages)."""
        r, L = self.dtype.itemsize, self.ledger
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
                            _copy(out, X2[cs[a] : cs[b - 1] + 1])
                        else:
                            _take(X2, cs[a:b], out, axis=0)
                else:
                    # Scattered homes: through a small buffer that stays in cache.
                    blk = max(1, (1 << 20) // (d * r))
                    tmp = np.empty((min(blk, len(cs)), d), dtype=self.dtype)
                    for a in range(0, len(cs), blk):
                        k = min(blk, len(cs) - a)
                        _take(X2, cs[a : a + k], tmp[:k], axis=0)
                        view[home[a : a + k]] = tmp[:k]
                L.count_h2d(int(ln.sum()) * r)
                return
            idx = maps.enter_context(L.mapped(part.idx, lo * 4, n * 4, np.int32))
            src, pad = self._entry_sources(st, cs, ln)
            at = entry_index(dst - lo, ln)
            if pad is not None:
                # empty coordinates occupy one entry (OpenCL has no zero-length pieces): zeros
                val[at[pad]] = 0
                idx[at[pad]] = 0
                at, src = at[~pad], src[~pad]
            val[at] = st.val[src]
            idx[at] = st.idx[src]
            L.count_h2d(int(ln.sum()) * (r + 4))

    def _entry_sources(self, st, cs, ln):
        """The entry of ``st`` of each device entry of pieces ``cs`` (lengths ``ln``), and a
        mask of the padding entries of empty coordinates (None when there are none)."""
        src = entry_index(st.offs[cs].astype(np.int64), ln)
        real_len = st.lens[cs].astype(np.int64)
        if np.all(real_len == ln):
            return src, None
        return src, ~np.repeat(real_len > 0, ln)  # src is meaningless where padding

    def _store_run(self, st, cs, ln):
        """``st``'s own (values, indices) of consecutive coordinates, or None."""
        if len(cs) == 0 or np.any(np.diff(cs) != 1):
            return None
        if st.sparse and not np.array_equal(st.lens[cs], ln):
            return None  # an empty coordinate takes a padding entry on the device
        a = int(st.offs[cs[0]])
        b = a + int(ln.sum())
        return st.val[a:b].astype(self.dtype, copy=False), (st.idx[a:b] if st.sparse else None)

    def _gather(self, st, cs, ln):
        """The values (and indices) of coordinates ``cs`` of ``st``, back to back in host
        staging memory aligned as the profile says."""
        align = self.device.profile.host_alignment
        if not st.sparse:
            vals = aligned_empty((len(cs), st.dim), self.dtype, align)
            _take(st.val.reshape(st.n_coords, st.dim), cs, vals, axis=0)
            return vals.ravel(), None
        rep, pad = self._entry_sources(st, cs, ln)
        vals = aligned_empty(len(rep), self.dtype, align)
        idx = aligned_empty(len(rep), np.int32, align)
        if pad is None:
            _take(st.val, rep, vals)
            np.take(st.idx, rep, out=idx)
            return vals, idx
        # empty coordinates occupy one entry (OpenCL has no zero-length pieces): zeros
        vals[:] = 0
        idx[:] = 0
        vals[~pad] = st.val[rep[~pad]]
        idx[~pad] = st.idx[rep[~pad]]
        return vals, idx


def _take(src, index, out, axis=None):
    """``np.take`` into ``out``, converting when the device's precision is not the store's
    (np.take itself refuses to write float32 data into float64 memory)."""
    if out.dtype == src.dtype:
        np.take(src, index, axis=axis, out=out)
    else:
        out[...] = np.take(src, index, axis=axis)


# Copies above this many bytes go in row blocks on the host's threads.
PARALLEL_COPY = 64 << 20


def _copy(out, src):
    """``np.copyto(out, src)`` for 2-D arrays of rows, on the host's threads when large.

    Filling a fresh pool is mostly page faults (the dense SVM's 800 MB: 0.08 s into recycled
    pages, 2.0 s into fresh ones), and threads take faults in parallel.
    """
    if out.nbytes < PARALLEL_COPY or len(out) < 2:
        np.copyto(out, src)
        return
    pool = _host_pool()
    n = max(1, os.cpu_count() or 1)
    cuts = np.linspace(0, len(out), 4 * n + 1).astype(int)
    list(pool.map(lambda i: np.copyto(out[cuts[i] : cuts[i + 1]], src[cuts[i] : cuts[i + 1]]),
                  range(len(cuts) - 1)))  # fmt: skip
