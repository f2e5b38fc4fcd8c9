"""Out of core: a dense hinge SVM and a dense Lasso of many GiB on disk, under a host memory
limit set from outside the package (a cgroup v1 memory group) and a device budget of a few
percent of the data.

The data is generated here, seeded, so that the optimum is known: the rows of a small
in-memory problem repeated k times (the SVM with C/k, the Lasso with the same alpha have
the small problem's optimum, solved in memory first). Each method runs in a child process
moved into the memory group; between runs the page cache is dropped. Reported per method:
time to a certified relative gap (gap / objective) of 1e-4 and 1e-5 (the fit's wall time,
from the history of the one fit that runs to 1e-5), bytes read from disk (the package's
count and the kernel's read_bytes of the process), bytes moved to the device, the host
ledger's peak and the process's peak resident memory (all of it, and the anonymous part).

Methods: "duhl" (gap-ranked device and host cache), "pagecache" (gap-ranked device, no host
cache of the package's own: every read through the operating system's page cache),
"sequential" (consecutive blocks streamed from disk in turn, no host cache: the usual
out-of-core approach).

Run as root (the memory group)::

    python benchmarks/out_of_core.py --size-gib 16 --limit-gib 4 --device-frac 0.05
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CGROUP = Path("/sys/fs/cgroup/memory")
TARGETS = (1e-4, 1e-5)


# -- the problems -------------------------------------------------------------------------
def svm_small(n0, d, seed, over=8):
    """A separable problem with a margin: y = sign(X w*), the rows nearest the boundary
    dropped (n0 kept of over x n0), so that the support vectors are a small part of the
    rows (hinge, C = 1, 16384 x 1024: 6.3% of the rows have margin <= 1)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((over * n0, d), dtype=np.float32) / np.float32(np.sqrt(d))
    w = rng.standard_normal(d)
    s = X @ w
    keep = np.argsort(-np.abs(s))[:n0]
    keep.sort()
    X, s = X[keep], s[keep]
    return np.ascontiguousarray(X), np.where(s > 0, 1.0, -1.0)


def lasso_small(n0, d, seed):
    """Correlated Gaussian columns (rho 0.5 with a common factor), a sparse truth, noise."""
    rng = np.random.default_rng(seed)
    f = rng.standard_normal((n0, 1))
    X = (np.sqrt(0.5) * rng.standard_normal((n0, d)) + np.sqrt(0.5) * f).astype(np.float32)
    truth = np.zeros(d)
    k = 20
    truth[rng.choice(d, k, replace=False)] = rng.choice([-1.0, 1.0], k) * rng.uniform(0.5, 2, k)
    y = X @ truth + 0.5 * rng.standard_normal(n0)
    yc = y - y.mean()
    alpha = 0.05 * float(np.max(np.abs(X.T @ yc))) / n0
    return np.asfortranarray(X), y, alpha


