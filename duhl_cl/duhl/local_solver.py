"""The local solver: the state of one device's fit and its round (docs/architecture.md, "One round").

:class:`LocalSolver` owns the coefficients, the intercept, the shared vector, the gap memory
z (and each coordinate's last u) and the device working set, and runs one round at a time:
the policy picks the resident set from z; only coordinates not yet resident are copied in;
the device (unit B) runs ``passes`` shuffled passes over the resident set while a host
thread (unit A) refreshes z for as many coordinates as it can with the previous round's
coefficients and shared vector; then the resident coefficients and the shared vector are
read back, the intercept is updated (primal models), and the device computes fresh gaps of
the visited coordinates, which go into z (what the passes settled makes room) and the gap
estimate. :meth:`LocalSolver.certify` evaluates the exact float64 certificate, which
refreshes all of z and resynchronises the device's shared vector.

When to certify and when to stop is the driver's business (duhl_cl.duhl.solver.solve for
one device); a distributed driver can run some rounds from a given state
(:meth:`LocalSolver.start`, :meth:`LocalSolver.set_shared`) and ask for the coordinates'
gaps against a given shared vector (:meth:`LocalSolver.gaps_against`).
"""

from __future__ import annotations

import time

import numpy as np

from .bounds import cache_key, predicted_cert_bytes
from .certificate import certificate, dual_point, gaps_against, rescore, shared_vector
from .policies import make_policy
from .refresh import HostRefresher
from .working_set import DeviceWorkingSet

__all__ = [
    "AUTO_PASSES",
    "GROW_ENTRIES",
    "GROW_FROM",
    "LocalSolver",
    "auto_passes_for",
    "grow_from",
    "solver_factory",
]


GROW_FROM = 100  # a sparse model's smallest working set (celer's p0)
# ... or as many coordinates as hold this many entries, on average, where that is more.
GROW_ENTRIES = 1 << 20


