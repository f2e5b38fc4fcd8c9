"""The CoCoA+ driver: outer rounds over K partitions, one local DuHL solver each, changes added.

:func:`fit_cocoa` keeps the combined state (each partition's coefficients, the intercept and
the shared vector: O(n_coords + shared_dim) floats) and runs outer rounds. Each outer round
sends the shared vector to every partition's actor (duhl_cl.dask.worker.PartitionSolver)
in one call, which returns the certificate's part of the current state (the sum of its
coordinates' gaps against it, their largest |u|, and for the duals the loss term) and,
after its local rounds on the CoCoA+ subproblem (sigma' = K), the coefficients that changed
and their exact contribution to the shared vector; :func:`allreduce` adds the
contributions (the one combine step: an MPI allreduce could replace it), the primal
intercept takes its optimum, and the next outer round starts from there. The global gap is
evaluated in float64 from the coordinates' u, exactly as the single-machine certificate is
(duhl_cl.duhl.certificate); only a certified gap stops the fit, and the state returned is
the certified one.

Local work (``local_rounds="auto"``): an outer round's fixed cost (the round trip, each
worker's host pass for its certificate part and its contribution, the driver's sums) is
measured each round, and the next outer round runs as many local rounds as take about as
long (at most :data:`LOCAL_MAX`), so that at most about half of the wall time is overhead;
local rounds stop early once the local gap estimate falls below ``THETA`` times the local
gap at the start (CoCoA's local accuracy Theta).

Faults: a worker lost during an outer round (its actor unreachable) makes the driver start
every partition again on the workers that remain, from the last combined state (the
partitions' data futures are recomputed by Dask where they were lost), and redo the round;
history_ records the event. If no worker remains, :class:`NoWorkersError` says so and no
model is stored.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..duhl.solver import ConvergenceWarning
from .worker import PartitionSolver

__all__ = ["LOCAL_MAX", "THETA", "NoWorkersError", "Partition", "allreduce", "fit_cocoa"]

LOCAL_MAX = 64  # local rounds per outer round, at most
THETA = 0.1  # local rounds stop at this fraction of the local gap at their start
WORKER_WAIT = 30.0  # seconds to wait for a worker after one is lost
MAX_RECOVERIES = 10  # restarts after lost workers in one fit, at most


class NoWorkersError(RuntimeError):
    """Every worker of the cluster was lost during a distributed fit."""


@dataclass
class Partition:
    """One partition: its coordinates ``[first, end)``, its data (a Dask future of its
    block of X, or the path of an on-disk store), what its spec adds (y, sample weights)
    and the worker it should start on (None: any)."""

    index: int
    first: int
    end: int
    data: object
    extra: dict = field(default_factory=dict)
    worker: str | None = None


@dataclass
class CocoaResult:
    alpha: np.ndarray
    intercept: float
    shared: np.ndarray
    gap: float
    objective: float
    n_iter: int
    converged: bool
    stop_reason: str
    history: list
    time: float
    start_gap: float
    bytes_to_workers: int
    bytes_from_workers: int
    workers: list  # each partition's describe() at the end
    events: list


def allreduce(parts) -> np.ndarray:
    """The combine step: the sum of the partitions' vectors (float64)."""
    out = np.zeros_like(np.asarray(parts[0], dtype=np.float64))
    for p in parts:
        out += p
    return out


_LOST = (OSError, TimeoutError)


def _lost_errors():
    errs = list(_LOST)
    try:
        from distributed.client import FutureCancelledError
        from distributed.scheduler import KilledWorker

        errs += [FutureCancelledError, KilledWorker]
    except ImportError:  # pragma: no cover -- older distributed
        pass
    return tuple(errs)


