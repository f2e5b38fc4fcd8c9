"""The ``duhl-cl`` command line: devices, train, predict, demo."""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

import numpy as np

from .duhl.policies import POLICIES
from .kernels import VARIANTS

__all__ = ["main"]

MODELS = ("lasso", "elasticnet", "ridge", "svm", "svm-sq", "logistic", "logistic-l1")


def _make_estimator(args):
    from . import estimators as E

    common = dict(
        fit_intercept=not args.no_intercept,
        tol=args.tol,
        max_iter=args.max_iter,
        max_time=args.max_time,
        random_state=args.seed,
        device=args.device,
        emulate=args.emulate,
        dtype=args.dtype,
        memory_budget=args.budget,
        policy=args.policy,
        passes_per_round=args.passes_per_round,
        kernel_variant=args.kernel_variant,
    )
    m = args.model
    if m in ("lasso", "elasticnet", "ridge") and args.C is not None:
        raise SystemExit(f"error: --C applies to the classifiers; --model {m} takes --alpha")
    if m in ("svm", "svm-sq", "logistic", "logistic-l1") and args.alpha is not None:
        raise SystemExit(f"error: --alpha applies to the regressors; --model {m} takes --C")
    alpha = 1.0 if args.alpha is None else args.alpha
    C = 1.0 if args.C is None else args.C
    if m == "lasso":
        return E.Lasso(alpha=alpha, **common)
    if m == "elasticnet":
        return E.ElasticNet(alpha=alpha, l1_ratio=args.l1_ratio, **common)
    if m == "ridge":
        return E.Ridge(alpha=alpha, **common)
    if m in ("svm", "svm-sq"):
        return E.LinearSVC(C=C, loss="hinge" if m == "svm" else "squared_hinge", **common)
    return E.LogisticRegression(penalty="l2" if m == "logistic" else "l1", C=C, **common)


class Progress:
    """Per-round progress: one updating bar on a terminal, plain lines otherwise; feeds the log."""

    def __init__(self, log=None, stream=None):
        self.log, self.stream = log, stream or sys.stdout
        self.tty = self.stream.isatty()
        self.open = False

    def __call__(self, rec):
        from .duhl.solver import format_round

        if self.log is not None:
            self.log(rec)
        line = format_round(rec)
        if self.tty:
            self.stream.write("\r\033[K" + line[:160])
            self.open = True
        else:
            self.stream.write("  " + line + "\n")
        self.stream.flush()

    def close(self):
        if self.open:
            self.stream.write("\n")
            self.open = False


def _summary(est):
    h = [r for r in est.history_ if "n_swapped_in" in r]
    st = est.stats_
    print(
        f"rounds      {est.n_iter_}   swapped in {sum(r['n_swapped_in'] for r in h)} coordinates   "
        f"gap refreshes {sum(r['n_gap_refreshes'] for r in h)}"
    )
    print(
        f"bytes       host->device {st['bytes_h2d'] / 2**20:.1f} MiB, device->host "
        f"{st['bytes_d2h'] / 2**20:.1f} MiB, device memory peak {st['ledger_peak'] / 2**20:.1f} MiB"
        f" of {st['budget'] / 2**20:.1f} MiB"
    )
    print(
        f"time        device {sum(r['device_time'] for r in h):.2f} s, host refresh "
        f"{sum(r['host_time'] for r in h):.2f} s (overlapping)"
    )


class _JsonLog:
    def __init__(self, path):
        self.f = open(path, "w") if path else None

    def __call__(self, record):
        if self.f:
            self.f.write(json.dumps(record) + "\n")
            self.f.flush()

    def close(self):
        if self.f:
            self.f.close()


def _standardize(X):
    import scipy.sparse as sp

    if sp.issparse(X):
        raise SystemExit("error: --standardize needs dense data (it would densify sparse X)")
    X = np.asarray(X, dtype=np.float64)
    mu, sd = X.mean(axis=0), X.std(axis=0)
    sd[sd == 0] = 1.0
    return (X - mu) / sd, {"mean": mu.tolist(), "std": sd.tolist()}


