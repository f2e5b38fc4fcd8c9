"""duhl-cl against the CPU solvers people use: the wall time of a fit, from the user's array to
the model, to the same objective, benchopt-style.

Peers (each with 2 threads where it can use them): scikit-learn (Lasso, ElasticNet with
l1_ratio=1, LinearSVC hinge dual, LogisticRegression liblinear: dual for L2, newGLMNET for L1),
celer (Lasso, L1 LogisticRegression), Snap ML (LinearRegression l1 primal, SupportVectorMachine,
LogisticRegression l2 and l1); duhl-cl with a budget that holds all the data (the default:
"all fits") and at a 10% budget, default settings otherwise. `pip install '.[bench]'` installs
the peers; an absent peer is reported as such and left out.

Every solver gets the data as a user has it, the same array for all: dense arrays C-ordered
(NumPy's default; a primal solver that reads columns pays for its own transpose), sparse data
CSR as the svmlight reader returns it, float32.

Problems (no intercept anywhere, so that every solver solves the same problem):
  lasso       dense 8000 x 40000 float32 with a sparse truth, alpha = 0.05 alpha_max
  svm         dense hinge SVM 200000 x 1000 float32, rows of unit expected norm, C = 1
  a9a, w8a    hinge SVM and L2 logistic regression, C = 1; L1 logistic regression, C = 0.5
  cal_housing, casp   Lasso on standardised features and centred target, alpha = 0.01 alpha_max
  review_polarity, sms_spam   TF-IDF text: Lasso on the centred +-1 labels at 0.01 alpha_max,
              hinge SVM, L2 and L1 logistic regression, C = 1
  leukemia    72 x 7129 dense, standardised features: the same four models (C = 1; Lasso at
              0.01 alpha_max)
(a9a, w8a and the last four from ../shared/data when present.) The objective of every run is
computed here by one function per problem, in float64, from the coefficients the solver
returns. Metric: each solver runs with a tightening tolerance (its own parameter, from loose to
tight) until its objective is within --target (default 1e-5) relative of the best objective
any solver reached; the wall time of the fit call of the first such run counts (a run that
never gets there is reported as not reached), median of --repeats; every solver in this one
process, kernels built before (by the reference fit). Separately, "first fit": duhl-cl's fit
at that tolerance in a fresh process with no kernel cache, its kernel builds included. The
best objective is that of a float64 duhl-cl fit whose certified gap is 1/100 of the target.
Writes JSON, the table, and a PNG of the times.

It also prints the device's pass bandwidth on a resident dense working set (bytes of the
resident data read by one pass of the "serial" kernel, divided by its time) next to a plain
copy kernel's bandwidth (bytes read plus written) on the same device in the same run.

    python benchmarks/peers.py --quick                  # small sizes, a smoke run
    python benchmarks/peers.py --problems lasso,a9a --repeats 3
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from common import (
    DATA,
    alpha_max,
    lasso_problem,
    pyplot,
    say,
    tol_scale,
    write_table,
)  # benchmarks/common.py

import duhl_cl as dc
from duhl_cl.io import load_svmlight

THREADS = 2


# ----------------------------------------------------------------------------- objectives
def lasso_objective(X, y, w, alpha):
    r = y - X @ w
    return 0.5 * float(r @ r) / len(y) + alpha * float(np.abs(w).sum())


def svm_objective(X, y, w, C):
    return 0.5 * float(w @ w) + C * float(np.maximum(0.0, 1.0 - y * (X @ w)).sum())


def logistic_objective(X, y, w, C):
    return 0.5 * float(w @ w) + C * float(np.logaddexp(0.0, -y * (X @ w)).sum())


def l1logistic_objective(X, y, w, C):
    return float(np.abs(w).sum()) + C * float(np.logaddexp(0.0, -y * (X @ w)).sum())


OBJECTIVES = {
    "lasso": lasso_objective,
    "svm": svm_objective,
    "logistic": logistic_objective,
    "l1logistic": l1logistic_objective,
}


# ----------------------------------------------------------------------------- problems
def make_lasso(n, d, seed=0):
    X, y, alpha = lasso_problem(n, d, seed)
    # C-ordered, as NumPy makes arrays (lasso_problem's is column-major).
    return np.ascontiguousarray(X), y - y.mean(), alpha


def make_svm(n, d, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d), dtype=np.float32) * np.float32(1 / np.sqrt(d))
    y = np.where(X @ rng.standard_normal(d) > 0, 1.0, -1.0)
    y[rng.random(n) < 0.05] *= -1
    return X, y


def load_regression(name):
    path = DATA / name
    with gzip.open(path, "rt") as f:
        A = np.loadtxt(f, delimiter=",", skiprows=1)
    y, X = (A[:, 0], A[:, 1:]) if name.startswith("casp") else (A[:, -1], A[:, :-1])
    X = (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1)
    y = y - y.mean()
    y = y / y.std()
    X = X.astype(np.float32)  # C-ordered, as read
    return X, y, 0.01 * alpha_max(X, y)


def load_classification(name, dense=False):
    """(X float32 CSR, or C-ordered dense with standardised columns, y in {-1, +1})."""
    X, y = load_svmlight(DATA / name)
    if dense:
        X = np.asarray(X.toarray(), dtype=np.float64)
        sd = X.std(0)
        X = ((X - X.mean(0)) / np.where(sd > 0, sd, 1)).astype(np.float32)
    else:
        X = X.astype(np.float32)
    return X, y


def classification_problems(name, X, y, kinds, C_l1=1.0):
    """The problems of one classification set: ``kinds`` among lasso (centred labels at
    0.01 alpha_max), svm, logistic (C = 1), l1logistic (C = C_l1)."""
    out = {}
    for kind in kinds:
        if kind == "lasso":
            yc = y - y.mean()
            out[f"lasso {name}"] = ("lasso", X, yc, 0.01 * alpha_max(X, yc))
        elif kind == "l1logistic":
            out[f"l1-logistic {name}"] = ("l1logistic", X, y, C_l1)
        else:
            out[f"{kind} {name}"] = (kind, X, y, 1.0)
    return out


# name: (file, dense, models, C of the L1 logistic regression)
FOUR = ("lasso", "svm", "logistic", "l1logistic")
CLASSIFICATION = {
    "a9a": ("a9a.svm.gz", False, ("svm", "logistic", "l1logistic"), 0.5),
    "w8a": ("w8a.svm.gz", False, ("svm", "logistic", "l1logistic"), 0.5),
    "review_polarity": ("review_polarity_tfidf.svm.gz", False, FOUR, 1.0),
    "sms_spam": ("sms_spam_tfidf.svm.gz", False, FOUR, 1.0),
    "leukemia": ("leukemia.svm.gz", True, FOUR, 1.0),
}


# ----------------------------------------------------------------------------- solvers
# Each solver: name -> fit(X, y, reg, tol) -> coefficients (float64). A tolerance ladder per
# solver, loose to tight, in that solver's own units.
LADDER = [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10]


def duhl_solvers(kind, budget_label, max_time):
    # "all fits": the default budget (the device's), which holds all the data; DuHL copies in
    # what it visits and keeps it (policy "full" would visit every coordinate every pass).
    budget = None if budget_label == "all fits" else budget_label
    # max_time: a run that cannot reach a tolerance stops (the ladder then reports the target
    # as not reached) instead of holding the benchmark up.
    common = dict(fit_intercept=False, max_iter=100000, random_state=0, memory_budget=budget,
                  max_time=max_time)  # fmt: skip

    def fit(X, y, reg, tol):
        est = duhl_estimator(kind, reg, tol=tol, **common)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dc.ConvergenceWarning)
            est.fit(X, y)
        return np.ravel(est.coef_)

    return {f"duhl-cl ({budget_label})": fit}


def duhl_estimator(kind, reg, **params):
    if kind == "lasso":
        return dc.Lasso(alpha=reg, **params)
    if kind == "svm":
        return dc.LinearSVC(C=reg, loss="hinge", **params)
    if kind == "l1logistic":
        return dc.LogisticRegression(C=reg, penalty="l1", **params)
    return dc.LogisticRegression(C=reg, **params)


def peer_solvers(kind):
    out, missing = {}, []
    try:
        import sklearn.linear_model as lm
        import sklearn.svm as sksvm

        if kind == "lasso":
            out["scikit-learn Lasso"] = lambda X, y, a, tol: (
                lm.Lasso(alpha=a, fit_intercept=False, tol=tol, max_iter=100000).fit(X, y).coef_
            )
            out["scikit-learn ElasticNet"] = lambda X, y, a, tol: (
                lm.ElasticNet(alpha=a, l1_ratio=1.0, fit_intercept=False, tol=tol, max_iter=100000)
                .fit(X, y)
                .coef_
            )
        elif kind == "svm":
            out["scikit-learn LinearSVC"] = lambda X, y, C, tol: (
                sksvm.LinearSVC(
                    C=C, loss="hinge", dual=True, fit_intercept=False, tol=tol, max_iter=10**6
                )
                .fit(X, y)
                .coef_.ravel()
            )
        elif kind == "logistic":
            out["scikit-learn LogisticRegression"] = lambda X, y, C, tol: (
                lm.LogisticRegression(
                    C=C, solver="liblinear", dual=True, fit_intercept=False, tol=tol, max_iter=10**6
                )
                .fit(X, y)
                .coef_.ravel()
            )
        else:  # liblinear's newGLMNET
            out["scikit-learn LogisticRegression l1"] = lambda X, y, C, tol: (
                lm.LogisticRegression(
                    C=C,
                    penalty="l1",
                    solver="liblinear",
                    fit_intercept=False,
                    tol=tol,
                    max_iter=10**6,
                )
                .fit(X, y)
                .coef_.ravel()
            )
    except ImportError:
        missing.append("scikit-learn")
    if kind in ("lasso", "l1logistic"):
        try:
            import celer

            if kind == "lasso":
                out["celer Lasso"] = lambda X, y, a, tol: (
                    celer.Lasso(alpha=a, fit_intercept=False, tol=tol, max_iter=100).fit(X, y).coef_
                )
            else:
                # celer's logistic regression takes float64 only: its conversion counts.
                out["celer LogisticRegression l1"] = lambda X, y, C, tol: (
                    celer.LogisticRegression(
                        C=C, penalty="l1", fit_intercept=False, tol=tol, max_iter=100
                    )
                    .fit(X.astype(np.float64), y)
                    .coef_.ravel()
                )
        except ImportError:
            missing.append("celer")
    try:
        import snapml

        n_jobs = dict(n_jobs=THREADS)
        if kind == "lasso":
            # Snap ML's objective is 1/2 ||y - Xw||^2 + regularizer ||w||_1: alpha times n.
            out["Snap ML LinearRegression"] = lambda X, y, a, tol: snapml.LinearRegression(
                penalty="l1", dual=False, regularizer=a * X.shape[0], fit_intercept=False,
                tol=tol, max_iter=100000, **n_jobs
            ).fit(X, y).coef_.ravel()  # fmt: skip
        elif kind == "svm":
            # regularizer/2 ||w||^2 + sum hinge: our objective divided by C.
            out["Snap ML SupportVectorMachine"] = lambda X, y, C, tol: (
                snapml.SupportVectorMachine(
                    regularizer=1.0 / C, fit_intercept=False, tol=tol, max_iter=100000, **n_jobs
                )
                .fit(X, y)
                .coef_.ravel()
            )
        else:
            pen = "l1" if kind == "l1logistic" else "l2"
            out[f"Snap ML LogisticRegression{' l1' if pen == 'l1' else ''}"] = (
                lambda X, y, C, tol, pen=pen: snapml.LogisticRegression(
                    regularizer=1.0 / C, penalty=pen, dual=pen == "l2", fit_intercept=False,
                    tol=tol, max_iter=100000, **n_jobs
                ).fit(X, y).coef_.ravel()
            )  # fmt: skip
    except ImportError:
        missing.append("Snap ML")
    return out, missing


# ----------------------------------------------------------------------------- the metric
def reference_objective(kind, X, y, reg, target, objective):
    """(objective, certified gap) of a float64 duhl-cl fit to a gap of target / 100."""
    # A first fit gives the objective's size, a second one the certified reference.
    tol = 1e-4
    for _ in range(2):
        est = duhl_estimator(kind, reg, fit_intercept=False, dtype="float64", tol=tol,
                             max_iter=10**6, random_state=0)  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dc.ConvergenceWarning)
            est.fit(X, y)
        f = objective(X, y, np.ravel(est.coef_))
        tol = target / 100 * abs(f) / tol_scale(est, X, y)
    return f, est.dual_gap_


def first_to_target(fit, X, y, reg, objective, f_best, target, max_time):
    """Walk the ladder loose to tight; (seconds of the first run within target, objective)."""
    spent = 0.0
    for tol in LADDER:
        t = time.perf_counter()
        w = np.asarray(fit(X, y, reg, tol), dtype=np.float64)
        dt = time.perf_counter() - t
        spent += dt
        f = objective(X, y, w)
        if f - f_best <= target * abs(f_best):
            return dt, f, tol
        if spent > max_time:
            break
    return float("inf"), f, None


def device_bandwidths(n=4000, d=8000):
    """(pass GB/s, copy GB/s) on the default device: a resident dense Lasso working set of
    n x d float32 (one pass of the "serial" kernel reads every resident entry), and a plain
    copy kernel over the same bytes (read plus write)."""
    import pyopencl as cl

    from duhl_cl import models
    from duhl_cl.device.ledger import Ledger
    from duhl_cl.duhl.working_set import DeviceWorkingSet
    from duhl_cl.store import CoordinateStore

    dev = dc.open_device()
    rng = np.random.default_rng(0)
    X = np.asfortranarray(rng.standard_normal((n, d), dtype=np.float32))
    y = rng.standard_normal(n)
    model = models.SquaredL1L2(0.01, 0.0)
    model.setup(X, y, False)
    store = CoordinateStore(X, primal=True, dtype=np.float32)
    src = "__kernel void copy(__global const float4 *a, __global float4 *b) " \
          "{ const size_t i = get_global_id(0); b[i] = a[i]; }"  # fmt: skip
    k = cl.Kernel(cl.Program(dev.context, src).build(), "copy")
    ws = DeviceWorkingSet(dev, model, store, variant="serial")
    # The copy's buffers are allocated as the working set's pool is (host-backed where the
    # device shares the host's memory), so that both see the same kind of pages.
    ledger = Ledger(dev)
    try:
        ws.make_resident(np.arange(d), np.zeros(d))
        ws.set_shared(model.shared_from(np.zeros(n), 0.0))
        a = ledger.alloc("copy source", X.nbytes, X.ravel(order="F"), host_backed=True)
        b = ledger.alloc("copy destination", X.nbytes, host_backed=True)
        rng2 = np.random.default_rng(1)

        def one_pass():
            ws.run_pass(rng2)
            ws.finish()

        def one_copy():
            k(dev.queue, (X.size // 4,), None, a, b)
            dev.queue.finish()

        one_pass()
        one_copy()
        # Alternated, so that both see the same state of a shared (noisy) machine.
        t_pass, t_copy = [], []
        for _ in range(9):
            for f, times in ((one_pass, t_pass), (one_copy, t_copy)):
                t = time.perf_counter()
                f()
                times.append(time.perf_counter() - t)
    finally:
        ws.release()
        ledger.free_all()
    pass_gbs = X.nbytes / statistics.median(t_pass) / 1e9
    copy_gbs = 2 * X.nbytes / statistics.median(t_copy) / 1e9
    return pass_gbs, copy_gbs, dev.label()


# ----------------------------------------------------------------------------- first fit
def first_fit(X, y, kind, reg, tol):
    """(wall s, kernel build s) of duhl-cl's fit at ``tol`` in a fresh process with no kernel
    cache: what a user's first fit in a session costs, compiler included."""
    with tempfile.TemporaryDirectory() as tmp:
        if sp.issparse(X):
            sp.save_npz(f"{tmp}/X.npz", X.tocsr(), compressed=False)
        else:
            np.save(f"{tmp}/X.npy", X)
        np.save(f"{tmp}/y.npy", y)
        env = dict(os.environ, PYOPENCL_NO_CACHE="1", POCL_CACHE_DIR=f"{tmp}/pocl")
        out = subprocess.run(
            [sys.executable, __file__, "--first-fit", tmp, kind, repr(reg), repr(tol)],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
    wall, build = json.loads(out.stdout.strip().splitlines()[-1])
    return wall, build


def first_fit_child(tmp, kind, reg, tol):
    X = sp.load_npz(f"{tmp}/X.npz") if Path(f"{tmp}/X.npz").exists() else np.load(f"{tmp}/X.npy")
    y = np.load(f"{tmp}/y.npy")
    est = duhl_estimator(kind, float(reg), tol=float(tol), fit_intercept=False, max_iter=100000,
                         random_state=0)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dc.ConvergenceWarning)
        t = time.perf_counter()
        est.fit(X, y)
        wall = time.perf_counter() - t
    print(json.dumps([wall, est.stats_.get("kernel_build_time", 0.0)]))