class _Actors:
    """The partitions' actors on the cluster's workers; started again after a loss."""

    def __init__(self, client, partitions, spec, verbose=0):
        self.client, self.partitions, self.spec, self.verbose = client, partitions, spec, verbose
        self.actors, self.futures, self.where = [], [], []
        self.lost = _lost_errors()

    def workers(self) -> list:
        return sorted(self.client.scheduler_info().get("workers", {}))

    def start(self, alphas, first=False) -> None:
        """An actor per partition, from ``alphas`` (each partition's coefficients)."""
        self.stop()
        workers = self.workers()
        deadline = time.monotonic() + WORKER_WAIT
        while not workers and not first and time.monotonic() < deadline:
            time.sleep(0.25)
            workers = self.workers()
        if not workers:
            raise NoWorkersError(
                "no Dask worker is left: every worker of the cluster was lost"
                if not first
                else "the Dask cluster has no workers; start some (e.g. LocalCluster(n_workers=2))"
            )
        place = []
        for k, p in enumerate(self.partitions):
            w = p.worker if (first and p.worker in workers) else workers[k % len(workers)]
            place.append(w)
        share = {w: place.count(w) for w in set(place)}
        futures = self.futures = []
        for p, w in zip(self.partitions, place, strict=True):
            spec = dict(self.spec, **p.extra, index=p.index, share=share[w],
                        seed=None if self.spec["seed"] is None else self.spec["seed"] + p.index)  # fmt: skip
            futures.append(
                self.client.submit(
                    PartitionSolver,
                    spec,
                    p.data,
                    alphas[p.index],
                    actor=True,
                    workers=[w],
                    allow_other_workers=False,
                    pure=False,
                )  # fmt: skip
            )
        errors, actors = [], []
        self.actors, self.where = actors, place
        for p, w, f in zip(self.partitions, place, futures, strict=True):
            try:
                actors.append(f.result())
            except self.lost:
                raise
            except Exception as e:  # noqa: BLE001 -- every partition's refusal is reported
                errors.append((p, w, e))
        if errors:
            self.stop()
            p, w, e = errors[0]
            more = f" ({len(errors) - 1} more partitions refused too)" if len(errors) > 1 else ""
            msg = (f"partition {p.index} (coordinates {p.first}..{p.end - 1}) on worker {w} "
                   f"cannot start: {e}{more}")  # fmt: skip
            try:
                err = type(e)(msg)
            except Exception:  # noqa: BLE001 -- an error class with other arguments
                e.add_note(msg)
                raise e from None
            raise err from e
        self.described = self.call("describe")

    def lost_worker(self, wait=5.0) -> bool:
        """Whether a worker holding one of the actors has left the cluster (the scheduler
        may take a moment to notice)."""
        deadline = time.monotonic() + wait
        while True:
            present = set(self.workers())
            if any(w not in present for w in self.where):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)

    def call(self, method, *args) -> list:
        futs = [_lost_as_oserror(_method, a, method, *args) for a in self.actors]
        return [_lost_as_oserror(f.result) for f in futs]

    def call_each(self, method, args) -> list:
        """``method(*args)`` on every actor; a last argument that is a list of the
        partitions' arrays gives each actor its own."""
        if len(args) == 4:
            head, per = args[:3], args[3]
            futs = [_lost_as_oserror(_method, a, method, *head, per[p.index])
                    for a, p in zip(self.actors, self.partitions, strict=True)]  # fmt: skip
        else:
            futs = [_lost_as_oserror(_method, a, method, *args) for a in self.actors]
        return [_lost_as_oserror(f.result) for f in futs]

    def stop(self) -> None:
        for a in self.actors:
            try:
                a.close().result(timeout=30)
            except Exception:  # noqa: BLE001 -- a lost actor has nothing left to free
                pass
        for f in self.futures:
            try:
                f.release()
            except Exception:  # noqa: BLE001
                pass
        self.actors, self.futures = [], []


