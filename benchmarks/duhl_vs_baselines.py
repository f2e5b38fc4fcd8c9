"""DuHL against its baselines under a device memory budget: time and bytes to a target.

Problems (all float32 on the device):
  lasso   dense Lasso, n x d with a sparse truth (default 8000 x 40000, column-major),
          alpha = 0.05 alpha_max
  svm     dense hinge SVM, n x d (default 200000 x 1000) with rows of unit expected norm,
          C = 1, 5% label noise
  sparse  hinge SVM, C = 1, on w8a and a9a from ../shared/data when present, and on a
          synthetic 200000 x 20000 CSR matrix with 10 nonzeros and unit norm per row
Budgets: fractions of the data's device bytes (default 5, 10, 25, 50, 100%); policies duhl,
sequential and random below 100%, full at 100% (where every policy keeps everything
resident). Each run stops when its certified gap <= --target (default 1e-5) * |f*|, so its
relative suboptimality is at most the target; f* (a lower bound on the optimum, objective
minus gap) comes from one reference run that also builds the kernels. A run that misses
--max-time is reported as inf and not repeated. Reported: median over --repeats of the time
and the bytes moved host->device, all runs in this one process. Writes JSON and the table
(rewritten after every run), and PNG plots of gap against time and bytes.

    python benchmarks/duhl_vs_baselines.py --quick            # small sizes, 10% only
    python benchmarks/duhl_vs_baselines.py --problems lasso --budgets 10 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from common import DATA, lasso_problem, pyplot, say, tol_scale, write_table  # benchmarks/common.py

import duhl_cl as dc
from duhl_cl.io import load_svmlight
from duhl_cl.projection import project_fit


def make_lasso(n, d, seed=0):
    X, y, alpha = lasso_problem(n, d, seed)
    return X, y, lambda **kw: dc.Lasso(alpha=alpha, **kw)


def make_svm(n, d, seed=1):
    rng = np.random.default_rng(seed)
    # Rows of unit expected norm, so that C = 1 is a moderate regularisation whatever d is
    # (with N(0, 1) entries C = 1 would mean C * d, a nearly hard margin that dual
    # coordinate descent, and every policy, needs thousands of passes for).
    X = rng.standard_normal((n, d), dtype=np.float32)
    X *= np.float32(1 / np.sqrt(d))
    w = rng.standard_normal(d)
    y = np.where(X @ w > 0, 1, -1)
    flip = rng.random(n) < 0.05
    y[flip] *= -1
    return X, y, lambda **kw: dc.LinearSVC(C=1.0, loss="hinge", **kw)


def make_sparse_svm(n, d, density, seed=2):
    rng = np.random.default_rng(seed)
    # density * d random columns per row (scipy's sp.random draws from all n * d positions,
    # which needs n * d * 8 bytes of memory at this size)
    k = max(1, round(density * d))
    cols = np.sort(rng.integers(0, d, size=(n, k)), axis=1).ravel().astype(np.int32)
    vals = rng.standard_normal(n * k).astype(np.float32)
    X = sp.csr_matrix((vals, cols, np.arange(0, n * k + 1, k)), shape=(n, d))
    X.sum_duplicates()
    # Unit-norm rows, for the same reason as make_svm's.
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    X = sp.diags((1 / np.maximum(norms, 1e-12)).astype(np.float32)) @ X
    X = X.tocsr().astype(np.float32)
    w = rng.standard_normal(d)
    y = np.where(X @ w > 0, 1, -1)
    y[rng.random(n) < 0.05] *= -1
    return X, y, lambda **kw: dc.LinearSVC(C=1.0, loss="hinge", **kw)


def file_svm(name):
    X, y = load_svmlight(DATA / name)
    return X.astype(np.float32), y, lambda **kw: dc.LinearSVC(C=1.0, loss="hinge", **kw)


def run(make, X, y, policy, budget, target_gap, repeats, max_time, passes=1, variant=None,
        project_on=()):  # fmt: skip
    times, moved, rounds, gaps, objs = [], [], [], [], []
    projected = {name: [] for name in project_on}
    for rep in range(repeats):
        if rep and not np.isfinite(times[0]):
            break  # did not reach the target within max_time: once is enough to say so
        est = make(policy=policy, memory_budget=budget, tol=target_gap, max_iter=100000,
                   max_time=max_time, random_state=rep, kernel_variant=variant,
                   passes_per_round=passes if policy == "duhl" else 1)  # fmt: skip
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dc.ConvergenceWarning)
            est.fit(X, y)
        times.append(time.perf_counter() - t if est.converged_ else float("inf"))
        if not est.converged_:
            h = est.history_[-1] if est.history_ else {}
            say(f"   (repeat {rep}: {policy} at {budget or 'the full budget'} stopped unconverged "
                f"after {est.n_iter_} rounds, {time.perf_counter() - t:.1f} s, gap "
                f"{est.dual_gap_:.3e}, objective {est.objective_:.10g}, last record {h})")  # fmt: skip
        moved.append(est.stats_["bytes_h2d"])
        for name in project_on:
            p = project_fit(est.history_, est.stats_, dc.load_profile(name))
            projected[name].append(p.total if est.converged_ else float("inf"))
        rounds.append(est.n_iter_)
        gaps.append(est.dual_gap_)
        objs.append(est.objective_)
    return {
        "time": statistics.median(times),
        "bytes_h2d": statistics.median(moved),
        "rounds": statistics.median(rounds),
        "gap": max(gaps),
        "objective": statistics.median(objs),
        "variant": est.stats_["kernel_variant"],
        "projected": {k: statistics.median(v) for k, v in projected.items()},
        "history": est.history_,
    }


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--problems",
        default="lasso,svm,sparse",
        help="comma list of lasso, svm, sparse (= w8a, a9a, synthetic)",
    )
    ap.add_argument("--budgets", default="5,10,25,50,100", help="percent of the data")
    ap.add_argument("--policies", default="duhl,sequential,random,full")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--target", type=float, default=1e-5, help="relative suboptimality to reach")
    ap.add_argument("--max-time", type=float, default=600.0, help="per run, seconds")
    ap.add_argument("--quick", action="store_true", help="small sizes (for a smoke run)")
    ap.add_argument("--lasso-size", default="8000x40000", help="n_samples x n_features")
    ap.add_argument("--svm-size", default="200000x1000", help="n_samples x n_features")
    ap.add_argument(
        "--passes-per-round", default="1", help="duhl's passes per round: an integer or 'auto'"
    )
    ap.add_argument(
        "--variants",
        default="",
        help="comma list of kernel variants to run each policy with (default: the profile's)",
    )
    ap.add_argument(
        "--project",
        default="",
        help="comma list of profiles to project each run's time onto (bandwidth model, "
        "duhl_cl.projection), e.g. gpu-8gb,fpga-u280-hbm",
    )
    ap.add_argument("--out", default="duhl_vs_baselines")
    args = ap.parse_args()
    variants = [v for v in args.variants.split(",") if v] or [None]
    project_on = [p for p in args.project.split(",") if p]
    q = args.quick
    problems = {}
    for p in args.problems.split(","):
        if p == "lasso":
            problems["lasso dense"] = make_lasso(*((1000, 5000) if q else _size(args.lasso_size)))
        elif p == "svm":
            problems["svm dense"] = make_svm(*((20000, 200) if q else _size(args.svm_size)))
        elif p in ("sparse", "w8a", "a9a", "synthetic"):
            # "sparse" is all three: the two files (when present) and the synthetic one.
            for f in ("w8a", "a9a"):
                if p in ("sparse", f) and (DATA / f"{f}.svm.gz").exists():
                    problems[f"svm {f}"] = file_svm(f"{f}.svm.gz")
            if p in ("sparse", "synthetic"):
                problems["svm sparse synthetic"] = make_sparse_svm(
                    *((50000, 2000, 0.01) if q else (200000, 20000, 0.0005))
                )
        else:
            ap.error(f"unknown problem {p!r}; choose from lasso, svm, sparse, w8a, a9a, synthetic")
    budgets = [int(b) for b in args.budgets.split(",")]
    policies = args.policies.split(",")
    dev = dc.open_device()
    results = []
    say(f"machine: {platform.machine()} {platform.processor()}, {dev.label()}, float32, target "
          f"relative suboptimality {args.target:g}, median of {args.repeats}; duhl's passes per "
          f"round: {args.passes_per_round}")  # fmt: skip
    for pname, (X, y, make) in problems.items():
        data_bytes = (X.data.nbytes + X.indices.nbytes) if sp.issparse(X) else X.nbytes
        t = time.perf_counter()
        # The reference only sets the scale of the target: runs stop on their own certified
        # gap <= target * |f*|, so a lower bound f* within a fraction of |f*| will do (a
        # gap of target * f0 changes the target by that relative amount, 1e-5). It also
        # builds the kernels, so that no timed run pays for compilation.
        ref = make(
            policy="duhl",
            tol=args.target * (abs(_f0(make(), X, y)) / tol_scale(make(), X, y)),
            max_iter=20000,
            max_time=args.max_time,
            random_state=0,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dc.ConvergenceWarning)
            ref.fit(X, y)
        f_star = ref.objective_ - ref.dual_gap_  # a lower bound on the optimum
        for var in variants:
            if var is not None:  # build every variant's kernels too, outside the timed runs
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", dc.ConvergenceWarning)
                    make(kernel_variant=var, memory_budget="10%", max_iter=1).fit(X, y)
        say(f"\n{pname}: {X.shape[0]} x {X.shape[1]}, {data_bytes / 2**20:.0f} MiB; reference objective "
              f"{ref.objective_:.10g} (gap {ref.dual_gap_:.1e}, {time.perf_counter() - t:.1f} s)")  # fmt: skip
        # A run stops when its certified gap <= target * |f*|: then objective - f* <= that.
        say(
            f"{'budget':>7s} {'policy':>11s} {'variant':>9s} {'time s':>8s} {'MiB moved':>10s} "
            f"{'rounds':>7s} {'gap':>9s}" + "".join(f" {'proj. ' + p:>22s}" for p in project_on)
        )
        for b, pol, var in [(b, p, v) for b in budgets for p in policies for v in variants]:
            if (pol == "full") != (b >= 100):
                continue  # at 100% every policy keeps everything resident: that is "full"
            tol = args.target * abs(f_star) / tol_scale(make(), X, y)
            try:
                # 100% means all of it resident (the data plus the slot table and vectors).
                budget = None if b >= 100 else f"{b}%"
                ppr = args.passes_per_round
                ppr = ppr if ppr == "auto" else int(ppr)
                r = run(make, X, y, pol, budget, tol, args.repeats, args.max_time, ppr,
                        variant=var, project_on=project_on)  # fmt: skip
            except dc.MemoryBudgetError as exc:
                say(f"{b:6d}% {pol:>11s}  refused: {exc}")
                continue
            r.update(
                problem=pname,
                budget_percent=b,
                policy=pol,
                data_bytes=data_bytes,
                f_star=f_star,
            )
            results.append(r)
            say(
                f"{b:6d}% {pol:>11s} {r['variant']:>9s} {r['time']:8.2f} "
                f"{r['bytes_h2d'] / 2**20:10.1f} {r['rounds']:7.0f} {r['gap']:9.2e}"
                + "".join(f" {r['projected'][p]:20.3f} s" for p in project_on),
                flush=True,
            )
            save(results, args.out)
    summary(results)
    save(results, args.out)
    plots(results, args.out)


def save(results, out):
    """JSON of every run and the printed table so far (rewritten after each run)."""
    Path(out + ".json").write_text(
        json.dumps([{k: v for k, v in r.items() if k != "history"} for r in results], indent=1)
    )
    write_table(out + ".txt")


def _size(text):
    n, d = text.lower().split("x")
    return int(n), int(d)


def _f0(est, X, y):
    """The objective at zero coefficients: a first guess at the optimum's size."""
    # The SVM's tol scale is its objective at zero (C n); the Lasso's is twice it (||y||^2/n).
    return tol_scale(est, X, y) * (1.0 if isinstance(est, dc.LinearSVC) else 0.5)


