"""Lasso regularization paths: duhl-cl's lasso_path against scikit-learn's and celer's.

A path of --n-alphas alphas (default 100, eps 1e-3, no intercept, scikit-learn's grid) on
  dense    the synthetic dense Lasso problem (benchmarks/common.py), 2000 x 10000 float32
           (--quick: 500 x 2000)
  sparse   review_polarity TF-IDF (2000 x 39659) from ../shared/data when present, y the
           centred +-1 labels; else a synthetic sparse problem
Metric (benchopt-style, end to end): each solver runs its whole path with a tightening
tolerance (its own parameter) until every point's objective is within --target (default
1e-5) relative of that point's best objective; the wall time of the first such run counts.
The best objective of each point is that of a float64 duhl-cl path whose every certified gap
is 1/100 of the target. duhl-cl runs on the default device with its default settings (one
device session for the whole path). Median of --repeats; all in this one process.

    python benchmarks/paths.py --quick
    python benchmarks/paths.py --repeats 3 --out paths
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

import numpy as np
import scipy.sparse as sp
from common import DATA, lasso_problem, say, write_table  # benchmarks/common.py

import duhl_cl as dc
from duhl_cl.io import load_svmlight


def objectives(X, y, alphas, coefs):
    r = y[:, None] - np.asarray(X @ coefs)
    return 0.5 * np.sum(r * r, axis=0) / len(y) + alphas * np.abs(coefs).sum(axis=0)


def solvers():
    out = {
        "duhl-cl": lambda X, y, a, tol: dc.lasso_path(X, y, alphas=a, tol=tol)[1],
    }
    from sklearn.linear_model import lasso_path as sk_path

    out["scikit-learn"] = lambda X, y, a, tol: sk_path(X, y, alphas=a, tol=tol, max_iter=10**5)[1]
    try:
        from celer import celer_path

        out["celer"] = lambda X, y, a, tol: celer_path(
            sp.csc_matrix(X) if sp.issparse(X) else X, y, "lasso", alphas=a, tol=tol
        )[1]
    except ImportError:
        say("  celer is not installed (pip install '.[bench]'): left out")
    return out


def time_to_target(fit, X, y, alphas, best, target, max_time):
    """Seconds of the first run (tolerance 1e-1, 1e-2, ...) whose every point is within
    ``target`` of ``best``, with that tolerance; (None, tol) if none gets there."""
    t_all = 0.0
    for tol in 10.0 ** -np.arange(1, 13):
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            coefs = fit(X, y, alphas, tol)
        dt = time.perf_counter() - t
        t_all += dt
        subopt = (objectives(X, y, alphas, np.asarray(coefs, dtype=np.float64)) - best) / best
        if np.max(subopt) <= target:
            return dt, tol, float(np.max(subopt))
        if t_all > max_time:
            break
    return None, tol, float(np.max(subopt))


def problems(quick):
    out = {}
    X, y, _ = lasso_problem(*((500, 2000) if quick else (2000, 10000)))
    out["dense"] = (X, y)
    f = DATA / "review_polarity_tfidf.svm.gz"
    if f.is_file() and not quick:
        Xs, lab = load_svmlight(f)
        Xs = sp.csc_matrix(Xs)
        out["sparse review_polarity"] = (Xs, lab - lab.mean())
    else:
        rng = np.random.default_rng(1)
        Xs = sp.random(800, 5000, density=0.01, format="csc", random_state=rng)
        truth = np.zeros(5000)
        truth[:20] = 1.0
        out["sparse synthetic"] = (Xs, Xs @ truth + 0.01 * rng.standard_normal(800))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-alphas", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--target", type=float, default=1e-5)
    ap.add_argument("--max-time", type=float, default=300.0, help="per solver and ladder, s")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="paths")
    args = ap.parse_args()
    say(f"duhl-cl on {dc.open_device().label()}; {args.n_alphas} alphas, target {args.target}")
    results = {}
    fits = solvers()
    for name, (X, y) in problems(args.quick).items():
        y = np.asarray(y, dtype=np.float64)
        alphas = dc.estimators.paths.alpha_grid(X, y, 1.0, 1e-3, args.n_alphas)
        # tol is relative to f(0) = ||y||^2 / n; the reference's gaps must be a hundredth of
        # the target relative to each point's own objective, far below f(0) at small alphas.
        f0 = float(y @ y) / len(y)
        tol = args.target / 100
        for _ in range(3):
            _, ref, gaps = dc.lasso_path(X, y, alphas=alphas, dtype="float64", tol=tol)
            best = objectives(X, y, alphas, ref)
            if np.max(gaps / len(y) / best) <= args.target / 100:
                break
            tol = max(args.target / 100 * float(best.min()) / f0, 1e-15)
        say(f"\n{name}: {X.shape[0]} x {X.shape[1]}{' sparse' if sp.issparse(X) else ''}; "
            f"reference: float64 duhl-cl path, largest certified gap / objective "
            f"{np.max(gaps / len(y) / best):.1e}")  # fmt: skip
        say(f"  {'solver':16s} {'time s':>8s} {'tol':>8s} {'worst rel. subopt.':>20s}")
        results[name] = {}
        for solver, fit in fits.items():
            runs = [time_to_target(fit, X, y, alphas, best, args.target, args.max_time)
                    for _ in range(args.repeats)]  # fmt: skip
            times = [r[0] for r in runs if r[0] is not None]
            t = statistics.median(times) if len(times) == len(runs) else None
            tol, worst = runs[-1][1], runs[-1][2]
            results[name][solver] = {"time": t, "tol": tol, "worst": worst}
            shown = f"{t:8.3f}" if t is not None else "not reached"
            say(f"  {solver:16s} {shown:>8s} {tol:8.0e} {worst:20.2e}")
    write_table(f"{args.out}.txt")
    with open(f"{args.out}.json", "w") as fh:
        json.dump(results, fh, indent=1)
    say(f"written {args.out}.txt and {args.out}.json")


if __name__ == "__main__":
    main()
