"""Regularization paths: one device session for a whole sequence of penalties.

:func:`solve_path` fits a primal model (duhl_cl.models.primal) for each (l1, l2) of a path,
largest penalty first, with one :class:`~duhl_cl.duhl.local_solver.LocalSolver`: the store
and the device working set are built once, and each penalty starts where the previous one
ended, as celer and skglm warm-start their paths: the coefficients, the shared vector, the
resident set (the previous support is on the device already) and the gap memory, which a
certificate under the new penalty refreshes before the first round. Each point is run by
the same driver as a single fit (duhl_cl.duhl.rounds.Run: rounds, certificates, the
float64 refinement of a stalled float32 fit) and is certified: ``objective - optimum <=
gap`` at every point.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from .local_solver import solver_factory
from .rounds import Run
from .solver import ConvergenceWarning

__all__ = ["PathPoint", "solve_path"]


@dataclass
class PathPoint:
    """One penalty's certified solution."""

    l1: float
    l2: float
    alpha: np.ndarray
    intercept: float
    gap: float
    objective: float
    n_iter: int
    converged: bool
    history: list = field(default_factory=list)


def solve_path(model, store, device, penalties, *, tol, max_iter, budget=None,
               random_state=None, alpha0=None, policy="duhl", passes_per_round="auto",
               kernel_variant=None, refine_dtype=None, certify_every=10, verbose=0,
               max_time=None):  # fmt: skip
    """Fit ``model`` at each (l1, l2) of ``penalties`` in one device session.

    Parameters
    ----------
    model : duhl_cl.models.primal model (``setup`` done; ``set_penalty`` is called per point)
    store : duhl_cl.store.Store
    device : duhl_cl.device.discovery.Device
    penalties : sequence of (l1, l2)
        In the order to solve them (largest first: each starts from the previous solution).
    tol, max_iter : as :func:`duhl_cl.duhl.solver.solve`, per point (max_iter rounds each).
    alpha0 : ndarray (n_coords,), optional
        The first point's start (default zeros).
    max_time : float, optional
        Wall-clock limit of the whole path in seconds; the points reached are returned,
        each certified (as after Ctrl-C).

    Returns
    -------
    list of PathPoint, one per penalty; and the ledger's (bytes_h2d, bytes_d2h, peak).
    """
    t0 = time.perf_counter()
    local_solver = solver_factory(
        model, store, device, budget=budget, policy=policy, passes_per_round=passes_per_round,
        kernel_variant=kernel_variant, rng=np.random.default_rng(random_state),
    )  # fmt: skip

    local = local_solver()
    points = []
    try:
        _, cert = local.start(alpha0)
        for l1, l2 in penalties:
            model.set_penalty(l1, l2)
            local.ws.set_kernel_params()
            run = Run(local, tol * model.scale, certify_every, t0, verbose, None)
            # The new penalty's gaps of every coordinate (gap memory, intercept) from the last
            # certificate: the shared vector and u do not depend on the penalty.
            run.cert = local.recertify(cert) if cert is not None else local.certify()
            run.last_cert = n0 = local.n_rounds
            if run.cert.gap > run.target:
                run.rounds(n0 + max_iter, max_time, local_solver, refine_dtype)
                local = run.local
                if run.stop_reason != "converged":
                    run.finish()
            if (run.refinement or {}).get("refused"):
                refine_dtype = None  # the float64 set did not fit: not again at each point
            cert = run.cert
            points.append(PathPoint(l1, l2, cert.alpha, cert.intercept, cert.gap,
                                    cert.objective, local.n_rounds - n0, cert.gap <= run.target,
                                    run.history))  # fmt: skip
            if run.stop_reason in ("interrupted", "max_time"):
                break  # the points so far, each certified
        missed = [k for k, p in enumerate(points) if not p.converged]
        if missed:
            warnings.warn(
                f"{len(missed)} of {len(points)} points of the path stopped after max_iter="
                f"{max_iter} rounds above tol (the first: point {missed[0]}, certified gap "
                f"{points[missed[0]].gap:.3e}); their certified gaps are returned. Increase "
                f"max_iter or loosen tol.",
                ConvergenceWarning,
                stacklevel=4,
            )
        led = local.ledger
        return points, (led.bytes_h2d, led.bytes_d2h, led.peak)
    finally:
        local.close()
        local.release()
