"""Prebuilt kernels end to end on the host CPU device: build-kernels, save, load, fit; and the errors when
the binaries are missing or were built for another device."""

import json

import numpy as np
import pytest
from helpers import edited_profile

import duhl_cl as dc
from duhl_cl.cli import main
from duhl_cl.device import binaries
from duhl_cl.device.binaries import PrebuiltError
from duhl_cl.device.discovery import host_cpu_profile


def _profile(directory, binaries_dir):
    return edited_profile(
        directory,
        [
            (f'name = "{host_cpu_profile()}"', 'name = "pocl-prebuilt"'),
            ('build = "source"', 'build = "prebuilt"'),
            ('binaries = ""', f'binaries = "{binaries_dir}"'),
        ],
        name="pocl-prebuilt.toml",
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory, device):
    out = tmp_path_factory.mktemp("prebuilt") / "bins"
    rc = main(["build-kernels", "--device", host_cpu_profile(), "--out", str(out), "--model", "lasso",
               "--dtype", "float32"])  # fmt: skip
    assert rc == 0
    return out


def test_build_save_load_fit(built, tmp_path, device, regression_data, monkeypatch):
    X, y = regression_data
    manifest = json.loads((built / "manifest.json").read_text())
    assert manifest["device"]["device"] == device.info.name
    # 5 kernel files (gap, scatter, 3 pass variants) x dense/sparse x without/with sample
    # weights, for one model and one dtype
    assert len(manifest["programs"]) == 20
    loads = []
    real_load = binaries.load_program

    def spy(dev, name, src, options):
        loads.append(name)
        return real_load(dev, name, src, options)

    monkeypatch.setattr(binaries, "load_program", spy)
    prof = _profile(tmp_path, str(built))
    for variant in ("serial", "tpa", "bucketed"):
        est = dc.Lasso(alpha=0.05, dtype="float32", device=str(prof), random_state=0, tol=1e-6,
                       kernel_variant=variant, memory_budget="50%").fit(X, y)  # fmt: skip
        ref = dc.Lasso(alpha=0.05, dtype="float32", device=device, random_state=0, tol=1e-6,
                       kernel_variant=variant, memory_budget="50%").fit(X, y)  # fmt: skip
        assert est.converged_
        assert abs(est.objective_ - ref.objective_) <= 1e-5 * ref.objective_
    assert {"gap.cl", "scatter.cl", "cd_pass.cl", "cd_pass_tpa.cl", "cd_pass_bucketed.cl"} <= set(
        loads
    )


def test_relative_binaries_path_is_read_against_the_profile(built, tmp_path, regression_data):
    X, y = regression_data
    prof = _profile(built.parent, "bins")  # the profile sits next to the directory
    est = dc.Lasso(alpha=0.05, dtype="float32", device=str(prof), random_state=0).fit(X, y)
    assert est.converged_


def test_binaries_of_another_device_are_refused(built, tmp_path, regression_data):
    X, y = regression_data
    other = tmp_path / "other"
    other.mkdir()
    manifest = json.loads((built / "manifest.json").read_text())
    for fname in manifest["programs"].values():
        (other / fname).write_bytes((built / fname).read_bytes())
    manifest["device"]["device"] = "Some FPGA"
    (other / "manifest.json").write_text(json.dumps(manifest))
    prof = _profile(tmp_path, str(other))
    with pytest.raises(
        PrebuiltError,
        match=r"built for another device \(device: built for 'Some FPGA'.*build-kernels --device pocl-prebuilt",
    ):
        dc.Lasso(alpha=0.05, dtype="float32", device=str(prof)).fit(X, y)


def test_missing_binaries_name_the_command(built, tmp_path, classification_data, capsys):
    X, y = classification_data
    prof = _profile(tmp_path, str(built))
    with pytest.raises(PrebuiltError, match=r"no prebuilt binary of .* -DMODEL=3 .*build-kernels"):
        dc.LinearSVC(loss="hinge", dtype="float32", device=str(prof)).fit(X, y)
    (tmp_path / "x").mkdir()
    empty = _profile(tmp_path / "x", "")
    with pytest.raises(dc.ProfileError, match=r"kernel.binaries is empty.*build-kernels"):
        dc.LinearSVC(dtype="float32", device=str(empty)).fit(X, y)
    nodir = _profile(tmp_path / "x", str(tmp_path / "nothing-here"))
    rc = main(["train", "--model", "svm", "--data", _svm_file(tmp_path, X, y), "--device",
               str(nodir)])  # fmt: skip
    assert rc == 2 and "holds no manifest.json" in capsys.readouterr().err


def _svm_file(tmp_path, X, y):
    from sklearn.datasets import dump_svmlight_file

    f = tmp_path / "d.svm"
    dump_svmlight_file(X, np.where(y > 0, 1, -1), str(f), zero_based=False)
    return str(f)
