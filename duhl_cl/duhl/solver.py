"""The driver of one device's fit: rounds until the certified duality gap is small enough.

:func:`solve` runs a :class:`~duhl_cl.duhl.local_solver.LocalSolver` round after round
(docs/architecture.md, "One round") and decides when to certify and when to stop. When the
gap estimate suggests the tolerance is reached, and every ``certify_every`` rounds, the host
computes the exact certificate in float64 from the coefficients alone
(duhl_cl.duhl.certificate); only a certified gap stops the run, and every certificate
refreshes the whole gap memory. The certificate is valid: ``objective - optimum <= gap``.
A stop for any other reason (max_iter, max_time, Ctrl-C) still returns the model so far
with its certificate, and warns (:class:`ConvergenceWarning`).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from .local_solver import LocalSolver

__all__ = ["ConvergenceWarning", "FitResult", "format_round", "host_threads", "solve"]


class ConvergenceWarning(UserWarning):
    """The solver stopped before its certified gap reached the tolerance."""


@dataclass
class FitResult:
    alpha: np.ndarray
    intercept: float
    shared: np.ndarray
    gap: float
    objective: float
    n_iter: int
    converged: bool
    stop_reason: str
    history: list = field(default_factory=list)
    bytes_h2d: int = 0
    bytes_d2h: int = 0
    ledger_peak: int = 0
    bank_peak: list = field(default_factory=list)  # bytes, per memory bank
    time: float = 0.0
    kernel_variant: str = "serial"
    budget: int = 0
    entry_bytes: int = 0  # device bytes of one stored entry (value, and index when sparse)


def solve(
    model,
    store,
    device,
    *,
    tol: float,
    max_iter: int,
    max_time: float | None = None,
    random_state=None,
    alpha0=None,
    intercept0: float = 0.0,
    verbose: int = 0,
    callback=None,
    ledger=None,
    budget: int | None = None,
    policy: str = "duhl",
    passes_per_round: int | str = "auto",
    certify_every: int = 10,
    kernel_variant: str | None = None,
) -> FitResult:
    """Fit ``model`` on ``store`` with the coordinates the policy keeps resident on ``device``.

    Parameters
    ----------
    model : duhl_cl.models.Model (``setup`` done)
    store : duhl_cl.store.Store
    device : duhl_cl.device.discovery.Device
    tol : float
        Stop when the certified gap <= ``tol * model.scale``.
    max_iter : int
        Maximum number of rounds (each: ``passes_per_round`` passes over the resident set).
    max_time : float, optional
        Wall-clock limit in seconds; checked between rounds.
    random_state : None, int or numpy Generator
        Seeds the shuffles and the random policy.
    alpha0, intercept0 : warm start.
    callback : callable(record) -> None, optional
        Called with each round's history record.
    budget : int, optional
        Device bytes this fit may use (default: the profile's budget).
    policy : {"duhl", "sequential", "random", "full"}
    passes_per_round : int or "auto"
        Passes per round; "auto": see :func:`duhl_cl.duhl.local_solver.auto_passes_for`.
    certify_every : int
        Compute the exact certificate at least every this many rounds (and whenever the
        gap memory suggests the tolerance is reached).
    kernel_variant : {None, "serial", "tpa", "bucketed"}
        The device pass (duhl_cl.kernels); None takes the profile's.
    """
    t0 = time.perf_counter()
    target = tol * model.scale
    local = LocalSolver(
        model, store, device, budget=budget, ledger=ledger, policy=policy,
        passes_per_round=passes_per_round, kernel_variant=kernel_variant,
        rng=np.random.default_rng(random_state),
    )  # fmt: skip
    run = _Run(local, target, certify_every, t0, verbose, callback)
    try:
        try:
            run.start_cert_time = local.start(alpha0, intercept0)
            while local.n_rounds < max_iter:
                if max_time is not None and time.perf_counter() - t0 > max_time:
                    run.stop_reason = "max_time"
                    break
                if run.round():
                    run.stop_reason = "converged"
                    break
        except KeyboardInterrupt:
            run.stop_reason = "interrupted"
        finally:
            local.close()
            if run.stop_reason != "converged":
                run.finish()
            ledger_stats = local.ledger.bytes_h2d, local.ledger.bytes_d2h, local.ledger.peak
            bank_peak = list(local.ledger.bank_peak)
    finally:
        local.release()
    cert = run.cert
    converged = cert.gap <= target
    if not converged:
        _warn_stopped(run.stop_reason, local.n_rounds, cert.gap, target, max_iter, max_time)
    return _fit_result(run, converged, ledger_stats, bank_peak, time.perf_counter() - t0)


def _fit_result(run, converged, ledger_stats, bank_peak, seconds) -> FitResult:
    local, cert = run.local, run.cert
    h2d, d2h, peak = ledger_stats
    return FitResult(
        alpha=cert.alpha,
        intercept=cert.intercept,
        shared=cert.shared,
        gap=cert.gap,
        objective=cert.objective,
        n_iter=local.n_rounds,
        converged=converged,
        stop_reason=run.stop_reason if not converged else "converged",
        history=run.history,
        bytes_h2d=h2d,
        bytes_d2h=d2h,
        ledger_peak=peak,
        bank_peak=bank_peak,
        time=seconds,
        kernel_variant=local.ws.variant,
        budget=local.ledger.budget,
        entry_bytes=local.ws.cap.entry_bytes,
    )


class _Run:
    """What one :func:`solve` call keeps between rounds: the history, when to certify, the
    last certificate and why the run stopped."""

    def __init__(self, local, target, certify_every, t0, verbose, callback):
        self.local, self.target, self.certify_every = local, target, certify_every
        self.t0, self.verbose, self.callback = t0, verbose, callback
        self.history: list = []
        self.cert = None
        self.stop_reason = "max_iter"
        self.start_cert_time = 0.0  # the start's certificate, counted in round 1's record
        self.last_cert, self.cert_wait = 0, 1

    def round(self) -> bool:
        """One round, certified when due; True when the certified gap meets the target."""
        local = self.local
        h2d0, d2h0 = local.ledger.bytes_h2d, local.ledger.bytes_d2h
        record = local.run_round()
        if local.n_rounds == 1:
            record["cert_time"] = self.start_cert_time
        since = local.n_rounds - self.last_cert
        if (record["gap_estimate"] <= self.target and since >= self.cert_wait) or (
            since >= self.certify_every
        ):
            # The certificate is an exact host pass over all the data; when the estimate
            # (partly stale) was too hopeful, wait twice as long before the next one.
            t_cert = time.perf_counter()
            self.cert = local.certify()
            record["cert_time"] += time.perf_counter() - t_cert
            self.last_cert = local.n_rounds
            ok = self.cert.gap <= self.target
            self.cert_wait = 1 if ok else min(2 * self.cert_wait, self.certify_every)
            record.update(gap=self.cert.gap, objective=self.cert.objective)
        record["bytes_h2d"] = local.ledger.bytes_h2d - h2d0
        record["bytes_d2h"] = local.ledger.bytes_d2h - d2h0
        record["time"] = time.perf_counter() - self.t0
        self.history.append(record)
        if self.verbose:
            print(format_round(record, self.target), flush=True)
        if self.callback is not None:
            self.callback(record)
        return record["gap"] is not None and self.cert.gap <= self.target

    def finish(self) -> None:
        """The stop's certificate (not converged), completing the last round's record."""
        local = self.local
        t_cert = time.perf_counter()
        self.cert = local.final_certificate()
        cert_time = time.perf_counter() - t_cert
        n = local.n_rounds
        if self.history and self.history[-1]["round"] == n:
            last = self.history[-1]
        else:
            last = {"round": n, "gap_estimate": None, "n_resident": 0, "n_visited": 0, "nnz_visited": 0,
                    "n_swapped_in": 0, "bytes_swapped_in": 0, "bytes_h2d": 0, "bytes_d2h": 0,
                    "n_gap_refreshes": 0, "passes": 0, "device_time": 0.0, "host_time": 0.0,
                    "cert_time": self.start_cert_time if n == 0 else 0.0,
                    "ledger_peak": local.ledger.peak}  # fmt: skip
            self.history.append(last)
        last.update(
            cert_time=last.get("cert_time", 0.0) + cert_time,
            gap=self.cert.gap,
            objective=self.cert.objective,
            time=time.perf_counter() - self.t0,
            final=True,
        )
        if self.callback is not None:
            # The log gets the stop's certificate too (the record once more, completed).
            try:
                self.callback(last)
            except BaseException:  # noqa: BLE001 -- stopping already; keep the model
                pass


def _warn_stopped(stop_reason, n_rounds, gap, target, max_iter, max_time):
    why = {
        "max_iter": f"max_iter={max_iter} rounds",
        "max_time": f"max_time={max_time} s",
        "interrupted": "an interrupt (Ctrl-C)",
    }[stop_reason]
    warnings.warn(
        f"Stopped after {n_rounds} rounds by {why} with certified duality gap {gap:.3e} "
        f"> tol * scale = {target:.3e}; the model so far is returned. Increase max_iter or "
        f"max_time, or loosen tol.",
        ConvergenceWarning,
        stacklevel=4,
    )


def host_threads(n: int):
    """Limit the host's BLAS threads to ``n`` (0: leave them) for unit A's share of the CPU.

    Uses threadpoolctl where installed (it comes with scikit-learn); otherwise set
    OPENBLAS_NUM_THREADS / OMP_NUM_THREADS before starting Python.
    """
    if n <= 0:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=n, user_api="blas")


def format_round(rec, target=None):
    """One line of progress for a history record."""
    if rec["gap"] is not None:
        gap = f"gap {rec['gap']:.3e} (certified)"
    else:
        gap = f"gap ~{rec['gap_estimate']:.3e} (estimate) "
    obj = f"  objective {rec['objective']:.10g}" if rec.get("objective") is not None else ""
    tgt = f"  target {target:.3e}" if target is not None else ""
    res = f"  resident {rec['n_resident']}  in {rec['n_swapped_in']}" if "n_resident" in rec else ""
    return f"round {rec['round']:5d}  {rec['time']:8.3f} s  {gap}{tgt}{res}{obj}"
