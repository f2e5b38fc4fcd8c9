"""The duhl-cl command line, run as a user would (a subprocess for the installed script)."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

import duhl_cl as dc
from duhl_cl.cli import main
from duhl_cl.device.discovery import host_cpu_profile
from duhl_cl.io import load_svmlight


def _write_svmlight(path, X, y):
    with open(path, "w") as f:
        for row, label in zip(X, y, strict=True):
            feats = " ".join(f"{j + 1}:{v:.6g}" for j, v in enumerate(row) if v != 0)
            f.write(f"{label:+d} {feats}\n")


@pytest.fixture
def svm_file(tmp_path, classification_data):
    X, y = classification_data
    p = tmp_path / "train.svm"
    _write_svmlight(p, X, np.where(y == 1, 1, -1))
    return p


def test_svmlight_reader(svm_file, classification_data):
    X, y = classification_data
    Xr, yr = load_svmlight(svm_file)
    assert sp.issparse(Xr) and Xr.shape == X.shape
    np.testing.assert_allclose(Xr.toarray(), X, rtol=1e-5)
    np.testing.assert_array_equal(yr, np.where(y == 1, 1, -1))


def test_train_predict_roundtrip(tmp_path, svm_file, device, capsys):
    model, log = tmp_path / "m.npz", tmp_path / "run.jsonl"
    rc = main(["train", "--model", "svm", "--C", "0.1", "--data", str(svm_file), "--test", str(svm_file),
               "--out", str(model), "--log", str(log), "--tol", "1e-6"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    assert "certified duality gap" in out and "train accuracy" in out and "test accuracy" in out
    records = [json.loads(line) for line in log.read_text().splitlines()]
    keys = {"round", "time", "gap", "objective", "n_resident", "n_swapped_in", "bytes_h2d", "bytes_d2h",
            "n_gap_refreshes", "device_time", "host_time", "ledger_peak"}  # fmt: skip
    assert records and all(keys <= set(r) for r in records)
    assert "round " in out  # a line of progress per round
    rc = main(
        [
            "predict",
            "--model",
            str(model),
            "--data",
            str(svm_file),
            "--out",
            str(tmp_path / "p.txt"),
        ]
    )
    assert rc == 0
    preds = np.loadtxt(tmp_path / "p.txt")
    assert set(np.unique(preds)) <= {-1.0, 1.0} and len(preds) == 240


def test_model_files_of_either_layout_predict_alike(tmp_path, svm_file, device, capsys):
    """A classifier's file holds coef (1, n_features) and intercept (1,) now; a file written
    before (1-D coef, scalar intercept) still loads and predicts the same."""
    from duhl_cl.io import load_model

    new = tmp_path / "m.npz"
    assert main(["train", "--model", "svm", "--data", str(svm_file), "--out", str(new)]) == 0
    coef, intercept, classes, meta = load_model(new)
    assert coef.shape == (1, 20) and intercept.shape == (1,)
    z = dict(np.load(new))
    old = tmp_path / "old.npz"
    np.savez(old, coef=z["coef"].ravel(), intercept=np.asarray(float(z["intercept"][0])),
             classes=z["classes"], meta=z["meta"])  # fmt: skip
    preds = []
    for f in (new, old):
        assert main(["predict", "--model", str(f), "--data", str(svm_file), "--out",
                     str(tmp_path / f"{f.stem}.txt")]) == 0  # fmt: skip
        preds.append(np.loadtxt(tmp_path / f"{f.stem}.txt"))
    np.testing.assert_array_equal(preds[0], preds[1])
    X, y = load_svmlight(svm_file)
    np.testing.assert_array_equal(preds[0], classes[(X @ coef[0] + intercept[0] > 0).astype(int)])


def test_train_npz_regression(tmp_path, regression_data, device, capsys):
    X, y = regression_data
    p = tmp_path / "d.npz"
    np.savez(p, X=X, y=y)
    assert main(["train", "--model", "lasso", "--alpha", "0.05", "--data", str(p)]) == 0
    assert "nonzeros" in capsys.readouterr().out
    args = ["train", "--model", "lasso", "--alpha", "0.05", "--data", str(p), "--budget", "30%"]
    assert main([*args, "--passes-per-round", "auto"]) == 0
    with pytest.raises(SystemExit):
        main([*args, "--passes-per-round", "0"])
    assert "expected an integer >= 1 or 'auto', got '0'" in capsys.readouterr().err


def test_bad_cli_input_is_a_clear_error(tmp_path, svm_file, capsys):
    """Every input error is one 'error:' line and exit status 2 (these exited 1 before)."""
    for extra, says in (
        (["--model", "lasso", "--C", "1"], "--C applies to the classifiers"),
        (["--model", "svm", "--l1-ratio", "0.5"], "--l1-ratio applies to elasticnet"),
        (["--model", "svm", "--standardize"], "--standardize needs dense data"),
        (["--model", "svm", "--test", str(tmp_path / "no.svm")], "test data file"),
    ):
        assert main(["train", *extra, "--data", str(svm_file)]) == 2
        got = capsys.readouterr()
        assert got.err.startswith(f"error: {says}") and "round" not in got.out, got
    assert main(["train", "--model", "svm", "--data", str(tmp_path / "missing.svm")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_device_fault_exits_1_with_its_message(svm_file, device, capsys, monkeypatch):
    import pyopencl as cl

    from duhl_cl import kernels

    error = cl.RuntimeError("clEnqueueNDRangeKernel failed: OUT_OF_RESOURCES")

    def failing(*args, **kwargs):
        raise error

    for variant in ("serial", "tpa", "bucketed"):
        monkeypatch.setattr(kernels.pass_routine(variant), "enqueue", failing)
    assert main(["train", "--model", "svm", "--data", str(svm_file)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "the device failed while launching" in err
    assert main(["train", "--model", "svm", "--data", str(svm_file), "--device", "nope"]) == 2
    assert "unknown device profile 'nope'" in capsys.readouterr().err


def test_devices_and_demo_scripts(device):
    exe = shutil.which("duhl-cl") or None
    cmd = [exe] if exe else [sys.executable, "-m", "duhl_cl.cli"]
    out = subprocess.run(cmd + ["devices"], capture_output=True, text=True, check=True).stdout
    assert f"profiles: {host_cpu_profile()}" in out and "global memory" in out and "fp64" in out
    r = subprocess.run(cmd + ["demo", "--plot", ""], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "speed-up of duhl over sequential" in r.stdout
    table = {
        line.split()[0]: line.split()
        for line in r.stdout.splitlines()
        if line.startswith(("duhl ", "sequential "))
    }
    assert set(table) == {"duhl", "sequential"}
    # Both certified on the same problem: each objective lies in [optimum, optimum + its gap],
    # so they differ by at most the larger gap (plus the printed rounding, 8 decimals). Equal
    # printed objectives are not implied (a clean-clone run printed 6.42183458 and 6.42175865).
    f_d, f_s = float(table["duhl"][5]), float(table["sequential"][5])
    gap = max(float(table["duhl"][4]), float(table["sequential"][4]))
    assert abs(f_d - f_s) <= gap + 1e-8
    # DuHL moved fewer bytes at the same budget.
    assert float(table["duhl"][3]) * 3 < float(table["sequential"][3])


def test_emulated_train_says_so(svm_file, device, capsys):
    assert (
        main(
            [
                "train",
                "--model",
                "logistic",
                "--data",
                str(svm_file),
                "--device",
                "gpu-8gb",
                "--emulate",
            ]
        )
        == 0
    )
    assert "emulated" in capsys.readouterr().out


def test_train_predict_multiclass(tmp_path, device, capsys):
    """Three classes: one-vs-rest; each class's certificate is printed, the model file
    predicts the estimator's classes."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 5))
    y = np.argmax(X @ rng.standard_normal((5, 3)), 1) + 1
    data, model = tmp_path / "mc.svm", tmp_path / "mc.npz"
    with open(data, "w") as f:
        for xi, yi in zip(X, y, strict=True):
            f.write(f"{yi} " + " ".join(f"{j + 1}:{v:.6f}" for j, v in enumerate(xi)) + "\n")
    assert main(["train", "--model", "logistic", "--data", str(data), "--out", str(model),
                 "--tol", "1e-8"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert all(f"class {c}.0: objective" in out for c in (1, 2, 3))
    assert "largest certified duality gap" in out
    assert main(["predict", "--model", str(model), "--data", str(data), "--out",
                 str(tmp_path / "p.txt")]) == 0  # fmt: skip
    preds = np.loadtxt(tmp_path / "p.txt")
    est = dc.LogisticRegression(tol=1e-8, device=device).fit(X.round(6), y)
    np.testing.assert_array_equal(preds, est.predict(X.round(6)))


def test_output_paths_checked_before_training(tmp_path, svm_file, capsys):
    missing = tmp_path / "no" / "m.npz"
    assert main(["train", "--model", "svm", "--data", str(svm_file), "--out", str(missing)]) == 2
    err = capsys.readouterr()
    assert "--out" in err.err and "does not exist" in err.err and "round" not in err.out
    assert main(["train", "--model", "svm", "--data", str(svm_file), "--log", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_predict_into_a_closed_pipe_ends_quietly(tmp_path, device):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30000, 2))
    data, model = tmp_path / "big.svm", tmp_path / "m.npz"
    with open(data, "w") as f:
        f.writelines(f"{1 if a > b else -1} 1:{a:.3f} 2:{b:.3f}\n" for a, b in X)
    assert main(["train", "--model", "svm", "--data", str(data), "--out", str(model),
                 "--max-iter", "5"]) == 0  # fmt: skip
    cmd = f"{sys.executable} -m duhl_cl.cli predict --model {model} --data {data} | head -n 2"
    proc = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 2
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def _rounds_printed(out):
    return [int(line.split()[1]) for line in out.splitlines() if line.startswith("  round ")]


def _records(log):
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_each_round_printed_once_and_the_log_ends_final(tmp_path, svm_file, device, capsys):
    """Converged or stopped at max_iter, each round is printed once (a stopped fit's last
    round was printed again with its certificate), and the log has one record per round,
    the last completed and marked final with how the fit ended."""
    log = tmp_path / "run.jsonl"
    for extra, converged, reason in (
        ([], True, "converged"),
        (["--tol", "1e-12", "--max-iter", "3"], False, "max_iter"),
    ):
        assert main(["train", "--model", "svm", "--data", str(svm_file), "--log", str(log),
                     *extra]) == 0  # fmt: skip
        out = capsys.readouterr().out
        records = _records(log)
        n = len(records)
        assert _rounds_printed(out) == list(range(1, n + 1)), out
        assert [r["round"] for r in records] == list(range(1, n + 1))
        assert [bool(r.get("final")) for r in records] == [False] * (n - 1) + [True]
        last = records[-1]
        assert last["converged"] is converged and last["stop_reason"] == reason
        assert last["gap"] is not None and f"certified duality gap {last['gap']:.3e}" in out
        assert last["kernel_build_time"] >= 0 and last["fit_time"] > last["kernel_build_time"]


def test_a_fit_stopped_short_says_so_and_exits_0(tmp_path, svm_file, device, capsys):
    """max_iter / max_time before the tolerance: exit 0, one 'not converged' line naming the
    stop, the gap against its target and the option to change (not the library's warning
    as well)."""
    base = ["train", "--model", "svm", "--data", str(svm_file), "--tol", "1e-12"]
    assert main([*base, "--max-iter", "3"]) == 0
    got = capsys.readouterr()
    lines = [ln for ln in got.err.splitlines() if ln.startswith("not converged")]
    assert len(lines) == 1, got.err
    assert re.fullmatch(
        r"not converged: stopped at max_iter=3 with certified duality gap \S+ > tol x scale = "
        r"\S+ \(--tol 1e-12\); raise --max-iter or loosen --tol",
        lines[0],
    ), lines[0]
    assert "Stopped after" not in got.err and "converged False" in got.out
    assert main([*base, "--max-time", "1e-9"]) == 0
    err = capsys.readouterr().err
    assert "not converged: stopped at max_time=1e-09 s (0 rounds)" in err
    assert "raise --max-time or loosen --tol" in err
    assert main(["train", "--model", "svm", "--data", str(svm_file)]) == 0
    assert "not converged" not in capsys.readouterr().err


def test_ctrl_c_writes_the_model_so_far_and_exits_130(
    tmp_path, svm_file, device, capsys, monkeypatch
):
    """Ctrl-C after round 2 (raised where the progress line is printed): the model so far is
    written and loads, the log ends with the interrupted fit's final record, exit 130."""
    from duhl_cl.cli import train
    from duhl_cl.io import load_model

    class Interrupted(train.Progress):
        def __call__(self, rec):
            super().__call__(rec)
            if rec["round"] == 2 and not rec.get("final"):
                raise KeyboardInterrupt

    monkeypatch.setattr(train, "Progress", Interrupted)
    model, log = tmp_path / "m.npz", tmp_path / "run.jsonl"
    rc = main(["train", "--model", "svm", "--data", str(svm_file), "--tol", "1e-12",
               "--max-iter", "100", "--out", str(model), "--log", str(log)])  # fmt: skip
    got = capsys.readouterr()
    assert rc == 130
    assert "interrupted after 2 rounds (certified duality gap" in got.err
    assert f"the model so far is written to {model}" in got.err
    assert "not converged" not in got.err and "train accuracy" not in got.out
    coef, intercept, classes, meta = load_model(model)
    assert coef.shape == (1, 20) and np.isfinite(meta["dual_gap"])
    records = _records(log)
    assert [r["round"] for r in records] == [1, 2]
    assert records[-1]["final"] and records[-1]["stop_reason"] == "interrupted"
    assert records[-1]["gap"] == pytest.approx(meta["dual_gap"])


def test_sigint_to_the_command_writes_the_model_and_exits_130(tmp_path, svm_file, device):
    """A real SIGINT to a running 'duhl-cl train' (a fit that would run for minutes)."""
    model = tmp_path / "m.npz"
    # float64 throughout when the device has it: no float32 -> float64 switch mid-fit
    dtype = ["--dtype", "float64"] if device.fp64 else []
    cmd = [sys.executable, "-m", "duhl_cl.cli", "train", "--model", "svm", "--data",
           str(svm_file), "--tol", "1e-300", "--max-iter", "1000000", "--out", str(model),
           *dtype]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("  round "):
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "the model so far is written to" in err and "Traceback" not in err, err
    assert model.is_file() and "model written to" in out


def test_first_fit_says_it_builds_kernels_and_how_long(tmp_path, svm_file, device):
    """A fresh process with fresh compiler caches: the build notice on stderr, with its
    measured seconds, and the fit's time says the build is included."""
    env = dict(os.environ, POCL_CACHE_DIR=str(tmp_path / "pocl"),
               XDG_CACHE_HOME=str(tmp_path / "cache"))  # fmt: skip
    cmd = [sys.executable, "-m", "duhl_cl.cli", "train", "--model", "svm", "--data",
           str(svm_file)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    notice = re.search(r"^building kernels for (.+) \.\.\. (\d+\.\d+) s \((\d+) programs?\)$",
                       r.stderr, re.M)  # fmt: skip
    assert notice, r.stderr
    assert notice[1] in r.stdout  # the device's label, as the summary names it
    built = float(notice[2])
    m = re.search(r"time (\d+\.\d+) s \(kernel build (\d+\.\d+) s included\)", r.stdout)
    assert m, r.stdout
    assert float(m[2]) == pytest.approx(built, abs=0.011) and float(m[1]) >= float(m[2])
