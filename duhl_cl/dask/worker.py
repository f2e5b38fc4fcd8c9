"""One partition's local solver on a Dask worker: the actor the CoCoA driver talks to.

:class:`PartitionSolver` lives in a worker process for a whole fit (a Dask actor, created by
duhl_cl.dask.cocoa). It owns one partition of the coordinates (a block of rows for the dual
models, of columns for the primal ones), its coordinate store, and a single-machine
:class:`~duhl_cl.duhl.local_solver.LocalSolver` on the worker's own OpenCL device, with its
gap memory and working set kept from one outer round to the next. Each outer round the
driver calls :meth:`PartitionSolver.step` once with the global shared vector:

1. the certificate's part: every coordinate's u and gap against that vector, in float64 on
   the host, sent as three numbers (the sum of the gaps, the largest |u|, and for the duals
   the loss term of the primal objective; the driver adds them into the global gap and
   objective), which also refresh the gap memory;
2. local rounds of DuHL on the partition's CoCoA+ subproblem with sigma' = K (changes
   added): ``(1/K) f(v + K A_k d) + sum_i g_i(alpha_i + d_i)``. In the scaled coordinates
   ``beta = K alpha`` this is the same model with the penalty rescaled
   (:func:`local_problem`: C -> K C for the dual models, l2 -> l2 / K and the l1 bound B ->
   K B for the primal ones), so the device runs its ordinary kernels from ``beta = K
   alpha_k`` and the global shared vector;
3. the coefficients that changed, and the partition's exact float64 contribution to the shared vector at its new coefficients
   (``X_k alpha_k``, or ``[X_k^T (alpha_k y_k); bias alpha_k^T y_k]``), which the driver adds.

Device selection (one device per worker process): the estimator's ``device`` when given;
else a worker resource named ``duhl-cl:PROFILE``; else ``$DUHL_CL_DEVICE`` (a profile name
or path) and ``$DUHL_CL_DEVICE_ORDINAL``; else the host's CPU (duhl_cl.device.open_device).
"""

from __future__ import annotations

import copy
import os
import time

import numpy as np

from ..device.discovery import open_device
from ..device.faults import translating
from ..device.profiles import parse_budget, resolve_budget
from ..duhl.certificate import gaps_against
from ..duhl.local_solver import LocalSolver
from ..store import CoordinateStore
from ..store.disk import DiskData, open_store
from ..store.tiered import TieredStore

__all__ = ["PartitionSolver", "contribution", "local_problem", "worker_device"]

RESOURCE_PREFIX = "duhl-cl:"
_DEVICES: dict = {}  # one opened device per (spec, emulate) in this worker process


def local_problem(model, K: int):
    """The model of a partition's CoCoA+ subproblem with sigma' = K, in ``beta = K alpha``.

    ``K g(beta / K)`` is the penalty of the same kind with l1 unchanged and l2 / K (primal),
    or the box and entropy of C K (dual); the datafit is unchanged. The primal intercept is
    the driver's (set after the changes are added), so the local model has none.
    """
    m = copy.deepcopy(model)
    if m.primal:
        m.set_penalty(m.l1, m.l2 / K)
        m.bound *= K
        m.fit_intercept = False
    else:
        m.C *= K
    return m


def contribution(model, store, alpha) -> np.ndarray:
    """The partition's exact part of the shared vector at ``alpha`` (float64): ``X_k
    alpha`` (primal; the driver adds the intercept and -y), ``[X_k^T (alpha y_k); bias
    alpha^T y_k]`` (dual)."""
    if model.primal:
        return store.combine(alpha)
    y = store.labels
    out = np.empty(model.shared_dim())
    out[:-1] = store.combine(alpha * y)
    out[-1] = model.bias * float(alpha @ y)
    return out


def worker_device(device=None, emulate=False):
    """The device this worker process trains on (see the module docstring); opened once."""
    spec = device
    if spec is None:
        spec = _resource_profile()
    key = (str(spec) if spec is not None else None, bool(emulate))
    if key not in _DEVICES:
        _DEVICES[key] = open_device(spec, emulate=emulate)
    return _DEVICES[key]


