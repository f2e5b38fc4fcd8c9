"""duhl-cl (all data resident) against scikit-learn on real data sets: objective and time.

Problems, from ../shared/data when present (skipped with a note otherwise):
  a9a (32561 x 123 sparse): LinearSVC hinge C=1, LogisticRegression l2 C=1 (both liblinear dual);
  cal_housing (20640 x 8, standardised, y in units of 100k): Lasso alpha=0.01.
Both solvers run with a tight tolerance; the objective of each is computed by one function
here in float64. Times are medians over --repeats runs, both solvers in this one process.

    python benchmarks/core_vs_sklearn.py [--data ../shared/data] [--repeats 3] [--dtype float64]
"""

import argparse
import gzip
import json
import platform
import statistics
import time
import warnings
from pathlib import Path

import numpy as np

import duhl_cl as dc
from duhl_cl.io import load_svmlight


def svm_obj(X, ypm, coef, b, C, loss):
    m = ypm * (X @ coef + b)
    h = np.maximum(1 - m, 0)
    data = h if loss == "hinge" else np.logaddexp(0, -m)
    return 0.5 * (coef @ coef + b * b) + C * data.sum()


def lasso_obj(X, y, coef, b, alpha):
    r = y - X @ coef - b
    return 0.5 * (r @ r) / len(y) + alpha * np.abs(coef).sum()


def timed(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", default="float64")
    ap.add_argument("--json", default="core_vs_sklearn.json")
    args = ap.parse_args()
    import sklearn
    import sklearn.linear_model as lm
    import sklearn.svm as svm

    data = Path(args.data)
    rows = []
    warnings.simplefilter("ignore")
    if (data / "a9a.svm.gz").exists():
        X, y = load_svmlight(data / "a9a.svm.gz")
        ypm = np.where(y > 0, 1.0, -1.0)
        for name, ours, ref, loss in [
            ("a9a svm hinge C=1", lambda: dc.LinearSVC(C=1.0, loss="hinge", tol=1e-6, max_iter=5000, dtype=args.dtype, random_state=0),
             lambda: svm.LinearSVC(C=1.0, loss="hinge", dual=True, tol=1e-6, max_iter=100000), "hinge"),
            ("a9a logistic l2 C=1", lambda: dc.LogisticRegression(C=1.0, tol=1e-8, max_iter=5000, dtype=args.dtype, random_state=0),
             lambda: lm.LogisticRegression(C=1.0, solver="liblinear", dual=True, tol=1e-8, max_iter=100000), "log"),
        ]:  # fmt: skip
            t1, e = timed(lambda ours=ours: ours().fit(X, ypm), args.repeats)
            t2, s = timed(lambda ref=ref: ref().fit(X, ypm), args.repeats)
            f1 = svm_obj(X, ypm, e.coef_.ravel(), e.intercept_[0], 1.0, loss)
            f2 = svm_obj(X, ypm, s.coef_.ravel(), s.intercept_[0], 1.0, loss)
            rows.append(dict(problem=name, duhl_objective=f1, sklearn_objective=f2, duhl_gap=e.dual_gap_,
                             duhl_passes=e.n_iter_, duhl_time=t1, sklearn_time=t2))  # fmt: skip
    if (data / "cal_housing.csv.gz").exists():
        with gzip.open(data / "cal_housing.csv.gz", "rt") as f:
            f.readline()
            A = np.loadtxt(f, delimiter=",")
        X, y = A[:, :-1], A[:, -1] / 1e5
        X = (X - X.mean(0)) / X.std(0)
        alpha = 0.01
        t1, e = timed(
            lambda: dc.Lasso(
                alpha=alpha, tol=1e-10, max_iter=20000, dtype=args.dtype, random_state=0
            ).fit(X, y),
            args.repeats,
        )
        t2, s = timed(
            lambda: lm.Lasso(alpha=alpha, tol=1e-10, max_iter=100000).fit(X, y), args.repeats
        )
        rows.append(dict(problem="cal_housing lasso alpha=0.01 (standardised)",
                         duhl_objective=lasso_obj(X, y, e.coef_, e.intercept_, alpha),
                         sklearn_objective=lasso_obj(X, y, s.coef_, s.intercept_, alpha),
                         duhl_gap=e.dual_gap_, duhl_passes=e.n_iter_, duhl_time=t1, sklearn_time=t2))  # fmt: skip
    dev = dc.open_device()
    print(f"machine: {platform.processor() or platform.machine()}, device {dev.label()}, dtype {args.dtype}, "
          f"scikit-learn {sklearn.__version__}, median of {args.repeats}")  # fmt: skip
    print(
        f"{'problem':44s} {'duhl objective':>18s} {'sklearn objective':>18s} {'rel diff':>9s} {'gap':>9s} {'passes':>6s} {'duhl s':>7s} {'sk s':>7s}"
    )
    for r in rows:
        rel = (r["duhl_objective"] - r["sklearn_objective"]) / abs(r["sklearn_objective"])
        print(f"{r['problem']:44s} {r['duhl_objective']:18.10f} {r['sklearn_objective']:18.10f} {rel:9.1e} "
              f"{r['duhl_gap']:9.1e} {r['duhl_passes']:6d} {r['duhl_time']:7.2f} {r['sklearn_time']:7.2f}")  # fmt: skip
    if not rows:
        print(f"no data sets found under {data}")
    Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
