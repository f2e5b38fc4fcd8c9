"""``duhl-cl train`` and ``duhl-cl predict``: a model from a data file, and its predictions.

The estimator comes from the model table (duhl_cl.models.table): ``--model`` names a row,
whose estimator, arguments and strength parameter (``--alpha`` or ``--C``) are used.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from ..duhl.policies import POLICIES
from ..kernels import VARIANTS
from ..models import MODELS, model_names, model_spec
from .args import device_args, passes_arg
from .progress import Progress, _BuildNotice, _JsonLog

__all__ = ["add_train", "add_predict", "cmd_train", "cmd_predict", "Progress"]


def _short_names():
    return ", ".join(f"{a} = {s.name}" for s in MODELS for a in s.aliases)


def add_train(sub):
    q = sub.add_parser("train", help="train a model on a data file")
    q.add_argument(
        "--model", required=True, choices=model_names(aliases=True), metavar="MODEL",
        help=f"one of {', '.join(model_names())} (short: {_short_names()})",
    )  # fmt: skip
    q.add_argument(
        "--alpha", type=float, help="regularisation of lasso/elasticnet/ridge (default 1.0)"
    )
    q.add_argument(
        "--C", type=float, help="inverse regularisation of the classifiers (default 1.0)"
    )
    q.add_argument("--l1-ratio", type=float, help="elasticnet's l1 share (default 0.5)")
    q.add_argument(
        "--data", required=True,
        help=".svm/.svm.gz, .npz (X, y), .npy (+ _y.npy), .csv, or a store directory "
        "written by 'duhl-cl convert' (read from disk, never loaded whole)",
    )  # fmt: skip
    q.add_argument("--target", help="CSV: name of the target column (default: the last)")
    _header_arg(q)
    q.add_argument(
        "--standardize",
        action="store_true",
        help="scale dense features to zero mean, unit variance",
    )
    q.add_argument("--test", help="a test data file in the same format")
    device_args(q)
    q.add_argument(
        "--tol",
        type=float,
        default=1e-4,
        help="stop when the certified duality gap is below tol x the objective's scale "
        "(default 1e-4)",
    )
    q.add_argument("--max-iter", type=int, default=1000, help="rounds at most (default 1000)")
    q.add_argument("--max-time", type=float, help="seconds at most (checked between rounds)")
    q.add_argument(
        "--seed", type=int, default=0, help="seeds the shuffles and the selection (default 0)"
    )
    q.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        help="device precision (default: the profile's, refined in float64 where float32 stalls)",
    )
    q.add_argument("--no-intercept", action="store_true", help="fit no intercept")
    q.add_argument(
        "--budget",
        help="device memory for this fit: bytes, '64MiB' or a fraction of the data, '10%%'",
    )
    q.add_argument(
        "--host-budget",
        help="--data a store: host memory for its coordinates (a cache ranked by gap, and the "
        "reads' buffers): bytes, '2GiB' or a fraction of the store, '25%%' (default: the "
        "whole store where half the memory this process can spare holds it, else that half)",
    )
    q.add_argument("--policy", default="duhl", choices=POLICIES)
    q.add_argument(
        "--passes-per-round",
        type=passes_arg,
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


def _header_arg(q):
    q.add_argument(
        "--header",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="CSV: the first row is a header (--header) or data (--no-header); default: "
        "a header when it does not parse as numbers",
    )


def add_predict(sub):
    q = sub.add_parser("predict", help="predict with a saved model")
    q.add_argument("--model", required=True, help="a model .npz written by 'train --out'")
    q.add_argument("--data", required=True)
    q.add_argument("--out", help="file for the predictions (default stdout)")
    _header_arg(q)
    q.set_defaults(func=cmd_predict)


def _make_estimator(args):
    from .. import estimators as E

    spec = model_spec(args.model)
    strength, other = ("alpha", "C") if spec.regularization == "alpha" else ("C", "alpha")
    if getattr(args, other) is not None:
        kind = "regressors" if other == "alpha" else "classifiers"
        raise ValueError(
            f"--{other} applies to the {kind}; --model {args.model} takes --{strength}"
        )
    if args.l1_ratio is not None and spec.name != "elasticnet":
        raise ValueError(f"--l1-ratio applies to elasticnet, not --model {args.model}")
    kwargs = dict(
        spec.params,
        fit_intercept=not args.no_intercept,
        tol=args.tol,
        max_iter=args.max_iter,
        max_time=args.max_time,
        random_state=args.seed,
        device=args.device,
        emulate=args.emulate,
        dtype=args.dtype,
        memory_budget=args.budget,
        host_budget=args.host_budget,
        policy=args.policy,
        passes_per_round=args.passes_per_round,
        kernel_variant=args.kernel_variant,
    )
    kwargs[strength] = 1.0 if getattr(args, strength) is None else getattr(args, strength)
    if spec.name == "elasticnet":
        kwargs["l1_ratio"] = 0.5 if args.l1_ratio is None else args.l1_ratio
    return getattr(E, spec.estimator)(**kwargs)


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
    if st.get("small_for_device"):
        print(f"note        {st['small_for_device']}")
    if st.get("host_budget") is not None:
        print(
            f"disk        read {st['bytes_disk'] / 2**20:.1f} MiB, host memory peak "
            f"{st['host_peak'] / 2**20:.1f} MiB of {st['host_budget'] / 2**20:.1f} MiB; "
            f"incoming from the host cache {st['in_from_host']}, from disk {st['in_from_disk']}"
        )


def _standardize(X):
    import scipy.sparse as sp

    if sp.issparse(X):
        raise ValueError("--standardize needs dense data (it would densify sparse X)")
    X = np.asarray(X, dtype=np.float64)
    mu, sd = X.mean(axis=0), X.std(axis=0)
    sd[sd == 0] = 1.0
    return (X - mu) / sd, {"mean": mu.tolist(), "std": sd.tolist()}


def _check_writable(path, what):
    """Refuse an output path whose directory is missing or not writable, before any work."""
    if path in (None, "-"):
        return
    parent = Path(path).expanduser().resolve().parent
    if not parent.is_dir():
        raise ValueError(f"{what} {path!r}: directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{what} {path!r}: directory {str(parent)!r} is not writable")
    if Path(path).is_dir():
        raise ValueError(f"{what} {path!r} is a directory; give a file name")
    if Path(path).exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{what} {path!r} exists and is not writable; remove it or give another")


def cmd_train(args):
    """Train, report, write the model; 0 (converged or not: a fit stopped by --max-iter or
    --max-time says so on stderr), or 130 on Ctrl-C, after writing the model so far."""
    from ..device.build import watch_builds

    _check_writable(args.out, "--out")
    _check_writable(args.log, "--log")
    if args.test and not Path(args.test).is_file():
        raise ValueError(f"test data file {args.test!r} does not exist")
    X, y = _load_train(args)
    # The test set is read (and its width checked) before the fit, so that a wrong test
    # file is an error before any training, not after it.
    test = _load_test(args, X.shape[1]) if args.test else None
    scaling = None
    if args.standardize:
        X, scaling = _standardize(X)
    est = _make_estimator(args)
    log = _JsonLog(args.log)
    print(
        f"duhl-cl train: model {args.model}, data {args.data} ({X.shape[0]} x {X.shape[1]}"
        f"{', sparse' if getattr(X, 'sparse', hasattr(X, 'nnz')) else ''}"
        f"{', on disk' if Path(args.data).is_dir() else ''}), device {args.device or 'the host CPU'}"
        f"{' (emulated on the host CPU)' if args.emulate else ''}",
        flush=True,
    )
    t0 = time.perf_counter()
    notice = _BuildNotice()
    progress = Progress(log, before_line=notice.end)
    notice.before_open = progress.end_bar
    try:
        with warnings.catch_warnings(record=True) as caught, watch_builds(notice):
            warnings.simplefilter("always")
            try:
                est.fit(X, y, callback=progress)
            finally:
                notice.end()
        dt = time.perf_counter() - t0
        # Ctrl-C in the rounds ends the fit with the model so far (duhl_cl.duhl.rounds); the
        # command writes it, then ends as an interrupt (130).
        interrupted = est.stats_["stop_reason"] == "interrupted"
        progress.close(
            final={
                "converged": bool(est.converged_),
                "stop_reason": est.stats_["stop_reason"],
                "fit_time": dt,
                "kernel_build_time": est.stats_["kernel_build_time"],
            }
        )
    finally:
        progress.close()
        log.close()
    _print_warnings(caught)
    _report_fit(est, dt, args)
    # The model first: nothing after the fit (the test set, Ctrl-C) may lose it.
    if args.out:
        _write_model(est, X, scaling, args)
    if interrupted:
        # (no scores: the user asked to stop, and they are passes over the data)
        kept = f"the model so far is written to {args.out}" if args.out else "no --out: not kept"
        print(
            f"interrupted after {est.n_iter_} rounds (certified duality gap "
            f"{np.max(est.dual_gap_):.3e}): {kept}",
            file=sys.stderr,
        )
        return 130
    _report_scores(est, X, y, scaling, args, test)
    if not est.converged_:
        print(_not_converged(est, args), file=sys.stderr)
    return 0


def _print_warnings(caught):
    from ..duhl.solver import ConvergenceWarning

    for w in caught:
        # The plain "stopped by max_iter/max_time" warning says in the library's terms what
        # the "not converged:" line says in the options' (_not_converged); other advice
        # (a float32 floor, the classes still open) is kept.
        if issubclass(w.category, ConvergenceWarning) and str(w.message).endswith(
            "the model so far is returned. Increase max_iter or max_time, or loosen tol."
        ):
            continue
        print(f"warning: {w.message}", file=sys.stderr)


def _build_note(est):
    built = est.stats_["kernel_build_time"]
    if built > 0:
        return f"kernel build {built:.2f} s included"
    return "no kernel build: built before in this process"


def _report_fit(est, dt, args):
    print(
        f"device      {est.device_}, policy {est.policy}, kernel variant "
        f"{est.stats_['kernel_variant']}, time {dt:.2f} s ({_build_note(est)}), "
        f"converged {est.converged_}"
    )
    ref = est.stats_.get("refinement")
    if ref:
        if ref.get("refused"):
            print(f"precision   {est.stats_['dtype']}; a {ref['dtype']} refinement from round "
                  f"{ref['round']} did not fit: {ref['refused']}")  # fmt: skip
        else:
            print(f"precision   {est.stats_['dtype']}, then {ref['dtype']} from round "
                  f"{ref['round']} (the {est.stats_['dtype']} gap had stalled at {ref['gap']:.3e})")  # fmt: skip
    _summary(est)
    if est.stats_["emulated"]:
        from ..projection import Projection

        proj = Projection(**est.stats_["projected"])
        print(
            f"measured    {dt:.2f} s on the host CPU (emulating {proj.profile}), {_build_note(est)}"
        )
        print(f"projected   {proj.describe()}")
    if np.ndim(est.dual_gap_):
        # one-vs-rest: each class's problem has its own certificate
        for c, obj, gap in zip(est.classes_, est.objective_, est.dual_gap_, strict=True):
            print(f"class {c}: objective {obj:.12g}  certified duality gap {gap:.3e}")
        print(f"largest certified duality gap {np.max(est.dual_gap_):.3e}  (per class: "
              f"objective - optimum <= gap)")  # fmt: skip
    else:
        print(f"objective   {est.objective_:.12g}")
        print(f"certified duality gap {est.dual_gap_:.3e}  (objective - optimum <= gap)")


def _load_train(args):
    """(X, y): a data file read into memory, or an on-disk store opened (its labels)."""
    from ..io import load_dataset
    from ..store import open as open_store

    if Path(args.data).is_dir():
        if args.standardize:
            raise ValueError(
                "--standardize needs the data in memory; a store is read from disk as written "
                "(standardise before converting)"
            )
        X = open_store(args.data)
        if X.y is None:
            raise ValueError(f"store {args.data} has no labels; convert from a file that has them")
        return X, X.y
    if args.host_budget is not None:
        raise ValueError(
            "--host-budget applies to a store (--data a directory from 'duhl-cl convert'); "
            "data read from a file is in memory already"
        )
    return load_dataset(args.data, target=args.target, header=args.header)


def _load_test(args, n_features):
    """The --test data (X, y), refused where it is wider than the training data."""
    from ..io import load_dataset

    Xt, yt = load_dataset(args.test, n_features=n_features, target=args.target,
                          header=args.header)  # fmt: skip
    if Xt.shape[1] != n_features:
        # (predict refuses the same file: a test set wider than the training set is another
        # problem, not one to cut down silently)
        raise ValueError(
            f"{args.test}: the test data has {Xt.shape[1]} features, the training data "
            f"{n_features}; test on data with the training set's features"
        )
    return Xt, yt


def _report_scores(est, X, y, scaling, args, test=None):
    regressor = model_spec(args.model).regressor
    if regressor:
        print(
            f"nonzeros    {int(np.count_nonzero(est.coef_))} of {est.coef_.size}   train R^2 {est.score(X, y):.4f}"
        )
    else:
        print(f"train accuracy {est.score(X, y):.4f}")
    if test is not None:
        Xt, yt = test
        if scaling:
            Xt = (np.asarray(Xt) - np.asarray(scaling["mean"])) / np.asarray(scaling["std"])
        label = "test R^2" if regressor else "test accuracy"
        print(f"{label} {est.score(Xt, yt):.4f}")


def _write_model(est, X, scaling, args):
    from ..io import save_model

    meta = {
        "model": model_spec(args.model).name,
        "params": {
            k: v
            for k, v in est.get_params().items()
            if isinstance(v, (int, float, str, bool, type(None)))
        },
        "dual_gap": np.asarray(est.dual_gap_).tolist(),
        "objective": np.asarray(est.objective_).tolist(),
        "n_features": X.shape[1],
        "device": est.device_,
        "scaling": scaling,
    }
    save_model(args.out, est, meta)
    print(f"model written to {args.out}")


def _not_converged(est, args):
    """The line that says a fit stopped short of its tolerance, and which option to change."""
    st = est.stats_
    if st["stop_reason"] == "max_time":
        where, option = f"max_time={args.max_time:g} s ({est.n_iter_} rounds)", "--max-time"
    else:
        where, option = f"max_iter={args.max_iter}", "--max-iter"
    if np.ndim(est.dual_gap_):
        gap = (
            f"certified duality gaps above the tolerance (largest {np.max(est.dual_gap_):.3e}, "
            f"--tol {args.tol:g})"
        )
    else:
        gap = (
            f"certified duality gap {est.dual_gap_:.3e} > tol x scale = {st['gap_target']:.3e} "
            f"(--tol {args.tol:g})"
        )
    return f"not converged: stopped at {where} with {gap}; raise {option} or loosen --tol"


def cmd_predict(args):
    from ..io import load_dataset, load_model

    coef, intercept, classes, meta = load_model(args.model)
    X, y = load_dataset(args.data, n_features=meta["n_features"], header=args.header)
    if X.shape[1] != meta["n_features"]:
        raise ValueError(
            f"the data has {X.shape[1]} features, the model expects {meta['n_features']}"
        )
    if meta.get("scaling"):
        X = (np.asarray(X, dtype=np.float64) - np.asarray(meta["scaling"]["mean"])) / np.asarray(
            meta["scaling"]["std"]
        )
    if classes is not None and len(coef) > 1:
        # one-vs-rest: the class of the largest decision value
        pred = classes[np.argmax(np.asarray(X @ coef.T, dtype=np.float64) + intercept, axis=1)]
    elif classes is not None:
        f = np.asarray(X @ coef[0], dtype=np.float64).ravel() + intercept[0]
        pred = classes[(f > 0).astype(int)]
    else:
        pred = np.asarray(X @ coef, dtype=np.float64).ravel() + intercept
    _check_writable(args.out, "--out")
    out = sys.stdout if args.out in (None, "-") else open(args.out, "w")
    try:
        out.write("".join(f"{p}\n" for p in pred))
        out.flush()
    except BrokenPipeError:
        # `duhl-cl predict ... | head`: the reader has what it wanted; end quietly (and
        # keep Python's exit flush from raising again on the closed pipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
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