def cmd_train(args):
    from .io import load_dataset, save_model

    X, y = load_dataset(args.data, target=args.target)
    scaling = None
    if args.standardize:
        X, scaling = _standardize(X)
    est = _make_estimator(args)
    log = _JsonLog(args.log)
    print(
        f"duhl-cl train: model {args.model}, data {args.data} ({X.shape[0]} x {X.shape[1]}"
        f"{', sparse' if hasattr(X, 'nnz') else ''}), device {args.device or 'the host CPU'}"
        f"{' (emulated on the host CPU)' if args.emulate else ''}",
        flush=True,
    )
    t0 = time.perf_counter()

    progress = Progress(log)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            est.fit(X, y, callback=progress)
        finally:
            log.close()
    progress.close()
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    dt = time.perf_counter() - t0
    print(
        f"device      {est.device_}, policy {est.policy}, kernel variant "
        f"{est.stats_['kernel_variant']}, time {dt:.2f} s, converged {est.converged_}"
    )
    _summary(est)
    if est.stats_["emulated"]:
        from .projection import Projection

        proj = Projection(**est.stats_["projected"])
        print(f"measured    {dt:.2f} s on the host CPU (emulating {proj.profile})")
        print(f"projected   {proj.describe()}")
    print(f"objective   {est.objective_:.12g}")
    print(f"certified duality gap {est.dual_gap_:.3e}  (objective - optimum <= gap)")
    if args.model in ("lasso", "elasticnet", "ridge"):
        print(
            f"nonzeros    {int(np.count_nonzero(est.coef_))} of {est.coef_.size}   train R^2 {est.score(X, y):.4f}"
        )
    else:
        print(f"train accuracy {est.score(X, y):.4f}")
    if args.test:
        Xt, yt = load_dataset(args.test, n_features=X.shape[1], target=args.target)
        if scaling:
            Xt = (np.asarray(Xt) - np.asarray(scaling["mean"])) / np.asarray(scaling["std"])
        label = "test R^2" if args.model in ("lasso", "elasticnet", "ridge") else "test accuracy"
        print(f"{label} {est.score(Xt[:, : X.shape[1]], yt):.4f}")
    if args.out:
        meta = {
            "model": args.model,
            "params": {
                k: v
                for k, v in est.get_params().items()
                if isinstance(v, (int, float, str, bool, type(None)))
            },
            "dual_gap": est.dual_gap_,
            "objective": est.objective_,
            "n_features": X.shape[1],
            "device": est.device_,
            "scaling": scaling,
        }
        save_model(args.out, est, meta)
        print(f"model written to {args.out}")
    return 0


def cmd_predict(args):
    from .io import load_dataset, load_model

    coef, intercept, classes, meta = load_model(args.model)
    X, y = load_dataset(args.data, n_features=meta["n_features"])
    if X.shape[1] != meta["n_features"]:
        raise SystemExit(
            f"error: the data has {X.shape[1]} features, the model expects {meta['n_features']}"
        )
    if meta.get("scaling"):
        X = (np.asarray(X, dtype=np.float64) - np.asarray(meta["scaling"]["mean"])) / np.asarray(
            meta["scaling"]["std"]
        )
    f = np.asarray(X @ coef).ravel() + intercept
    pred = classes[(f > 0).astype(int)] if classes is not None else f
    out = sys.stdout if args.out in (None, "-") else open(args.out, "w")
    for p in pred:
        out.write(f"{p}\n")
    if out is not sys.stdout:
        out.close()
    if classes is not None:
        print(f"accuracy {np.mean(pred == y):.4f} on {len(y)} samples", file=sys.stderr)
    else:
        print(
            f"mean squared error {np.mean((pred - y) ** 2):.6g} on {len(y)} samples",
            file=sys.stderr,
        )
    return 0


def cmd_devices(args):
    from .device.discovery import _NO_CPU_FIX, enumerate_devices, matches, usable
    from .device.profiles import format_size, list_profiles, load_profile

    profiles = [load_profile(p) for p in list_profiles()]
    devices = enumerate_devices()
    if not devices:
        print(f"no OpenCL devices found; {_NO_CPU_FIX}")
    for info, _ in devices:
        prof = [p.name for p in profiles if matches(p, info)]
        print(f"{info.describe()}")
        print(f"    vendor {info.vendor}, {info.version}, {info.compute_units} compute units")
        print(
            f"    global memory {format_size(info.global_mem)}, largest allocation "
            f"{format_size(info.max_alloc)}, fp64 {'yes' if info.fp64 else 'no'}"
        )
        print(
            f"    profiles: {', '.join(prof) if prof else '(none match; any profile can run emulated on the host CPU)'}"
        )
        why = usable(info) if "oclgrind" not in info.platform.lower() else None
        if why:
            print(f"    cannot compile kernels here: {why}")
    print("\nprofiles shipped:")
    for p in profiles:
        banks = f"{p.banks} x {format_size(p.bank_size)}" if p.banks > 1 else "1 bank"
        print(
            f"  {p.name:16s} budget {format_size(p.budget):>10s}  {banks:16s} variant "
            f"{p.kernel_variant:8s} {p.precision}  {p.build:8s}  {p.description}"
        )
    return 0


