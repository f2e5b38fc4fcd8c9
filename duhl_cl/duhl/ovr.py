"""One-vs-rest: K binary problems over the same data, served by one resident working set.

A multiclass classifier (liblinear's one-vs-rest) solves, for each class k, the binary
problem of class k against the rest: labels ``y_k = +1`` for the samples of class k and -1
for the others, over the same X. :class:`OneVsRest` bundles the K bound models;
:class:`OvrLocalSolver` runs them as one fit on one device (the same round as
:class:`~duhl_cl.duhl.local_solver.LocalSolver`, driven by the same
:class:`~duhl_cl.duhl.rounds.Run`):

- one working set of coordinates (samples for the dual models, features for the primal one)
  is resident for all K problems: its data is copied once, each resident coordinate carries
  K coefficients (and, dual, K labels), the device keeps K shared vectors, and each round's
  passes run every unfinished class over the same resident slots (one launch per class on
  the same pool, duhl_cl.duhl.launches);
- the gap memory holds K gaps per coordinate, refreshed for all classes from one read of
  each block (duhl_cl.duhl.refresh); the policy ranks coordinates by the **sum** of their
  unfinished classes' gaps. The K problems together are one separable problem (the sum of
  their objectives) whose duality gap is the sum of the K gaps, and a coordinate's K
  coefficients are one block of it: the sum is the block's gap, what DuHL ranks by, and a
  coordinate that matters to one class only still ranks by what it would bring. (The largest
  of the K gaps would spend the budget on the worst class's coordinates alone.)
- every class is certified on its own (an exact float64 certificate each); a class whose
  certified gap is below its tolerance stops being updated (no passes, no refresh, out of
  the ranking), and the fit stops when all are. The combined certificate's gap is the
  largest class gap in the units of the largest class's scale (``max_k gap_k * scale /
  scale_k``): it meets ``tol * scale`` exactly when every class meets ``tol * scale_k``.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np

from .certificate import certificate, shared_vector
from .local_solver import (
    AUTO_PASSES,
    SolverLifetime,
    auto_passes_for,
    grow_from,
    solver_factory,
)
from .policies import make_policy
from .refresh import HostRefresher
from .working_set import DeviceWorkingSet

__all__ = ["OneVsRest", "OvrCertificate", "OvrLocalSolver", "ovr_solver_factory"]


class OneVsRest:
    """K bound models (``setup`` done, one per class) over one coordinate store.

    Parameters
    ----------
    models : list of duhl_cl.models.Model
        Class k's binary problem (labels +1 for class k, -1 for the rest); the same kernel
        model, data and intercept setting for all.
    store : duhl_cl.store.CoordinateStore
        The data (its labels, dual models: class 0's; each class's view has its own).
    """

    def __init__(self, models, store):
        self.models = list(models)
        if len({(m.code, m.primal, m.fit_intercept) for m in self.models}) != 1:
            raise ValueError("one-vs-rest problems must share their kernel model and intercept")
        self.store = store
        self.stores = [class_store(store, m) for m in self.models]
        self.n_classes = len(self.models)
        self.primal = self.models[0].primal
        self.fit_intercept = self.models[0].fit_intercept
        self.scales = np.array([m.scale for m in self.models], dtype=np.float64)
        self.scale = float(self.scales.max())

    @property
    def n_coords(self) -> int:
        return self.store.n_coords


def class_store(store, model):
    """The store as class ``model`` sees it: the same data, its labels (dual models)."""
    if model.primal:
        return store
    view = copy.copy(store)
    view.labels = model.y
    return view


@dataclass
class OvrCertificate:
    """The K classes' certificates, combined (see the module docstring)."""

    gap: float  # max_k gap_k * scale / scale_k
    objective: float  # sum of the class objectives
    alpha: np.ndarray  # (K, n_coords)
    intercept: np.ndarray  # (K,)
    shared: np.ndarray  # (K, shared_dim)
    u: np.ndarray  # (K, n_coords)
    class_gaps: np.ndarray  # (K,)
    class_objectives: np.ndarray  # (K,)
    certs: list  # the classes' own certificates

    @classmethod
    def of(cls, certs, scales):
        gaps = np.array([c.gap for c in certs], dtype=np.float64)
        objs = np.array([c.objective for c in certs], dtype=np.float64)
        return cls(
            gap=float(np.max(scaled_gaps(gaps, scales))),
            objective=float(objs.sum()),
            alpha=np.array([c.alpha for c in certs]),
            intercept=np.array([c.intercept for c in certs], dtype=np.float64),
            shared=np.array([c.shared for c in certs]),
            u=np.array([c.u for c in certs]),
            class_gaps=gaps,
            class_objectives=objs,
            certs=list(certs),
        )