def _resource_profile():
    try:
        from distributed import get_worker

        w = get_worker()
    except (ImportError, ValueError):
        return None
    res = getattr(getattr(w, "state", None), "total_resources", None)
    if res is None:
        res = getattr(w, "total_resources", {}) or {}
    names = [r[len(RESOURCE_PREFIX) :] for r in res if r.startswith(RESOURCE_PREFIX)]
    return names[0] if names else None


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


class PartitionSolver:
    """A partition's state and local rounds on one worker (a Dask actor).

    Parameters
    ----------
    spec : dict
        ``model`` (the estimator's model, not set up), ``K`` (partitions), ``index``,
        ``coords`` ((first, end) in the global coordinates), ``fit_intercept``, ``dtype``,
        ``device``, ``emulate``, ``memory_budget``, ``host_budget``, ``share`` (the
        partitions this worker holds: the device budget is split between them when it is
        not a percentage), ``policy``, ``passes_per_round``, ``kernel_variant``, ``seed``,
        ``y`` and ``sample_weight`` (primal: all samples'; dual: the partition's).
    data : ndarray, scipy.sparse matrix or str
        The partition's block of X (rows for the dual models, columns for the primal
        ones), or the path of an on-disk store holding it (duhl_cl.store).
    alpha : ndarray (n_coords of the partition,)
        Its coefficients to start from (the driver's last combined state).

    Raises
    ------
    duhl_cl.device.ledger.MemoryBudgetError and the other errors of a LocalSolver that
    cannot start (a budget below the partition's minimum, a device that is absent); the
    driver names the worker and the partition.
    """

    def __init__(self, spec, data, alpha):
        self.where = _worker_name()
        self._open(spec, data, alpha)

    def _open(self, spec, data, alpha):
        self.K = int(spec["K"])
        primal = spec["model"].primal
        if isinstance(data, str):
            data = open_store(data)
        self.device = worker_device(spec["device"], spec["emulate"])
        dtype = np.dtype(spec["dtype"] or (data.dtype if isinstance(data, DiskData) else
                                           self.device.profile.precision))  # fmt: skip
        y = spec["y"]
        if y is None and isinstance(data, DiskData):
            y = data.y
        m = copy.deepcopy(spec["model"])
        m.setup(data, np.asarray(y, dtype=np.float64), spec["fit_intercept"],
                spec["sample_weight"])  # fmt: skip
        self.model = m
        labels = None if primal else m.y
        row_w = spec["sample_weight"] if primal else None
        if isinstance(data, DiskData):
            self.store = TieredStore(
                data, primal=primal, dtype=dtype, labels=labels, bias=getattr(m, "bias", 0.0),
                row_weights=row_w,
                host_budget=parse_budget(spec["host_budget"], data.nbytes, "host_budget"),
            )  # fmt: skip
        else:
            self.store = CoordinateStore(data, primal=primal, dtype=dtype, labels=labels,
                                         bias=getattr(m, "bias", 0.0), row_weights=row_w)  # fmt: skip
        budget_spec = spec["memory_budget"]
        budget = resolve_budget(budget_spec, self.store.nbytes, self.device.profile)
        share = max(int(spec["share"]), 1)
        if not (isinstance(budget_spec, str) and budget_spec.strip().endswith("%")):
            budget = (self.device.profile.budget if budget is None else budget) // share
        self.budget = budget
        self.local = LocalSolver(
            local_problem(m, self.K), self.store, self.device, budget=budget,
            policy=spec["policy"], passes_per_round=spec["passes_per_round"],
            kernel_variant=spec["kernel_variant"], rng=np.random.default_rng(spec["seed"]),
        )  # fmt: skip
        self.alpha = np.array(alpha, dtype=np.float64)
        self.local.alpha[...] = self.K * self.alpha
        self.dtype = dtype

    def describe(self) -> dict:
        """Where it runs and on what (for the driver's stats)."""
        return {
            "worker": self.where,
            "device": self.device.label(),
            "budget": int(self.local.ledger.budget),
            "dtype": str(self.dtype),
            "n_coords": int(self.store.n_coords),
            "nbytes": int(self.store.nbytes),
        }

    def contribution(self) -> np.ndarray:
        """The partition's exact part of the shared vector at its coefficients."""
        return contribution(self.model, self.store, self.alpha)

    def step(self, shared, n_local: int, theta: float, alpha=None) -> dict:
        """Certify against ``shared``, then run up to ``n_local`` local rounds from it.

        Parameters
        ----------
        shared : ndarray
            The global shared vector (v or w) of the driver's current coefficients, whose
            contributions this partition gave in its last step.
        n_local : int
            Local rounds at most (0: the certificate's part only).
        theta : float
            Stop the local rounds once the local gap estimate is at most ``theta`` times the
            local gap at the start (CoCoA's local accuracy Theta).
        alpha : ndarray, optional
            The partition's coefficients in the driver's state, where they may differ from
            this actor's (an outer round the driver did not take: an interrupt).

        Returns
        -------
        dict: the certificate's part against ``shared`` in float64: ``gap_sum`` (the sum of
        the coordinates' gaps), ``u_max`` (their largest ``|u|``), ``loss_sum`` (dual:
        ``sum_j C_j loss(mu_j)``); after local rounds (else None) ``changed`` and ``values``
        (the coordinates whose coefficients changed, and their new values) and
        ``contribution`` (at the new coefficients); ``rounds``, ``work_time`` (the local rounds' seconds),
        ``cert_time`` (the host passes': the certificate part and the contribution),
        ``bytes_h2d``, ``bytes_d2h``, ``ledger_peak``.
        """
        t0 = time.perf_counter()
        m, ls, K = self.model, self.local, self.K
        shared = np.asarray(shared, dtype=np.float64)
        if alpha is not None:
            # (Only for a certificate: the device's resident coefficients are not re-sent.)
            assert n_local == 0, "alpha is given for a certificate only"
            self.alpha = np.array(alpha, dtype=np.float64)
        u, gaps = gaps_against(m, self.store, self.alpha, shared)
        # The local subproblem at d = 0 has the global gradient: its gaps are K times the
        # global ones, so the certificate refreshes the local gap memory exactly.
        ls.u_mem[:] = u
        ls.z[:] = K * gaps
        self.store.rank(ls.z)
        # The certificate's part, as numbers: the driver has alpha and the shared vector.
        out = {
            "gap_sum": float(np.sum(gaps)),
            "u_max": float(np.max(np.abs(u), initial=0.0)),
            "loss_sum": 0.0 if m.primal else m.loss_sum(u),
            "changed": None, "values": None, "contribution": None, "rounds": 0,
            "work_time": 0.0, "cert_time": time.perf_counter() - t0,
        }  # fmt: skip
        if n_local > 0:
            t1 = time.perf_counter()
            start_gap = float(np.sum(ls.z))
            ls.alpha[...] = K * self.alpha
            ls.set_shared(shared)
            with translating(self.device, ls.ledger.budget):
                for _ in range(int(n_local)):
                    ls.run_round()
                    out["rounds"] += 1
                    # The gap memory's sum, not the round's gap estimate: the l1 models'
                    # rescaled-dual certificate takes v as the partition's own, which it is not.
                    if float(np.sum(ls.z)) <= theta * start_gap:
                        break
            ls.ws.finish()
            new = ls.alpha / K
            # Only the coefficients the local rounds changed travel back.
            changed = np.flatnonzero(new != self.alpha)
            self.alpha = new
            t2 = time.perf_counter()
            out["work_time"] = t2 - t1
            out["changed"] = changed.astype(np.int32)
            out["values"] = new[changed]
            out["contribution"] = self.contribution()
            out["cert_time"] += time.perf_counter() - t2
        led = ls.ledger
        out.update(bytes_h2d=int(led.bytes_h2d), bytes_d2h=int(led.bytes_d2h),
                   ledger_peak=int(led.peak))  # fmt: skip
        return out

    def close(self) -> None:
        """Free the device memory and the store."""
        try:
            self.local.close()
        finally:
            self.local.release()
            self.store.close()