def grow_from(model, entries) -> int:
    """The smallest grown working set of an l1 model (0: none) over coordinates of
    ``entries`` stored entries each: GROW_FROM coordinates, or, where more, as many as hold
    GROW_ENTRIES entries on average (every coordinate of a store that small). A round's
    fixed costs outweigh passes over a few hundred coordinates. Side by side (medians of 5,
    growing from 100 / from 2^18 entries / from 2^20): sms_spam's Lasso (8713 TF-IDF
    columns, 74169 entries) to tol 0.1: 25.7 / 9.0 / 8.3 ms (7, 1, 1 rounds); leukemia's
    (7129 dense columns of 72) to 1e-5: 29.8 / 24.5 / 23.7 ms; review_polarity's (39659
    columns, 666842 entries) to 1e-4: 724 / 728 / 562 ms (137, 126, 100 rounds)."""
    if not (model.primal and getattr(model, "l1", 0) > 0):
        return 0
    n, total = len(entries), int(np.sum(entries))
    return max(GROW_FROM, min(n, n * GROW_ENTRIES // max(total, 1)))


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


class SolverLifetime:
    """The end of a local solver's device session (``ws``, its working set, and
    ``refresher``, its host thread or None), shared with duhl_cl.duhl.ovr's solver."""

    def close(self) -> None:
        """Stop the host thread and wait for the device; the working set stays allocated
        (its ledger is read after) until :meth:`release`."""
        if self.refresher is not None:
            try:
                self.refresher.close()
            except Exception:  # noqa: BLE001 -- the fit is ending anyway
                pass
        self.ws.finish()

    def release(self) -> None:
        """Free the device memory."""
        self.ws.release()


class LocalSolver(SolverLifetime):
    """One device's fit: its state and its rounds.

    Parameters
    ----------
    model : duhl_cl.models.Model (``setup`` done)
    store : duhl_cl.store.Store
    device : duhl_cl.device.discovery.Device
    budget : int, optional
        Device bytes this fit may use (default: the profile's budget).
    ledger : duhl_cl.device.ledger.Ledger, optional
    policy : {"duhl", "sequential", "random", "full"}
    passes_per_round : int or "auto"
        Passes per round; "auto": see :func:`auto_passes_for`.
    kernel_variant : {None, "serial", "tpa", "bucketed"}
        The device pass (duhl_cl.kernels); None takes the profile's.
    rng : numpy Generator
        Seeds the shuffles and the random policy.
    dtype : numpy dtype, optional
        The device's precision (default: the store's); float64 over a float32 store is the
        refinement phase of a fit that float32 arithmetic stalled (duhl_cl.duhl.solver).

    Attributes
    ----------
    alpha : ndarray (n_coords,), float64
        The coefficients (read back from the device after each round).
    intercept : float
        The primal intercept b0 (0 for dual models, whose bias is a coordinate of w).
    shared : ndarray
        The shared vector (v or w) as of the last round, float64.
    z, u_mem : ndarray (n_coords,)
        The gap memory and each coordinate's last u; z is inf where never evaluated.
    n_rounds : int
    """

    def __init__(self, model, store, device, *, budget=None, ledger=None, policy="duhl",
                 passes_per_round="auto", kernel_variant=None, rng=None, dtype=None):  # fmt: skip
        self.model, self.store = model, store
        self.rng = rng if rng is not None else np.random.default_rng()
        n = store.n_coords
        self.ws = DeviceWorkingSet(
            device, model, store, budget=budget, ledger=ledger, variant=kernel_variant,
            dtype=dtype,
        )  # fmt: skip
        self.z = np.full(n, np.inf)  # gap memory: never evaluated ranks first
        self.u_mem = np.full(n, np.nan)
        self.auto_passes = passes_per_round == "auto"
        self.passes = AUTO_PASSES[0] if self.auto_passes else int(passes_per_round)
        self.n_rounds = 0
        self.alpha = model.initial_alpha()
        self.intercept, self.shared = 0.0, None
        self.refresher = None
        if store.tiered:
            # A disk tier's refresh reads at most a device budget from disk a round.
            store.refresh_window = self.ws.ledger.budget
            # Its certificates' streams fill the host cache as they read (bounds.cache_key).
            store.fills_from_streams = True
        try:
            self.policy = self._make_policy(policy)
            self.refresher = HostRefresher(model, store, self.z, self.u_mem)
        except BaseException:
            self.ws.release()
            raise

    def _make_policy(self, name):
        ws, model, store = self.ws, self.model, self.store
        full_bytes = (
            ws.cap.fixed + store.n_coords * ws.cap.slot_bytes
            + int(ws.entries.sum()) * ws.cap.entry_bytes
        )  # fmt: skip
        return make_policy(
            name,
            store.n_coords,
            ws.fits,
            self.rng,
            need_bytes=full_bytes,
            budget=ws.ledger.budget,
            limit=ws.n_homes,
            sizes=ws.entries,
            pool_entries=ws.cap.pool_entries,
            # Dual classifiers with a bias feature: the classes take turns (see Duhl).
            groups=store.labels if (not model.primal and getattr(model, "bias", 0) > 0) else None,
            grow=grow_from(model, ws.entries),
            # Runs a read's worth long (a disk tier), and short beside the working set,
            # whose draw would otherwise lose its choice (RUN_SHARE).
            run=min(store.run_length(), max(1, ws.n_homes // RUN_SHARE)) if store.tiered else 1,
        )

    @property
    def ledger(self):
        return self.ws.ledger

    @property
    def dtype(self):
        return self.ws.dtype

    def resume(self, cert, n_rounds: int) -> None:
        """Continue a fit from its last certificate (instead of :meth:`start`): the exact
        coefficients, intercept and shared vector, every coordinate's u, the round count."""
        self.n_rounds = n_rounds
        self.alpha = np.array(cert.alpha, dtype=np.float64)
        self.intercept = cert.intercept
        self._remember(cert)
        self.set_shared(cert.shared)

    def start(self, alpha0=None, intercept0=0.0):
        """Set the state to ``alpha0`` (default: the model's start; moved into the model's
        domain, :meth:`Model.feasible`) and send the shared vector to the device; returns
        (seconds the start certificate took, that certificate or None).

        A gap-ranked policy starts from a certificate (one host pass, exact u of every
        coordinate, taken by the gap memory), so that the first working set is already
        gap-ranked instead of an arbitrary fill of never-evaluated coordinates.
        """
        m = self.model
        if alpha0 is None:
            self.alpha = m.initial_alpha()
        else:
            self.alpha = m.feasible(np.array(alpha0, dtype=np.float64))
        self.intercept = float(intercept0) if m.primal else 0.0
        spent, start = 0.0, None
        if self.policy.ranks_by_gap:
            t = time.perf_counter()
            start = certificate(m, self.store, self.alpha, self.intercept)
            spent = time.perf_counter() - t
            self.intercept, self.shared = start.intercept, start.shared
            self._remember(start)
        else:
            self.shared = shared_vector(m, self.store, self.alpha, self.intercept)
        self.ws.set_shared(self.shared)
        return spent, start

    def set_shared(self, shared) -> None:
        """Take a shared vector from outside (a driver's), on the host and the device."""
        self.shared = np.array(shared, dtype=np.float64)
        self.ws.set_shared(self.shared)

    def run_round(self) -> dict:
        """One round; returns its history record (``gap`` None: no certificate yet)."""
        m, ws, pol, alpha = self.model, self.ws, self.policy, self.alpha
        t_round = time.perf_counter()
        sw = ws.make_resident(pol.select(self.z, self.n_rounds, alpha), alpha)
        n_resident = len(ws.resident)  # on the device
        visited = ws.visited  # what the passes visit: the selection
        pol.visited(visited, self.n_rounds)
        nnz_visited = int(ws.entries[visited].sum())
        if self.auto_passes:
            per_entry, per_coord = m.pass_cost
            work = per_entry * nnz_visited + per_coord * len(visited)
            complete = pol.complete or len(visited) >= np.count_nonzero(self.z > 0)
            self.passes = auto_passes_for(work, ws.passes_in_one_launch, complete)
        ws.run_passes(self.rng, self.passes)
        t_passes = time.perf_counter()
        # Unit A works on the previous round's alpha and v while unit B runs the pass.
        all_visited = len(visited) == self.store.n_coords
        # (A policy that does not rank by gap, over a disk tier: no refresh, which would
        # read the disk for nothing; the device's gaps and the certificates keep the rest.)
        if not pol.ranks_by_gap and self.store.tiered:
            all_visited = True
        if not all_visited:
            # No copies: the refresher has stopped before the read-back writes alpha in
            # place, and the shared vector is replaced, never written into.
            self.refresher.start(alpha, self.shared)
        ws.finish()
        t_end = time.perf_counter()
        device_time, pass_time = t_end - t_round, t_end - t_passes
        n_refreshed, host_time = self.refresher.stop() if not all_visited else (0, 0.0)
        self.n_rounds += 1
        estimate = self._read_back()
        return {
            "round": self.n_rounds,
            "time": 0.0,
            "gap": None,
            "gap_estimate": float(estimate),
            "objective": float(m.objective(alpha, self.shared)) if m.primal else None,
            "n_resident": n_resident,
            "n_visited": len(visited),
            "nnz_visited": nnz_visited,
            "n_swapped_in": sw.n_swapped_in,
            "bytes_swapped_in": sw.bytes_swapped_in,
            "bytes_h2d": 0,
            "bytes_d2h": 0,
            "n_gap_refreshes": int(n_refreshed),
            "passes": self.passes,
            "device_time": device_time,
            "pass_time": pass_time,
            "host_time": host_time,
            "cert_time": 0.0,
            "ledger_peak": self.ledger.peak,
        }

    def _read_back(self) -> float:
        """The round's coefficients, shared vector and visited gaps from the device; returns
        the gap estimate (inf while some coordinate was never evaluated)."""
        m, ws, alpha = self.model, self.ws, self.alpha
        ws.read_alpha(alpha)
        self.shared = ws.get_shared().astype(np.float64)
        if m.primal and m.fit_intercept:
            self.shared, self.intercept = m.intercept_update(self.shared, self.intercept)
            ws.set_shared(self.shared)
        coords, u, _ = ws.resident_gaps(gaps=False)
        self.u_mem[coords] = u
        # The visited coordinates' gaps, fresh from the device, go into the gap memory: what
        # the passes settled makes room for the others (whose gaps the host refreshes with
        # the previous round's state, or the last certificate gave).
        self.z[coords] = m.gaps(alpha[coords], self.u_mem[coords], coords)
        if np.isnan(self.u_mem).any():
            return np.inf
        return m.total_gap(alpha, self.u_mem, self.shared)

    def certify(self):
        """The exact certificate at the current coefficients (duhl_cl.duhl.certificate).

        It evaluated every coordinate exactly: the gap memory takes it whole (a free, fresh
        z); the device's shared vector is resynchronised with the exact one (a float32
        device accumulates rounding in v over many passes); the intercept takes its optimum.
        """
        cert = certificate(self.model, self.store, self.alpha, self.intercept)
        self.intercept = cert.intercept
        self._remember(cert)
        self.set_shared(cert.shared)
        return cert

    def predicted_cert_bytes(self) -> int:
        """Bytes of coordinates the next certificate would read over a disk tier, by the
        bounds at the device's own point of this round (duhl_cl.duhl.bounds; nothing is
        read)."""
        point = dual_point(self.model, self.shared)
        return predicted_cert_bytes(self.model, self.store, point, self.alpha)

    def recertify(self, cert):
        """``cert`` under a new penalty of the model (duhl_cl.duhl.certificate.rescore, no
        pass over the data), taken as :meth:`certify` takes a certificate."""
        cert = rescore(self.model, cert)
        self.alpha, self.intercept = np.array(cert.alpha), cert.intercept
        self._remember(cert)
        self.set_shared(cert.shared)
        return cert

    def final_certificate(self):
        """The certificate of the coefficients as they stand, for a fit that ends here."""
        self.ws.finish()
        if self.n_rounds and self.ws.resident.size:
            self.ws.read_alpha(self.alpha)
        return certificate(self.model, self.store, self.alpha, self.intercept)

    def gaps_against(self, shared):
        """Every coordinate's (u, gap) at the current coefficients against ``shared``."""
        return gaps_against(self.model, self.store, self.alpha, shared)

    def _remember(self, cert) -> None:
        self.u_mem[:] = cert.u
        self.z[:] = self.model.gaps(cert.alpha, cert.u)
        # A disk tier's host cache takes the highest gaps, then the closed gaps nearest to
        # opening (duhl_cl.duhl.bounds.cache_key; duhl_cl.store.tiered).
        if self.store.tiered:
            self.store.rank(cache_key(self.model, self.store, cert.alpha, cert.u, self.z))


# A working set holds at least this many of the device draw's runs of consecutive
# coordinates (duhl_cl.duhl.policies.Duhl's ``run``): a 150-row test problem's store at a
# small budget would otherwise be drawn in runs of 546, and a logistic test took 21 s, not 3.
RUN_SHARE = 64


def solver_factory(model, store, device, *, budget=None, ledger=None, policy="duhl",
                   passes_per_round="auto", kernel_variant=None, rng=None, solver=None,
                   **extra):  # fmt: skip
    """``make(dtype=None, ledger=ledger)``: a LocalSolver (or ``solver``, a class taking the
    same arguments and ``extra``: duhl_cl.duhl.ovr's) with these settings in a given
    precision (a driver makes a second one for a float64 refinement, on the same ledger)."""
    default_ledger = ledger
    solver = LocalSolver if solver is None else solver

    def make(dtype=None, ledger=None):
        return solver(
            model, store, device, budget=budget, policy=policy, rng=rng, dtype=dtype,
            ledger=default_ledger if ledger is None else ledger,
            passes_per_round=passes_per_round, kernel_variant=kernel_variant, **extra,
        )  # fmt: skip

    return make
