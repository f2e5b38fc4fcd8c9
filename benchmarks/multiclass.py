"""One-vs-rest in one fit (one resident working set for all K classes) against K separate
binary fits (class k against the rest), at the same memory budget.

Data: dense float32, n x d (default 20000 x 200; --quick 4000 x 100), K classes from the
argmax of noisy linear scores (benchmarks' own generator, seeded), K in --classes (default
2 5 20). Models: LogisticRegression (l2, dual) and LinearSVC (squared hinge), C = 0.1,
tol 1e-6, --budget (default 10%) of the data, the default device and settings. For K = 2 the
estimator solves one binary problem (what a user gets), against the two one-vs-rest fits.

Reported per (model, K): the fit's wall time end to end (median of --repeats), the bytes
copied to the device (all of them, and those of coordinates swapped in), rounds, and the
same for the K binary fits summed; ratios binary / one fit. All in this one process.

    python benchmarks/multiclass.py --quick
    python benchmarks/multiclass.py --repeats 3 --out multiclass
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

import numpy as np
from common import say, write_table  # benchmarks/common.py

import duhl_cl as dc


def problem(n, d, K, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = np.argmax(X @ rng.standard_normal((d, K)) + 0.8 * rng.standard_normal((n, K)), axis=1)
    return X, y


MODELS = {
    "logistic-l2": lambda **k: dc.LogisticRegression(C=0.1, **k),
    "svm-squared-hinge": lambda **k: dc.LinearSVC(C=0.1, loss="squared_hinge", **k),
}


def fit(make, X, y, budget):
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = make(tol=1e-6, memory_budget=budget, random_state=0, max_iter=20000).fit(X, y)
    return {
        "time": time.perf_counter() - t,
        "bytes_h2d": est.stats_["bytes_h2d"],
        "bytes_swapped_in": sum(r["bytes_swapped_in"] for r in est.history_),
        "rounds": est.n_iter_,
        "converged": bool(est.converged_),
    }


def one_row(name, K, X, y, budget, repeats):
    make = MODELS[name]
    runs = [fit(make, X, y, budget) for _ in range(repeats)]
    sep_runs = []
    for _ in range(repeats):
        parts = [fit(make, X, (y == k).astype(int), budget) for k in range(K)]
        sep_runs.append({
            "time": sum(p["time"] for p in parts),
            "bytes_h2d": sum(p["bytes_h2d"] for p in parts),
            "bytes_swapped_in": sum(p["bytes_swapped_in"] for p in parts),
            "rounds": sum(p["rounds"] for p in parts),
            "converged": all(p["converged"] for p in parts),
        })  # fmt: skip
    med = lambda rs, key: statistics.median(r[key] for r in rs)  # noqa: E731
    row = {"model": name, "K": K}
    for tag, rs in (("one", runs), ("binary", sep_runs)):
        for key in ("time", "bytes_h2d", "bytes_swapped_in", "rounds"):
            row[f"{tag}_{key}"] = med(rs, key)
        row[f"{tag}_converged"] = all(r["converged"] for r in rs)
    row["time_ratio"] = row["binary_time"] / row["one_time"]
    row["bytes_ratio"] = row["binary_bytes_h2d"] / row["one_bytes_h2d"]
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int)
    ap.add_argument("--d", type=int)
    ap.add_argument("--classes", type=int, nargs="+", default=[2, 5, 20])
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--budget", default="10%")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    n = a.n or (4000 if a.quick else 20000)
    d = a.d or (100 if a.quick else 200)
    rows = []
    dc.LinearSVC(max_iter=2).fit(*problem(200, 10, 3))  # build the kernels before timing
    for name in a.models:
        for K in a.classes:
            X, y = problem(n, d, K)
            row = one_row(name, K, X, y, a.budget, a.repeats)
            rows.append(row)
            say(
                f"{name:18s} K={K:3d}  one fit {row['one_time']:7.2f} s "
                f"{row['one_bytes_h2d'] / 1e6:9.1f} MB ({row['one_bytes_swapped_in'] / 1e6:8.1f} "
                f"swapped) {row['one_rounds']:6.0f} rounds | {K} binary fits "
                f"{row['binary_time']:7.2f} s {row['binary_bytes_h2d'] / 1e6:9.1f} MB "
                f"({row['binary_bytes_swapped_in'] / 1e6:8.1f}) {row['binary_rounds']:6.0f} "
                f"rounds | x{row['time_ratio']:.2f} time, x{row['bytes_ratio']:.2f} bytes"
                + ("" if row["one_converged"] and row["binary_converged"] else "  NOT CONVERGED")
            )
    if a.out:
        with open(f"{a.out}.json", "w") as f:
            json.dump({"n": n, "d": d, "budget": a.budget, "repeats": a.repeats,
                       "rows": rows}, f, indent=1)  # fmt: skip
        write_table(f"{a.out}.md")


if __name__ == "__main__":
    main()
