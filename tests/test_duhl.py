"""DuHL under a device memory budget: the ledger, the working set, the policies, the round loop."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from helpers import edited_profile

import duhl_cl as dc
from duhl_cl import models
from duhl_cl.duhl.capacity import plan_capacity
from duhl_cl.duhl.local_solver import AUTO_PASSES, auto_passes_for
from duhl_cl.duhl.policies import make_policy, wait_bound
from duhl_cl.duhl.working_set import DeviceWorkingSet
from duhl_cl.store import CoordinateStore, check_X

POLICIES = ["duhl", "sequential", "random"]


def lasso_problem(n=120, d=400, k=8, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    beta = np.zeros(d)
    beta[rng.choice(d, k, replace=False)] = rng.uniform(-2, 2, k)
    y = X @ beta + 0.1 * rng.standard_normal(n)
    alpha = 0.1 * np.max(np.abs(X.T @ (y - y.mean()))) / n
    return X, y, alpha


def uneven_sparse(n, d, rng):
    """Sparse data whose columns and rows hold very different numbers of entries."""
    dens = np.clip(rng.pareto(1.2, d) * 0.03, 0.005, 0.9)
    mask = rng.random((n, d)) < dens
    X = np.where(mask, rng.standard_normal((n, d)), 0.0)
    X[:, 0] = 0.0  # an empty column
    return sp.csr_matrix(X)


# --------------------------------------------------------------------------- the ledger
@pytest.mark.filterwarnings("ignore::duhl_cl.ConvergenceWarning")
@pytest.mark.every_device
def test_ledger_peak_never_exceeds_budget(device, on_default_device):
    """Property test: random problems, models, storage and budgets; the peak stays within.
    24 draws on the default device, the first 8 of them on the others (the budget's
    arithmetic is the host's; a device adds its allocation rules: Rusticl's llvmpipe took
    43 s for the 24, against 2 s on the default device)."""
    rng = np.random.default_rng(42)
    makers = [
        lambda b: dc.Lasso(alpha=0.05, memory_budget=b),
        lambda b: dc.ElasticNet(alpha=0.05, memory_budget=b),
        lambda b: dc.LinearSVC(C=0.5, loss="hinge", memory_budget=b),
        lambda b: dc.LogisticRegression(C=0.5, memory_budget=b),
        lambda b: dc.LogisticRegression(penalty="l1", C=0.5, memory_budget=b),
    ]
    for trial in range(24 if on_default_device else 8):
        n, d = int(rng.integers(20, 160)), int(rng.integers(5, 120))
        X = uneven_sparse(n, d, rng) if trial % 2 else rng.standard_normal((n, d))
        y = (rng.random(n) > 0.5).astype(float)
        y[:2] = [0, 1]
        est = makers[trial % len(makers)](None)
        store = CoordinateStore(
            check_X(X),
            primal=isinstance(est, (dc.Lasso, dc.ElasticNet))
            or getattr(est, "penalty", "") == "l1",
            dtype=np.float32,
        )
        est.set_params(policy=POLICIES[trial % 3], max_iter=6, random_state=trial, device=device)
        model = est._make_model(X)
        model.setup(X, y if isinstance(est, dc.Lasso) else np.where(y > 0, 1.0, -1.0), True)
        cap_min = plan_capacity(store, model, np.float32, 10**12, device.profile.max_alloc).minimum
        full = plan_capacity(store, model, np.float32, 10**12, device.profile.max_alloc).total
        budget = int(rng.integers(cap_min, max(cap_min + 1, full)))
        est.set_params(memory_budget=budget)
        peaks = []
        est.fit(X, y, callback=lambda r, peaks=peaks: peaks.append(r["ledger_peak"]))
        assert est.stats_["ledger_peak"] <= budget, (trial, budget)
        assert max(peaks) <= budget


# --------------------------------------------------------------------------- the working set
@pytest.mark.float64
@pytest.mark.parametrize("sparse", [False, True])
def test_bytes_moved_are_the_new_coordinates_and_land_in_place(device, sparse):
    rng = np.random.default_rng(1)
    X = uneven_sparse(80, 60, rng) if sparse else rng.standard_normal((80, 60))
    Xd = X.toarray() if sparse else X
    y = Xd[:, 1] + 0.1 * rng.standard_normal(80)
    model = models.SquaredL1L2(0.05, 0.0)
    model.setup(Xd, y, True)
    store = CoordinateStore(X, primal=True, dtype=np.float64)
    budget = plan_capacity(store, model, np.float64, 10**9, 10**9).fixed + 20 * (64 + 80 * 12)
    ws = DeviceWorkingSet(device, model, store, budget=budget)
    try:
        alpha = 0.1 * rng.standard_normal(60)
        v = model.shared_from(Xd @ alpha, 0.0)
        ws.set_shared(v)
        resident = set()
        k = ws.fits(np.arange(60))
        # Consecutive coordinates in order (copied straight from the store), then out of order
        # with the same first and last (gathered), then random sets on a fragmented pool.
        block, other = np.arange(k), np.arange(60 - k, 60)
        shuffled = np.r_[other[0], other[1:-1][::-1], other[-1]]
        wants = [block, shuffled] + [rng.permutation(60)[:k] for _ in range(6)]
        for want in wants:
            h2d = ws.ledger.bytes_h2d
            stats = ws.make_resident(want, alpha)
            new = sorted(set(ws.resident.tolist()) - resident)
            assert stats.n_swapped_in == len(new) and stats.n_refused == len(
                set(want) - set(ws.resident.tolist())
            )
            assert stats.bytes_swapped_in == ws.coordinate_bytes(new)
            # Beyond the coordinates' bytes, only placement descriptors (a few bytes each) moved.
            assert 0 <= ws.ledger.bytes_h2d - h2d - stats.bytes_swapped_in <= 64 + 48 * len(new)
            resident = set(ws.resident.tolist())
            # The passes visit exactly the selection that was placed; what else stays resident
            # was selected before (kept while its room is not needed).
            assert set(ws.visited.tolist()) == set(want) & resident
            # The data landed where the slots say: device gaps match NumPy for the visited set.
            coords, u, _ = ws.resident_gaps()
            assert sorted(coords.tolist()) == sorted(ws.visited.tolist())
            np.testing.assert_allclose(
                u, Xd[:, coords].T @ model.gradient(v), rtol=1e-10, atol=1e-12
            )
        assert ws.ledger.peak <= budget
        # A device sharing the host's memory keeps the pool in host-allocated pages (the
        # data checks above ran on them); any other device in its own.
        backed = {ws.ledger.live[i][0] for i in ws.ledger._backing}
        pool = {name for name, *_ in ws.ledger.live.values() if name.startswith("pool part")}
        assert backed == (pool if device.cl_device.host_unified_memory else set())
    finally:
        ws.release()


@pytest.mark.every_device
def test_sequential_visits_every_coordinate_each_cycle(device):
    X, y, alpha = lasso_problem()
    model = models.SquaredL1L2(alpha, 0.0)
    model.setup(X, y, True)
    store = CoordinateStore(X, primal=True, dtype=np.float32)
    ws = DeviceWorkingSet(device, model, store, budget=int(0.1 * store.nbytes) + 20000)
    try:
        pol = make_policy("sequential", store.n_coords, ws.fits, np.random.default_rng(0))
        cycle = len(pol.blocks)
        assert cycle > 1
        for c in range(2):
            seen = np.concatenate([pol.select(None, c * cycle + r) for r in range(cycle)])
            assert sorted(seen) == list(range(store.n_coords))  # each exactly once per cycle
    finally:
        ws.release()


@pytest.mark.every_device
def test_random_policy_is_reproducible(device):
    X, y, alpha = lasso_problem()
    fits = [
        dc.Lasso(
            alpha=alpha,
            memory_budget="10%",
            policy="random",
            random_state=7,
            device=device,
            max_iter=15,
        )
        for _ in range(2)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dc.ConvergenceWarning)
        for f in fits:
            f.fit(X, y)
    assert [r["n_swapped_in"] for r in fits[0].history_] == [
        r["n_swapped_in"] for r in fits[1].history_
    ]
    np.testing.assert_array_equal(fits[0].coef_, fits[1].coef_)


# --------------------------------------------------------------------------- the round loop
@pytest.mark.float64
def test_duhl_swaps_fade_once_the_support_is_found(device):
    X, y, alpha = lasso_problem(n=150, d=1500, k=10)
    est = dc.Lasso(
        alpha=alpha, memory_budget="10%", dtype="float64", tol=1e-8, random_state=0, device=device
    )
    est.fit(X, y)
    assert est.converged_
    swaps = [r["n_swapped_in"] for r in est.history_ if "n_swapped_in" in r]
    resident = est.history_[0]["n_resident"]
    assert resident < 1500 // 5  # a real budget: far from everything resident
    assert swaps[0] == resident
    tail = swaps[-3:]
    assert max(tail) <= 0.02 * resident, swaps
    seq = dc.Lasso(
        alpha=alpha,
        memory_budget="10%",
        dtype="float64",
        tol=1e-8,
        random_state=0,
        policy="sequential",
        device=device,
    ).fit(X, y)
    assert est.stats_["bytes_h2d"] * 5 < seq.stats_["bytes_h2d"]


CASES = {
    "lasso": (lambda **k: dc.Lasso(alpha=0.05, **k), "reg"),
    "elasticnet": (lambda **k: dc.ElasticNet(alpha=0.05, l1_ratio=0.5, **k), "reg"),
    "ridge": (lambda **k: dc.Ridge(alpha=5.0, **k), "reg"),
    # Coordinate descent on the loss: these tests are of the rounds' mechanics, which the
    # default proximal Newton solver runs on a weighted Lasso (tests/test_prox_newton.py).
    "logistic-l1": (
        lambda **k: dc.LogisticRegression(penalty="l1", C=0.5, solver="cd", **k),
        "clf-primal",
    ),
    "svm-hinge": (lambda **k: dc.LinearSVC(C=0.05, loss="hinge", **k), "clf"),
    "svm-squared-hinge": (lambda **k: dc.LinearSVC(C=0.05, **k), "clf"),
    "logistic-l2": (lambda **k: dc.LogisticRegression(C=0.05, **k), "clf"),
}


@pytest.fixture(scope="module")
def budget_problems():
    rng = np.random.default_rng(5)
    Xr = rng.standard_normal((100, 300))
    Xr[rng.random(Xr.shape) < 0.3] = 0
    yr = Xr[:, :5] @ rng.uniform(-2, 2, 5) + 0.2 * rng.standard_normal(100)
    Xc = rng.standard_normal((600, 15))
    Xc[rng.random(Xc.shape) < 0.3] = 0
    yc = (Xc @ rng.standard_normal(15) + 0.5 * rng.standard_normal(600) > 0).astype(int)
    return {"reg": (Xr, yr), "clf": (Xc, yc), "clf-primal": (Xr, (yr > 0).astype(int))}


_FULL = {}


# Every model under every policy; sparse storage under DuHL (the baselines share its path);
# DuHL with every other kernel variant, dense and sparse (the full fits stay serial).
@pytest.mark.float64
@pytest.mark.parametrize(
    "name, policy, storage",
    [(n, p, "dense") for n in CASES for p in POLICIES]
    + [(n, "duhl", "sparse") for n in CASES]
    + [(n, "duhl", "dense, passes_per_round 8") for n in CASES]
    + [
        (n, "duhl", f"{s}, {v}")
        for n in CASES
        for s in ("dense", "sparse")
        for v in ("tpa", "bucketed")
    ],
)
def test_every_policy_reaches_the_full_residency_objective(
    device, budget_problems, name, policy, storage
):
    make, kind = CASES[name]
    X, y = budget_problems[kind]
    sparse = storage.startswith("sparse")
    Xin = sp.csr_matrix(X) if sparse else X
    kw = dict(dtype="float64", tol=1e-8, max_iter=20000, random_state=0, device=device)
    key = (name, sparse)
    if key not in _FULL:
        _FULL[key] = make(policy="full", **kw).fit(Xin, y)
    full = _FULL[key]
    if storage.endswith("8"):
        kw["passes_per_round"] = 8
    variant = storage.split(", ")[1] if storage.endswith(("tpa", "bucketed")) else "serial"
    est = make(policy=policy, memory_budget="10%", kernel_variant=variant, **kw).fit(Xin, y)
    assert est.stats_["kernel_variant"] == variant
    assert est.converged_ and full.converged_
    if storage.endswith("8"):
        assert all(r["passes"] == 8 for r in est.history_)
    else:  # the default, "auto": by the round's work, or the least where passes are launches
        assert est.passes_per_round == "auto"
        for r in est.history_:
            more = {auto_passes_for(_work(est, r), True, c) for c in (False, True)}
            assert r["passes"] in more | set(AUTO_PASSES[:2]), (r["passes"], more)
    assert est.history_[0]["n_resident"] < 0.2 * (X.shape[1] if kind != "clf" else X.shape[0])
    assert abs(est.objective_ - full.objective_) <= 1e-6 * abs(full.objective_)
    # Valid certificates: each objective minus the other's is within its own gap.
    assert est.objective_ - full.objective_ <= est.dual_gap_ + 1e-12
    assert full.objective_ - est.objective_ <= full.dual_gap_ + 1e-12


# DuHL at a 10% budget on every device, in float32 (Rusticl has no float64): the models'
# kinds, dense and sparse, the three pass variants; each fit's certificate must bound its
# distance to the full-residency fit's objective both ways.
@pytest.mark.every_device
@pytest.mark.parametrize(
    "name, storage, variant",
    [
        ("lasso", "dense", "serial"),
        ("lasso", "sparse", "serial"),
        ("lasso", "dense", "tpa"),
        ("lasso", "sparse", "bucketed"),
        ("svm-hinge", "dense", "serial"),
        ("svm-hinge", "sparse", "tpa"),
        ("logistic-l2", "dense", "serial"),
        ("logistic-l1", "sparse", "serial"),
    ],
)
def test_budgeted_duhl_on_every_device_in_float32(device, budget_problems, name, storage, variant):
    make, kind = CASES[name]
    X, y = budget_problems[kind]
    Xin = sp.csr_matrix(X) if storage == "sparse" else X
    kw = dict(dtype="float32", tol=1e-5, max_iter=20000, random_state=0, device=device)
    full = make(policy="full", **kw).fit(Xin, y)
    est = make(policy="duhl", memory_budget="10%", kernel_variant=variant, **kw).fit(Xin, y)
    assert est.stats_["kernel_variant"] == variant
    assert est.converged_ and full.converged_
    assert est.history_[0]["n_resident"] < 0.2 * (X.shape[1] if kind != "clf" else X.shape[0])
    assert est.objective_ - full.objective_ <= est.dual_gap_ + 1e-12
    assert full.objective_ - est.objective_ <= full.dual_gap_ + 1e-12


def _work(est, r):
    """A round's work per pass in pass-cost units (duhl_cl.models.Model.pass_cost)."""
    per_entry, per_coord = est._make_model(np.zeros((1, 1))).pass_cost
    return per_entry * r["nnz_visited"] + per_coord * r["n_visited"]