def fit_cocoa(model, client, partitions, spec, *, tol, max_iter, max_time=None,
              local_rounds="auto", callback=None, verbose=0, alpha0=None, intercept0=0.0):  # fmt: skip
    """Fit ``model`` (set up on the driver: y, weights, scale) over the partitions.

    Parameters
    ----------
    model : duhl_cl.models.Model, ``setup`` done with the global y (X only for its shape)
    client : distributed.Client
    partitions : list of :class:`Partition`, in coordinate order, covering them all
    spec : dict
        What every partition's actor takes (duhl_cl.dask.worker.PartitionSolver), less its
        own entries.
    tol, max_iter, max_time : the stop: certified gap <= tol * model.scale; outer rounds;
        seconds.
    local_rounds : int or "auto"
        Local rounds per outer round (see the module docstring).
    callback : callable(record) -> None or bool, optional
        Called with each outer round's history record; False stops the fit.
    alpha0, intercept0 : warm start (global coefficients, primal intercept).

    Returns
    -------
    CocoaResult
    """
    t0 = time.perf_counter()
    target = tol * model.scale
    K = len(partitions)
    alpha = model.initial_alpha() if alpha0 is None else model.feasible(np.array(alpha0, float))
    cuts = [(p.first, p.end) for p in partitions]
    alphas = [alpha[a:b].copy() for a, b in cuts]
    b0 = float(intercept0) if model.primal else 0.0
    spec = dict(spec, K=K)
    actors = _Actors(client, partitions, spec, verbose)
    history, events = [], []
    sent = received = 0
    auto = local_rounds == "auto"
    n_local = 2 if auto else int(local_rounds)
    stop_reason, r, recoveries = None, 0, 0
    try:
        actors.start(alphas, first=True)
        while True:
            try:
                contribs = actors.call("contribution")
                break
            except actors.lost as e:
                recoveries = _check_lost(actors, e, recoveries)
                events.append(_recover(actors, alphas, r, e, verbose))
        received += sum(c.nbytes for c in contribs)
        v, b0 = _shared(model, allreduce(contribs), b0)
        pending = None
        start_gap = None
        while True:
            over_time = max_time is not None and time.perf_counter() - t0 > max_time
            n_now = 0 if (stop_reason or r >= max_iter or over_time) else n_local
            t_call = time.perf_counter()
            # (After an interrupt the actors may have moved on: they take the state's alpha.)
            args = (v, n_now, THETA) + ((alphas,) if stop_reason == "interrupted" else ())
            try:
                results = actors.call_each("step", args)
            except actors.lost as e:
                recoveries = _check_lost(actors, e, recoveries)
                event = _recover(actors, alphas, r, e, verbose)
                events.append(event)
                if pending is not None:
                    pending["event"] = event
                continue
            except KeyboardInterrupt:
                if stop_reason == "interrupted":
                    raise
                stop_reason = "interrupted"
                continue
            wall = time.perf_counter() - t_call
            sent += K * v.nbytes
            received += sum(_nbytes(res) for res in results)
            gap, obj = _certificate(model, np.concatenate(alphas), results, v)
            if pending is None:
                start_gap = gap
            else:
                pending.update(gap=gap, objective=obj, time=time.perf_counter() - t0)
                history.append(pending)
                if verbose:
                    print(f"outer round {r:4d}  gap {gap:.3e}  objective {obj:.8e}  local "
                          f"{pending['local_rounds']}  {pending['round_time']:.3f} s")  # fmt: skip
                if callback is not None and not stop_reason and callback(pending) is False:
                    stop_reason = "callback"
            if gap <= target:
                # (An interrupt stays one, as in the single-machine fit.)
                stop_reason = "interrupted" if stop_reason == "interrupted" else "converged"
                break
            if n_now == 0:
                if stop_reason is None:
                    stop_reason = "max_iter" if r >= max_iter else "max_time"
                break
            # The new state: each partition's coefficients, their contributions added.
            alphas = [_updated(a, res) for a, res in zip(alphas, results, strict=True)]
            v, b0 = _shared(model, allreduce([res["contribution"] for res in results]), b0)
            r += 1
            work = max(res["work_time"] for res in results)
            overhead = max(wall - work, 0.0)
            pending = {
                "round": r,
                "local_rounds": [res["rounds"] for res in results],
                "round_time": wall,
                "work_time": work,
                "cert_time": max(res["cert_time"] for res in results),
                "overhead_time": overhead,
                "comm_time": max(
                    wall - max(res["work_time"] + res["cert_time"] for res in results), 0.0
                ),
                "bytes_to_workers": K * v.nbytes,
                "bytes_from_workers": sum(_nbytes(res) for res in results),
                "device_bytes_h2d": [res["bytes_h2d"] for res in results],
                "device_ledger_peak": [res["ledger_peak"] for res in results],
                "workers": list(actors.where),
                "event": None,
            }
            if auto:
                per_round = max(res["work_time"] / max(res["rounds"], 1) for res in results)
                n_local = int(np.clip(np.ceil(overhead / max(per_round, 1e-6)), 1, LOCAL_MAX))
        workers = actors.described
    finally:
        actors.stop()
    alpha_all = np.concatenate(alphas)
    converged = gap <= target
    if not converged:
        warnings.warn(
            f"Stopped after {r} outer rounds ({stop_reason}) with certified duality gap "
            f"{gap:.3e} > tol * scale = {target:.3e}; the model so far is returned. Increase "
            f"max_iter or max_time, or loosen tol.",
            ConvergenceWarning,
            stacklevel=3,
        )
    intercept = b0 if model.primal else model.bias * v[-1]
    return CocoaResult(
        alpha=alpha_all, intercept=float(intercept), shared=v, gap=gap, objective=obj,
        n_iter=r, converged=converged, stop_reason=stop_reason, history=history,
        time=time.perf_counter() - t0, start_gap=start_gap, bytes_to_workers=sent,
        bytes_from_workers=received, workers=workers, events=events,
    )  # fmt: skip


