"""Fits on an on-disk store (duhl_cl.store.tiered): the same certified objective as in memory
under small host budgets, the host ledger under its budget, honest errors, and a fit of a
store larger than a memory limit set on the process from outside (a cgroup).

References: the same estimator fitted on the same data in memory (objectives compared within
the two certified gaps); the small problem's optimum for the repeated-rows store.
"""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import duhl_cl as dc
from duhl_cl.store import StoreError, convert, tiered
from duhl_cl.store.tiered import TieredStore

MODELS = {
    "lasso": lambda **k: dc.Lasso(alpha=0.05, **k),
    "elasticnet": lambda **k: dc.ElasticNet(alpha=0.05, l1_ratio=0.5, **k),
    "ridge": lambda **k: dc.Ridge(alpha=2.0, **k),
    "svm-hinge": lambda **k: dc.LinearSVC(C=0.5, loss="hinge", **k),
    "svm-squared": lambda **k: dc.LinearSVC(C=0.5, **k),
    "logistic": lambda **k: dc.LogisticRegression(C=1.0, **k),
    "logistic-l1": lambda **k: dc.LogisticRegression(C=1.0, penalty="l1", **k),
}
BLOCK = 2048  # bytes of values per block: a test store has many blocks


def _problem(sparse, seed=0, n=150, d=30):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    if sparse:
        X[rng.random((n, d)) < 0.6] = 0.0
        X[:, 3] = 0.0  # an empty coordinate (column) and row
        X[7] = 0.0
    beta = np.zeros(d)
    beta[:6] = rng.uniform(-2, 2, 6)
    y = X @ beta + 0.3 * rng.standard_normal(n)
    labels = np.where(X @ rng.standard_normal(d) + 0.5 * rng.standard_normal(n) > 0, 1, -1)
    return (sp.csr_matrix(X) if sparse else X), y, labels


def _store(tmp_path, X, est, dtype, name="s"):
    return convert(X, tmp_path / name, layout=est.data_layout(), dtype=dtype, block_bytes=BLOCK)


