"""The round loop: shuffled device passes until the certified duality gap is small enough.

Each round runs one shuffled pass over the resident coordinates on the device, reads back the
coefficients and the shared vector, applies the intercept update (primal models), and
estimates the total gap with the device's gap kernel. When the estimate reaches the
tolerance, the host computes the certificate in float64 from the coefficients alone
(``Model.certificate``); only a certified gap stops the run. The certificate is valid:
``objective - optimum <= gap``.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from .data import CoordinateStore, matvec, rmatvec
from .device_solver import DeviceSolver

__all__ = ["ConvergenceWarning", "FitResult", "certificate", "solve"]


class ConvergenceWarning(UserWarning):
    """The solver stopped before its certified gap reached the tolerance."""


@dataclass
class Certificate:
    """A float64 evaluation of the model at given coefficients."""

    gap: float
    objective: float
    alpha: np.ndarray
    intercept: float
    shared: np.ndarray  # v (primal) or w (dual) recomputed exactly from alpha


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
    time: float = 0.0
    kernel_variant: str = "serial"


def certificate(model, store: CoordinateStore, alpha, intercept=0.0) -> Certificate:
    """Exact float64 gap and objective at ``alpha`` (the shared vector is recomputed).

    For primal models with an intercept, the intercept is first set to its optimum for
    ``alpha`` (which only lowers the objective), so that the dual point is feasible.
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    X = store.matrix
    if model.primal:
        v = model.shared_from(matvec(X, alpha), 0.0)
        b0 = 0.0
        if model.fit_intercept:
            v, b0 = model.intercept_update(v, 0.0)
        u = rmatvec(X, model.gradient(v))
        gap = model.total_gap(alpha, u, v)
        return Certificate(gap, float(model.objective(alpha, v)), alpha, b0, v)
    y = store.labels
    w = np.empty(model.shared_dim())
    w[:-1] = rmatvec(X, alpha * y)
    w[-1] = model.bias * (alpha @ y)
    mu = y * (matvec(X, w[:-1]) + model.bias * w[-1])
    gap = model.total_gap(alpha, mu, w)
    return Certificate(gap, float(model.primal_objective(w, mu)), alpha, model.bias * w[-1], w)


def _initial_shared(model, store, alpha, intercept):
    if model.primal:
        return model.shared_from(matvec(store.matrix, alpha), intercept)
    w = np.empty(model.shared_dim())
    w[:-1] = rmatvec(store.matrix, alpha * store.labels)
    w[-1] = model.bias * (alpha @ store.labels)
    return w


def solve(
    model,
    store: CoordinateStore,
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
) -> FitResult:
    """Fit ``model`` on ``store`` with every coordinate resident on ``device``.

    Parameters
    ----------
    model : duhl_cl.models.Model (``setup`` done)
    store : CoordinateStore
    device : duhl_cl.discovery.Device
    tol : float
        Stop when the certified gap <= ``tol * model.scale``.
    max_iter : int
        Maximum number of passes over the coordinates.
    max_time : float, optional
        Wall-clock limit in seconds; checked between rounds.
    random_state : None, int or numpy Generator
        Seeds the shuffles.
    alpha0, intercept0 : warm start.
    callback : callable(record) -> None, optional
        Called with each round's history record.
    """
    rng = np.random.default_rng(random_state)
    t0 = time.perf_counter()
    alpha = model.initial_alpha() if alpha0 is None else np.array(alpha0, dtype=np.float64)
    b0 = float(intercept0) if model.primal else 0.0
    target = tol * model.scale
    history: list = []
    dev = DeviceSolver(device, model, store, ledger=ledger)
    cert = None
    stop_reason = "max_iter"
    n_iter = 0
    try:
        dev.set_alpha(alpha)
        v = _initial_shared(model, store, alpha, b0)
        dev.set_shared(v)
        while n_iter < max_iter:
            if max_time is not None and time.perf_counter() - t0 > max_time:
                stop_reason = "max_time"
                break
            dev.run_pass(rng.permutation(store.n_coords).astype(np.int32))
            n_iter += 1
            v = dev.get_shared().astype(np.float64)
            if model.primal and model.fit_intercept:
                v, b0 = model.intercept_update(v, b0)
                dev.set_shared(v)
            # The estimate: the device computes u (the O(nnz) part) in its precision, the
            # host turns it into gaps and an objective in float64.
            u, _ = dev.gaps()
            alpha = dev.get_alpha().astype(np.float64)
            u = u.astype(np.float64)
            estimate = model.total_gap(alpha, u, v)
            objective = model.objective(alpha, v) if model.primal else model.primal_objective(v, u)
            record = {"round": n_iter, "time": 0.0, "gap": estimate, "certified": False,
                      "objective": float(objective)}  # fmt: skip
            if not np.isfinite(estimate) or estimate <= target:
                cert = certificate(model, store, alpha, b0)
                b0 = cert.intercept
                record.update(gap=cert.gap, certified=True, objective=cert.objective)
                # Resynchronise the device's shared vector with the exact one: a float32
                # device accumulates rounding in v over many passes.
                dev.set_shared(cert.shared)
            record["time"] = time.perf_counter() - t0
            history.append(record)
            if verbose:
                _print_round(record, target)
            if callback is not None:
                callback(record)
            if record["certified"] and cert.gap <= target:
                stop_reason = "converged"
                break
    except KeyboardInterrupt:
        stop_reason = "interrupted"
    finally:
        try:
            if stop_reason != "converged":
                alpha = dev.get_alpha().astype(np.float64)
                cert = certificate(model, store, alpha, b0)
                history.append(
                    {"round": n_iter, "time": time.perf_counter() - t0, "gap": cert.gap,
                     "certified": True, "objective": cert.objective}
                )  # fmt: skip
            h2d, d2h, peak = dev.ledger.bytes_h2d, dev.ledger.bytes_d2h, dev.ledger.peak
        finally:
            dev.release()
    converged = cert.gap <= target
    if not converged:
        why = {
            "max_iter": f"max_iter={max_iter} passes",
            "max_time": f"max_time={max_time} s",
            "interrupted": "an interrupt (Ctrl-C)",
        }[stop_reason]
        warnings.warn(
            f"Stopped after {n_iter} passes by {why} with certified duality gap {cert.gap:.3e} "
            f"> tol * scale = {target:.3e}; the model so far is returned. Increase max_iter or "
            f"max_time, or loosen tol.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return FitResult(
        alpha=cert.alpha,
        intercept=cert.intercept,
        shared=cert.shared,
        gap=cert.gap,
        objective=cert.objective,
        n_iter=n_iter,
        converged=converged,
        stop_reason=stop_reason if not converged or stop_reason != "converged" else "converged",
        history=history,
        bytes_h2d=h2d,
        bytes_d2h=d2h,
        ledger_peak=peak,
        time=time.perf_counter() - t0,
        kernel_variant=dev.variant,
    )


def _print_round(rec, target):
    kind = "certified" if rec["certified"] else "estimate "
    obj = f"  objective {rec['objective']:.10g}" if rec.get("objective") is not None else ""
    print(
        f"pass {rec['round']:5d}  {rec['time']:8.3f} s  gap ({kind}) {rec['gap']:.3e}"
        f"  target {target:.3e}{obj}",
        flush=True,
    )