def cmd_build_kernels(args):
    from .device.binaries import build_binaries
    from .device.discovery import open_device

    device = open_device(args.device)
    print(
        f"duhl-cl build-kernels: {device.info.name} ({device.info.platform}), profile "
        f"{device.profile.name}, into {args.out}",
        flush=True,
    )
    t0 = time.perf_counter()
    n = build_binaries(
        device, args.out, models=args.model, dtypes=args.dtype, variants=args.variant
    )
    print(
        f"{n} programs built in {time.perf_counter() - t0:.1f} s; a profile loads them with "
        f'build = "prebuilt" and binaries = "{args.out}" in its [kernel] section'
    )
    return 0


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
    from . import estimators as E
    from .device.profiles import format_size

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


def build_parser():
    p = argparse.ArgumentParser(prog="duhl-cl", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    def device_args(q):
        q.add_argument(
            "--device",
            default=None,
            help="profile name or path to a .toml profile (default: the host CPU, pocl-cpu, "
            "or intel-cpu where PoCL cannot compile)",
        )
        q.add_argument(
            "--emulate",
            action="store_true",
            help="run the profile on the host CPU device if its own device is absent",
        )

    q = sub.add_parser("train", help="train a model on a data file")
    q.add_argument("--model", required=True, choices=MODELS)
    q.add_argument(
        "--alpha", type=float, help="regularisation of lasso/elasticnet/ridge (default 1.0)"
    )
    q.add_argument(
        "--C",
        type=float,
        help="inverse regularisation of svm/svm-sq/logistic/logistic-l1 (default 1.0)",
    )
    q.add_argument("--l1-ratio", type=float, default=0.5)
    q.add_argument(
        "--data", required=True, help=".svm/.svm.gz, .npz (X, y), .npy (+ _y.npy) or .csv"
    )
    q.add_argument("--target", help="CSV: name of the target column (default: the last)")
    q.add_argument(
        "--standardize",
        action="store_true",
        help="scale dense features to zero mean, unit variance",
    )
    q.add_argument("--test", help="a test data file in the same format")
    device_args(q)
    q.add_argument("--tol", type=float, default=1e-4)
    q.add_argument("--max-iter", type=int, default=1000)
    q.add_argument("--max-time", type=float)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--dtype", choices=("float32", "float64"))
    q.add_argument("--no-intercept", action="store_true")
    q.add_argument(
        "--budget",
        help="device memory for this fit: bytes, '64MiB' or a fraction of the data, '10%%'",
    )
    q.add_argument("--policy", default="duhl", choices=POLICIES)
    q.add_argument(
        "--passes-per-round",
        type=_passes,
        default="auto",
        help="passes over the resident set per round: an integer >= 1, or 'auto' (the "
        "default: 8, more while every coordinate with a positive gap is resident)",
    )
    q.add_argument(
        "--kernel-variant",
        choices=VARIANTS,
        help="the device pass (default: the profile's)",
    )
    q.add_argument("--out", help="write the model (.npz)")
    q.add_argument("--log", help="write one JSON line per round")
    q.set_defaults(func=cmd_train)

    q = sub.add_parser("predict", help="predict with a saved model")
    q.add_argument("--model", required=True, help="a model .npz written by 'train --out'")
    q.add_argument("--data", required=True)
    q.add_argument("--out", help="file for the predictions (default stdout)")
    q.set_defaults(func=cmd_predict)

    q = sub.add_parser(
        "build-kernels", help="compile every kernel for a device and save the binaries"
    )
    q.add_argument("--device", required=True, help="profile name or path of the device")
    q.add_argument("--out", required=True, help="directory for the binaries and manifest.json")
    q.add_argument("--model", action="append", choices=MODELS, help="only this model (repeatable)")
    q.add_argument(
        "--dtype", action="append", choices=("float32", "float64"), help="only this precision"
    )
    q.add_argument(
        "--variant",
        action="append",
        choices=VARIANTS,
        help="only this kernel variant (repeatable)",
    )
    q.set_defaults(func=cmd_build_kernels)

    q = sub.add_parser("devices", help="list OpenCL platforms, devices and matching profiles")
    q.set_defaults(func=cmd_devices)

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
    return p


def _passes(text):
    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1 or 'auto', got {text!r}")
    return n


def main(argv=None):
    from .device.binaries import PrebuiltError
    from .device.discovery import DeviceError
    from .device.ledger import MemoryBudgetError
    from .device.profiles import ProfileError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (
        ProfileError,
        DeviceError,
        MemoryBudgetError,
        PrebuiltError,
        ValueError,
        FileNotFoundError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
