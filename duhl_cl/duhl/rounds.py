"""The rounds of one fit: when to certify, when a fit has stalled at its precision's floor,
the switch to float64, and the stop's record.

:class:`Run` drives a :class:`~duhl_cl.duhl.local_solver.LocalSolver` round after round for
one fit (duhl_cl.duhl.solver.solve) or one point of a path (duhl_cl.duhl.path): it certifies
when the gap estimate suggests the tolerance is reached and at least every
``certify_every`` rounds (waiting twice as long after a certificate that was too hopeful;
over a disk tier, periodically once the rounds took as long as the next one is expected to),
keeps the history, tells a floor from a slow fit (:meth:`Run.stalled`), rebuilds the working
set in float64 (:meth:`Run.refine`), and completes the last record with the stop's
certificate (:meth:`Run.finish`). The callback's False and its exceptions stop the rounds.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np

from ..device.ledger import MemoryBudgetError
from .bounds import last_read_bytes

# A stall: the best certified gap has not halved over this many certificate intervals.
STALL_CERTIFICATES = 4
# ... and the coefficients moved less than this (relative, summed over those certificates).
FLOOR_MOVE = 1e-4
# The precision's own sign: the exact gaps of the coordinates the device had just visited
# are more than this many times what the device's state said of them (see Run.stalled).
PRECISION_RATIO = 4.0
# The gap estimate stagnates when the least of the last STAGNANT_ROUNDS rounds' estimates is
# not below half the least of the phase's earlier ones; a certificate is then due every
# STAGNANT_ROUNDS rounds where it is cheap: an in-memory store of at most CHEAP_CERT_ENTRIES
# stored entries (a host pass of a few ms at most, against 3 rounds of at least 4 passes).
STAGNANT_ROUNDS = 3
CHEAP_CERT_ENTRIES = 1 << 22
# A certificate that read at least this much measures the rate for the next one's
# predicted time (Run._balanced).
CERT_RATE_BYTES = 64 << 20

__all__ = [
    "CERT_RATE_BYTES",
    "CHEAP_CERT_ENTRIES",
    "FLOOR_MOVE",
    "PRECISION_RATIO",
    "STAGNANT_ROUNDS",
    "STALL_CERTIFICATES",
    "CertNote",
    "Run",
    "format_round",
]


class CertNote(NamedTuple):
    """What :meth:`Run.stalled` keeps of each certificate of a precision phase."""

    round: int
    best: float  # the best certified gap so far
    moved: float  # how far the coefficients moved since the previous one (relative, max-norm)
    hopeful: bool  # the gap estimate had met the target
    # The coordinates the device had just visited certified a gap above the target and
    # PRECISION_RATIO times what the device's own state gave them.
    precise: bool
    stagnant: bool = False  # the gap estimate had stagnated (Run._stagnant)


class _CallbackStop(Exception):
    """The callback returned False."""


class _CallbackError(Exception):
    """The callback raised ``error``."""

    def __init__(self, error):
        super().__init__(repr(error))
        self.error = error


class Run:
    """What one fit (or one point of a path) keeps between rounds: the history, when to
    certify, the last certificate, the floor's evidence and why the rounds stopped."""

    def __init__(self, local, target, certify_every, t0, verbose, callback):
        self.local, self.target, self.certify_every = local, target, certify_every
        self.t0, self.verbose, self.callback = t0, verbose, callback
        self.history: list = []
        self.cert = None
        self.stop_reason = "max_iter"
        self.start_cert_time = 0.0  # the start's certificate, counted in round 1's record
        self.last_cert, self.cert_wait = 0, 1
        self.cert_end, self.cert_cost = t0, 0.0  # when the last certificate ended, its cost
        # Over a disk tier: the last certificate's bytes of coordinates read a second (None
        # where it read too little to tell, or cannot predict), and the next one's cost as
        # predicted (when, how long predicting took), see _balanced.
        self.cert_rate = None
        self._predicted = (-np.inf, 0.0, np.inf)
        # Each certificate of this precision phase, for stalled(); and the last one's
        # coefficients.
        self.cert_log: list[CertNote] = []
        self._last_alpha = None
        self._estimates: list[float] = []  # this precision phase's gap estimates
        self._entries = None  # the store's entries, for _cheap
        self.refinement = None
        self.error = None  # what a callback raised

    def rounds(self, max_iter, max_time, local_solver, refine_dtype) -> None:
        """Rounds until converged, max_iter, max_time, Ctrl-C or the callback stops them,
        refining in ``refine_dtype`` (with ``local_solver``) where the gap stalls."""
        if not self.cert_cost:  # the start's certificate, when there was one
            self.cert_end, self.cert_cost = time.perf_counter(), self.start_cert_time
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
        st = local.store
        disk0, host0, from_disk0 = st.bytes_disk, st.n_from_host, st.n_from_disk
        record = local.run_round()
        if local.n_rounds == 1:
            record["cert_time"] = self.start_cert_time
        since = local.n_rounds - self.last_cert
        self._estimates.append(record["gap_estimate"])
        stagnant = self._stagnant()
        hopeful = record["gap_estimate"] <= self.target
        if (
            (hopeful and since >= self.cert_wait)
            or self._periodic_due(st, since)
            or (stagnant and since >= STAGNANT_ROUNDS and self._cheap(st))
        ):
            # The certificate is an exact host pass over all the data; when the estimate
            # (partly stale) was too hopeful, wait twice as long before the next one. A
            # stagnant estimate's certificates wait STAGNANT_ROUNDS rounds (Run._cheap).
            t_cert = time.perf_counter()
            visited = local.ws.visited
            device_says = float(np.sum(local.z[..., visited]))  # read back from the device
            self.cert = local.certify()
            exact = float(np.sum(local.z[..., visited]))  # the certificate's gaps of them
            self.cert_end = time.perf_counter()
            self.cert_cost = self.cert_end - t_cert
            # (A certificate that read little is mostly its fixed costs, the shared vector
            # and the host cache's refill: its own time is the next wait then.)
            read = last_read_bytes(st) if st.tiered else 0
            predicts = hasattr(local, "predicted_cert_bytes")  # (one-vs-rest does not)
            self.cert_rate = (
                read / max(self.cert_cost, 1e-9) if predicts and read >= CERT_RATE_BYTES else None
            )
            self._predicted = (-np.inf, 0.0, np.inf)
            record["cert_time"] += self.cert_cost
            self.last_cert = local.n_rounds
            ok = self.cert.gap <= self.target
            # (Only a too hopeful estimate's: sms_spam's Lasso at tol 1e-4, whose periodic
            # and stagnation certificates had doubled the wait to 8, met the target by its
            # estimate at round 11 and was certified at 18, 12 ms later.)
            if ok:
                self.cert_wait = 1
            elif hopeful:
                self.cert_wait = min(2 * self.cert_wait, self.certify_every)
            record.update(gap=self.cert.gap, objective=self.cert.objective,
                          cert_bounded=getattr(self.cert, "n_bounded", 0))  # fmt: skip
            _class_gaps(record, self.cert)
            best = min(self.cert.gap, self.cert_log[-1].best) if self.cert_log else self.cert.gap
            a = self.cert.alpha
            moved = np.inf
            if self._last_alpha is not None:
                scale = max(float(np.max(np.abs(a), initial=0.0)), np.finfo(np.float64).tiny)
                moved = float(np.max(np.abs(a - self._last_alpha), initial=0.0)) / scale
            self._last_alpha = a  # the certificate's own copy
            self.cert_log.append(CertNote(
                local.n_rounds, best, moved, bool(record["gap_estimate"] <= self.target),
                bool(exact > self.target and exact > PRECISION_RATIO * device_says), stagnant,
            ))  # fmt: skip
        record["dtype"] = str(local.dtype)
        record["bytes_h2d"] = local.ledger.bytes_h2d - h2d0
        record["bytes_d2h"] = local.ledger.bytes_d2h - d2h0
        # A disk tier (duhl_cl.store.tiered): bytes read from disk (refresh, certificate, the
        # host cache's fill, incoming coordinates), and where the incoming ones came from.
        record["bytes_disk"] = st.bytes_disk - disk0
        record["in_from_host"] = st.n_from_host - host0
        record["in_from_disk"] = st.n_from_disk - from_disk0
        record["host_peak"] = st.host_peak
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

    def _stagnant(self) -> bool:
        """Whether the gap estimate has stagnated above the target: the least of the last
        ``STAGNANT_ROUNDS`` rounds' estimates is not below half the least of this phase's
        earlier ones. A float32 fit at its floor says so from its first rounds: leukemia's
        (72 x 7129) logistic regression at tol 1e-7 estimated 7e-6 from round 2 to 50
        against a target of 5e-6, and its hinge SVM at tol 1e-8 wandered between 1e-6 and
        3e-6 against 7e-7; each waited 50 rounds for the rule of :meth:`stalled` that spans
        four periodic certificates."""
        est = self._estimates
        if len(est) <= STAGNANT_ROUNDS:
            return False
        last = min(est[-STAGNANT_ROUNDS:])
        return self.target < last < np.inf and last > 0.5 * min(est[:-STAGNANT_ROUNDS])

    def _cheap(self, store) -> bool:
        """Whether a certificate the stagnation asks for is cheap: an in-memory store of at
        most ``CHEAP_CERT_ENTRIES`` entries. A host pass over a larger store waits for the
        periodic ones, and over a disk tier for :meth:`_balanced` (the dense 200000 x 1000
        SVM: 0.11 s a certificate against 0.035 s a round). By the store's size, not by
        the clock, so that a fit stays reproducible under its random_state: a certificate
        resynchronises the shared vector and refreshes the gap memory."""
        if store.tiered:
            return False
        if self._entries is None:
            lens = getattr(store, "lens", None)
            self._entries = int(np.sum(lens, dtype=np.int64)) if lens is not None else -1
        return 0 <= self._entries <= CHEAP_CERT_ENTRIES

    def _periodic_due(self, store, since) -> bool:
        """Whether the periodic certificate is due ``since`` rounds after the last one: in
        memory every ``certify_every`` rounds; over a disk tier, whose certificate may be
        a pass over the store on disk, once the rounds since the last one took as long as
        the next one is expected to (:meth:`_balanced`), however many they were, so that the
        periodic certificates take about half of the fit's time at most, where the
        predictions hold (a 16 GiB Lasso: 8-10 s a certificate against 0.3 s a round; every
        10 rounds they were 75% of the fit). Not fewer rounds when they are slow: a
        16 GiB SVM's first 9 rounds took 20 s each, drawing rows from disk by gap memories
        all equal at alpha = 0, and 0.1-0.6 s each once a certificate had ranked them.
        The certificates the gap estimate asks for are not delayed: over a disk tier their
        streams are also what ranks the rows for the host cache and the device (a 16 GiB
        SVM whose certificates after a too-hopeful estimate waited as long as the last one
        took, 36-53 s, was at a relative gap of 1.6e-2 after 290 s, where it had converged
        in 271 s with them every ~10 rounds)."""
        if not store.tiered:
            return since >= self.certify_every
        return since >= 1 and self._balanced()

    def _balanced(self) -> bool:
        """Over a disk tier: whether the rounds since the last certificate took as long as
        the next one is expected to take: the last one's time, or less where the bounds at
        the device's point of this round say it would read less (those bytes at the last
        certificate's rate, host cache or disk). A 16 GiB Lasso's certificate streamed the
        store in 28 s at a relative gap of 4e-5; the next, bounded, read 120 of its 1024
        columns in 1.9 s, but waiting the 28 s had cost 41 rounds at the float32 floor.
        Predicting reads no data (O(n_coords) on the host); it is repeated only after 20
        times as long as it took."""
        now = time.perf_counter()
        waited = now - self.cert_end
        if waited >= self.cert_cost:
            return True
        predict = getattr(self.local, "predicted_cert_bytes", None)
        if self.cert_rate is None or predict is None:
            return False
        at, took, cost = self._predicted
        if now - at >= 20 * took:
            cost = predict() / self.cert_rate
            self._predicted = (now, time.perf_counter() - now, cost)
        return waited >= cost

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
        log = self.cert_log
        if len(log) >= 3 and all(c.hopeful or c.stagnant for c in log[-2:]):
            # The floor's second sign, sooner: at the last two certificates the device's own
            # estimate had met the target and the exact gap had not, or the estimate had
            # stagnated (:meth:`_stagnant`), the best gap did not halve and the coefficients
            # stood still. A 16 GiB float32 Lasso on disk (benchmarks/out_of_core.py) sat
            # there 40 rounds, 40 s, for the rule below; leukemia's two dual fits, whose
            # coefficients moved 1e-7 to 1e-6 between certificates, 50 rounds.
            first, c1, c2 = log[-3:]
            if c2.best > 0.5 * first.best and c1.moved + c2.moved <= FLOOR_MOVE:
                return True
        if len(log) >= 2 and all(c.precise for c in log[-2:]):
            # The precision's own sign: at the last two certificates, the coordinates the
            # device had just visited, whose gaps came from the device's state at the
            # coefficients certified (not stale ones), certified far more than that state
            # said, and the last did not halve the best gap. Only the device's arithmetic
            # separates the two (a float32 shared vector drifting over the passes between
            # resynchronisations); the coefficients may keep moving, as a rotating working
            # set moves them. A hinge SVM of 32 copies of 4096 rows at a 5% budget: exact
            # 3e-3 to 4e-3 against the device's 3e-5 for 3000 rounds, where float64
            # converged in 50; a 16 GiB one on disk sat at 0.2 for 80 rounds (7 minutes).
            if log[-1].best > 0.5 * log[-2].best:
                return True
        horizon = local.n_rounds - STALL_CERTIFICATES * self.certify_every
        past = [c.best for c in log if c.round <= horizon]
        if not past or log[-1].best <= 0.5 * past[-1]:
            return False
        moved = sum(c.moved for c in log if c.round > horizon)
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
        self.cert_log, self._last_alpha, self._estimates = [], None, []

    def finish(self) -> None:
        """The stop's certificate (not converged), completing the last round's record."""
        local = self.local
        t_cert = time.perf_counter()
        if self.cert is None or self.last_cert != local.n_rounds:
            # (A certificate of this very round, e.g. at max_iter, is not computed again.)
            self.cert = local.final_certificate()
        cert_time = time.perf_counter() - t_cert
        n = local.n_rounds
        if self.history and self.history[-1]["round"] == n:
            last = self.history[-1]
        else:
            last = {"round": n, "gap_estimate": None, "n_resident": 0, "n_visited": 0, "nnz_visited": 0,
                    "n_swapped_in": 0, "bytes_swapped_in": 0, "bytes_h2d": 0, "bytes_d2h": 0,
                    "n_gap_refreshes": 0, "passes": 0, "device_time": 0.0, "pass_time": 0.0, "host_time": 0.0,
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
        _class_gaps(last, self.cert)
        if self.callback is not None:
            # The log gets the stop's certificate too (the record once more, completed).
            try:
                self.callback(last)
            except BaseException:  # noqa: BLE001 -- stopping already; keep the model
                pass


def _class_gaps(record, cert) -> None:
    """A one-vs-rest certificate's class gaps go into its record (duhl_cl.duhl.ovr)."""
    gaps = getattr(cert, "class_gaps", None)
    if gaps is not None:
        record["class_gaps"] = [float(g) for g in gaps]


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
