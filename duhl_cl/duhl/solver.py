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

from ..device.faults import translating
from .local_solver import solver_factory
from .ovr import OneVsRest, ovr_solver_factory
from .rounds import Run

__all__ = ["ConvergenceWarning", "FitResult", "host_threads", "solve"]


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
    # The device read the store where it lies as its pool (a CPU device, dense data that fits
    # on a page-aligned store): no data was copied into device memory.
    pool_in_place: bool = False
    atomics: str | None = None  # "tpa": how it adds into the shared vector (kernels.tpa_atomics)
    budget: int = 0
    entry_bytes: int = 0  # device bytes of one stored entry (value, and index when sparse)
    dtype: str = ""  # the device's precision (of the last phase)
    refinement: dict | None = None  # {"dtype", "round", "gap"}: where a stalled fit switched
    error: BaseException | None = None  # what the callback raised (the fit stopped there)
    class_gaps: np.ndarray | None = None  # one-vs-rest: each class's certified gap (K,)
    class_objectives: np.ndarray | None = None  # ... and objective (K,)
    solver: str = "cd"  # or "prox-newton" (duhl_cl.duhl.prox_newton)
    newton_steps: int | None = None  # prox-newton: its outer steps


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
    dtype=None,
) -> FitResult:
    """Fit ``model`` on ``store`` with the coordinates the policy keeps resident on ``device``.

    Parameters
    ----------
    model : duhl_cl.models.Model (``setup`` done), or duhl_cl.duhl.ovr.OneVsRest
        (K one-vs-rest problems in one fit: alpha (K, n_coords), intercept and the
        class_gaps (K,); the gap is the combined one, see duhl_cl.duhl.ovr)
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
        Where the fit stalls at its precision's floor above the target
        (:meth:`duhl_cl.duhl.rounds.Run.stalled`), continue in this precision on the device
        from the last certificate (the refinement phase; records say their ``dtype``).
        None: never.
    dtype : None or numpy dtype
        The device's precision from the start (None: the store's).
    """
    t0 = time.perf_counter()
    target = tol * model.scale
    factory, extra = solver_factory, {}
    if isinstance(model, OneVsRest):
        factory, extra = ovr_solver_factory, {"tol": tol}
    local_solver = factory(
        model, store, device, budget=budget, ledger=ledger, policy=policy,
        passes_per_round=passes_per_round, kernel_variant=kernel_variant,
        rng=np.random.default_rng(random_state), **extra,
    )  # fmt: skip
    with translating(device, budget):
        run, ledger_stats, bank_peak = _run(
            local_solver, target, certify_every, t0, verbose, callback, alpha0, intercept0,
            max_iter, max_time, refine_dtype, dtype,
        )  # fmt: skip
    cert = run.cert
    converged = cert.gap <= target
    if not converged and run.error is None:
        _warn_stopped(run, target, max_iter, max_time, refine_dtype)
    return _fit_result(run, converged, ledger_stats, bank_peak, time.perf_counter() - t0)


def _run(local_solver, target, certify_every, t0, verbose, callback, alpha0, intercept0,
         max_iter, max_time, refine_dtype, dtype=None):  # fmt: skip
    """The rounds of one fit, every device buffer released however they end:
    (run, (bytes in, bytes out, ledger peak), bank peaks)."""
    run = Run(local_solver(dtype), target, certify_every, t0, verbose, callback)
    failed = False
    try:
        try:
            run.start_cert_time, _ = run.local.start(alpha0, intercept0)
            run.rounds(max_iter, max_time, local_solver, refine_dtype)
        except BaseException:
            # (Ctrl-C and a callback's error are handled inside the rounds: what reaches
            # here is a failure, a device fault most likely.)
            failed = True
            raise
        finally:
            led = run.local.ledger
            try:
                run.local.close()
            except Exception:
                if not failed:
                    raise  # after a failure the device may fail again: keep the first error
            if run.stop_reason != "converged" and not failed:
                run.finish()  # the stop's certificate; a failed fit has none to give
            ledger_stats = led.bytes_h2d, led.bytes_d2h, led.peak
            bank_peak = list(led.bank_peak)
    finally:
        try:
            run.local.release()
        except Exception:
            if not failed:
                raise
    return run, ledger_stats, bank_peak


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
        # (An interrupt stays one even where the stop's certificate met the target: the
        # caller ends on it, e.g. the command line with exit status 130.)
        stop_reason=run.stop_reason
        if not converged or run.stop_reason == "interrupted"
        else "converged",
        history=run.history,
        bytes_h2d=h2d,
        bytes_d2h=d2h,
        ledger_peak=peak,
        bank_peak=bank_peak,
        time=seconds,
        kernel_variant=local.ws.variant,
        pool_in_place=bool(local.ws.parts) and local.ws.parts[0].aliased,
        atomics=getattr(local.ws.passes, "atomics", None),
        budget=local.ledger.budget,
        entry_bytes=local.ws.cap.entry_bytes,
        dtype=str(local.dtype),
        refinement=run.refinement,
        error=run.error,
        class_gaps=getattr(cert, "class_gaps", None),
        class_objectives=getattr(cert, "class_objectives", None),
    )


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
        if local.ws.n_buckets:
            fix += (
                f"; or kernel_variant='serial', or fewer buckets (kernel.buckets in the "
                f"profile): the average of {local.ws.n_buckets} buckets raises the floor"
            )
        advice = (
            f"The certified gap stalled in float32 (the float32 floor: float32 coefficients "
            f"cannot certify a smaller gap on this problem); {fix}."
        )
    cg = getattr(run.cert, "class_gaps", None)
    if cg is not None:
        open_ = int(np.count_nonzero(local.active))  # as of the stop's certificate
        advice = f"{open_} of {len(cg)} classes are above their tolerance. {advice}"
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
    global _THREADPOOLS
    if n <= 0:
        return contextlib.nullcontext()
    if _THREADPOOLS is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _THREADPOOLS = False
        else:
            # One scan of the process's loaded libraries: threadpool_limits scans them anew
            # at every call (3-4 ms, a third of a small fit). NumPy's and SciPy's BLAS are
            # loaded when this package is imported, so the scan does not go stale.
            _THREADPOOLS = ThreadpoolController()
    if _THREADPOOLS is False:
        return contextlib.nullcontext()
    return _THREADPOOLS.limit(limits=n, user_api="blas")


_THREADPOOLS = None
