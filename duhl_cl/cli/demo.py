"""``duhl-cl demo``: DuHL against streaming on the embedded default problem (the quick start)."""

from __future__ import annotations

import time
import warnings

import numpy as np

from .args import device_args
from .progress import Progress

__all__ = ["add_demo", "cmd_demo", "demo_problem"]


def add_demo(sub):
    q = sub.add_parser("demo", help="DuHL against streaming on the embedded default problem")
    device_args(q)
    q.add_argument(
        "--budget", default="10%", help="device memory: a fraction of the data or a size"
    )
    q.add_argument("--tol", type=float, default=1e-5)
    q.add_argument(
        "--plot", default="duhl-demo.png", help="PNG of gap vs time and bytes ('' for none)"
    )
    q.set_defaults(func=cmd_demo)


def demo_problem(n_samples=2000, n_features=20000, seed=0):
    """The embedded default: a dense float32 Lasso with a sparse truth, made deterministically.

    160 MB of data: far larger than the demonstration's device budget (10% of it).
    """
    rng = np.random.default_rng(seed)
    # Column-major: the layout a primal fit keeps on the host (no copy inside fit).
    X = np.asfortranarray(rng.standard_normal((n_samples, n_features), dtype=np.float32))
    truth = np.zeros(n_features)
    support = rng.choice(n_features, 50, replace=False)
    truth[support] = rng.choice([-1.0, 1.0], 50) * rng.uniform(0.5, 2.0, 50)
    y = X @ truth + 0.5 * rng.standard_normal(n_samples)
    return X, y, support


def cmd_demo(args):
    from .. import estimators as E
    from ..device.profiles import format_size

    X, y, support = demo_problem()
    alpha = 0.05 * np.max(np.abs(X.T @ (y - y.mean()).astype(np.float32))) / X.shape[0]
    data_bytes = X.nbytes
    budget = args.budget
    print(
        f"duhl-cl demo: Lasso on a generated {X.shape[0]} x {X.shape[1]} float32 problem "
        f"({format_size(data_bytes)}) with {len(support)} true features, alpha = 0.05 alpha_max, "
        f"device {args.device or 'the host CPU'}{' (emulated)' if args.emulate else ''}, memory budget "
        f"{budget} of the data",
        flush=True,
    )
    # Build the kernels first (a cold PoCL cache compiles for seconds), so that neither timed
    # fit pays for it; the policies share every kernel.
    print("building the kernels for this device...", flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        E.Lasso(
            alpha=alpha, max_iter=1, device=args.device, emulate=args.emulate, random_state=0
        ).fit(X[:64, :64], y[:64])
    runs = {}
    for policy in ("duhl", "sequential"):
        print(f"\npolicy {policy}:", flush=True)
        est = E.Lasso(
            alpha=alpha, tol=args.tol, random_state=0, device=args.device, emulate=args.emulate,
            memory_budget=budget, policy=policy, max_iter=5000,
        )  # fmt: skip
        progress = Progress()
        t0 = time.perf_counter()
        est.fit(X, y, callback=progress)
        progress.close()
        runs[policy] = (est, time.perf_counter() - t0)
    d, s = runs["duhl"], runs["sequential"]
    print(
        f"\ndevice {d[0].device_}, budget {format_size(d[0].stats_['budget'])} for {format_size(data_bytes)} of data"
    )
    print(
        f"{'policy':12s} {'time s':>8s} {'rounds':>7s} {'MiB to device':>14s} {'certified gap':>14s} {'objective':>14s}"
    )
    for name, (est, t) in runs.items():
        print(
            f"{name:12s} {t:8.2f} {est.n_iter_:7d} {est.stats_['bytes_h2d'] / 2**20:14.1f} "
            f"{est.dual_gap_:14.3e} {est.objective_:14.8f}"
        )
    print(
        f"speed-up of duhl over sequential: {s[1] / d[1]:.1f}x in time, "
        f"{s[0].stats_['bytes_h2d'] / max(d[0].stats_['bytes_h2d'], 1):.1f}x fewer bytes moved"
    )
    found = set(np.flatnonzero(d[0].coef_))
    print(
        f"duhl's support: {len(found)} nonzeros, {len(found & set(support.tolist()))} of the {len(support)} true features"
    )
    if args.plot:
        _demo_plot(runs, args.plot)
    return 0 if all(est.converged_ for est, _ in runs.values()) else 1


def _demo_plot(runs, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"(no plot: matplotlib is not installed; pip install 'duhl-cl[plot]' to get {path})")
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for i, (name, (est, _)) in enumerate(runs.items()):
        h = est.history_
        t = np.array([r["time"] for r in h])
        mb = np.cumsum([r.get("bytes_h2d", 0) for r in h]) / 2**20
        est_gap = np.array(
            [r["gap"] if r["gap"] is not None else (r.get("gap_estimate") or np.nan) for r in h]
        )
        cert = np.array([r["gap"] is not None for r in h])
        color = f"C{i}"
        for ax, x in ((axes[0], t), (axes[1], mb)):
            ax.semilogy(x, est_gap, "-", color=color, alpha=0.6, label=f"{name} (gap per round)")
            ax.semilogy(x[cert], est_gap[cert], "o", color=color, label=f"{name} (certified)")
    axes[0].set_xlabel("time (s)")
    axes[1].set_xlabel("MiB moved host -> device")
    for ax in axes:
        ax.set_ylabel("duality gap")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(
        f"duhl-cl demo: Lasso at a {runs['duhl'][0].stats_['budget'] / 2**20:.0f} MiB budget"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"plot written to {path}")
