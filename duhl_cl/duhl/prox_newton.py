"""L1-regularised logistic regression by proximal Newton steps, each solved on the device.

Coordinate descent on the logistic loss itself (the :class:`duhl_cl.models.LogisticL1`
kernel: one step per coordinate on the loss's quadratic bound, curvature 1/4) needs hundreds
of rounds where the loss is far from that bound (a9a at C = 0.5: 700 rounds, 7.4 s, against
liblinear's 0.9 s). liblinear's newGLMNET (Yuan, Ho and Lin 2012) and skglm's ProxNewton
instead minimise the loss's second-order model plus the l1 penalty at each outer step and
search along the line to the model's minimiser. That inner problem is a weighted Lasso:

    F(b) = inv_m sum_j s_j log(1 + exp(-y_j v_j)) + l1 ||b||_1,   v = X b + b0
    model at v:  inv_m/2 sum_j h_j (z_j - x_j b' - b0')^2 + l1 ||b'||_1 (+ const)
    h_j = s_j p_j (1 - p_j),  z_j = v_j + y_j / (1 - p_j),  p_j = sigmoid(-y_j v_j)

which is the device's weighted squared-loss model (:class:`duhl_cl.models.SquaredL1L2` with
sample weights h and alpha = l1 / (inv_m sum h)), so each inner problem is a DuHL fit under
the same budget, warm-started at b. The inner fit stops at 0.3 of the outer gap or after 20
rounds (skglm's constants; an inexact Newton step keeps the outer's fast convergence); an
Armijo search along b' - b (newGLMNET's sufficient decrease, sigma = 0.01, halving) takes
the step, and the outer's
certificate is the logistic model's own exact float64 gap, so the result is certified as
the coordinate-descent fit's is. Called by the estimators (duhl_cl.estimators.base) for
penalty="l1" on data in memory; returns a :class:`duhl_cl.duhl.solver.FitResult`.
"""

from __future__ import annotations

import copy
import time
import warnings

import numpy as np
from scipy.special import expit

from ..models import SquaredL1L2
from ..store.products import weighted_sqnorms
from .certificate import Certificate, certificate
from .solver import ConvergenceWarning, FitResult, solve

__all__ = ["solve_prox_newton", "INNER_FRACTION", "INNER_ROUNDS"]

# The inner fit stops at this fraction of the outer gap, or after this many device rounds
# (each of at least 4 passes): skglm's ProxNewton's EPS_TOL and MAX_CD_ITER. The line search
# takes any descent, so a capped inner fit still makes progress. (Measured once, all data
# resident, tol 1e-5, to check the constants against the looser 0.1 and uncapped: a9a
# C = 0.5 3.2 -> 2.5 s, w8a 1.2 -> 1.0 s, the text sets and leukemia 0.05-0.12 s either way;
# coordinate descent on the loss took 7.4 s on a9a.)
INNER_FRACTION = 0.3
INNER_ROUNDS = 20
INNER_PASSES = "auto"  # the inner fits take the fit's passes_per_round ("auto": see local_solver)
SIGMA, SHRINK, MIN_STEP = 0.01, 0.5, 1e-10  # the line search (newGLMNET's sigma)
# The inner fits go on in refine_dtype (float64) once a step fails to halve the outer gap
# where it is this small relative to the objective's scale: the float32 floor (about 1e-7
# relative in the coefficients) is near, and Newton steps otherwise shrink the gap faster.
REFINE_BELOW = 1e-4
# After this many steps in a row that do not halve the outer gap in the final precision, the
# fit goes on by coordinate descent on the loss (duhl_cl.duhl.solver.solve) from there: a
# float32 sparse store refined in float64 was seen to stall 5% above its target.
STALL_STEPS = 3
P_FLOOR = 1e-10  # 1 - p_j at least this: z stays finite for the worst-fitted samples


