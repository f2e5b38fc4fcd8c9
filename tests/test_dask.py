"""duhl_cl.dask: distributed fits on a LocalCluster of process workers, as users run them.

Every model, dense over K = 3 partitions and sparse over K = 2, under device budgets, reaches
the single-machine certified objective (1e-6 relative, float64); a worker killed mid-fit is
survived with a valid certificate; a cluster that loses every worker stops with an error and
no model; the client process never holds X; on-disk stores as partitions; device selection by
a worker's resource; predictions as dask arrays.
"""

import os
import signal
import subprocess
import sys
import threading
import time
import warnings

import dask.array as da
import numpy as np
import pytest
import scipy.sparse as sp
from distributed import Client, LocalCluster
from sklearn.datasets import make_classification, make_regression

import duhl_cl
import duhl_cl.dask as dd
from duhl_cl.dask import cocoa


@pytest.fixture(scope="module")
def client():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=50)  # fmt: skip
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


CASES = [
    ("Lasso", dict(alpha=0.5)),
    ("ElasticNet", dict(alpha=0.5, l1_ratio=0.5)),
    ("Ridge", dict(alpha=10.0)),
    ("LinearSVC", dict(C=0.1, loss="hinge")),
    ("LinearSVC", dict(C=0.1, loss="squared_hinge")),
    ("LogisticRegression", dict(C=0.1)),
    ("LogisticRegression", dict(penalty="l1", C=0.5)),
]


def _problem(name, sparse):
    if name in ("Lasso", "ElasticNet", "Ridge"):
        X, y = make_regression(300, 80, n_informative=10, noise=1.0, random_state=0)
    else:
        # Rows nearly orthogonal (more features than samples): CoCoA's sigma' = K adding
        # converges in a few hundred outer rounds (dense correlated rows take thousands).
        X, y = make_classification(160, 320, n_informative=20, random_state=0)
    if sparse:
        X = sp.csr_matrix(X * (np.random.default_rng(1).random(X.shape) < 0.2))
    return X, y


def _dask(X, rows=100):
    return da.from_array(X, chunks=(rows, X.shape[1]), asarray=not sp.issparse(X))


# Dense data over 3 partitions (two workers: one holds two), sparse over 2: each model meets
# both storages and both partition counts, in half the time of every pairing.
@pytest.mark.parametrize("sparse,K", [(False, 3), (True, 2)], ids=["dense-3", "sparse-2"])
@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-{'-'.join(map(str, k.values()))}"
                                                 for n, k in CASES])  # fmt: skip
def test_reaches_single_machine_objective(client, name, kw, sparse, K):
    X, y = _problem(name, sparse)
    ref = getattr(duhl_cl, name)(tol=1e-10, dtype="float64", **kw).fit(X, y)
    est = getattr(dd, name)(tol=1e-8, dtype="float64", n_partitions=K, memory_budget="60%",
                            max_iter=3000, client=client, **kw).fit(_dask(X), y)  # fmt: skip
    assert est.converged_
    assert est.stats_["n_partitions"] == K
    assert abs(est.objective_ - ref.objective_) <= 1e-6 * abs(ref.objective_)
    # The certificates are valid: each objective less its gap is below the other objective
    # (both bound the same optimum from below).
    tiny = 1e-13 * abs(ref.objective_)
    assert est.objective_ - est.dual_gap_ <= ref.objective_ + tiny
    assert ref.objective_ - ref.dual_gap_ <= est.objective_ + tiny
    # Under a device budget below each partition's data: its device held at most that.
    assert all(part["budget"] < part["nbytes"] for part in est.stats_["partitions"])
    for rec in est.history_:
        for peak, part in zip(rec["device_ledger_peak"], est.stats_["partitions"], strict=True):
            assert peak <= part["budget"]
    assert est.coef_.shape == ref.coef_.shape
    local = est.to_local()
    assert type(local) is getattr(duhl_cl, name)
    assert local.objective_ == est.objective_ and local.dual_gap_ == est.dual_gap_


