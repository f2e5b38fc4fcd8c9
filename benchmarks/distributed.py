"""duhl_cl.dask on a LocalCluster: outer rounds, local rounds, bytes and time for K workers.

Problems (no intercept, as in benchmarks/peers.py; smaller by default, --full for peers.py's
sizes): the dense Lasso (peers' generator: 2000 x 10000 float32, alpha = 0.05 alpha_max), the
dense hinge SVM (peers' generator: 20000 x 200, C = 1) and a sparse hinge SVM on a Zipf-like
TF-IDF matrix (benchmarks/problems.zipf_text: 20000 x 40000, ~100 words a row, C = 1). Each
fit runs on LocalCluster(n_workers=K, threads_per_worker=1, processes=True) for K = 1, 2, 4
(one partition per worker; beyond 2 workers this 2-core machine is oversubscribed), with a
device budget of 25% of each partition, float32, to a certified gap of tol x scale; the
time is the fit's wall time on the client (end to end: partitioning, actors, rounds), median
of --repeats, the cluster started before. At K = 2 the adaptive local work
(local_rounds="auto") is compared with fixed local rounds (1 and 16) side by side.

Then a weak-scaling estimate for K = 16 (a model, labelled as one): each worker keeps the
partition size of the K = 4 run; an outer round costs the slowest worker's measured
compute (local rounds, certificate part, contribution) plus the measured communication per
outer round (round time less the slowest worker's compute), linear in K as fitted over
K = 1..4;
outer rounds extrapolated from the measured K = 1, 2, 4 by a power law in K.

    python benchmarks/distributed.py              # ~10 minutes on the 2-core machine
    python benchmarks/distributed.py --quick      # a smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

# This file's name is the package's: its folder goes last on the path, so that `distributed`
# is Dask's (here and in the worker processes, which inherit the path) and `common` is ours.
_HERE = Path(__file__).resolve().parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

from common import alpha_max, say, write_table  # noqa: E402
from peers import make_lasso, make_svm  # noqa: E402
from problems import zipf_text  # noqa: E402


def problems(quick, full):
    out = {}
    n, d = (500, 2000) if quick else (8000, 40000) if full else (2000, 10000)
    X, y, a = make_lasso(n, d)
    out["lasso dense"] = ("Lasso", X, y, dict(alpha=a))
    n, d = (4000, 100) if quick else (200000, 1000) if full else (20000, 200)
    X, y = make_svm(n, d)
    out["svm dense"] = ("LinearSVC", X, y, dict(C=1.0, loss="hinge"))
    n, d = (4000, 8000) if quick else (20000, 40000)
    X, rng = zipf_text(n, d)
    w = rng.standard_normal(d) * (rng.random(d) < 0.05)
    y = np.where(X @ w + 0.1 * rng.standard_normal(n) > 0, 1.0, -1.0)
    out["svm sparse (zipf)"] = ("LinearSVC", X, y, dict(C=1.0, loss="hinge"))
    return out


def dask_X(X, K):
    import dask.array as da
    import scipy.sparse as sp

    rows = -(-X.shape[0] // max(K, 1))
    return da.from_array(X, chunks=(rows, X.shape[1]), asarray=not sp.issparse(X))


def one_fit(client, cls, X, y, kw, K, tol, max_time, local_rounds):
    import duhl_cl.dask as dd

    est = getattr(dd, cls)(
        fit_intercept=False, tol=tol, max_iter=100000, max_time=max_time, dtype="float32",
        memory_budget="25%", client=client, local_rounds=local_rounds, **kw,
    )  # fmt: skip
    Xd = dask_X(X, K)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        est.fit(Xd, y)
        wall = time.perf_counter() - t
    h = est.history_
    return {
        "time": wall,
        "converged": bool(est.converged_),
        "gap_rel": est.dual_gap_ / (est.stats_["gap_target"] / tol),
        "outer_rounds": est.n_iter_,
        "local_rounds": int(sum(sum(r["local_rounds"]) for r in h)),
        "bytes_to_workers": est.stats_["bytes_to_workers"],
        "bytes_from_workers": est.stats_["bytes_from_workers"],
        "round_time": statistics.median(r["round_time"] for r in h) if h else 0.0,
        "compute_time": statistics.median(r["work_time"] + r["cert_time"] for r in h) if h
        else 0.0,
        "comm_time": statistics.median(r["comm_time"] for r in h) if h else 0.0,
        "device_bytes_h2d": int(sum(h[-1]["device_bytes_h2d"])) if h else 0,
    }  # fmt: skip


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--max-time", type=float, default=120.0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--full", action="store_true", help="benchmarks/peers.py's sizes")
    ap.add_argument("--out", default="distributed")
    args = ap.parse_args()
    from distributed import Client, LocalCluster

    import duhl_cl

    ks = [int(k) for k in args.workers.split(",")]
    probs = problems(args.quick, args.full)
    results = {}
    say(f"duhl-cl {duhl_cl.__version__}; LocalCluster(threads_per_worker=1, processes=True); "
        f"tol {args.tol:g}, float32, budget 25% per partition; median of {args.repeats}")  # fmt: skip
    for K in ks:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cluster = LocalCluster(n_workers=K, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=50)  # fmt: skip
        client = Client(cluster)
        try:
            variants = ["auto"] + ([1, 16] if K == 2 else [])
            for name, (cls, X, y, kw) in probs.items():
                if name == "lasso dense" and "alpha" not in kw:
                    kw["alpha"] = 0.05 * alpha_max(X, y)
                for lr in variants:
                    runs = [one_fit(client, cls, X, y, kw, K, args.tol, args.max_time, lr)
                            for _ in range(args.repeats)]  # fmt: skip
                    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                    med["converged"] = all(r["converged"] for r in runs)
                    results.setdefault(name, {})[f"K={K} local={lr}"] = med
                    say(f"{name:18s} K={K} local={str(lr):4s} time {med['time']:7.2f} s  "
                        f"{'converged' if med['converged'] else 'NOT converged'}  outer "
                        f"{med['outer_rounds']:6.0f}  local {med['local_rounds']:7.0f}  to "
                        f"{med['bytes_to_workers'] / 2**20:8.1f} MiB  from "
                        f"{med['bytes_from_workers'] / 2**20:8.1f} MiB  round "
                        f"{1e3 * med['round_time']:6.1f} ms (compute "
                        f"{1e3 * med['compute_time']:6.1f}, comm "
                        f"{1e3 * med['comm_time']:5.1f})")  # fmt: skip
        finally:
            client.close()
            cluster.close()
    say("\nWeak-scaling estimate for K = 16 (a model, not a measurement): compute per outer")
    say("round as measured at the largest K; communication linear in K (fit over K); outer rounds")
    say("by a power law in K fitted to the measured ones.")
    for name, res in results.items():
        rows = [(K, res[f"K={K} local=auto"]) for K in ks if f"K={K} local=auto" in res]
        if len(rows) < 2:
            continue
        Ks = np.array([k for k, _ in rows], float)
        R = np.array([max(r["outer_rounds"], 1) for _, r in rows], float)
        over = np.array([r["comm_time"] for _, r in rows])
        beta = float(np.polyfit(np.log(Ks), np.log(R), 1)[0])
        slope, icpt = np.polyfit(Ks, over, 1)
        comp = rows[-1][1]["compute_time"]
        R16 = R[-1] * (16 / Ks[-1]) ** beta
        t16 = R16 * (comp + max(icpt + slope * 16, over[-1]))
        say(f"  {name:18s} outer rounds ~ K^{beta:.2f}: {R16:.0f} at K=16; per round "
            f"{1e3 * comp:.1f} ms compute + {1e3 * max(icpt + slope * 16, over[-1]):.1f} ms "
            f"communication; time ~ {t16:.1f} s (model)")  # fmt: skip
    Path(f"{args.out}.json").write_text(json.dumps(results, indent=1))
    write_table(f"{args.out}.txt")


if __name__ == "__main__":
    main()
