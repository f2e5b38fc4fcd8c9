"""The round loop: shuffled device passes until the certified duality gap is small enough.

Each round (docs/architecture.md, "One round"): the policy picks the resident set from the gap memory z;
only coordinates not yet resident are copied in; the device (unit B) runs
``passes_per_round`` shuffled passes over the resident set while a host thread (unit A)
refreshes z for as many coordinates as it can with the previous round's coefficients and
shared vector; then the resident coefficients and the shared vector are read back, the
intercept is updated (primal models), and the device computes fresh gaps of the visited
coordinates, which go into the gap memory (so that what the passes settled makes room) and
the gap estimate.
Before the first round of a gap-ranked policy, a certificate evaluates every gap. When the
gap estimate suggests the tolerance is reached, and every ``certify_every`` rounds, the host
computes the exact certificate in float64 from the coefficients alone (:func:`certificate`);
only a certified gap stops the run, and every certificate refreshes the whole gap memory.
The certificate is valid: ``objective - optimum <= gap``.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..store import CoordinateStore, matvec, rmatvec
from .policies import make_policy
from .refresh import HostRefresher
from .working_set import DeviceWorkingSet

__all__ = ["ConvergenceWarning", "FitResult", "auto_passes_for", "certificate", "solve"]


GROW_FROM = 100  # a sparse model's smallest working set (celer's p0)


# passes_per_round="auto": as many passes as make a round's device work about 2^20 units
# (Model.pass_cost: one unit is a squared-loss entry), at least 4 while the working set
# rotates, 8 while it holds the whole active problem, at most 256.
AUTO_PASSES = (4, 8, 256, 1 << 20)


def auto_passes_for(work_per_pass: int, one_launch: bool = True, complete: bool = False) -> int:
    """Passes of a round whose pass costs ``work_per_pass`` units (``Model.pass_cost``).

    A round has fixed costs (selection, placement, copies, read-backs, the gap estimate: 2-3
    ms of host work on the 2-core test machine) that a pass over a small working set does
    not outweigh; so a round runs as many passes as make its device work about 2^20 units
    (a few ms), at most 256. Measured (Intel's CPU runtime, float64, one run each):
    review_polarity's Lasso at a 10% budget (~300 columns, ~30000 entries a round, rotating
    through a support three times larger than the budget) took 6.8 s to 1e-5 with 8 passes
    a round, 5.0 s by this rule (~30 passes), 5.7 s with 64 and 13.8 s with 256; the dual
    logistic regression's Newton step makes its coordinates dear, so its rounds stay at few
    passes (a9a at 10%: 0.5 s; with ~45 passes a round, 1.3 s).

    The least: 8 when the selection is ``complete`` (it holds every coordinate with a
    positive gap memory, or the grown working set of an l1 model whose support fits): the
    round then solves the whole active problem, and more passes make progress that would
    otherwise take rounds (the dense 200000 x 1000 SVM at 10%, float32: 1.6 s, against 1.9
    s with 4). 4 while the working set rotates through an active set larger than the budget,
    where passes over one part fit it at the others' expense (a9a's logistic dual at 25%,
    0.75 -> 0.41 s; w8a's, 0.46 -> 0.19 s, against 8). Where a round's passes are not one
    launch (the "tpa" and "bucketed" variants, or a visited set over several pool parts),
    the least: each pass is then a launch per part and, for "bucketed", a merge (256
    passes a round made a float32 Lasso test take 100 s instead of seconds).
    """
    rotating, full, hi, units = AUTO_PASSES
    lo = full if complete else rotating
    if not one_launch:
        return lo
    return int(np.clip(-(-units // max(int(work_per_pass), 1)), lo, hi))


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
    u: np.ndarray  # every coordinate's u (primal: X^T grad f(v); dual: margins), float64


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
        return Certificate(gap, float(model.objective(alpha, v)), alpha, b0, v, u)
    y = store.labels
    w = np.empty(model.shared_dim())
    w[:-1] = rmatvec(X, alpha * y)
    w[-1] = model.bias * (alpha @ y)
    mu = y * (matvec(X, w[:-1]) + model.bias * w[-1])
    gap = model.total_gap(alpha, mu, w)
    return Certificate(gap, float(model.primal_objective(w, mu)), alpha, model.bias * w[-1], w, mu)


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
    store : CoordinateStore
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
    policy : {"full", "duhl", "sequential", "random"}
    passes_per_round : int or "auto"
        Passes per round; "auto": see :func:`auto_passes_for`.
    certify_every : int
        Compute the exact certificate at least every this many rounds (and whenever the
        gap memory suggests the tolerance is reached).
    kernel_variant : {None, "serial", "tpa", "bucketed"}
        The device pass (duhl_cl.duhl.working_set); None takes the profile's.
    """
    rng = np.random.default_rng(random_state)
    t0 = time.perf_counter()
    n = store.n_coords
    alpha = model.initial_alpha() if alpha0 is None else np.array(alpha0, dtype=np.float64)
    b0 = float(intercept0) if model.primal else 0.0
    target = tol * model.scale
    history: list = []
    ws = DeviceWorkingSet(
        device, model, store, budget=budget, ledger=ledger, variant=kernel_variant
    )
    refresher = None
    cert = None
    stop_reason = "max_iter"
    n_iter = 0
    z = np.full(n, np.inf)  # gap memory: never evaluated ranks first
    start_cert_time = 0.0  # the start's certificate, counted in the first round's record
    u_mem = np.full(n, np.nan)
    last_cert, cert_wait = 0, 1
    auto_passes = passes_per_round == "auto"
    passes = AUTO_PASSES[0] if auto_passes else int(passes_per_round)
    try:
        pol = make_policy(
            policy,
            n,
            ws.fits,
            rng,
            need_bytes=_full_bytes(ws),
            budget=ws.ledger.budget,
            limit=ws.n_homes,
            sizes=ws.entries,
            pool_entries=ws.cap.pool_entries,
            # Dual classifiers with a bias feature: the classes take turns (see Duhl).
            groups=store.labels if (not model.primal and getattr(model, "bias", 0) > 0) else None,
            grow=GROW_FROM if (model.primal and getattr(model, "l1", 0) > 0) else 0,
        )
        refresher = HostRefresher(model, store, z, u_mem)
        if pol.ranks_by_gap:
            # One host pass evaluates every gap at the start, so that the first working set
            # is already gap-ranked instead of an arbitrary fill of never-evaluated ones; it
            # is a certificate (exact u of every coordinate), which the gap memory takes.
            t_cert = time.perf_counter()
            start = certificate(model, store, alpha, b0)
            start_cert_time = time.perf_counter() - t_cert
            b0, v = start.intercept, start.shared
            _remember(model, start, z, u_mem)
        else:
            v = _initial_shared(model, store, alpha, b0)
        ws.set_shared(v)
        while n_iter < max_iter:
            if max_time is not None and time.perf_counter() - t0 > max_time:
                stop_reason = "max_time"
                break
            h2d0, d2h0 = ws.ledger.bytes_h2d, ws.ledger.bytes_d2h
            t_round = time.perf_counter()
            sw = ws.make_resident(pol.select(z, n_iter, alpha), alpha)
            n_resident = len(ws.resident)  # on the device
            visited = ws.visited  # what the passes visit: the selection
            pol.visited(visited, n_iter)
            nnz_visited = int(ws.entries[visited].sum())
            if auto_passes:
                per_entry, per_coord = model.pass_cost
                work = per_entry * nnz_visited + per_coord * len(visited)
                complete = pol.complete or len(visited) >= np.count_nonzero(z > 0)
                passes = auto_passes_for(work, ws.passes_in_one_launch, complete)
            ws.run_passes(rng, passes)
            # Unit A works on the previous round's alpha and v while unit B runs the pass.
            all_visited = len(visited) == n
            if not all_visited:
                refresher.start(alpha.copy(), v.copy())
            ws.finish()
            device_time = time.perf_counter() - t_round
            n_refreshed, host_time = refresher.stop() if not all_visited else (0, 0.0)
            n_iter += 1
            ws.read_alpha(alpha)
            v = ws.get_shared().astype(np.float64)
            if model.primal and model.fit_intercept:
                v, b0 = model.intercept_update(v, b0)
                ws.set_shared(v)
            coords, u, _ = ws.resident_gaps(gaps=False)
            u_mem[coords] = u
            # The visited coordinates' gaps, fresh from the device, go into the gap memory:
            # what the passes settled makes room for the others (whose gaps the host refreshes
            # with the previous round's state, or the last certificate gave).
            z[coords] = model.gaps(alpha[coords], u_mem[coords])
            estimate = model.total_gap(alpha, u_mem, v) if not np.isnan(u_mem).any() else np.inf
            record = {
                "round": n_iter,
                "time": 0.0,
                "gap": None,
                "gap_estimate": float(estimate),
                "objective": float(model.objective(alpha, v)) if model.primal else None,
                "n_resident": n_resident,
                "n_visited": len(visited),
                "nnz_visited": nnz_visited,
                "n_swapped_in": sw.n_swapped_in,
                "bytes_swapped_in": sw.bytes_swapped_in,
                "bytes_h2d": 0,
                "bytes_d2h": 0,
                "n_gap_refreshes": int(n_refreshed),
                "passes": passes,
                "device_time": device_time,
                "host_time": host_time,
                "cert_time": start_cert_time if n_iter == 1 else 0.0,
                "ledger_peak": ws.ledger.peak,
            }
            since = n_iter - last_cert
            if (estimate <= target and since >= cert_wait) or since >= certify_every:
                # The certificate is an exact host pass over all the data; when the estimate
                # (partly stale) was too hopeful, wait twice as long before the next one.
                t_cert = time.perf_counter()
                cert = certificate(model, store, alpha, b0)
                record["cert_time"] += time.perf_counter() - t_cert
                last_cert = n_iter
                cert_wait = 1 if cert.gap <= target else min(2 * cert_wait, certify_every)
                b0 = cert.intercept
                record.update(gap=cert.gap, objective=cert.objective)
                # The certificate evaluated every coordinate exactly: a free, fresh gap memory.
                _remember(model, cert, z, u_mem)
                # Resynchronise the device's shared vector with the exact one: a float32
                # device accumulates rounding in v over many passes.
                v = cert.shared
                ws.set_shared(v)
            record["bytes_h2d"] = ws.ledger.bytes_h2d - h2d0
            record["bytes_d2h"] = ws.ledger.bytes_d2h - d2h0
            record["time"] = time.perf_counter() - t0
            history.append(record)
            if verbose:
                _print_round(record, target)
            if callback is not None:
                callback(record)
            if record["gap"] is not None and cert.gap <= target:
                stop_reason = "converged"
                break
    except KeyboardInterrupt:
        stop_reason = "interrupted"
    finally:
        try:
            if refresher is not None:
                try:
                    refresher.close()
                except Exception:  # noqa: BLE001 -- the fit is ending anyway
                    pass
            ws.finish()
            if stop_reason != "converged":
                if n_iter and ws.resident.size:
                    ws.read_alpha(alpha)
                t_cert = time.perf_counter()
                cert = certificate(model, store, alpha, b0)
                cert_time = time.perf_counter() - t_cert
                # The stop's certificate completes the last round's record.
                if history and history[-1]["round"] == n_iter:
                    last = history[-1]
                else:
                    last = {"round": n_iter, "gap_estimate": None, "n_resident": 0, "n_visited": 0, "nnz_visited": 0,
                            "n_swapped_in": 0, "bytes_swapped_in": 0, "bytes_h2d": 0, "bytes_d2h": 0,
                            "n_gap_refreshes": 0, "passes": 0, "device_time": 0.0, "host_time": 0.0,
                            "cert_time": start_cert_time if n_iter == 0 else 0.0,
                            "ledger_peak": ws.ledger.peak}  # fmt: skip
                    history.append(last)
                last.update(
                    cert_time=last.get("cert_time", 0.0) + cert_time,
                    gap=cert.gap,
                    objective=cert.objective,
                    time=time.perf_counter() - t0,
                    final=True,
                )
                if callback is not None:
                    # The log gets the stop's certificate too (the record once more, completed).
                    try:
                        callback(last)
                    except BaseException:  # noqa: BLE001 -- stopping already; keep the model
                        pass
            h2d, d2h, peak = ws.ledger.bytes_h2d, ws.ledger.bytes_d2h, ws.ledger.peak
            bank_peak = list(ws.ledger.bank_peak)
        finally:
            ws.release()
    converged = cert.gap <= target
    if not converged:
        why = {
            "max_iter": f"max_iter={max_iter} rounds",
            "max_time": f"max_time={max_time} s",
            "interrupted": "an interrupt (Ctrl-C)",
        }[stop_reason]
        warnings.warn(
            f"Stopped after {n_iter} rounds by {why} with certified duality gap {cert.gap:.3e} "
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
        stop_reason=stop_reason if not converged else "converged",
        history=history,
        bytes_h2d=h2d,
        bytes_d2h=d2h,
        ledger_peak=peak,
        bank_peak=bank_peak,
        time=time.perf_counter() - t0,
        kernel_variant=ws.variant,
        budget=ws.ledger.budget,
        entry_bytes=ws.cap.entry_bytes,
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


def _remember(model, cert, z, u_mem):
    """Take a certificate's exact u and gaps of every coordinate into the gap memory."""
    u_mem[:] = cert.u
    z[:] = model.gaps(cert.alpha, cert.u)


def _full_bytes(ws):
    st = ws.store
    return (
        ws.cap.fixed + st.n_coords * ws.cap.slot_bytes + int(ws.entries.sum()) * ws.cap.entry_bytes
    )


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


def _print_round(rec, target):
    print(format_round(rec, target), flush=True)