def _method(actor, name, *args):
    return getattr(actor, name)(*args)


def _lost_as_oserror(call, *args):
    """``call(*args)`` (an actor's method, or its future's result); the worker holding the
    actor gone is an OSError (Dask may say so with a RuntimeError of its own, which a
    device error must not be taken for)."""
    try:
        return call(*args)
    except RuntimeError as e:
        if "Worker holding Actor was lost" in str(e):
            raise ConnectionError(str(e)) from e
        raise


def _shared(model, combined, b0):
    """The global shared vector from the added contributions; primal: with the intercept
    at its optimum for these coefficients."""
    if not model.primal:
        return combined, 0.0
    v = model.shared_from(combined, b0)
    if model.fit_intercept:
        v, b0 = model.intercept_update(v, b0)
    return v, b0


def _certificate(model, alpha, parts, v):
    """Global gap and objective from the partitions' parts (the sums of their coordinates'
    gaps, their largest |u|, the duals' loss sums): duhl_cl.duhl.certificate's, added up."""
    total = sum(p["gap_sum"] for p in parts)
    u_max = max(p["u_max"] for p in parts)
    gap = model.gap_from_parts(total, u_max, alpha, v)
    if model.primal:
        obj = model.objective(alpha, v)
    else:
        obj = 0.5 * float(v @ v) + sum(p["loss_sum"] for p in parts)
    return float(gap), float(obj)


def _updated(alpha, res):
    """A partition's coefficients with the changes its local rounds sent."""
    out = alpha.copy()
    out[res["changed"]] = res["values"]
    return out


def _nbytes(res) -> int:
    return sum(x.nbytes for x in res.values() if isinstance(x, np.ndarray))


def _check_lost(actors, error, recoveries) -> int:
    """Go on after ``error`` only where a worker really left (an OSError of the fit's own,
    e.g. a store's file, is raised as it is), at most MAX_RECOVERIES times a fit."""
    if not actors.lost_worker():
        raise error
    if recoveries >= MAX_RECOVERIES:
        raise NoWorkersError(
            f"workers were lost {recoveries + 1} times in this fit; giving up (the cluster "
            f"keeps losing workers: see the scheduler's log)"
        ) from error
    return recoveries + 1


def _recover(actors, alphas, r, error, verbose) -> str:
    """Start every partition again on the workers left, from the last combined state."""
    before = set(actors.where)
    for attempt in range(5):
        try:
            actors.start(alphas)
            break
        except actors.lost:
            # The scheduler may still list the lost worker for a moment.
            if attempt == 4:
                raise
            time.sleep(1.0)
    after = set(actors.where)
    event = (
        f"outer round {r + 1}: a worker was lost ({type(error).__name__}: {error}); "
        f"{len(actors.partitions)} partitions started again from the last combined state on "
        f"{len(after)} workers (lost: {', '.join(sorted(before - after)) or 'none named'})"
    )
    if verbose:
        print(event)
    return event
