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

from ..device.ledger import MemoryBudgetError
from .local_solver import solver_factory

# A stall: the best certified gap has not halved over this many certificate intervals.
STALL_CERTIFICATES = 4
# ... and the coefficients moved less than this (relative, summed over those certificates).
FLOOR_MOVE = 1e-4

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
    dtype: str = ""  # the device's precision (of the last phase)
    refinement: dict | None = None  # {"dtype", "round", "gap"}: where a stalled fit switched
    error: BaseException | None = None  # what the callback raised (the fit stopped there)


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
    refine_dtype=None,
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
    callback : callable(record) -> None or bool, optional
        Called with each round's history record; returning False stops the fit (the model
        so far is returned with its certificate), and an exception it raises stops the fit
        too and is returned in ``FitResult.error`` with the model so far (the estimators
        store the model, then raise it). Ctrl-C in it is an interrupt, as anywhere.
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
    refine_dtype : None or numpy dtype
        Where the certified gap stalls above the target (float32 arithmetic is the limit:
        :meth:`_Run.stalled`), continue in this precision on the device from the last
        certificate (the refinement phase; records say their ``dtype``). None: never.
    """
    t0 = time.perf_counter()
    target = tol * model.scale
    local_solver = solver_factory(
        model, store, device, budget=budget, ledger=ledger, policy=policy,
        passes_per_round=passes_per_round, kernel_variant=kernel_variant,
        rng=np.random.default_rng(random_state),
    )  # fmt: skip
    run = _Run(local_solver(), target, certify_every, t0, verbose, callback)
    try:
        try:
            run.start_cert_time = run.local.start(alpha0, intercept0)
            run.rounds(max_iter, max_time, local_solver, refine_dtype)
        finally:
            led = run.local.ledger
            run.local.close()
            if run.stop_reason != "converged":
                run.finish()
            ledger_stats = led.bytes_h2d, led.bytes_d2h, led.peak
            bank_peak = list(led.bank_peak)
    finally:
        run.local.release()
    cert = run.cert
    converged = cert.gap <= target
    if not converged and run.error is None:
        _warn_stopped(run, target, max_iter, max_time, refine_dtype)
    return _fit_result(run, converged, ledger_stats, bank_peak, time.perf_counter() - t0)


class _CallbackStop(Exception):
    """The callback returned False."""


class _CallbackError(Exception):
    """The callback raised ``error``."""

    def __init__(self, error):
        super().__init__(repr(error))
        self.error = error


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
        dtype=str(local.dtype),
        refinement=run.refinement,
        error=run.error,
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
        # The best certified gap after each certificate of this precision phase, for stalled().
        # With it, how far the coefficients moved since the previous certificate (relative,
        # max-norm), and that certificate's coefficients.
        self.best_log: list[tuple[int, float, float]] = []
        self._last_alpha = None
        self.refinement = None
        self.error = None  # what a callback raised

    def rounds(self, max_iter, max_time, local_solver, refine_dtype) -> None:
        """Rounds until converged, max_iter, max_time, Ctrl-C or the callback stops them,
        refining in ``refine_dtype`` (with ``local_solver``) where the gap stalls."""
        try:
            while self.local.n_rounds < max_iter:
                if max_time is not None and time.perf_counter() - self.t0 > max_time:
                    self.stop_reason = "max_time"
                    return
                if self.round():
                    self.stop_reason = "converged"
                    return
                if refine_dtype is not None and self.stalled():
                    self.refine(local_solver, np.dtype(refine_dtype))
        except KeyboardInterrupt:
            self.stop_reason = "interrupted"
        except _CallbackStop:
            self.stop_reason = "callback"
        except _CallbackError as exc:
            self.stop_reason, self.error = "callback error", exc.error

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
            best = min(self.cert.gap, self.best_log[-1][1]) if self.best_log else self.cert.gap
            a = self.cert.alpha
            moved = np.inf
            if self._last_alpha is not None:
                scale = max(float(np.max(np.abs(a), initial=0.0)), np.finfo(np.float64).tiny)
                moved = float(np.max(np.abs(a - self._last_alpha), initial=0.0)) / scale
            self._last_alpha = a.copy()
            self.best_log.append((local.n_rounds, best, moved))
        record["dtype"] = str(local.dtype)
        record["bytes_h2d"] = local.ledger.bytes_h2d - h2d0
        record["bytes_d2h"] = local.ledger.bytes_d2h - d2h0
        record["time"] = time.perf_counter() - self.t0
        self.history.append(record)
        if self.verbose:
            print(format_round(record, self.target), flush=True)
        if self.callback is not None:
            try:
                go_on = self.callback(record)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # the fit stops; solve() returns it with the model
                raise _CallbackError(exc) from exc
            if go_on is False:
                raise _CallbackStop
        return record["gap"] is not None and self.cert.gap <= self.target

    def stalled(self, just_certified: bool = True) -> bool:
        """Whether the fit has stalled at its precision's floor above the target: just
        certified, the best certified gap of this phase has not halved in the last
        ``STALL_CERTIFICATES * certify_every`` rounds, and the coefficients moved, summed over
        those certificates, less than ``FLOOR_MOVE`` of their largest entry.

        On the machine this was measured on, a float32 Lasso on cal_housing (y in dollars,
        alpha = 0.01) certified 1.2e8 from round 130 to 1000 against a target of 1.3e6; its
        float64 fit converged in 90 rounds: the float32 coefficients cannot make ``|X^T r /
        m|`` meet alpha to better than float32's 6e-8 of ``|X||r|/m`` (about 1e5 here), so
        no dual point built from them is close to feasible. There the coefficients moved
        3e-7 relative in 4 certificate intervals, then 0 (a sparse Lasso at tol 1e-8: 1e-8);
        a fit that is slow but progressing (review_polarity's Lasso at a 10% budget, whose
        best gap halves only every ~80 rounds) moves them 2e-2 to 1 in the same window, and
        is left in float32 (switching it had cost 27% more time).
        """
        local = self.local
        if self.cert is None or self.cert.gap <= self.target:
            return False
        if just_certified and self.last_cert != local.n_rounds:
            return False
        horizon = local.n_rounds - STALL_CERTIFICATES * self.certify_every
        past = [best for r, best, _ in self.best_log if r <= horizon]
        if not past or self.best_log[-1][1] <= 0.5 * past[-1]:
            return False
        moved = sum(m for r, _, m in self.best_log if r > horizon)
        return moved <= FLOOR_MOVE

    def refine(self, local_solver, dtype) -> None:
        """Continue in ``dtype`` from the last certificate: the device's working set is
        rebuilt in that precision (same ledger and budget), the gap memory carried over."""
        old = self.local
        if old.dtype == dtype or self.refinement is not None:
            return
        ledger, n = old.ledger, old.n_rounds
        old.close()
        old.release()
        try:
            new = local_solver(dtype, ledger)
        except MemoryBudgetError as exc:
            # The budget holds the float32 working set but not the float64 one: stay.
            self.refinement = {"dtype": str(dtype), "round": n, "refused": str(exc)}
            new = local_solver(old.dtype, ledger)
        else:
            self.refinement = {"dtype": str(dtype), "round": n, "gap": float(self.cert.gap)}
        new.resume(self.cert, n)
        self.local = new
        self.best_log, self._last_alpha = [], None

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
                    "ledger_peak": local.ledger.peak, "dtype": str(local.dtype)}  # fmt: skip
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


def _warn_stopped(run, target, max_iter, max_time, refine_dtype):
    why = {
        "max_iter": f"max_iter={max_iter} rounds",
        "max_time": f"max_time={max_time} s",
        "interrupted": "an interrupt (Ctrl-C)",
        "callback": "the callback (it returned False)",
    }[run.stop_reason]
    local, gap = run.local, run.cert.gap
    advice = "Increase max_iter or max_time, or loosen tol."
    if local.dtype == np.float32 and run.stalled(just_certified=False):
        # More rounds cannot help: float32 arithmetic is the limit.
        if refine_dtype is not None and (run.refinement or {}).get("refused"):
            fix = (
                f"the {np.dtype(refine_dtype)} refinement did not fit the memory budget "
                "(raise memory_budget)"
            )
        elif local.ws.device.fp64:
            fix = "fit with dtype='float64' (or dtype=None, which refines in float64 by itself)"
        else:
            fix = (
                f"{local.ws.device.info.name} has no fp64; rescale y (and alpha with it), "
                "loosen tol, or fit on a device with cl_khr_fp64"
            )
        advice = (
            f"The certified gap stalled in float32 (the float32 floor: float32 coefficients "
            f"cannot certify a smaller gap on this problem); {fix}."
        )
    warnings.warn(
        f"Stopped after {local.n_rounds} rounds by {why} with certified duality gap {gap:.3e} "
        f"> tol * scale = {target:.3e}; the model so far is returned. {advice}",
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
