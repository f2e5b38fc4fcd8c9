"""Unit A: the host refreshes the gap memory while the device runs its pass.

A thread walks the coordinates cyclically in blocks (cheap slices of column- or row-major
and CSC/CSR storage; a disk tier's host cache, duhl_cl.store.tiered), computing ``u`` (primal: ``X[:, block]^T w``; dual: the
margins of the rows) and the per-coordinate gaps with the coefficients and shared vector of
the previous round (stale is allowed by the theory). It stops when told (the device pass has
ended) after finishing its block, having refreshed at least one block, or once it has
refreshed half of the coordinates (``max_fraction``) in the round.
NumPy and SciPy release the GIL in these products, so the thread runs beside the device.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from .certificate import coordinate_u_many, dual_point

__all__ = ["HostRefresher"]


class HostRefresher:
    """Refresh ``z`` (gap memory) and ``u_mem`` for blocks of coordinates on a thread.

    Parameters
    ----------
    model : duhl_cl.models.Model
    store : duhl_cl.store.CoordinateStore
    z, u_mem : ndarray (float64, n_coords)
        Written in place, block by block (u_mem also feeds the gap estimate).
    block_entries : int
        Target number of stored entries per block (keeps a block short, so stopping is prompt).
    max_fraction : float
        At most this fraction of the coordinates (and at least one block) is refreshed in a
        round. Refreshing every coordinate each round from the one (previous-round) state
        made the selection swing: the whole working set moved to the coordinates that state
        disadvantaged, and the certified gap oscillated (logistic regression at a 10% budget:
        a9a did not converge in 1000 rounds, w8a not in 9729 rounds and 60 s; with half a
        round, 420-770 rounds and 310 rounds, 2.5 s). A gap memory that mixes two rounds'
        states damps it.
    """

    def __init__(self, model, store, z, u_mem, block_entries=1 << 18, max_fraction=0.5):
        # One problem; or one-vs-rest (duhl_cl.duhl.ovr): lists of the classes' models and
        # stores, z and u_mem of shape (n_classes, n_coords), each block read once for all.
        multi = isinstance(model, (list, tuple))
        self.models = list(model) if multi else [model]
        self.stores = list(store) if multi else [store]
        self.z = z if multi else z[None]  # views: rows write into the caller's arrays
        self.u_mem = u_mem if multi else u_mem[None]
        self.model, self.store = self.models[0], self.stores[0]
        self.block_entries = block_entries
        self.max_fraction = max_fraction
        self.blocks = self.store.refresh_blocks(block_entries)
        self.limit = max_fraction * self.store.n_coords
        self.next_block = 0
        self._thread = None
        self._stop = threading.Event()
        self._go = threading.Event()
        self._done = threading.Event()
        self._job = None
        self._running = False
        self.count = 0
        self.busy = 0.0
        self.error = None

    def _run(self, alpha, v, classes):
        t0 = time.perf_counter()
        try:
            K = len(self.models)
            alpha, v = np.reshape(alpha, (K, -1)), np.reshape(v, (K, -1))
            # The gap memory only ranks coordinates, so the products run in the data's own
            # precision (no float64 copy of float32 data); certificates are computed apart.
            heads = [(k, self.models[k], self.stores[k]) for k in classes]
            points = [dual_point(m, v[k]).astype(self.store.dtype) for k, m, _ in heads]
            nb = len(self.blocks)
            done = 0
            while done < nb and (done == 0 or not self._stop.is_set()):
                i = self.next_block % nb
                sel = self.blocks[i]
                k = (sel.stop - sel.start) if isinstance(sel, slice) else len(sel)
                if done and self.count + k > self.limit:
                    break
                us = coordinate_u_many([(m, st) for _, m, st in heads], points, sel)
                for (k_, m, _), u in zip(heads, us, strict=True):
                    self.u_mem[k_, sel] = u
                    self.z[k_, sel] = m.gaps(alpha[k_, sel], u, sel)
                self.count += k
                self.next_block = (i + 1) % nb
                done += 1
        except BaseException as exc:  # reported to the round loop
            self.error = exc
        self.busy = time.perf_counter() - t0

    def _worker(self):
        while True:
            self._go.wait()
            self._go.clear()
            job = self._job
            if job is None:
                return
            self._run(*job)
            self._done.set()

    def start(self, alpha, v, classes=None):
        """Begin refreshing with these (previous-round) coefficients and shared vector (one
        row per class when several; ``classes``: those to refresh, default all)."""
        self.count, self.busy, self.error = 0, 0.0, None
        if self.store.tiered:
            # A disk tier's refresh walks its host cache, which changes with each certificate.
            self.blocks = self.store.refresh_blocks(self.block_entries)
            n = sum(len(b) for b in self.blocks if not isinstance(b, slice))
            self.limit = self.max_fraction * (n or self.store.n_coords)
        self._stop.clear()
        self._done.clear()
        self._job = (alpha, v, list(range(len(self.models))) if classes is None else list(classes))
        if self._thread is None:
            # One worker for the whole fit: starting a thread per round costs milliseconds.
            self._thread = threading.Thread(target=self._worker, daemon=True)
            self._thread.start()
        self._running = True
        self._go.set()

    def stop(self):
        """Ask the worker to finish its block and wait; returns (refreshed, busy seconds)."""
        if not self._running:
            return 0, 0.0
        self._stop.set()
        self._done.wait()
        self._running = False
        if self.error is not None:
            raise self.error
        return self.count, self.busy

    def close(self):
        """Stop and end the worker thread."""
        self.stop()
        if self._thread is not None:
            self._job = None
            self._go.set()
            self._thread.join()
            self._thread = None
