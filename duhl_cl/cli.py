"""The ``duhl-cl`` command line: devices, train, predict, demo."""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

import numpy as np

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
    from .solver import format_round

    X, y = load_dataset(args.data, target=args.target)
    scaling = None
    if args.standardize:
        X, scaling = _standardize(X)
    est = _make_estimator(args)
    log = _JsonLog(args.log)
    print(
        f"duhl-cl train: model {args.model}, data {args.data} ({X.shape[0]} x {X.shape[1]}"
        f"{', sparse' if hasattr(X, 'nnz') else ''}), device {args.device}"
        f"{' (emulated on PoCL)' if args.emulate else ''}",
        flush=True,
    )
    t0 = time.perf_counter()

    def progress(rec):
        log(rec)
        print("  " + format_round(rec), flush=True)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            est.fit(X, y, callback=progress)
        finally:
            log.close()
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    dt = time.perf_counter() - t0
    print(f"device      {est.device_}")
    print(f"passes      {est.n_iter_}   time {dt:.2f} s   converged {est.converged_}")
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
    from .discovery import enumerate_devices, matches
    from .profiles import format_size, list_profiles, load_profile

    profiles = [load_profile(p) for p in list_profiles()]
    devices = enumerate_devices()
    if not devices:
        print("no OpenCL devices found; install one, e.g. 'pip install pocl-binary-distribution'")
    for info, _ in devices:
        prof = [p.name for p in profiles if matches(p, info)]
        print(f"{info.describe()}")
        print(f"    vendor {info.vendor}, {info.version}, {info.compute_units} compute units")
        print(
            f"    global memory {format_size(info.global_mem)}, largest allocation "
            f"{format_size(info.max_alloc)}, fp64 {'yes' if info.fp64 else 'no'}"
        )
        print(
            f"    profiles: {', '.join(prof) if prof else '(none match; any profile can run emulated on PoCL)'}"
        )
    print("\nprofiles shipped:")
    for p in profiles:
        print(
            f"  {p.name:16s} budget {format_size(p.budget):>10s}  variant {p.kernel_variant:8s} "
            f"{p.precision}  {p.description}"
        )
    return 0


def demo_problem(n_samples=4000, n_features=2000, seed=0):
    """The embedded default: a dense Lasso with a sparse truth, generated deterministically."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features)).astype(np.float32)
    truth = np.zeros(n_features)
    support = rng.choice(n_features, 40, replace=False)
    truth[support] = rng.choice([-1.0, 1.0], 40) * rng.uniform(0.5, 2.0, 40)
    y = X @ truth + 0.5 * rng.standard_normal(n_samples)
    return X, y, support


def cmd_demo(args):
    from . import estimators as E

    X, y, support = demo_problem()
    alpha_max = np.max(np.abs(X.T.astype(np.float64) @ (y - y.mean()))) / X.shape[0]
    alpha = 0.05 * alpha_max
    print(
        f"duhl-cl demo: Lasso on a generated {X.shape[0]} x {X.shape[1]} float32 problem with "
        f"{len(support)} true features, alpha = 0.05 alpha_max = {alpha:.4g}, device "
        f"{args.device}{' (emulated on PoCL)' if args.emulate else ''}",
        flush=True,
    )
    est = E.Lasso(
        alpha=alpha, tol=1e-6, random_state=0, device=args.device, emulate=args.emulate, verbose=1
    )
    t0 = time.perf_counter()
    est.fit(X, y)
    dt = time.perf_counter() - t0
    found = set(np.flatnonzero(est.coef_))
    print(f"\ndevice      {est.device_}")
    print(f"passes      {est.n_iter_} in {dt:.2f} s")
    print(f"objective   {est.objective_:.10g}")
    print(
        f"certificate objective - optimum <= {est.dual_gap_:.3e} (tol * scale = {1e-6 * 2 * _f0(y):.3e})"
    )
    print(
        f"support     {len(found)} nonzeros, {len(found & set(support.tolist()))} of the {len(support)} true features"
    )
    print(
        f"bytes moved host->device {est.stats_['bytes_h2d'] / 2**20:.1f} MiB, device->host {est.stats_['bytes_d2h'] / 2**20:.1f} MiB"
    )
    return 0 if est.converged_ else 1


def _f0(y):
    yc = y - y.mean()
    return 0.5 * (yc @ yc) / len(y)


def build_parser():
    p = argparse.ArgumentParser(prog="duhl-cl", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    def device_args(q):
        q.add_argument(
            "--device",
            default="pocl-cpu",
            help="profile name or path to a .toml profile (default pocl-cpu)",
        )
        q.add_argument(
            "--emulate", action="store_true", help="run the profile on PoCL if its device is absent"
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
    q.add_argument("--out", help="write the model (.npz)")
    q.add_argument("--log", help="write one JSON line per pass")
    q.set_defaults(func=cmd_train)

    q = sub.add_parser("predict", help="predict with a saved model")
    q.add_argument("--model", required=True, help="a model .npz written by 'train --out'")
    q.add_argument("--data", required=True)
    q.add_argument("--out", help="file for the predictions (default stdout)")
    q.set_defaults(func=cmd_predict)

    q = sub.add_parser("devices", help="list OpenCL platforms, devices and matching profiles")
    q.set_defaults(func=cmd_devices)

    q = sub.add_parser("demo", help="train the embedded default problem and print its certificate")
    device_args(q)
    q.set_defaults(func=cmd_demo)
    return p


def main(argv=None):
    from .discovery import DeviceError
    from .ledger import MemoryBudgetError
    from .profiles import ProfileError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ProfileError, DeviceError, MemoryBudgetError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
