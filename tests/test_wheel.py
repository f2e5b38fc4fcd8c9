"""The package works installed from a wheel (non-editable): kernels and profiles ship inside.

The wheel goes into a fresh virtual environment; its dependencies come from the test
environment through a .pth file, so that the check needs no network and imports duhl_cl from
the wheel only (the source tree is not on the path: the fit runs in an empty directory).
"""

import site
import subprocess
import sys
import sysconfig
from pathlib import Path

from duhl_cl.device.discovery import host_cpu_profile

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_in_fresh_venv_runs_a_fit(tmp_path, device):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        check=True,
    )
    (wheel,) = wheels.glob("duhl_cl-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True
    )
    purelib = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    deps = [
        p
        for p in site.getsitepackages() + [sysconfig.get_paths()["purelib"]]
        if "site-packages" in p
    ]
    Path(purelib, "test-deps.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    code = (
        "import numpy as np, duhl_cl, pathlib\n"
        "assert 'site-packages' in duhl_cl.__file__, duhl_cl.__file__\n"
        "from duhl_cl.resources import kernels_dir, devices_dir\n"
        "assert (kernels_dir() / 'cd_pass.cl').is_file() and (devices_dir() / 'pocl-cpu.toml').is_file()\n"
        "rng = np.random.default_rng(0); X = rng.standard_normal((80, 6)).astype(np.float32)\n"
        "est = duhl_cl.Lasso(alpha=0.05).fit(X, X[:, 0] - X[:, 1])\n"
        "assert est.converged_, est.dual_gap_\n"
        "print('ok', est.n_iter_, est.dual_gap_)\n"
    )
    r = subprocess.run([str(py), "-c", code], cwd=work, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("ok")
    r = subprocess.run(
        [str(venv / "bin" / "duhl-cl"), "devices"], cwd=work, capture_output=True, text=True
    )
    assert r.returncode == 0 and host_cpu_profile() in r.stdout, r.stderr