def summary(results):
    say("\nratios at each budget (sequential / duhl, full / duhl):")
    by = {}
    for r in results:
        # with several variants, the ratios compare the first one run (the profile's)
        by.setdefault((r["problem"], r["budget_percent"]), {}).setdefault(r["policy"], r)
    for (p, b), d in by.items():
        if "duhl" in d and "sequential" in d:
            s, u = d["sequential"], d["duhl"]
            say(f"  {p:24s} {b:3d}%: time {s['time'] / u['time']:6.1f}x, bytes "
                  f"{s['bytes_h2d'] / max(u['bytes_h2d'], 1):6.1f}x")  # fmt: skip
        full = by.get((p, 100), {}).get("full")
        if full and "duhl" in d:
            say(f"  {p:24s} {b:3d}%: full / duhl time {full['time'] / d['duhl']['time']:6.2f}x")


def plots(results, out):
    plt = pyplot()
    if plt is None:
        return
    for p in sorted({r["problem"] for r in results}):
        rs = [r for r in results if r["problem"] == p and r["budget_percent"] in (10, 100)]
        if not rs:
            continue
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for r in rs:
            h = r["history"]
            gap = [x["gap"] if x["gap"] is not None else x.get("gap_estimate") for x in h]
            t = [x["time"] for x in h]
            mb = np.cumsum([x.get("bytes_h2d", 0) for x in h]) / 2**20
            label = f"{r['policy']} {r['budget_percent']}%"
            axes[0].semilogy(t, gap, label=label)
            axes[1].semilogy(mb, gap, label=label)
        axes[0].set_xlabel("time (s)")
        axes[1].set_xlabel("MiB moved host -> device")
        for ax in axes:
            ax.set_ylabel("duality gap")
            ax.legend()
            ax.grid(True, alpha=0.3)
        fig.suptitle(p)
        fig.tight_layout()
        path = f"{out}_{p.replace(' ', '_')}.png"
        fig.savefig(path, dpi=90)
        print(f"plot written to {path}")


if __name__ == "__main__":
    main()