def _fit(est, X, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (a float32 fit may stall above tol: compared anyway)
        return est.set_params(**kw).fit(X, y)


def _same_optimum(a, b):
    """Both certificates bound the same optimum: the objectives agree within the gaps."""
    slack = np.asarray(a.dual_gap_) + np.asarray(b.dual_gap_) + 1e-9 * np.abs(a.objective_)
    assert np.all(np.abs(np.asarray(a.objective_) - np.asarray(b.objective_)) <= slack)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("name", list(MODELS))
def test_store_fit_matches_memory(tmp_path, name, sparse, dtype):
    X, y, labels = _problem(sparse)
    target = y if name in ("lasso", "elasticnet", "ridge") else labels
    est = MODELS[name]()
    data = _store(tmp_path, X, est, dtype)
    tol = 1e-8 if dtype == "float64" else 1e-5
    common = dict(tol=tol, memory_budget="30%", random_state=0, dtype=dtype, max_iter=3000)
    mem = _fit(MODELS[name](), X, target, **common)
    # A host cache of about a fifth of the data, beside the reads' reserve.
    reserve = TieredStore(data, primal=est.data_layout() == "cols").reserve_bytes()
    budget = reserve + data.nbytes // 5
    disk = _fit(MODELS[name](), data, target, host_budget=budget, **common)
    _same_optimum(mem, disk)
    st = disk.stats_
    assert st["host_budget"] == budget and 0 < st["host_peak"] <= budget
    assert st["bytes_disk"] >= data.nbytes  # the start certificate streamed it all
    assert st["in_from_host"] + st["in_from_disk"] > 0
    assert sum(r["bytes_disk"] for r in disk.history_) <= st["bytes_disk"]
    Xs = X.astype(dtype)  # the values the store holds
    np.testing.assert_allclose(disk.predict(data), disk.predict(Xs), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,seed", [("svm-hinge", 1), ("lasso", 2), ("logistic", 3)])
def test_host_budget_property(tmp_path, name, seed):
    """Random host budgets, from the reads' reserve alone (no cache: the page cache only) to
    more than the data: the host ledger's peak never exceeds the budget, and the certified
    objective is the one in memory."""
    rng = np.random.default_rng(seed)
    X, y, labels = _problem(sparse=bool(seed % 2), seed=seed)
    target = y if name == "lasso" else labels
    est = MODELS[name]()
    data = _store(tmp_path, X, est, "float64")
    reserve = TieredStore(data, primal=est.data_layout() == "cols").reserve_bytes()
    common = dict(tol=1e-8, memory_budget="25%", random_state=0, max_iter=3000)
    mem = _fit(MODELS[name](), X, target, **common)
    for budget in [reserve] + list(reserve + rng.integers(1, 2 * data.nbytes, 4)):
        disk = _fit(MODELS[name](), data, target, host_budget=int(budget), **common)
        assert disk.stats_["host_peak"] <= budget
        _same_optimum(mem, disk)
        if budget == reserve:
            assert disk.stats_["in_from_host"] == 0  # no cache: every coordinate from disk


def test_store_fit_multiclass_and_weights(tmp_path):
    X, y, _ = _problem(sparse=False, seed=4)
    classes = np.digitize(y, np.quantile(y, [1 / 3, 2 / 3]))
    s = np.random.default_rng(0).uniform(0.5, 2.0, len(y))
    for est_fn, target in ((lambda **k: dc.LinearSVC(C=0.5, **k), classes),
                           (lambda **k: dc.Lasso(alpha=0.05, **k), y)):  # fmt: skip
        data = _store(tmp_path, X, est_fn(), "float64", name=f"w{id(target)}")
        common = dict(tol=1e-6, memory_budget="30%", random_state=0, dtype="float64")
        mem = _fit(est_fn(**common), X, target)
        disk = _fit(est_fn(**common), data, target)
        _same_optimum(mem, disk)
        memw = est_fn(**common).fit(X, target, sample_weight=s)
        diskw = est_fn(**common).fit(data, target, sample_weight=s)
        _same_optimum(memw, diskw)


def test_store_errors(tmp_path):
    X, y, labels = _problem(sparse=False)
    rows = convert(X, tmp_path / "rows", layout="rows", dtype="float32", y=labels)
    with pytest.raises(
        StoreError, match=r"holds rows .*needs the cols layout; convert it with --layout cols"
    ):
        dc.Lasso(alpha=0.1).fit(rows, y)
    with pytest.raises(StoreError, match=r"holds float32 values and the fit asks for float64"):
        dc.LinearSVC(dtype="float64").fit(rows, labels)
    with pytest.raises(ValueError, match=r"host_budget 10 bytes is below the \d+ bytes"):
        dc.LinearSVC(host_budget=10).fit(rows, labels)
    with pytest.raises(ValueError, match="sample_weight has zeros"):
        dc.LinearSVC().fit(rows, labels, sample_weight=np.r_[0.0, np.ones(len(y) - 1)])
    with pytest.raises(ValueError, match="host_budget"):
        dc.LinearSVC(host_budget="0.5").fit(rows, labels)


def test_cli_train_on_store(tmp_path, capsys):
    from duhl_cl.cli import main

    X, _, labels = _problem(sparse=False)
    convert(X, tmp_path / "st", layout="rows", dtype="float64", y=labels)
    rc = main(["train", "--model", "svm", "--C", "0.5", "--data", str(tmp_path / "st"),
               "--host-budget", "1MiB", "--budget", "30%", "--out", str(tmp_path / "m.npz")])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    assert "disk        read" in out and "train accuracy" in out
    assert main(["train", "--model", "lasso", "--data", str(tmp_path / "st")]) == 2
    assert "--layout cols" in capsys.readouterr().err


# -- data larger than the memory the process may use ---------------------------------------
CGROUP = Path("/sys/fs/cgroup/memory")

_CHILD = r"""
import json, os, sys, warnings
from pathlib import Path
group, store, n0 = sys.argv[1], sys.argv[2], int(sys.argv[3])
(Path(group) / "cgroup.procs").write_text(str(os.getpid()))
import numpy as np
import duhl_cl as dc
data = dc.store.open(store)
est = dc.Lasso(alpha=float(sys.argv[4]), tol=1e-6, memory_budget="5%", host_budget="15%",
               random_state=0)
est.fit(data, data.y)
print(json.dumps({"objective": est.objective_, "gap": est.dual_gap_,
                  "converged": bool(est.converged_), "host_peak": est.stats_["host_peak"],
                  "anon": [int(l.split()[1]) * 1024 for l in open("/proc/self/status")
                           if l.startswith("RssAnon:")][0]}))
"""


def _can_make_cgroup():
    if os.geteuid() != 0:
        return "not root: a memory cgroup cannot be made"
    if not (CGROUP / "cgroup.procs").exists():
        return f"no cgroup v1 memory controller at {CGROUP}"
    return None


def test_store_larger_than_memory_limit(tmp_path):
    """A Lasso on a 768 MiB store (the rows of a small problem repeated k times: the small
    problem's optimum) fits in a process whose memory is capped at 640 MiB: the process
    would be killed if it held X (the interpreter, NumPy and the OpenCL runtime take about
    400 MiB of it)."""
    why = _can_make_cgroup()
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {why}")
        pytest.skip(why)
    rng = np.random.default_rng(5)
    n0, d, k = 2048, 384, 256
    X0 = rng.standard_normal((n0, d)).astype(np.float32)
    beta = np.zeros(d)
    beta[:8] = rng.uniform(-2, 2, 8)
    y0 = X0 @ beta + 0.3 * rng.standard_normal(n0)
    alpha = 0.1
    ref = dc.Lasso(alpha=alpha, tol=1e-10).fit(X0.astype(np.float64), y0)
    from duhl_cl.store.disk import StoreWriter

    with StoreWriter(tmp_path / "big", layout="cols", dtype="float32", sparse=False,
                     n_samples=n0 * k, n_features=d) as w:  # fmt: skip
        for j in range(0, d, 16):
            w.append_dense(np.tile(X0[:, j : j + 16].T, (1, k)))
        data = w.finish(y=np.tile(y0, k))
    limit = 640 << 20
    assert data.nbytes > limit
    group = CGROUP / f"duhl_test_{os.getpid()}"
    group.mkdir(exist_ok=True)
    try:
        (group / "memory.limit_in_bytes").write_text(str(limit))
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, str(group), str(tmp_path / "big"), str(n0), str(alpha)],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        max_usage = int((group / "memory.max_usage_in_bytes").read_text())
    finally:
        group.rmdir()
    assert proc.returncode == 0, (
        f"exit {proc.returncode} (-9: killed at the limit): {proc.stderr[-3000:]}"
    )
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["converged"]
    # (The group's charge, page cache included, is what the limit binds; the resident set
    # also counts shared library pages charged elsewhere, so it is not the measure.)
    assert max_usage <= limit and res["anon"] < limit
    assert abs(res["objective"] - ref.objective_) <= res["gap"] + ref.dual_gap_ + 1e-9


def test_cached_store_is_read_once(tmp_path):
    """With the whole store in the host cache, the disk is read once, by the start's
    certificate (which verifies every block and fills the cache from the blocks it reads):
    the cache's rank, later certificates and refreshes are served from host memory."""
    X, _, labels = _problem(sparse=False, seed=6)
    est = MODELS["svm-hinge"]()
    data = _store(tmp_path, X, est, "float64")
    reserve = TieredStore(data, primal=False).reserve_bytes()
    fit = _fit(est, data, labels, host_budget=reserve + 2 * data.nbytes, tol=1e-9,
               memory_budget="30%", random_state=0)  # fmt: skip
    assert sum(r["gap"] is not None for r in fit.history_) >= 2  # certificates after the start
    assert fit.stats_["bytes_disk"] == data.nbytes
    assert fit.stats_["in_from_disk"] == 0


# -- certificates that bound what they do not read (duhl_cl.duhl.certificate) ------------------
def _model(name, fit_intercept):
    from duhl_cl import models

    make = {
        "lasso": lambda: models.SquaredL1L2(0.05, 0.0),
        "elasticnet": lambda: models.SquaredL1L2(0.05, 0.01),
        "ridge": lambda: models.SquaredL1L2(0.0, 2.0),
        "logistic-l1": lambda: models.LogisticL1(0.05),
        "svm-hinge": lambda: models.Hinge(0.5, 1.0),
        "svm-squared": lambda: models.SquaredHinge(0.5, 1.0),
        "logistic": lambda: models.LogisticL2(1.0, 1.0),
    }
    return make[name]()


# Models whose coordinates at 0 can have a gap of exactly 0 (the others read every one).
BOUNDS_APPLY = {"lasso", "elasticnet", "logistic-l1", "svm-hinge", "svm-squared"}


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize(
    "name,points_bytes,long_coordinate",
    [(n, None, None) for n in sorted(BOUNDS_APPLY | {"ridge", "logistic"})]
    # One reference point: the bounds move onto the new one.
    + [("svm-hinge", 1, None), ("lasso", 1, None)]
    # Every coordinate "long": the undecided ones are read, however many.
    + [("svm-hinge", None, 1), ("lasso", None, 1)],
)
def test_bounded_certificate_is_valid(tmp_path, monkeypatch, name, points_bytes,
                                      long_coordinate, sparse):  # fmt: skip
    """Along exact coordinate descent (duhl_cl.testing.reference_pass, float64), every
    certificate over a disk tier is at least the exact certificate of the same point (the
    in-memory store's, a full float64 pass) and never below what it bounds (its dual value
    is at most every primal value seen), while its primal objective is the exact one. Where
    the model allows it, the later certificates bound most coordinates and read fewer
    bytes than a pass."""
    from duhl_cl.duhl import bounds as cert_module
    from duhl_cl.duhl.certificate import certificate
    from duhl_cl.store import CoordinateStore
    from duhl_cl.testing import reference_pass

    # The share of the store a bounded certificate may read is a speed setting (measured at
    # 16 GiB); these 150 x 30 problems test the bounds at a quarter.
    monkeypatch.setattr(cert_module, "BOUNDED_SHARE", 0.25)
    # So is the cost of a separate read (a block's scattered coordinates are read with it
    # whole beyond it): here the bytes of the coordinates only.
    monkeypatch.setattr(tiered, "SEEK_BYTES", 0)
    if points_bytes is not None:
        monkeypatch.setattr(cert_module, "POINTS_BYTES", points_bytes)
    if long_coordinate is not None:
        monkeypatch.setattr(cert_module, "LONG_COORDINATE", long_coordinate)
    X, y, _ = _problem(sparse, seed=4)
    model = _model(name, True)
    # Classes without noise: an SVM's support vectors are then a few of the rows.
    labels = np.where(X @ np.random.default_rng(5).standard_normal(X.shape[1]) > 0, 1.0, -1.0)
    target = y if name in ("lasso", "elasticnet", "ridge") else labels
    fit_intercept = model.primal  # (the primal certificate then sets the optimal intercept)
    model.setup(X, target.astype(np.float64), fit_intercept)
    dual_labels = None if model.primal else model.y
    bias = getattr(model, "bias", 0.0)
    mem = CoordinateStore(X, primal=model.primal, dtype=np.float64, labels=dual_labels, bias=bias)
    data = convert(X, tmp_path / "s", layout="cols" if model.primal else "rows",
                   dtype="float64", block_bytes=BLOCK)  # fmt: skip
    reserve = TieredStore(data, primal=model.primal).reserve_bytes()
    disk = TieredStore(data, primal=model.primal, labels=dual_labels, bias=bias,
                       host_budget=reserve + data.nbytes // 2)  # fmt: skip
    alpha = model.initial_alpha()
    v = certificate(model, mem, alpha).shared.copy()
    rng = np.random.default_rng(0)
    seen, lowest_primal, n_bounded, bytes_read = [], np.inf, [], []
    for k in range(60):
        if k:
            reference_pass(model, mem, alpha, v, rng.permutation(mem.n_coords))
        exact = certificate(model, mem, alpha)
        before = disk.bytes_disk
        bounded = certificate(model, disk, alpha)
        bytes_read.append(disk.bytes_disk - before)
        disk.rank(model.gaps(bounded.alpha, bounded.u))  # the host cache follows the gaps
        n_bounded.append(bounded.n_bounded)
        assert bounded.objective == pytest.approx(exact.objective, rel=1e-12, abs=1e-12)
        assert bounded.gap >= exact.gap - 1e-10 * model.scale
        seen.append(bounded.objective - bounded.gap)
        lowest_primal = min(lowest_primal, exact.objective)
        if model.primal:
            v = bounded.shared.copy()  # (with the optimal intercept)
    assert max(seen) <= lowest_primal + 1e-10 * model.scale
    assert exact.gap <= 1e-3 * model.scale  # the path went near the optimum
    if name in BOUNDS_APPLY:
        # The last 30 certificates: most bound more than half the coordinates, and together
        # they read less than half of what 30 passes would.
        assert np.median(n_bounded[30:]) > 0.5 * (disk.n_coords - disk.cache.n_cached)
        if points_bytes is None:
            # (With one point the radii add up step after step: the single-point variants
            # check that the bounds stay valid as they move, not what they save.)
            assert sum(bytes_read[30:]) < 0.5 * 30 * data.nbytes
        assert len(disk.product_bounds.points) <= (8 if points_bytes is None else 1)
    else:
        assert max(n_bounded) == 0


@pytest.mark.parametrize("sparse", [False, True])
def test_scattered_reads_take_whole_blocks_where_they_are_many(tmp_path, monkeypatch, sparse):
    """combine and project of given coordinates read a block whole where its selected
    (uncached) coordinates would cost more as separate reads (SEEK_BYTES each besides their
    bytes), else only those; the products equal the in-memory ones either way, in the
    order asked, with cached coordinates among them."""
    from duhl_cl.store import CoordinateStore

    X, _, labels = _problem(sparse, n=300, d=20)
    data = convert(X, tmp_path / "s", layout="rows", dtype="float64", block_bytes=BLOCK)
    mem = CoordinateStore(X, primal=False, dtype=np.float64, labels=labels)
    disk = TieredStore(data, primal=False, labels=labels)
    blocks = data.blocks
    first = np.arange(blocks[0], blocks[1])  # every row of block 0: read it whole
    few = np.array([blocks[2], blocks[3] - 1])  # two rows of block 2: those only
    sel = np.r_[first, few]
    x = np.zeros(data.n_coords)
    x[sel] = np.random.default_rng(1).standard_normal(len(sel))
    p = np.random.default_rng(2).standard_normal((20, 3))
    row = (data.entry_bytes() * X.shape[1]) if not sparse else 0
    monkeypatch.setattr(tiered, "SEEK_BYTES", max(row, 64))
    whole, covered, rest = disk._plan(sel)
    assert whole == [0] and len(covered) == len(first) and sel[rest].tolist() == few.tolist()
    before = data.bytes_read
    np.testing.assert_allclose(disk.combine(x), mem.combine(x), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(disk.project(p, sel), mem.project(p, sel), rtol=1e-13, atol=1e-13)
    block0 = data.block_entries(0) * data.entry_bytes()
    assert data.bytes_read - before == 2 * (block0 + disk.coordinate_bytes(few))
    # Unsorted coordinates are fetched as given; cached ones come from the host cache.
    shuffled = np.random.default_rng(3).permutation(sel)
    np.testing.assert_allclose(disk.project(p, shuffled), mem.project(p, shuffled), rtol=1e-13)
    disk.rank(np.abs(x))  # the cache takes the selected rows (it holds half the store)
    assert disk.cache.n_cached > 0
    before = data.bytes_read
    np.testing.assert_allclose(disk.project(p, sel), mem.project(p, sel), rtol=1e-13, atol=1e-13)
    assert data.bytes_read - before <= 2 * block0 + disk.coordinate_bytes(sel)


@pytest.mark.parametrize("layout", ["cols", "rows"])
def test_streamed_products_are_float64(tmp_path, layout):
    """The certificate's products over a disk tier, float32 values upcast piece by piece
    (duhl_cl.store.tiered.CHUNK), equal float64 NumPy's: coordinates longer than a piece
    (a column of 140000 rows) and shorter ones, streamed, fetched and combined."""
    from duhl_cl.store import tiered

    rng = np.random.default_rng(7)
    n, d = (tiered.CHUNK + 8931, 3) if layout == "cols" else (3000, 50)
    X = rng.standard_normal((n, d)).astype(np.float32)
    data = convert(X, tmp_path / "s", layout=layout, dtype="float32", block_bytes=1 << 20)
    st = TieredStore(data, primal=layout == "cols", host_budget=8 << 20)
    C = X.astype(np.float64) if layout == "rows" else X.T.astype(np.float64)  # coordinates
    p = rng.standard_normal(C.shape[1])
    x = rng.standard_normal(C.shape[0])
    x[::3] = 0.0  # some coordinates at 0: combine fetches the others
    np.testing.assert_allclose(st.project(p), C @ p, rtol=1e-12, atol=1e-9)
    some = np.array([0, 2])
    np.testing.assert_allclose(st.project(p, some), C[some] @ p, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(st.combine(x), C.T @ x, rtol=1e-12, atol=1e-9)
    dense = rng.standard_normal(C.shape[0])  # most coordinates non-zero: streamed
    np.testing.assert_allclose(st.combine(dense), C.T @ dense, rtol=1e-12, atol=1e-9)
    assert st.host_peak <= st.host_budget


@pytest.mark.parametrize("tiered", [False, True], ids=["memory", "disk tier"])
def test_periodic_certificates_over_a_disk_tier_are_balanced_against_their_cost(monkeypatch,
                                                                               tiered):  # fmt: skip
    """An estimate above the target (halving each round: not stagnant): in memory a
    certificate every certify_every rounds; over a disk tier once the rounds since the last
    one took as long as it did, so that they take at most about half of the fit's time
    (each round 1 s and each certificate 10 s on a fake clock here, with no prediction of a
    cheaper next one)."""
    from types import SimpleNamespace

    import duhl_cl.duhl.rounds as rounds

    clock = [0.0]
    monkeypatch.setattr(rounds.time, "perf_counter", lambda: clock[0])
    store = SimpleNamespace(tiered=tiered, bytes_disk=0, n_from_host=0, n_from_disk=0,
                            host_peak=0, product_bounds=None)  # fmt: skip
    local = SimpleNamespace(n_rounds=0, store=store, dtype=np.dtype("float32"),
                            ledger=SimpleNamespace(bytes_h2d=0, bytes_d2h=0),
                            ws=SimpleNamespace(visited=np.arange(3)), z=np.zeros(5))  # fmt: skip

    def run_round():
        clock[0] += 1.0
        local.n_rounds += 1
        estimate = 5.0 * 0.5**local.n_rounds
        return {"round": local.n_rounds, "gap_estimate": estimate, "gap": None, "cert_time": 0.0}

    def certify():
        clock[0] += 10.0
        return SimpleNamespace(gap=2.0, objective=1.0, alpha=np.ones(3))

    local.run_round, local.certify = run_round, certify
    run = rounds.Run(local, target=1e-30, certify_every=10, t0=0.0, verbose=0, callback=None)
    run.rounds(max_iter=60, max_time=None, local_solver=None, refine_dtype=None)
    certified = [r["round"] for r in run.history if r["gap"] is not None]
    if not tiered:
        assert certified == [10, 20, 30, 40, 50, 60]
    else:
        assert certified == [1, 11, 21, 31, 41, 51]
        share = sum(r["cert_time"] for r in run.history) / clock[0]
        assert share <= 0.5 + 10.0 / clock[0]


def test_a_stagnant_estimate_asks_for_a_certificate_where_it_is_cheap(monkeypatch):
    """In memory, an estimate that stopped improving (Run._stagnant) asks for a certificate
    every STAGNANT_ROUNDS rounds where the store is small (CHEAP_CERT_ENTRIES): the estimate
    flat from round 1 (each round 1 s and each certificate 10 s on a fake clock, which does
    not matter), certificates from round 4, the first whose last STAGNANT_ROUNDS estimates
    can be compared; over a larger store, only every certify_every rounds."""
    from types import SimpleNamespace

    import duhl_cl.duhl.rounds as rounds

    assert (rounds.STAGNANT_ROUNDS, rounds.CHEAP_CERT_ENTRIES) == (3, 1 << 22)

    def certified(entries):
        clock = [0.0]
        monkeypatch.setattr(rounds.time, "perf_counter", lambda: clock[0])
        store = SimpleNamespace(tiered=False, bytes_disk=0, n_from_host=0, n_from_disk=0,
                                host_peak=0, product_bounds=None,
                                lens=np.full(4, entries // 4))  # fmt: skip
        local = SimpleNamespace(n_rounds=0, store=store, dtype=np.dtype("float32"),
                                ledger=SimpleNamespace(bytes_h2d=0, bytes_d2h=0),
                                ws=SimpleNamespace(visited=np.arange(3)), z=np.zeros(5))  # fmt: skip

        def run_round():
            clock[0] += 1.0
            local.n_rounds += 1
            return {"round": local.n_rounds, "gap_estimate": 5.0, "gap": None, "cert_time": 0.0}

        def certify():
            clock[0] += 10.0
            return SimpleNamespace(gap=2.0, objective=1.0, alpha=np.ones(3))

        local.run_round, local.certify = run_round, certify
        run = rounds.Run(local, target=1.0, certify_every=10, t0=0.0, verbose=0, callback=None)
        run.rounds(max_iter=12, max_time=None, local_solver=None, refine_dtype=None)
        return [r["round"] for r in run.history if r["gap"] is not None]

    assert certified(1 << 22) == [4, 7, 10]
    assert certified(1 << 23) == [10]


def _certified_rounds(monkeypatch, reads, predicted, fixed=1.0, max_iter=15):
    """The rounds a disk tier's Run certifies on a fake clock: each round 1 s, the estimate
    above the target, the k-th certificate reading ``reads(k)`` bytes at 0.1 GiB/s, plus
    ``fixed`` seconds; the bounds predict ``predicted`` bytes for the next one."""
    from types import SimpleNamespace

    import duhl_cl.duhl.rounds as rounds

    clock = [0.0]
    monkeypatch.setattr(rounds.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(rounds, "last_read_bytes", lambda st: st.read_last)
    store = SimpleNamespace(tiered=True, bytes_disk=0, n_from_host=0, n_from_disk=0,
                            host_peak=0, read_last=0, n_certs=0)  # fmt: skip
    local = SimpleNamespace(n_rounds=0, store=store, dtype=np.dtype("float32"),
                            ledger=SimpleNamespace(bytes_h2d=0, bytes_d2h=0),
                            ws=SimpleNamespace(visited=np.arange(3)), z=np.zeros(5),
                            predicted_cert_bytes=lambda: predicted)  # fmt: skip

    def run_round():
        clock[0] += 1.0
        local.n_rounds += 1
        return {"round": local.n_rounds, "gap_estimate": 5.0, "gap": None, "cert_time": 0.0}

    def certify():
        store.read_last = reads(store.n_certs)
        store.n_certs += 1
        clock[0] += fixed + 10.0 * store.read_last / (1 << 30)
        return SimpleNamespace(gap=2.0, objective=1.0, alpha=np.ones(3))

    local.run_round, local.certify = run_round, certify
    run = rounds.Run(local, target=1.0, certify_every=10, t0=0.0, verbose=0, callback=None)
    run.rounds(max_iter=max_iter, max_time=None, local_solver=None, refine_dtype=None)
    return [r["round"] for r in run.history if r["gap"] is not None]


def test_a_cheap_next_certificate_is_not_delayed_by_an_expensive_last_one(monkeypatch):
    """Over a disk tier the wait for a periodic certificate is the next one's predicted time
    (its bounds' bytes at the last one's rate), not the last one's: a first certificate that
    streams the store (1 GiB, 11 s) and later ones that read 0.2 GiB (3 s; predicted 2.2 s
    after the stream, 3 s after one of them) come 3 rounds apart (1 s each), not 11; and
    after a certificate that read nothing (its fixed cost, 3 s) its own time is the next
    wait, not a prediction of 0 s (a certificate every round)."""
    GiB = 1 << 30
    cheap = _certified_rounds(monkeypatch, lambda k: GiB if k == 0 else GiB // 5, GiB // 5)
    assert cheap == [1, 4, 7, 10, 13]
    nothing = _certified_rounds(monkeypatch, lambda k: GiB if k == 0 else 0, 0, fixed=3.0)
    assert nothing == [1, 2, 5, 8, 11, 14]


@pytest.mark.parametrize("name", ["svm-hinge", "lasso"])
def test_cache_key_ranks_closed_gaps_by_how_far_the_point_may_move(tmp_path, name):
    """The host cache's key (duhl_cl.duhl.bounds.cache_key): a positive gap is itself; a
    non-zero coordinate with a closed gap 0; a coordinate at 0 with a closed gap minus the
    distance the point may move before its bound opens the gap, against the closed forms
    ``(mu_i - 1) / (|y_i| ||(x_i, bias)||)`` (hinge) and ``(l1 - |u_j|) / ||x_j||``
    (Lasso), to the search's 0.1%; on a slice of the coordinates as on all of them."""
    from duhl_cl.duhl.bounds import cache_key

    X, y, labels = _problem(False, n=200, d=20)
    primal = name == "lasso"
    data = convert(X, tmp_path / "s", layout="cols" if primal else "rows", dtype="float64")
    store = TieredStore(data, primal=primal, labels=None if primal else labels * 1.5, bias=1.0)
    model = _model(name, fit_intercept=False)
    rng = np.random.default_rng(4)
    n = data.n_coords
    alpha = np.where(rng.random(n) < 0.2, 0.3, 0.0)
    if primal:
        model.setup(X, y, False)
        u = model.l1 * rng.uniform(-1.5, 1.5, n)
        reach = (model.l1 - np.abs(u)) / store.coordinate_norms(0.0)
    else:
        model.setup(X, labels, True)
        u = rng.uniform(0.0, 3.0, n)
        reach = (u - 1) / (1.5 * store.coordinate_norms(1.0))
    on = np.flatnonzero(alpha)[:5]  # non-zero coordinates at their optimality condition
    u[on] = -model.l1 if primal else 1.0
    if primal:
        u[np.flatnonzero(alpha == 0)[:3]] = 0.0  # (either sign opens the gap)
        reach = (model.l1 - np.abs(u)) / store.coordinate_norms(0.0)
    z = model.gaps(alpha, u)
    key = cache_key(model, store, alpha, u, z)
    positive, closed = z > 0, (z <= 0) & (alpha == 0)
    assert positive.any() and closed.sum() > 10 and ((z <= 0) & (alpha != 0)).any()
    np.testing.assert_array_equal(key[positive], z[positive])
    np.testing.assert_array_equal(key[(z <= 0) & (alpha != 0)], 0.0)
    np.testing.assert_allclose(-key[closed], reach[closed], rtol=1e-3)
    part = slice(50, 120)
    np.testing.assert_allclose(
        cache_key(model, store, alpha[part], u[part], z[part], part), key[part], rtol=1e-3
    )


@pytest.mark.parametrize("name", ["svm-hinge", "lasso"])
def test_a_certificates_stream_fills_the_host_cache_it_reads(tmp_path, name):
    """A certificate that streams the store offers each block's rows to the host cache with
    their fresh keys (duhl_cl.store.host.HostCache.offer): the cache then holds what the
    rank after it would have read one by one, the same set as without the fill, and that
    rank reads less from disk; the certificate is the same."""
    from duhl_cl.duhl.bounds import cache_key
    from duhl_cl.duhl.certificate import certificate

    X, y, labels = _problem(False, n=400, d=30)
    primal = name == "lasso"
    model = _model(name, fit_intercept=False)
    model.setup(X, (y if primal else labels).astype(np.float64), primal)
    dual_labels = None if primal else model.y
    path = convert(X, tmp_path / "s", layout="cols" if primal else "rows", dtype="float64",
                   block_bytes=BLOCK).path  # fmt: skip
    rng = np.random.default_rng(5)
    runs = {}
    for fills in (False, True):
        data = dc.store.open(path)
        reserve = TieredStore(data, primal=primal).reserve_bytes()
        store = TieredStore(data, primal=primal, labels=dual_labels,
                            bias=getattr(model, "bias", 0.0),
                            host_budget=reserve + data.nbytes // 4)  # fmt: skip
        store.fills_from_streams = fills
        read, certs = [], []
        for _ in range(3):
            alpha = np.where(rng.random(data.n_coords) < 0.1, rng.uniform(0, 0.4), 0.0)
            store.product_bounds = None  # every certificate a stream
            cert = certificate(model, store, alpha)
            before = data.bytes_read
            store.rank(cache_key(model, store, cert.alpha, cert.u, model.gaps(cert.alpha, cert.u)))
            read.append(data.bytes_read - before)
            certs.append((cert.gap, cert.objective, store.cached_mask.copy()))
        rng = np.random.default_rng(5)  # the same coefficients for the second store
        runs[fills] = read, certs
    (plain, c0), (filled, c1) = runs[False], runs[True]
    for (g0, o0, m0), (g1, o1, m1) in zip(c0, c1, strict=True):
        assert g0 == pytest.approx(g1, rel=1e-12) and o0 == pytest.approx(o1, rel=1e-12)
        np.testing.assert_array_equal(m0, m1)
    assert filled[0] == 0 < plain[0]  # an empty cache takes the stream's best exactly
    assert sum(filled) < sum(plain)


def test_a_dual_start_certificate_reads_nothing(tmp_path):
    """At alpha = 0 a dual model's point w is 0, and every product with it is 0: the start's
    certificate over a disk tier reads no coordinate, and equals the in-memory one."""
    from duhl_cl.duhl.bounds import last_read_bytes
    from duhl_cl.duhl.certificate import certificate
    from duhl_cl.store import CoordinateStore

    X, _, labels = _problem(False, seed=7)
    model = _model("svm-hinge", True)
    model.setup(X, labels.astype(np.float64), False)
    data = convert(X, tmp_path / "s", layout="rows", dtype="float64", block_bytes=BLOCK)
    disk = TieredStore(data, primal=False, labels=model.y, bias=model.bias)
    mem = CoordinateStore(X, primal=False, dtype=np.float64, labels=model.y, bias=model.bias)
    alpha = model.initial_alpha()
    before = data.bytes_read
    got, want = certificate(model, disk, alpha), certificate(model, mem, alpha)
    assert data.bytes_read == before and last_read_bytes(disk) == 0
    assert got.gap == pytest.approx(want.gap, rel=1e-14) and got.n_bounded == 0
    assert got.objective == pytest.approx(want.objective, rel=1e-14)