@pytest.mark.float64
def test_auto_passes_follow_the_rounds_work(device, budget_problems):
    """A hinge SVM whose working set shrinks to the samples near the margin: "auto" gives its
    rounds more than 8 passes (as many as make about 2^20 units of work, at most 256; at
    least 8, the selection being complete); the fit certifies the same optimum as 8 passes a round."""
    X, y = budget_problems["clf"]
    kw = dict(C=0.05, loss="hinge", dtype="float64", tol=1e-8, random_state=0, device=device)
    auto = dc.LinearSVC(**kw).fit(X, y)
    eight = dc.LinearSVC(passes_per_round=8, **kw).fit(X, y)
    more = [r for r in auto.history_ if r["passes"] > 8]
    assert more, [r["passes"] for r in auto.history_]
    for r in auto.history_:
        # every positive gap visited: a complete selection, at least 8 passes
        assert r["passes"] == min(256, max(8, -(-(1 << 20) // _work(auto, r))))
    assert auto.converged_ and eight.converged_
    assert auto.objective_ - eight.objective_ <= auto.dual_gap_ + 1e-12
    assert eight.objective_ - auto.objective_ <= eight.dual_gap_ + 1e-12


@pytest.mark.float64
@pytest.mark.parametrize("policy", ["duhl", "sequential"])
def test_interrupt_under_budget_returns_a_valid_certificate(device, policy):
    X, y, alpha = lasso_problem()
    ref = dc.Lasso(alpha=alpha, dtype="float64", tol=1e-12, device=device).fit(X, y)

    def interrupt(rec):
        if rec["round"] == 3:
            raise KeyboardInterrupt

    est = dc.Lasso(
        alpha=alpha, dtype="float64", tol=1e-12, memory_budget="10%", policy=policy, device=device
    )
    with pytest.warns(dc.ConvergenceWarning, match="interrupt"):
        est.fit(X, y, callback=interrupt)
    assert est.n_iter_ == 3 and est.history_[-1]["gap"] == est.dual_gap_
    assert est.objective_ - ref.objective_ <= est.dual_gap_
    assert len([r for r in est.history_ if "n_swapped_in" in r]) == 3  # every round recorded
    with pytest.warns(dc.ConvergenceWarning, match="max_time"):
        est2 = dc.Lasso(alpha=alpha / 50, dtype="float64", tol=1e-15, memory_budget="10%", policy=policy,
                        max_time=0.2, max_iter=10**6, device=device).fit(X, y)  # fmt: skip
    ref2 = dc.Lasso(
        alpha=alpha / 50, dtype="float64", tol=1e-12, max_iter=10**5, device=device
    ).fit(X, y)
    assert est2.objective_ - ref2.objective_ <= est2.dual_gap_ + 1e-12


@pytest.mark.float64
def test_pool_split_over_several_buffers(device, tmp_path):
    """A profile's largest single allocation splits the pool; each buffer stays within it."""
    X, y, alpha = lasso_problem(n=100, d=300)
    p = edited_profile(
        tmp_path, [('max_alloc = "1 GiB"', 'max_alloc = "32 KiB"')], name="small-alloc.toml"
    )
    sizes = []
    from duhl_cl.device import ledger

    orig = ledger.Ledger.alloc

    def spy(self, name, nbytes, host=None, **kw):
        sizes.append((name, nbytes))
        return orig(self, name, nbytes, host, **kw)

    ledger.Ledger.alloc = spy
    try:
        est = dc.Lasso(alpha=alpha, dtype="float64", tol=1e-10, device=str(p), random_state=0).fit(
            X, y
        )
    finally:
        ledger.Ledger.alloc = orig
    parts = [n for name, n in sizes if name.startswith("pool part") and name.endswith("values")]
    assert len(parts) >= 4 and max(n for _, n in sizes) <= 32 * 1024
    ref = dc.Lasso(alpha=alpha, dtype="float64", tol=1e-10, device=device, random_state=0).fit(X, y)
    assert est.converged_ and abs(est.objective_ - ref.objective_) <= 1e-9 * ref.objective_
    # Buffers hold whole dense columns, so a split pool still takes every column.
    full = dc.Lasso(alpha=alpha, dtype="float64", tol=1e-10, device=str(p), policy="full")
    full.fit(X, y)
    assert full.history_[0]["n_resident"] == X.shape[1] and full.converged_


@pytest.mark.float64
@pytest.mark.parametrize("sparse", [False, True])
def test_banks_hold_their_buffers_and_staging_is_aligned(device, tmp_path, sparse):
    """A profile with 4 banks: no bank holds more than its size, the pool spreads over the
    banks, every staged host copy starts at the profile's alignment, and the fit reaches the
    objective of an unconstrained one."""
    X, y, alpha = lasso_problem(n=100, d=300)
    Xin = sp.csr_matrix(X) if sparse else X
    p = edited_profile(
        tmp_path,
        [
            ('budget = "2 GiB"', 'budget = "200 KiB"'),
            ("banks = 1", "banks = 4"),
            ('bank_size = "2 GiB"', 'bank_size = "64 KiB"'),
            ("host_alignment = 64", "host_alignment = 4096"),
        ],
        name="banked.toml",
    )
    from duhl_cl.device import ledger

    banks, staged = [], []
    orig_alloc, orig_upload = ledger.Ledger.alloc, ledger.Ledger.upload

    def spy_alloc(self, name, nbytes, host=None, **kw):
        buf = orig_alloc(self, name, nbytes, host, **kw)
        banks.append((name, nbytes, self.live[id(buf)][3]))
        return buf

    def spy_upload(self, buf, host, **kw):
        name = self.live[id(buf)][0] if id(buf) in self.live else "?"
        if name.startswith("staging"):
            staged.append(host.ctypes.data % 4096)
        return orig_upload(self, buf, host, **kw)

    ledger.Ledger.alloc, ledger.Ledger.upload = spy_alloc, spy_upload
    try:
        est = dc.Lasso(alpha=alpha, dtype="float64", tol=1e-10, device=str(p), random_state=0)
        est.fit(Xin, y)
    finally:
        ledger.Ledger.alloc, ledger.Ledger.upload = orig_alloc, orig_upload
    assert all(n <= 64 * 1024 for _, n, _ in banks)
    assert all(peak <= 64 * 1024 for peak in est.stats_["bank_peak"])
    assert len(est.stats_["bank_peak"]) == 4
    pool_banks = {b for name, _, b in banks if name.startswith("pool part")}
    assert len(pool_banks) >= 3, banks
    if sparse:  # a part's values and indices share a bank
        by_part = {}
        for name, _, b in banks:
            if name.startswith("pool part"):
                by_part.setdefault(name.split()[2], set()).add(b)
        assert all(len(v) == 1 for v in by_part.values())
    assert staged and all(off == 0 for off in staged)
    ref = dc.Lasso(alpha=alpha, dtype="float64", tol=1e-10, device=device, random_state=0).fit(X, y)
    assert est.converged_ and abs(est.objective_ - ref.objective_) <= 1e-9 * ref.objective_
    assert est.history_[0]["n_resident"] < X.shape[1]  # the banks hold part of the data


@pytest.mark.float64
def test_a_fragmented_pool_is_repacked_for_a_piece_that_fits(device):
    """A selection that fits the pool by entries gets placed even when the room the
    evictions left is cut into holes smaller than its largest piece: the pieces that stay
    and the large one are repacked into the emptied pool. (Without the repack the large
    piece was refused round after round: a Zipf text Lasso at 50% stalled at 4e-2.)"""
    rng = np.random.default_rng(3)
    m, d = 200, 120
    lens = np.where(np.arange(d) % 2 == 0, 2, 40)
    lens[-1] = 120  # the large piece
    cols = [rng.choice(m, k, replace=False) for k in lens]
    X = sp.csc_matrix(
        (rng.standard_normal(int(lens.sum())), np.concatenate(cols), np.r_[0, np.cumsum(lens)]),
        shape=(m, d),
    )
    y = X[:, :4].toarray().sum(1) + 0.1 * rng.standard_normal(m)
    model = models.SquaredL1L2(0.01, 0.0)
    model.setup(X, y, True)
    store = CoordinateStore(X, primal=True, dtype=np.float64)
    budget = plan_capacity(store, model, np.float64, 10**9, 10**9).fixed + 60 * (64 + 20 * 12)
    ws = DeviceWorkingSet(device, model, store, budget=budget)
    try:
        P = ws.cap.pool_entries
        # Small and mid-sized pieces interleaved, filling the pool to less than one large
        # piece from its end.
        first, used = [], 0
        for j in range(d - 1):
            if used + lens[j] > P or len(first) == ws.cap.n_slots:
                break
            first.append(j)
            used += lens[j]
        first = np.array(first)
        assert P - used < lens[-1] and np.count_nonzero(lens[first] == 40) >= 3
        alpha = np.zeros(d)
        ws.make_resident(first, alpha)
        # Keep the small ones, drop the mid-sized ones (holes of 40), ask for the large one.
        second = np.r_[first[lens[first] == 2], d - 1]
        assert ws.fits(second) == len(second)
        stats = ws.make_resident(second, alpha)
        assert stats.n_refused == 0
        assert set(ws.visited.tolist()) == set(second.tolist())
        v = model.shared_from(X @ alpha, 0.0)
        ws.set_shared(v)
        coords, u, _ = ws.resident_gaps()
        np.testing.assert_allclose(u, X[:, coords].T @ model.gradient(v), rtol=1e-10, atol=1e-12)
    finally:
        ws.release()


@pytest.mark.float64
@pytest.mark.parametrize("kind", ["lasso", "svm-hinge"])
def test_full_residency_holds_empty_coordinates(device, kind):
    """Empty coordinates (columns or rows without entries) take one device entry each; the
    pool of an "everything fits" budget was sized by the stored entries alone, so one of
    them never got a place, "full" visited n - 1 coordinates for ever and never converged
    (sms_spam's 4 empty rows, w8a's: 60 s without reaching 1e-5)."""
    rng = np.random.default_rng(3)
    X = uneven_sparse(120, 40, rng).tolil()
    X[[5, 17, 60], :] = 0.0  # empty rows (and column 0 is empty)
    X = X.tocsr()
    y = X @ rng.standard_normal(40) + 0.1 * rng.standard_normal(120)
    if kind == "lasso":
        make = lambda **k: dc.Lasso(alpha=0.01, **k)  # noqa: E731
        n = X.shape[1]
    else:
        y = np.where(y > 0, 1, -1)
        make = lambda **k: dc.LinearSVC(C=1.0, loss="hinge", **k)  # noqa: E731
        n = X.shape[0]
    kw = dict(dtype="float64", tol=1e-10, random_state=0, device=device, max_iter=3000)
    full = make(policy="full", **kw).fit(X, y)
    assert all(r["n_visited"] == n for r in full.history_)
    ref = make(**kw).fit(X, y)
    assert full.converged_ and ref.converged_
    assert full.objective_ - ref.objective_ <= full.dual_gap_ + 1e-12
    assert ref.objective_ - full.objective_ <= ref.dual_gap_ + 1e-12


def _active_set_problem(kind):
    """Small problems whose active set is several times what a 5% budget holds: a Lasso
    with 86 features in its support (200 x 400), a hinge SVM (C = 10) with 342 of its 800
    samples on or inside the margin (10% label noise); 5% holds 14 columns or 12 rows."""
    rng = np.random.default_rng(0)
    if kind == "lasso":
        n, d, k = 200, 400, 60
        X = rng.standard_normal((n, d))
        beta = np.zeros(d)
        beta[rng.choice(d, k, replace=False)] = rng.uniform(-2, 2, k)
        y = X @ beta + 0.1 * rng.standard_normal(n)
        alpha = 0.05 * np.max(np.abs(X.T @ (y - y.mean()))) / n
        return X, y, lambda **kw: dc.Lasso(alpha=alpha, **kw)
    n, d = 800, 8
    X = rng.standard_normal((n, d)) / np.sqrt(d)
    y = np.where(X @ rng.standard_normal(d) > 0, 1, -1)
    y[rng.random(n) < 0.1] *= -1
    return X, y, lambda **kw: dc.LinearSVC(C=10.0, loss="hinge", **kw)


@pytest.mark.float64
@pytest.mark.parametrize("kind", ["lasso", "svm-hinge"])
def test_an_active_set_larger_than_the_budget_rotates(device, kind, monkeypatch):
    """DuHL's own regime: the support (Lasso) or the support vectors (SVM) outnumber what the
    device holds several times over. At a 5% budget duhl reaches the all-resident objective
    with a certificate; and, run on past convergence, every coordinate whose gap memory stays
    positive is visited within scheduler.wait_bound rounds (1 + (n - 1) // k, k the
    reserve's coordinates a round: 400 rounds for the Lasso's 400 columns, 800 for the SVM's
    rows, whose two classes share a reserve of one row a round). The rule before (top gaps
    one round stale or more; for an l1 model the support first, cut at twice its size) fails
    it: it converged in 4370 and 2710 rounds (against 820 and 570), and left coordinates
    with positive gap memory out for longer than the bound (162 and 535 such waits)."""
    from duhl_cl.duhl import policies as scheduler

    X, y, make = _active_set_problem(kind)
    kw = dict(dtype="float64", tol=1e-8, random_state=0, device=device)
    full = make(**kw).fit(X, y)
    if kind == "lasso":
        active = int(np.count_nonzero(full.coef_))
    else:
        active = int(
            np.count_nonzero(np.where(y > 0, 1, -1) * full.decision_function(X) < 1 + 1e-9)
        )
    positive, visits, seen = {}, {}, {}
    real_select, real_visited = scheduler.Duhl.select, scheduler.Duhl.visited

    def select(self, z, round_index, alpha=None):
        positive[round_index] = np.flatnonzero(np.asarray(z) > 0)
        seen.update(sizes=self.sizes, pool=self.pool, reserve=self.reserve, two=self.labels)
        return real_select(self, z, round_index, alpha)

    def visited(self, coords, round_index):
        visits[round_index] = np.asarray(coords).copy()
        return real_visited(self, coords, round_index)

    est = make(memory_budget="5%", max_iter=5000, **kw).fit(X, y)
    resident = max(r["n_resident"] for r in est.history_)
    assert active >= 3 * resident, (active, resident)
    assert est.converged_ and full.converged_, (est.n_iter_, est.dual_gap_)
    assert est.objective_ - full.objective_ <= est.dual_gap_ + 1e-12
    assert full.objective_ - est.objective_ <= full.dual_gap_ + 1e-12
    # The wait bound, on a run that goes on past it (tol 1e-30: the SVM converges in fewer
    # rounds than the bound); the two classes of the SVM (bias feature) share the reserve.
    monkeypatch.setattr(scheduler.Duhl, "select", select)
    monkeypatch.setattr(scheduler.Duhl, "visited", visited)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dc.ConvergenceWarning)
        make(memory_budget="5%", max_iter=1, **dict(kw, tol=1e-30)).fit(X, y)
        share = seen["reserve"] / (2 if seen["two"] is not None else 1)
        bound = wait_bound(len(seen["sizes"]), seen["sizes"].max(), seen["pool"], share)
        make(memory_budget="5%", max_iter=bound + 50, **dict(kw, tol=1e-30)).fit(X, y)
    # For every round t and coordinate i with positive gap memory: from t on, i is visited,
    # or its gap memory drops to zero (nothing left to gain), within `bound` rounds.
    n = len(seen["sizes"])
    rounds = sorted(visits)
    pos = np.zeros((len(rounds), n), dtype=bool)
    done = np.zeros((len(rounds), n), dtype=bool)
    for k, r in enumerate(rounds):
        pos[k, positive[r]] = True
        done[k, visits[r]] = True
    done |= ~pos
    nxt = np.full(n, len(rounds))  # per coordinate, the first round >= k that settles it
    checked = 0
    for k in range(len(rounds) - 1, -1, -1):
        nxt = np.where(done[k], k, nxt)
        if k + bound <= len(rounds):
            late = pos[k] & (nxt >= k + bound)
            assert not late.any(), (k, bound, np.flatnonzero(late)[:10])
            checked += int(pos[k].sum())
    assert checked > 0  # the run was long enough for the bound to be tested


def test_duhl_draws_in_proportion_to_the_gaps():
    """Zero gaps are left out, never-evaluated coordinates go first, and the draw takes each
    coordinate with the probability its share of the gaps gives (Efraimidis-Spirakis keys:
    the first of a draw is i with probability z_i / sum z)."""
    z = np.array([0.0, 3.0, np.inf, 0.0, 1.0, 2.0, 0.0, 1.0])
    pol = make_policy("duhl", len(z), lambda o: min(len(o), 4), np.random.default_rng(0), limit=4)
    for r in range(20):
        sel = pol.select(z, r)
        assert len(sel) == 4 and 2 in sel and not {0, 3, 6} & set(sel.tolist())
    pol = make_policy("duhl", len(z), lambda o: len(o), np.random.default_rng(0), limit=8)
    assert sorted(pol.select(z, 0)) == [1, 2, 4, 5, 7]  # zero gaps: nothing to gain
    assert sorted(pol.select(np.zeros(8), 0)) == list(range(8))  # none positive: everything
    # The draw alone (no reserve): frequencies of the first pick against z_i / sum z.
    z = np.array([1.0, 2.0, 4.0, 8.0, 0.0, 1.0])
    pol = make_policy("duhl", len(z), lambda o: 1, np.random.default_rng(1), reserve=0.0)
    n = 6000
    counts = np.bincount([pol.select(z, r)[0] for r in range(n)], minlength=len(z))
    p = z / z.sum()
    assert counts[4] == 0
    assert np.all(np.abs(counts / n - p) <= 4 * np.sqrt(p * (1 - p) / n) + 1e-12), counts


def test_duhl_draws_a_disk_tiers_coordinates_in_runs():
    """With ``run`` (a disk tier's read worth of a seek), consecutive coordinates share one
    draw key: a draw of equal gaps takes whole aligned runs, in storage order within each;
    a run is still drawn first with the probability its share of the gaps gives."""
    n, run = 40, 4
    pol = make_policy("duhl", n, lambda o: min(len(o), 8), np.random.default_rng(0),
                      reserve=0.0, run=run)  # fmt: skip
    for r in range(20):
        sel = pol.select(np.ones(n), r)
        heads = sel[::run]
        assert len(sel) == 8 and np.all(heads % run == 0)
        assert np.array_equal(sel, (heads[:, None] + np.arange(run)).ravel())
    # Classes taking turns (mixed within each run) draw the same runs: a selection of two
    # runs' worth touches few runs (drawn apart, the classes' halves would touch up to 8).
    labels = np.where(np.random.default_rng(2).random(n) < 0.5, 1, -1)
    pol = make_policy("duhl", n, lambda o: min(len(o), 8), np.random.default_rng(0),
                      reserve=0.0, run=run, groups=labels, limit=8)  # fmt: skip
    for r in range(20):
        sel = pol.select(np.ones(n), r)
        assert len(sel) == 8 and len(np.unique(sel // run)) <= 4
    w = np.array([1.0, 2.0, 4.0, 8.0, 0.0, 1.0])
    z = np.repeat(w, run)
    pol = make_policy("duhl", len(z), lambda o: 1, np.random.default_rng(1), reserve=0.0,
                      run=run)  # fmt: skip
    m = 6000
    counts = np.bincount([pol.select(z, r)[0] // run for r in range(m)], minlength=len(w))
    p = w / w.sum()
    assert counts[4] == 0
    assert np.all(np.abs(counts / m - p) <= 4 * np.sqrt(p * (1 - p) / m) + 1e-12), counts


def test_duhl_grows_from_the_support_only_where_it_fits():
    """celer's rule where the grown set fits the budget: the coordinates in the model first,
    then the largest gaps, 2 x support in all (at least `grow`). Where it does not fit, no
    support-first rule: a draw over every positive gap, so coordinates outside the model
    get in (the support-first cut locked them out once the support filled the budget)."""
    rng = np.random.default_rng(0)
    z = np.array([5.0, 0.5, 4.0, 3.0, 0.0, 2.0, 1.0, 6.0, 0.2, 0.1])
    alpha = np.zeros(10)
    alpha[[1, 8]] = 1.0
    pol = make_policy("duhl", len(z), lambda o: len(o), rng, grow=3)
    sel = pol.select(z, 0, alpha)
    assert sorted(sel[:2]) == [1, 8] and list(sel[2:]) == [7, 0]
    assert list(pol.select(z, 0, np.zeros(10))) == [7, 0, 2]  # an empty model: `grow`
    alpha[[0, 2, 3, 5, 6, 7]] = 1.0  # 8 in the model: 16 > the 9 positive gaps
    assert sorted(pol.select(z, 0, alpha)) == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    # A support of 6 that a budget of 4 cannot hold: outside coordinates get their turn.
    alpha = np.zeros(10)
    alpha[[1, 6, 8, 9, 5, 3]] = 1.0
    z = np.array([9.0, 0.5, 8.0, 0.1, 0.0, 0.1, 0.1, 7.0, 0.2, 0.1])
    pol = make_policy("duhl", len(z), lambda o: min(len(o), 4), rng, grow=3)
    seen = set()
    for r in range(10):
        sel = pol.select(z, r, alpha)
        pol.visited(sel, r)
        assert len(sel) == 4 and 4 not in sel
        seen |= set(sel.tolist())
    assert {0, 2, 7} <= seen  # the largest gaps, all outside the model


def test_duhl_reserve_bounds_every_wait():
    """An adversarial gap memory: one coordinate keeps a tiny positive gap while the others
    keep large ones. The draw alone would leave it out for ever (probability ~1e-12 a
    round); the reserve takes it within wait_bound rounds, and every positive coordinate
    likewise. A top-gap rule (the draw's limit) never takes it."""
    n, fits = 40, 5
    z = np.ones(n)
    z[7] = 1e-12
    z[[3, 30]] = 0.0  # no gap: never needed, never taken
    pol = make_policy("duhl", n, lambda o: min(len(o), fits), np.random.default_rng(0),
                      pool_entries=fits)  # fmt: skip
    bound = wait_bound(n, 1, fits)
    assert bound == n  # a reserve of 5/8 entry: one coordinate a round
    last = np.full(n, -1)
    for r in range(3 * bound):
        sel = pol.select(z, r)
        pol.visited(sel, r)
        last[sel] = r
        waited = r - last
        assert np.all(waited[z > 0] < bound), (r, np.flatnonzero(waited >= bound))
    assert last[3] == last[30] == -1
    # Without the reserve (the draw only), coordinate 7 is never drawn in those rounds.
    pol = make_policy("duhl", n, lambda o: min(len(o), fits), np.random.default_rng(0),
                      pool_entries=fits, reserve=0.0)  # fmt: skip
    assert not any(7 in pol.select(z, r) for r in range(3 * bound))


def test_duhl_classes_take_turns():
    """With labels as groups, the classes alternate in the working set (each with its share
    of the reserve, then its draw), zero gaps still left out."""
    rng = np.random.default_rng(0)
    labels = np.array([1, 1, 1, 1, -1, -1, -1, -1])
    z = np.array([9.0, 8.0, 7.0, 6.0, 2.0, 1.0, 0.0, 0.0])
    pol = make_policy("duhl", 8, lambda o: min(len(o), 4), rng, limit=4, groups=labels)
    for r in range(10):
        sel = pol.select(z, r)
        assert [labels[i] for i in sel] == [-1, 1, -1, 1]  # not the four largest (class 1)
    pol = make_policy("duhl", 8, lambda o: len(o), rng, limit=8, groups=labels)
    sel = pol.select(z, 0)
    assert [labels[i] for i in sel[:4]] == [-1, 1, -1, 1] and sorted(sel) == [0, 1, 2, 3, 4, 5]
    assert sorted(pol.select(np.zeros(8), 0)) == list(range(8))  # none positive: everything


def test_sparse_placement_never_overlaps_and_reuses_holes():
    """Sparse pieces go into free ranges only: no overlap, inside the pool, exact fits first."""
    from duhl_cl.duhl.placement import free_ranges, place_pieces

    rng = np.random.default_rng(0)
    for trial in range(200):
        caps = rng.integers(50, 400, size=rng.integers(1, 4)).tolist()
        # occupied pieces laid out with random gaps
        occ_part, occ_start, occ_len = [], [], []
        for p, cap in enumerate(caps):
            pos = int(rng.integers(0, 10))
            while True:
                n = int(rng.integers(1, 30))
                if pos + n > cap:
                    break
                if rng.random() < 0.6:
                    occ_part.append(p), occ_start.append(pos), occ_len.append(n)
                pos += n + int(rng.integers(0, 5))
        occ = [np.array(x, dtype=np.int64) for x in (occ_part, occ_start, occ_len)]
        free = free_ranges(caps, *occ)
        lengths = rng.integers(1, 40, size=rng.integers(0, 60))
        part, off = place_pieces(lengths, *free)
        ok = part >= 0
        # every placed piece inside its pool, and no two pieces (old or new) share an entry
        for p, cap in enumerate(caps):
            used = np.zeros(cap, dtype=int)
            for s, n in zip(occ[1][occ[0] == p], occ[2][occ[0] == p], strict=True):
                used[s : s + n] += 1
            sel = ok & (part == p)
            assert np.all(off[sel] >= 0) and np.all(off[sel] + lengths[sel] <= cap)
            for s, n in zip(off[sel], lengths[sel], strict=True):
                used[s : s + n] += 1
            assert used.max(initial=0) <= 1, trial
        # everything fits when the free space is one range larger than all pieces together
        part2, _ = place_pieces(lengths, np.array([0]), np.array([0]), np.array([lengths.sum()]))
        assert np.all(part2 == 0)
        # a hole of exactly a piece's length is filled when that piece comes first
        if len(free[2]):
            n0 = free[2][0]
            part1, off1 = place_pieces([n0], *free)
            hole = (free[0] == part1[0]) & (free[1] == off1[0])
            assert part1[0] >= 0 and free[2][hole][0] == n0


def test_the_grown_working_set_starts_from_a_rounds_worth_of_entries():
    """grow_from: an l1 model's grown working set starts at GROW_FROM coordinates, or at as
    many as hold GROW_ENTRIES entries on average where that is more (all of a small store);
    models without an l1 penalty grow nothing."""
    from types import SimpleNamespace

    from duhl_cl.duhl.local_solver import GROW_ENTRIES, GROW_FROM, grow_from

    lasso = SimpleNamespace(primal=True, l1=0.1)
    small = np.full(5000, 10)  # 50000 entries: every coordinate
    assert grow_from(lasso, small) == 5000
    wide = np.full(40000, 128)  # 5 M entries: GROW_ENTRIES' worth of them
    assert grow_from(lasso, wide) == GROW_ENTRIES // 128 < 40000
    tall = np.full(40000, 80000)  # 3.2 G entries: celer's start
    assert grow_from(lasso, tall) == GROW_FROM
    assert grow_from(SimpleNamespace(primal=True, l1=0.0), small) == 0  # ridge
    assert grow_from(SimpleNamespace(primal=False), small) == 0  # a dual model