def write_store(path, kind, X0, y0, k):
    """The small problem's rows repeated k times, as a store in the model's layout."""
    from duhl_cl.store.disk import StoreWriter

    n0, d = X0.shape
    if kind == "svm":
        with StoreWriter(path, layout="rows", dtype="float32", sparse=False, n_features=d,
                         n_samples=n0 * k, overwrite=True) as w:  # fmt: skip
            for _ in range(k):
                w.append_dense(X0)
            return w.finish(y=np.tile(y0, k))
    with StoreWriter(path, layout="cols", dtype="float32", sparse=False, n_samples=n0 * k,
                     n_features=d, overwrite=True) as w:  # fmt: skip
        step = max(1, (64 << 20) // (4 * n0 * k))
        for j in range(0, d, step):
            cols = X0[:, j : j + step].T  # (m, n0)
            w.append_dense(np.tile(cols, (1, k)))
        return w.finish(y=np.tile(y0, k))


def estimator(kind, C_or_alpha, **kw):
    import duhl_cl as dc

    if kind == "svm":
        return dc.LinearSVC(C=C_or_alpha, loss="hinge", **kw)
    return dc.Lasso(alpha=C_or_alpha, **kw)


# -- one run, in a child process inside the memory group ----------------------------------
def child(cfg):
    if cfg.get("cgroup"):
        (Path(cfg["cgroup"]) / "cgroup.procs").write_text(str(os.getpid()))
    import warnings

    import duhl_cl as dc

    warnings.simplefilter("ignore")
    data = dc.store.open(cfg["store"])
    y = data.y
    t_hit = {}
    t0 = [None]

    trace = open(cfg["trace"], "a") if cfg.get("trace") else None  # noqa: SIM115

    def callback(rec):
        if trace is not None:
            # A run the memory limit kills leaves its rounds and its memory here.
            keep = {k: rec.get(k) for k in ("round", "time", "gap", "cert_time", "host_peak")}
            trace.write(json.dumps({**keep, "anon": _anon_now()}) + "\n")
            trace.flush()
        if rec["gap"] is None or rec.get("objective") is None:
            return True
        rel = rec["gap"] / abs(rec["objective"])
        for t in TARGETS:
            if rel <= t and t not in t_hit:
                t_hit[t] = time.perf_counter() - t0[0]
        return True

    # tol: the fit stops by itself at a relative gap of 1e-5 (tol x scale = 1e-5 x the
    # optimum; the scale is the small problem's, the same for the repeated one); dtype None:
    # the store's float32, continued in float64 where float32 stalls.
    est = estimator(cfg["kind"], cfg["param"], tol=cfg["tol"], max_iter=100000,
                    max_time=cfg["max_time"], memory_budget=cfg["device_budget"],
                    host_budget=cfg["host_budget"], policy=cfg["policy"], random_state=0)  # fmt: skip
    io0 = _io_read_bytes()
    anon = _AnonPeak()
    t0[0] = time.perf_counter()
    est.fit(data, y, callback=callback)
    wall = time.perf_counter() - t0[0]
    if trace is not None:
        trace.close()
    anon.stop()
    st = est.stats_
    out = {
        "method": cfg["method"], "kind": cfg["kind"], "wall": wall,
        "t_1e-4": t_hit.get(1e-4), "t_1e-5": t_hit.get(1e-5),
        "objective": est.objective_, "gap": est.dual_gap_, "rounds": est.n_iter_,
        "bytes_disk": st["bytes_disk"], "os_read_bytes": _io_read_bytes() - io0,
        "bytes_h2d": st["bytes_h2d"], "host_peak": st["host_peak"],
        "host_budget": st["host_budget"], "device_budget": st["budget"],
        "in_from_host": st["in_from_host"], "in_from_disk": st["in_from_disk"],
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak_anon": anon.peak,
        "stop": st["stop_reason"],
        # (round, time, certified gap or None, bytes read from disk, in from host, from disk,
        # the round's device, host-refresh and certificate seconds, coordinates bounded by its
        # certificate)
        "history": [(r["round"], round(r["time"], 3), r["gap"], r["bytes_disk"],
                     r["in_from_host"], r["in_from_disk"], round(r["device_time"], 3),
                     round(r["host_time"], 3), round(r["cert_time"], 3),
                     r.get("cert_bounded", 0)) for r in est.history_],
    }  # fmt: skip
    if cfg.get("cgroup"):
        out["cgroup_max_usage"] = int(
            (Path(cfg["cgroup"]) / "memory.max_usage_in_bytes").read_text()
        )
    print("RESULT " + json.dumps(out), flush=True)


class _AnonPeak:
    """The process's peak anonymous resident memory (RssAnon, sampled every 20 ms): what
    the memory limit bounds. ru_maxrss also counts file-backed pages: the shared libraries'
    (the OpenCL runtime's, read and charged before the process entered the memory group),
    which are reclaimable or charged elsewhere (the store is read with preadv into the
    host ledger's buffers, never memory-mapped)."""

    def __init__(self):
        import threading

        self.peak, self._done = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._done.wait(0.02):
            self.peak = max(self.peak, _anon_now())

    def stop(self):
        self._done.set()
        self._thread.join()


def _anon_now():
    """The process's anonymous resident bytes now (RssAnon)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


def _io_read_bytes():
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("read_bytes:"):
            return int(line.split()[1])
    return 0


def make_cgroup(limit):
    g = CGROUP / "duhl_ooc"
    if not CGROUP.exists() or os.geteuid() != 0:
        return None
    g.mkdir(exist_ok=True)
    (g / "memory.limit_in_bytes").write_text(str(limit))
    try:
        (g / "memory.max_usage_in_bytes").write_text("0")
    except OSError:
        pass
    return g


def drop_caches():
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3")
    except OSError:
        pass


# -- the driver ---------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-gib", type=float, default=16.0, help="data size per model (GiB)")
    ap.add_argument("--limit-gib", type=float, default=4.0, help="host memory limit (cgroup)")
    ap.add_argument("--device-frac", type=float, default=0.05, help="device budget / data")
    ap.add_argument(
        "--host-budget-gib",
        type=float,
        default=None,
        help="duhl's host_budget (default: limit - device budget - 1.5 GiB)",
    )
    ap.add_argument("--dir", default="/work/scratch/ooc", help="where the stores go")
    ap.add_argument("--models", default="lasso,svm")
    ap.add_argument("--methods", default="duhl,pagecache,sequential")
    ap.add_argument("--max-time", type=float, default=900.0, help="seconds per run")
    ap.add_argument("--out", default=None, help="write the JSON results here")
    ap.add_argument("_child", nargs="?", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._child:
        return child(json.loads(a._child))
    import duhl_cl as dc

    root = Path(a.dir)
    root.mkdir(parents=True, exist_ok=True)
    limit = int(a.limit_gib * 2**30)
    group = make_cgroup(limit)
    print(f"host limit {a.limit_gib} GiB " + (f"(cgroup {group})" if group else
          "NOT ENFORCED (not root or no cgroup v1 memory controller)"), flush=True)  # fmt: skip
    entries = int(a.size_gib * 2**30) // 4
    results = []
    for kind in a.models.split(","):
        if kind == "svm":
            d, n0 = 1024, 16384
            k = max(1, entries // (d * n0))
            X0, y0 = svm_small(n0, d, seed=0)
            param_small = 1.0
            param = param_small / k
        else:
            d, n0 = 1024, 4096
            k = max(1, entries // (d * n0))
            X0, y0, param_small = lasso_small(n0, d, seed=0)
            param = param_small
        t = time.perf_counter()
        ref = estimator(kind, param_small, tol=1e-10, max_iter=100000, memory_budget="200%",
                        random_state=0, dtype="float64").fit(X0.astype(np.float64), y0)  # fmt: skip
        print(f"{kind}: small problem {n0} x {d} solved in memory in "
              f"{time.perf_counter() - t:.1f} s: objective {ref.objective_:.10g} (gap "
              f"{ref.dual_gap_:.1e})", flush=True)  # fmt: skip
        path = root / f"{kind}-{a.size_gib:g}gib"
        t = time.perf_counter()
        try:
            data = dc.store.open(path)
            fresh = data.shape != (n0 * k, d)
        except Exception:  # noqa: BLE001 -- not there yet
            fresh = True
        if fresh:
            data = write_store(path, kind, X0, y0, k)
            print(f"{kind}: wrote {path} in {time.perf_counter() - t:.1f} s", flush=True)
        print(f"{kind}: store {data.shape[0]} x {data.shape[1]} float32, {data.nbytes / 2**30:.2f} "
              f"GiB on disk, layout {data.layout}; k = {k} copies", flush=True)  # fmt: skip
        device_budget = int(a.device_frac * data.nbytes)
        hb = a.host_budget_gib
        # What the process holds beside the ledger's data: the device's buffers (a CPU
        # device's are host memory), the OpenCL runtime, Python, the O(n) vectors and the
        # certificate's temporaries (a 16 GiB SVM: 1.1 GiB of anonymous memory above the
        # ledger and the device at its peak; with 1.25 GiB left it was killed once).
        host_budget = (
            int(hb * 2**30) if hb else int(max(limit - device_budget - 1.5 * 2**30, limit / 4))
        )
        for method in a.methods.split(","):
            policy = "sequential" if method == "sequential" else "duhl"
            # No host cache of the package's own: the least host budget the reads need.
            hbud = host_budget if method == "duhl" else 1
            if hbud == 1:
                from duhl_cl.store.tiered import TieredStore

                hbud = TieredStore(
                    data, primal=kind == "lasso", host_budget=1 << 62
                ).reserve_bytes()
            scale = ref.stats_["gap_target"] / ref.tol
            cfg = {"kind": kind, "method": method, "store": str(path), "param": param,
                   "tol": TARGETS[-1] * ref.objective_ / scale,
                   "policy": policy, "device_budget": device_budget, "host_budget": hbud,
                   "max_time": a.max_time, "cgroup": str(group) if group else None,
                   "trace": str(root / f"{kind}-{method}.trace.jsonl")}  # fmt: skip
            Path(cfg["trace"]).unlink(missing_ok=True)
            drop_caches()
            if group:
                try:
                    (group / "memory.max_usage_in_bytes").write_text("0")
                except OSError:
                    pass
            proc = subprocess.run([sys.executable, __file__, json.dumps(cfg)],
                                  capture_output=True, text=True)  # fmt: skip
            res = None
            for line in proc.stdout.splitlines():
                if line.startswith("RESULT "):
                    res = json.loads(line[7:])
            if res is None:
                res = {"method": method, "kind": kind, "failed": proc.returncode,
                       "stderr": proc.stderr[-2000:], "trace": cfg["trace"]}  # fmt: skip
                lines = (
                    Path(cfg["trace"]).read_text().splitlines()
                    if Path(cfg["trace"]).exists()
                    else []
                )
                if lines:
                    res["last_round"] = json.loads(lines[-1])
            else:
                res["optimum_small"] = ref.objective_
            results.append(res)
            print(json.dumps({k: v for k, v in res.items() if k != "history"}), flush=True)
    _table(results)
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=1))


def _table(results):
    def f(x, unit=1, fmt="{:.1f}"):
        return "-" if x is None else fmt.format(x / unit)

    print("\n| model | method | t to 1e-4 (s) | t to 1e-5 (s) | rounds | read from disk (GiB) "
          "| OS read_bytes (GiB) | to device (GiB) | host ledger peak (GiB) | peak RSS (GiB) "
          "| peak anonymous RSS (GiB) | objective - small optimum |")  # fmt: skip
    print("|" + "---|" * 12)
    for r in results:
        if "failed" in r:
            print(f"| {r['kind']} | {r['method']} | failed (exit {r['failed']}) |" + " |" * 9)
            continue
        g = 2**30
        print(f"| {r['kind']} | {r['method']} | {f(r['t_1e-4'])} | {f(r['t_1e-5'])} | "
              f"{r['rounds']} | {f(r['bytes_disk'], g, '{:.2f}')} | "
              f"{f(r['os_read_bytes'], g, '{:.2f}')} | {f(r['bytes_h2d'], g, '{:.2f}')} | "
              f"{f(r['host_peak'], g, '{:.2f}')} | {f(r['peak_rss'], g, '{:.2f}')} | "
              f"{f(r.get('peak_anon'), g, '{:.2f}')} | "
              f"{r['objective'] - r['optimum_small']:.2e} |")  # fmt: skip


if __name__ == "__main__":
    main()