def _newton_problem(model, store, v):
    """The weighted Lasso of the second-order model at v: (inner model set up, its store)."""
    y = model.y
    s = np.ones_like(y) if model.sw is None else model.sw
    p = expit(-y * v)  # the probability of the wrong label
    q = np.maximum(1.0 - p, P_FLOOR)
    h = s * p * q
    z = v + y / q
    H = float(h.sum())
    inner = SquaredL1L2(model.l1 / (model.inv_m * H), 0.0)
    inner.setup(store.matrix, z, model.fit_intercept, h)
    inner_store = copy.copy(store)  # the same slots; the curvature is h-weighted
    inner_store.sqnorm = weighted_sqnorms(store.matrix, h)
    return inner, inner_store, model.inv_m * H


def _count(totals, res):
    """Add a device fit's transfers and peak to ``totals``; returns the fit."""
    totals["h2d"] += res.bytes_h2d
    totals["d2h"] += res.bytes_d2h
    totals["peak"] = max(totals["peak"], res.ledger_peak)
    return res


def solve_prox_newton(model, store, device, *, tol, max_iter, max_time=None,
                      random_state=None, alpha0=None, intercept0=0.0, verbose=0,
                      callback=None, budget=None, policy="duhl", passes_per_round="auto",
                      kernel_variant=None, refine_dtype=None) -> FitResult:  # fmt: skip
    """Fit a bound :class:`~duhl_cl.models.LogisticL1` by proximal Newton steps.

    Parameters are :func:`duhl_cl.duhl.solver.solve`'s; ``max_iter`` bounds the Newton
    steps and each inner fit's rounds, ``max_time`` the whole fit. As for coordinate
    descent, ``n_iter`` counts device rounds and the history holds one record per round
    (``newton_step``: its step; the step's last round has the outer certificate's gap and
    objective, ``step``: the line search's, ``inner_rounds``); ``newton_steps`` counts steps.
    The callback is called once a step, with that last record.
    """
    t0 = time.perf_counter()
    target = tol * model.scale
    b = np.zeros(model.n_coords) if alpha0 is None else np.array(alpha0, dtype=np.float64)
    cert = certificate(model, store, b)
    history, totals = [], {"h2d": 0, "d2h": 0, "peak": 0}
    last, stop, error, rng = None, "max_iter", None, np.random.default_rng(random_state)
    steps, inner_dtype, refinement, stalls, fallback = 0, None, None, 0, None
    for k in range(1, int(max_iter) + 1):
        if cert.gap <= target:
            stop = "converged"
            break
        if max_time is not None and time.perf_counter() - t0 > max_time:
            stop = "max_time"
            break
        b, b0, v = cert.alpha, cert.intercept, cert.shared
        inner, inner_store, weight = _newton_problem(model, store, v)
        inner_target = INNER_FRACTION * cert.gap / weight
        t_step = time.perf_counter()
        left = None if max_time is None else max(max_time - (time.perf_counter() - t0), 1e-3)
        with warnings.catch_warnings():
            # The inner fit's tolerance is the outer's business: its stop is not the user's.
            warnings.simplefilter("ignore", ConvergenceWarning)
            res = solve(
                inner, inner_store, device, tol=inner_target / inner.scale,
                max_iter=min(max_iter, INNER_ROUNDS), max_time=left, random_state=rng, alpha0=b,
                intercept0=b0, budget=budget, policy=policy,
                passes_per_round=INNER_PASSES if passes_per_round == "auto" else passes_per_round,
                kernel_variant=kernel_variant, refine_dtype=refine_dtype, dtype=inner_dtype,
            )  # fmt: skip
        last = _count(totals, res)
        # The direction, and X d + d0 from the inner shared vector (X b' + b0' - z).
        d = res.alpha - b
        dv = res.shared + inner.y - v
        f = model.objective(b, v)
        decrease = float(model.gradient(v) @ dv) + model.l1 * (
            np.abs(res.alpha).sum() - np.abs(b).sum()
        )
        t = 1.0
        while model.objective(b + t * d, v + t * dv) > f + SIGMA * t * decrease:
            t *= SHRINK
            if t < MIN_STEP:
                break
        if t < MIN_STEP:
            stop = "line search"  # no descent along the inner solution: rounding
            break
        gap_before = cert.gap
        # Recomputed from the coefficients, not v + t dv: the inner shared vector is
        # X b' + b0' - z, and z reaches 1/P_FLOOR for the worst-fitted samples, so adding z
        # back would cost v up to 1e-6 absolute.
        cert = certificate(model, store, b + t * d)
        final = refine_dtype is None or inner_dtype is not None
        slow = cert.gap > 0.5 * gap_before and cert.gap < REFINE_BELOW * model.scale
        stalls = stalls + 1 if final and slow else 0
        if not final and slow:
            inner_dtype = np.dtype(refine_dtype)
            refinement = {"dtype": str(inner_dtype), "round": len(history) + res.n_iter,
                          "gap": float(cert.gap)}  # fmt: skip
        # The history is the device's rounds (as a coordinate-descent fit's), numbered on;
        # the inner fits' gaps are of the inner problem, and the step's last round carries
        # the outer certificate.
        for r in res.history:
            r.update(inner_gap=r.get("gap"), gap=None, newton_step=k,
                     round=len(history) + 1, time=r.get("time", 0.0) + (t_step - t0))  # fmt: skip
            history.append(r)
        if not res.history:
            history.append({"round": len(history) + 1, "newton_step": k, "passes": 0})
        record = history[-1]
        record.update(gap=cert.gap, objective=cert.objective, step=t,
                      inner_rounds=res.n_iter, time=time.perf_counter() - t0)  # fmt: skip
        steps = k
        if verbose:
            print(f"newton step {k}: gap {cert.gap:.3e} (target {target:.3e}), "
                  f"{res.n_iter} rounds, step {t:g}")  # fmt: skip
        if stalls >= STALL_STEPS:
            stop = "stalled"
            break
        if res.stop_reason == "interrupted":
            stop = "interrupted"
            break
        if callback is not None:
            try:
                if callback(record) is False:
                    stop = "callback"
                    break
            except Exception as exc:  # the model so far is kept; the estimator raises it
                error, stop = exc, "callback error"
                break
    else:
        if cert.gap <= target:
            stop = "converged"
    if stop == "stalled":
        left = None if max_time is None else max(max_time - (time.perf_counter() - t0), 1e-3)
        fallback = solve(
            model, store, device, tol=tol, max_iter=max(int(max_iter) - len(history), 1),
            max_time=left, random_state=rng, alpha0=cert.alpha, intercept0=cert.intercept,
            budget=budget, policy=policy, passes_per_round=passes_per_round,
            kernel_variant=kernel_variant, refine_dtype=refine_dtype, dtype=inner_dtype,
        )  # fmt: skip
        for r in fallback.history:
            r.update(round=len(history) + 1, newton_step=None)
            history.append(r)
        if fallback.gap <= cert.gap:  # its own certificate, of the same model and store
            cert = Certificate(fallback.gap, fallback.objective, fallback.alpha,
                               fallback.intercept, fallback.shared, None)  # fmt: skip
        stop = fallback.stop_reason
        last = _count(totals, fallback)
    converged = cert.gap <= target
    if not converged and error is None and stop != "interrupted" and fallback is None:
        warnings.warn(
            f"not converged: stopped ({stop}) after {steps} Newton steps with "
            f"certified duality gap {cert.gap:.3g} > tol x scale = {target:.3g}; raise "
            f"max_iter or max_time, or loosen tol",
            ConvergenceWarning,
            stacklevel=3,
        )
    return FitResult(
        alpha=cert.alpha, intercept=cert.intercept, shared=cert.shared, gap=cert.gap,
        objective=cert.objective, n_iter=len(history), converged=converged,
        solver="prox-newton" if fallback is None else "prox-newton, then cd",
        newton_steps=steps,
        stop_reason="converged" if converged and stop != "interrupted" else stop,
        history=history, bytes_h2d=totals["h2d"], bytes_d2h=totals["d2h"],
        ledger_peak=totals["peak"], bank_peak=last.bank_peak if last else [],
        time=time.perf_counter() - t0,
        kernel_variant=last.kernel_variant if last else "serial",
        atomics=last.atomics if last else None, budget=last.budget if last else 0,
        entry_bytes=last.entry_bytes if last else 0, dtype=last.dtype if last else "",
        refinement=refinement, error=error,
    )  # fmt: skip