def test_history_and_stats(client):
    X, y = _problem("Lasso", False)
    est = dd.Lasso(alpha=0.5, tol=1e-8, dtype="float64", client=client).fit(_dask(X), y)
    rec = est.history_[-1]
    for key in ("round", "gap", "objective", "local_rounds", "bytes_to_workers",
                "bytes_from_workers", "device_bytes_h2d", "workers", "round_time", "event"):  # fmt: skip
        assert key in rec
    assert len(rec["local_rounds"]) == 2 and len(rec["device_bytes_h2d"]) == 2
    assert rec["bytes_to_workers"] == 2 * X.shape[0] * 8  # the shared vector, to each worker
    assert est.n_iter_ == len(est.history_) == rec["round"]
    gaps = [r["gap"] for r in est.history_]
    assert gaps[-1] <= est.stats_["gap_target"] and gaps[-1] == est.dual_gap_
    assert est.stats_["bytes_to_workers"] > 0 and est.stats_["events"] == []
    # Predictions over dask arrays stay dask arrays: X w + b, block by block.
    p = est.predict(_dask(X))
    assert isinstance(p, da.Array)
    np.testing.assert_allclose(p.compute(), X @ est.coef_ + est.intercept_, rtol=1e-12)
    r = y - X @ est.coef_ - est.intercept_
    r2 = 1 - (r @ r) / ((y - y.mean()) @ (y - y.mean()))
    assert abs(est.score(_dask(X), y) - r2) < 1e-12


def test_under_a_small_budget_and_fixed_local_rounds(client, monkeypatch):
    """25% of each partition on its device (the working set rotates), exactly the local
    rounds asked for (the local gap target switched off), one partition: the single-machine
    objective; clone keeps the client."""
    from sklearn.base import clone

    X, y = _problem("Lasso", False)
    ref = duhl_cl.Lasso(alpha=0.5, tol=1e-10, dtype="float64").fit(X, y)
    monkeypatch.setattr(cocoa, "THETA", 0.0)
    for K in (1, 2):
        est = dd.Lasso(alpha=0.5, tol=1e-8, dtype="float64", n_partitions=K, client=client,
                       memory_budget="25%", local_rounds=3)  # fmt: skip
        assert clone(est).client is client
        est.fit(_dask(X), y)
        assert abs(est.objective_ - ref.objective_) <= 1e-6 * abs(ref.objective_)
        for part in est.stats_["partitions"]:
            assert part["budget"] < part["nbytes"]
        for rec in est.history_:
            assert rec["local_rounds"] == [3] * K
            assert all(p <= q["budget"] for p, q in zip(rec["device_ledger_peak"],
                                                        est.stats_["partitions"], strict=True))  # fmt: skip


def test_classifier_predictions_and_multiclass(client):
    X, y = make_classification(150, 300, n_informative=20, n_classes=3, random_state=0)
    ref = duhl_cl.LinearSVC(C=0.1, loss="squared_hinge", tol=1e-10, dtype="float64").fit(X, y)
    est = dd.LinearSVC(C=0.1, loss="squared_hinge", tol=1e-9, dtype="float64",
                       client=client, max_iter=3000).fit(_dask(X, 50), da.from_array(y, 50))  # fmt: skip
    assert est.coef_.shape == (3, 300) and est.dual_gap_.shape == (3,)
    np.testing.assert_allclose(est.objective_, ref.objective_, rtol=1e-6)
    f = est.decision_function(_dask(X, 50))
    assert isinstance(f, da.Array) and f.shape == (150, 3)
    pred = est.predict(_dask(X, 50))
    assert isinstance(pred, da.Array)
    np.testing.assert_allclose(f.compute(), X @ est.coef_.T + est.intercept_, rtol=1e-12)
    np.testing.assert_array_equal(pred.compute(), est.classes_[np.argmax(f.compute(), 1)])
    assert est.score(_dask(X, 50), y) == np.mean(pred.compute() == y)
    lr = dd.LogisticRegression(C=0.1, tol=1e-6, dtype="float64", client=client)
    lr.fit(_dask(X, 50), y)
    p = lr.predict_proba(_dask(X, 50))
    assert isinstance(p, da.Array) and p.shape == (150, 3)
    np.testing.assert_allclose(p.compute(), lr.to_local().predict_proba(X), rtol=1e-12)