def scaled_gaps(gaps, scales) -> np.ndarray:
    """Each class's gap in the units of the largest class's scale: ``gap_k * scale /
    scale_k`` (a class of scale 0, whose target is 0, as it is). The combined gap is their
    largest, and a class is finished where its own is <= tol * scale: the same numbers, so
    that the fit stops exactly when every class has finished."""
    scales = np.asarray(scales, dtype=np.float64)
    factor = np.where(scales > 0, scales.max() / np.where(scales > 0, scales, 1.0), 1.0)
    return np.asarray(gaps, dtype=np.float64) * factor


class OvrLocalSolver(SolverLifetime):
    """One device's fit of K one-vs-rest problems: their state and their rounds.

    Parameters are those of :class:`~duhl_cl.duhl.local_solver.LocalSolver`, with
    ``model`` a :class:`OneVsRest` and ``tol`` the tolerance that finishes a class (its
    certified gap <= ``tol * scale_k``; None: no class finishes before the fit stops).

    Attributes
    ----------
    alpha : ndarray (n_classes, n_coords), float64
    intercept : ndarray (n_classes,)
    shared : ndarray (n_classes, shared_dim)
    z, u_mem : ndarray (n_classes, n_coords)
        Each class's gap memory and last u.
    active : ndarray (n_classes,), bool
        The classes still updated (not yet certified below their tolerance).
    """

    def __init__(self, model, store, device, *, budget=None, ledger=None, policy="duhl",
                 passes_per_round="auto", kernel_variant=None, rng=None, dtype=None,
                 tol=None):  # fmt: skip
        self.model, self.store = model, store
        self.models, self.stores = model.models, model.stores
        self.rng = rng if rng is not None else np.random.default_rng()
        K, n = model.n_classes, store.n_coords
        self.ws = DeviceWorkingSet(
            device, self.models[0], store, budget=budget, ledger=ledger,
            variant=kernel_variant, dtype=dtype, models=self.models,
        )  # fmt: skip
        self.z = np.full((K, n), np.inf)
        self.u_mem = np.full((K, n), np.nan)
        self.auto_passes = passes_per_round == "auto"
        self.passes = AUTO_PASSES[0] if self.auto_passes else int(passes_per_round)
        self.n_rounds = 0
        self.alpha = np.array([m.initial_alpha() for m in self.models])
        self.intercept = np.zeros(K)
        self.shared = None
        self.target = None if tol is None else float(tol) * model.scale  # as solve()'s
        self.active = np.ones(K, dtype=bool)
        self.class_certs = [None] * K
        self.refresher = None
        try:
            self.policy = self._make_policy(policy)
            if store.tiered:  # (as LocalSolver: a device budget from disk a round)
                store.refresh_window = self.ws.ledger.budget
            self.refresher = HostRefresher(self.models, self.stores, self.z, self.u_mem)
        except BaseException:
            self.ws.release()
            raise

    def _make_policy(self, name):
        ws, m0, store = self.ws, self.models[0], self.store
        full_bytes = (
            ws.cap.fixed + store.n_coords * ws.cap.slot_bytes
            + int(ws.entries.sum()) * ws.cap.entry_bytes
        )  # fmt: skip
        groups = None
        if not m0.primal and getattr(m0, "bias", 0) > 0:
            # The classes take turns in the working set (see Duhl): each sample's own class.
            groups = np.argmax(np.array([m.y for m in self.models]), axis=0)
        return make_policy(
            name, store.n_coords, ws.fits, self.rng, need_bytes=full_bytes,
            budget=ws.ledger.budget, limit=ws.n_homes, sizes=ws.entries,
            pool_entries=ws.cap.pool_entries, groups=groups,
            grow=grow_from(m0, ws.entries),
        )  # fmt: skip

    @property
    def ledger(self):
        return self.ws.ledger

    @property
    def dtype(self):
        return self.ws.dtype

    @property
    def classes(self) -> list:
        return [int(k) for k in np.flatnonzero(self.active)]

    # -- state
    def start(self, alpha0=None, intercept0=0.0):
        """As :meth:`LocalSolver.start`, for every class (``alpha0`` (K, n_coords),
        ``intercept0`` scalar or (K,))."""
        K = len(self.models)
        if alpha0 is None:
            self.alpha = np.array([m.initial_alpha() for m in self.models])
        else:
            a = np.asarray(alpha0, dtype=np.float64).reshape(K, -1)
            self.alpha = np.array([m.feasible(a[k].copy()) for k, m in enumerate(self.models)])
        b0 = np.broadcast_to(np.asarray(intercept0, dtype=np.float64), (K,))
        self.intercept = b0.copy() if self.model.primal else np.zeros(K)
        spent, start = 0.0, None
        if self.policy.ranks_by_gap:
            t = time.perf_counter()
            start = self._certify_classes(range(K))
            spent = time.perf_counter() - t
        else:
            self.shared = np.array([
                shared_vector(m, st, self.alpha[k], self.intercept[k])
                for k, (m, st) in enumerate(zip(self.models, self.stores, strict=True))
            ])  # fmt: skip
            self.ws.set_shared(self.shared)
        return spent, start

    def resume(self, cert, n_rounds: int) -> None:
        """Continue from a combined certificate (the float64 refinement)."""
        self.n_rounds = n_rounds
        self.alpha = np.array(cert.alpha, dtype=np.float64)
        self.class_certs = list(cert.certs)
        self._take(range(len(self.models)))

    def set_shared(self, shared) -> None:
        self.shared = np.array(shared, dtype=np.float64)
        self.ws.set_shared(self.shared)

    # -- a round
    def _score(self):
        """What the policy ranks: the sum of the unfinished classes' gap memories."""
        if not self.active.any():
            return np.zeros(self.store.n_coords)
        return self.z[self.active].sum(axis=0)

    def run_round(self) -> dict:
        """One round for the unfinished classes; its history record (as LocalSolver's)."""
        ws, pol = self.ws, self.policy
        t_round = time.perf_counter()
        classes = self.classes
        ws.active_classes = classes
        alpha_any = np.abs(self.alpha[classes]).max(axis=0) if classes else None
        sw = ws.make_resident(pol.select(self._score(), self.n_rounds, alpha_any), self.alpha)
        n_resident = len(ws.resident)
        visited = ws.visited
        pol.visited(visited, self.n_rounds)
        nnz_visited = int(ws.entries[visited].sum())
        if self.auto_passes:
            per_entry, per_coord = self.models[0].pass_cost
            # Per class, as a binary fit's: each class's read-back, gap launch and refresh
            # are fixed costs of its own, which its passes amortise (with a K-th of them,
            # the hinge SVM of the tests took 16310 rounds for 10 classes at 10%, 2780 for
            # one class alone).
            work = per_entry * nnz_visited + per_coord * len(visited)
            complete = pol.complete or len(visited) >= np.count_nonzero(self._score() > 0)
            self.passes = auto_passes_for(work, ws.passes_in_one_launch, complete)
        ws.run_passes(self.rng, self.passes)
        t_passes = time.perf_counter()
        all_visited = len(visited) == self.store.n_coords
        if not all_visited:
            self.refresher.start(self.alpha, self.shared, classes)
        ws.finish()
        t_end = time.perf_counter()
        device_time, pass_time = t_end - t_round, t_end - t_passes
        n_refreshed, host_time = self.refresher.stop() if not all_visited else (0, 0.0)
        self.n_rounds += 1
        estimate = self._read_back(classes)
        objective = None
        if self.model.primal:
            objective = float(sum(
                m.objective(self.alpha[k], self.shared[k]) for k, m in enumerate(self.models)
            ))  # fmt: skip
        return {
            "round": self.n_rounds, "time": 0.0, "gap": None, "gap_estimate": float(estimate),
            "objective": objective, "n_resident": n_resident, "n_visited": len(visited),
            "nnz_visited": nnz_visited, "n_swapped_in": sw.n_swapped_in,
            "bytes_swapped_in": sw.bytes_swapped_in, "bytes_h2d": 0, "bytes_d2h": 0,
            "n_gap_refreshes": int(n_refreshed), "passes": self.passes,
            "device_time": device_time, "pass_time": pass_time, "host_time": host_time,
            "cert_time": 0.0,
            "ledger_peak": self.ledger.peak, "n_active_classes": len(classes),
        }  # fmt: skip

    def _read_back(self, classes) -> float:
        """The unfinished classes' coefficients, shared vectors and visited gaps; returns the
        combined gap estimate (inf while some coordinate was never evaluated)."""
        ws, alpha = self.ws, self.alpha
        # Only the unfinished classes' coefficients: a finished class's stay its
        # certificate's (in float32, its coordinates go up rounded when they enter again).
        fresh = ws.read_alpha(alpha.copy())
        alpha[classes] = fresh[classes]
        new = ws.get_shared().astype(np.float64).reshape(len(self.models), -1)
        # A finished class keeps its exact float64 vector (the device holds its rounding).
        self.shared[classes] = new[classes]
        if self.model.primal and self.model.fit_intercept:
            for k in classes:
                self.shared[k], self.intercept[k] = self.models[k].intercept_update(
                    self.shared[k], self.intercept[k]
                )
            ws.set_shared(self.shared)
        for k in classes:
            m = self.models[k]
            coords, u, _ = ws.resident_gaps(gaps=False, k=k)
            self.u_mem[k, coords] = u
            self.z[k, coords] = m.gaps(alpha[k, coords], self.u_mem[k, coords], coords)
        if np.isnan(self.u_mem).any():
            return np.inf
        gaps = np.array([
            m.total_gap(alpha[k], self.u_mem[k], self.shared[k]) for k, m in enumerate(self.models)
        ])  # fmt: skip
        return float(np.max(scaled_gaps(gaps, self.model.scales)))

    # -- certificates
    def _certify_classes(self, classes):
        """Exact certificates of ``classes`` (the others keep theirs: their coefficients have
        not changed), taken as LocalSolver.certify takes one; returns the combination."""
        for k in classes:
            m, st = self.models[k], self.stores[k]
            self.class_certs[k] = certificate(m, st, self.alpha[k], self.intercept[k])
        return self._take(classes)

    def _take(self, classes):
        for k in classes:
            c = self.class_certs[k]
            self.intercept[k] = c.intercept
            self.u_mem[k] = c.u
            self.z[k] = self.models[k].gaps(c.alpha, c.u)
        cert = OvrCertificate.of(self.class_certs, self.model.scales)
        self.set_shared(cert.shared)
        if self.target is not None:
            self.active = scaled_gaps(cert.class_gaps, self.model.scales) > self.target
        self.store.rank(self._score())  # a disk tier's host cache
        return cert

    def certify(self):
        """Certificates of the unfinished classes (duhl_cl.duhl.certificate), combined."""
        return self._certify_classes(self.classes)

    def final_certificate(self):
        """The combined certificate of the coefficients as they stand."""
        self.ws.finish()
        classes = self.classes
        if self.n_rounds and self.ws.resident.size:
            fresh = self.ws.read_alpha(self.alpha.copy())
            self.alpha[classes] = fresh[classes]
        return self._certify_classes(classes)


def ovr_solver_factory(model, store, device, *, tol=None, **settings):
    """As :func:`duhl_cl.duhl.local_solver.solver_factory`, for a :class:`OneVsRest`."""
    return solver_factory(model, store, device, solver=OvrLocalSolver, tol=tol, **settings)