# ----------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--problems", default=",".join(["lasso", "svm", *CLASSIFICATION,
                                                     "cal_housing", "casp"]))  # fmt: skip
    ap.add_argument("--first-fit", nargs=4, metavar=("DIR", "KIND", "REG", "TOL"),
                    help=argparse.SUPPRESS)  # fmt: skip
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--target", type=float, default=1e-5, help="relative suboptimality")
    ap.add_argument("--max-time", type=float, default=300.0, help="per solver and ladder, s")
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--out", default="peers")
    args = ap.parse_args()
    if args.first_fit:
        return first_fit_child(*args.first_fit)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(THREADS)
    except ImportError:
        pass
    q = args.quick
    problems = {}
    for p in args.problems.split(","):
        if p == "lasso":
            problems["lasso dense"] = (
                "lasso",
                *make_lasso(*((1000, 4000) if q else (8000, 40000))),
            )
        elif p == "svm":
            X, y = make_svm(*((20000, 200) if q else (200000, 1000)))
            problems["svm dense"] = ("svm", X, y, 1.0)
        elif p in CLASSIFICATION:
            f, dense, kinds, C_l1 = CLASSIFICATION[p]
            if (DATA / f).exists():
                X, y = load_classification(f, dense)
                problems.update(classification_problems(p, X, y, kinds, C_l1))
            else:
                say(f"({p}: {DATA / f} not present, left out)")
        elif p in ("cal_housing", "casp"):
            f = f"{p}.csv.gz"
            if (DATA / f).exists():
                problems[f"lasso {p}"] = ("lasso", *load_regression(f))
            else:
                say(f"({p}: {DATA / f} not present, left out)")
        else:
            ap.error(f"unknown problem {p!r}")
    pass_gbs, copy_gbs, label = device_bandwidths(*((1000, 2000) if q else (4000, 8000)))
    say(f"machine: {platform.machine()} {platform.processor()}, {THREADS} threads for every "
        f"solver; duhl-cl on {label}, float32; target relative suboptimality {args.target:g}; "
        f"median of {args.repeats}")  # fmt: skip
    say(f"device bandwidth: pass over a resident dense working set {pass_gbs:.2f} GB/s, copy "
        f"kernel {copy_gbs:.2f} GB/s ({100 * pass_gbs / copy_gbs:.0f}%)")  # fmt: skip
    results = {"bandwidth": {"pass_GBps": pass_gbs, "copy_GBps": copy_gbs}, "problems": {}}
    for pname, (kind, X, y, reg) in problems.items():
        objective = lambda X, y, w, r=reg, f=OBJECTIVES[kind]: f(X, y, w, r)  # noqa: E731
        solvers, missing = peer_solvers(kind)
        for b in ("all fits", "10%"):
            solvers.update(duhl_solvers(kind, b, args.max_time))
        shape = f"{X.shape[0]} x {X.shape[1]}{' sparse' if sp.issparse(X) else ''}"
        say(f"\n{pname}: {shape}, {'alpha' if kind == 'lasso' else 'C'} = {reg:.4g}"
            + (f"; not installed: {', '.join(missing)}" if missing else ""))  # fmt: skip
        # The best known objective: a float64 duhl-cl fit with a certified gap far below the
        # target (objective - optimum <= gap); a solver that goes lower still sets it.
        f_best, gap = reference_objective(kind, X, y, reg, args.target, objective)
        say(f"  reference objective {f_best:.10g}, certified gap {gap:.1e} (duhl-cl, float64)")
        say(f"  {'solver':34s} {'time s':>9s} {'tol':>8s} {'rel. subopt.':>13s}")
        rows = {}
        for name, fit in solvers.items():
            times, subs, tols = [], [], []
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    fit(X, y, reg, LADDER[0])  # a budget too small is refused at once
            except dc.MemoryBudgetError as exc:
                rows[name] = {"time": None, "refused": str(exc)}
                say(f"  {name:34s}   refused: {str(exc).split(';')[0]}")
                continue
            for _ in range(args.repeats):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    t, f, tol = first_to_target(
                        fit, X, y, reg, objective, f_best, args.target, args.max_time
                    )
                times.append(t)
                subs.append((f - f_best) / abs(f_best))
                tols.append(tol)
                if not np.isfinite(t):
                    break
            med = statistics.median(times)
            rows[name] = {"time": med, "tol": tols[-1], "rel_subopt": max(subs)}
            shown = f"{med:9.3f}" if np.isfinite(med) else "  not reached"
            extra = ""
            if name == "duhl-cl (all fits)" and tols[-1] is not None:
                wall, build = first_fit(X, y, kind, reg, tols[-1])
                rows[name].update(first_fit=wall, first_fit_build=build)
                extra = f"   first fit {wall:.3f} s (kernel builds {build:.3f} s)"
            say(f"  {name:34s} {shown:>9s} {tols[-1] if tols[-1] else '-':>8} "
                f"{max(subs):13.2e}{extra}")  # fmt: skip
        peers = [r["time"] for n, r in rows.items() if not n.startswith("duhl")]
        best_peer = min(peers) if peers else float("nan")
        for n, r in rows.items():
            if n.startswith("duhl") and r["time"] is not None and np.isfinite(r["time"]):
                say(f"  {n}: {r['time'] / best_peer:.2f}x the best peer's time")
        results["problems"][pname] = {"f_best": f_best, "solvers": rows}
        Path(args.out + ".json").write_text(json.dumps(results, indent=1))
        write_table(args.out + ".txt")
    plot(results, args.out)


def plot(results, out):
    plt = pyplot()
    if plt is None:
        return
    probs = results["problems"]
    fig, axes = plt.subplots(len(probs), 1, figsize=(8, 1.2 + 1.6 * len(probs)), squeeze=False)
    for ax, (pname, res) in zip(axes[:, 0], probs.items(), strict=True):
        names = list(res["solvers"])
        t = [res["solvers"][n]["time"] for n in names]
        finite = [x if x is not None and np.isfinite(x) else np.nan for x in t]
        colors = ["C0" if n.startswith("duhl") else "C7" for n in names]
        ax.barh(names, finite, color=colors)
        ax.set_xscale("log")
        ax.set_title(pname, fontsize=9)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("seconds to the target objective (log)")
    fig.tight_layout()
    fig.savefig(out + ".png", dpi=100)
    print(f"plot written to {out}.png")


if __name__ == "__main__":
    main()