def test_worker_lost_mid_fit(client):
    """A worker process killed during a fit: its partitions start again on the workers
    left (here the survivor, and the one its nanny restarts), from the last combined state,
    and the fit ends with a valid certificate."""
    X, y = _problem("Lasso", False)
    ref = duhl_cl.Lasso(alpha=0.5, tol=1e-10, dtype="float64").fit(X, y)
    pids = client.run(os.getpid)
    victim = sorted(pids)[1]
    killed = []

    def kill(rec):
        if rec["round"] == 3 and not killed:
            os.kill(pids[victim], signal.SIGKILL)
            killed.append(rec["round"])

    est = dd.Lasso(alpha=0.5, tol=1e-9, dtype="float64", client=client, local_rounds=1,
                   memory_budget="90%").fit(_dask(X), y, callback=kill)  # fmt: skip
    assert killed
    assert est.converged_
    events = [r["event"] for r in est.history_ if r["event"]]
    assert len(events) == 1 and "a worker was lost" in events[0]
    assert est.stats_["events"] == events
    assert abs(est.objective_ - ref.objective_) <= 1e-6 * abs(ref.objective_)
    assert est.objective_ - est.dual_gap_ <= ref.objective_ + 1e-13 * abs(ref.objective_)
    client.wait_for_workers(2, timeout=60)


def test_every_worker_lost(monkeypatch):
    """No worker left: the fit stops with an error that says so, and no model is stored."""
    monkeypatch.setattr(cocoa, "WORKER_WAIT", 2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=50)  # fmt: skip
    c = Client(cluster)
    try:
        X, y = _problem("Lasso", False)

        def stop_all(rec):
            if rec["round"] == 2:
                cluster.scale(0)
                t = time.monotonic()
                while c.scheduler_info()["workers"] and time.monotonic() - t < 30:
                    time.sleep(0.1)

        est = dd.Lasso(alpha=0.5, tol=1e-12, dtype="float64", client=c, local_rounds=1)
        with pytest.raises(dd.NoWorkersError, match="no Dask worker is left"):
            est.fit(_dask(X), y, callback=stop_all)
        assert not hasattr(est, "coef_")
    finally:
        c.close()
        cluster.close()


def test_client_never_holds_X(client):
    """X generated on the workers (160 MB): the client's resident memory grows by far less
    than X during the fit (it holds y, the coefficients and the shared vector)."""
    import psutil

    n, d = 100_000, 200
    X = da.random.RandomState(0).standard_normal((n, d), chunks=(12_500, d))
    w = np.random.default_rng(0).standard_normal(d)
    y = da.sign(X @ w + 0.5 * da.random.RandomState(1).standard_normal(n, chunks=12_500))
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.02)

    t = threading.Thread(target=watch)
    t.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a few outer rounds only: not converged
            est = dd.LinearSVC(C=0.01, loss="hinge", dtype="float64", max_iter=3,
                               client=client).fit(X, y)  # fmt: skip
    finally:
        done.set()
        t.join()
    assert est.n_iter_ == 3 and est.coef_.shape == (1, d)
    assert peak[0] - base < 0.15 * X.nbytes, (peak[0] - base, X.nbytes)


def test_on_disk_stores_as_partitions(client, tmp_path):
    X, y = _problem("LinearSVC", True)
    paths = []
    for k, (a, b) in enumerate([(0, 70), (70, 160)]):
        p = tmp_path / f"part{k}"
        duhl_cl.store.convert(X[a:b], p, layout="rows", dtype="float64", y=y[a:b])
        paths.append(str(p))
    ref = duhl_cl.LinearSVC(C=0.1, loss="hinge", tol=1e-10, dtype="float64").fit(X, y)
    est = dd.LinearSVC(C=0.1, loss="hinge", tol=1e-9, max_iter=3000, client=client).fit(paths)
    assert est.stats_["n_partitions"] == 2
    assert abs(est.objective_ - ref.objective_) <= 1e-6 * abs(ref.objective_)
    with pytest.raises(ValueError, match="needs the cols layout"):
        dd.Lasso(client=client).fit(paths)


def test_budget_refused_naming_worker_and_minimum(client):
    X, y = _problem("Lasso", False)
    est = dd.Lasso(alpha=0.5, dtype="float64", memory_budget=4096, client=client)
    with pytest.raises(MemoryError, match=r"partition 0 .* on worker tcp://.*needs at least"):
        est.fit(_dask(X), y)


def test_device_from_worker_resource():
    """A worker with the resource duhl-cl:PROFILE trains on that profile's device (here
    emulated on the host's CPU: the label says which profile)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=50,
                               resources={"duhl-cl:gpu-8gb": 1})  # fmt: skip
    c = Client(cluster)
    try:
        X, y = _problem("Ridge", False)
        est = dd.Ridge(alpha=10.0, dtype="float64", emulate=True, client=c,
                       n_partitions=2).fit(_dask(X), y)  # fmt: skip
        labels = {p["device"] for p in est.stats_["partitions"]}
        assert len(labels) == 1 and "gpu-8gb" in labels.pop()
        assert est.converged_
    finally:
        c.close()
        cluster.close()


def test_bad_inputs(client):
    X, y = _problem("Lasso", False)
    with pytest.raises(TypeError, match="fits a dask array"):
        dd.Lasso(client=client).fit(X, y)
    with pytest.raises(ValueError, match="local_rounds must be"):
        dd.Lasso(client=client, local_rounds=0).fit(_dask(X), y)
    with pytest.raises(ValueError, match="n_partitions=81 is more than the 80"):
        dd.Lasso(client=client, n_partitions=81).fit(_dask(X), y)
    unknown = da.from_array(X, chunks=(100, 80))
    unknown = unknown[unknown[:, 0] > -np.inf]
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        dd.Lasso(client=client).fit(unknown, y)


def test_import_without_dask_names_the_extra():
    code = (
        "import sys; sys.modules['distributed'] = None\n"
        "try:\n    import duhl_cl.dask\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert "pip install 'duhl-cl[dask]'" in out.stdout, out.stderr


def test_the_readme_cluster_example():
    """README's "Running on a cluster" Python example runs as written (its LocalCluster)."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text[text.index("## Running on a cluster: Dask") :]
    code = section[section.index("```python") + len("```python") : section.index("```\n", 10)]
    X, y = _problem("LinearSVC", False)
    ns = {"X_np": X, "y": y}
    try:
        exec(compile(code, "README.md", "exec"), ns)
        assert isinstance(ns["est"].predict(ns["X"]), da.Array)
        np.testing.assert_array_equal(ns["local"].predict(X), ns["est"].predict(ns["X"]).compute())
    finally:
        if "client" in ns:
            cluster = ns["client"].cluster
            ns["client"].close()
            cluster.close()


def test_sample_and_class_weights(client):
    """Weights reach every partition: the primal models' in full, each dual partition its
    own rows'; the objective is the single-machine weighted one."""
    X, y = _problem("Ridge", False)
    s = np.random.default_rng(3).uniform(0.5, 2.0, len(y))
    ref = duhl_cl.Ridge(alpha=10.0, tol=1e-10, dtype="float64").fit(X, y, sample_weight=s)
    est = dd.Ridge(alpha=10.0, tol=1e-8, dtype="float64", client=client)
    est.fit(_dask(X), y, sample_weight=da.from_array(s, chunks=100))
    assert abs(est.objective_ - ref.objective_) <= 1e-6 * abs(ref.objective_)
    X, y = _problem("LinearSVC", False)
    kw = dict(C=0.1, loss="squared_hinge", class_weight={0: 2.0, 1: 0.5}, dtype="float64")
    ref = duhl_cl.LinearSVC(tol=1e-10, **kw).fit(X, y)
    est = dd.LinearSVC(tol=1e-8, max_iter=3000, client=client, n_partitions=3, **kw)
    est.fit(_dask(X), y)
    assert abs(est.objective_ - ref.objective_) <= 1e-6 * abs(ref.objective_)
    with pytest.raises(ValueError, match="sample_weight has zeros"):
        dd.LinearSVC(client=client).fit(_dask(X), y, sample_weight=np.r_[0.0, np.ones(159)])
