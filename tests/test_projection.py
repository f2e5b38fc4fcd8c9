"""The projected time: its inputs are what the fit counted, its formula the documented one."""

import numpy as np
import pytest
import scipy.sparse as sp

import duhl_cl as dc
from duhl_cl.cli import main


@pytest.mark.parametrize("sparse", [False, True])
def test_projection_from_counted_rounds(device, regression_data, sparse):
    X, y = regression_data
    Xin = sp.csc_matrix(X) if sparse else X
    prof = dc.load_profile("fpga-u280-hbm")
    est = dc.Lasso(alpha=0.05, device="fpga-u280-hbm", emulate=True, memory_budget="40%",
                   dtype="float32", random_state=0).fit(Xin, y)  # fmt: skip
    assert est.stats_["emulated"]
    h = est.history_
    # Every column of the data once in the full-residency sense: the entries counted per
    # round are those of the resident coordinates (an empty column takes one entry).
    lens = np.maximum((X != 0).sum(axis=0), 1) if sparse else np.full(X.shape[1], X.shape[0])
    assert all(0 < r["nnz_visited"] <= lens.sum() for r in h if r["n_resident"])
    assert max(r["nnz_visited"] for r in h) < lens.sum()  # a budget: never all of it
    e, r = (8, 4) if sparse else (4, 4)
    link = (est.stats_["bytes_h2d"] + est.stats_["bytes_d2h"]) / 12e9
    mem = sum((2 * x["passes"] + 1) * x["nnz_visited"] * (e + r) for x in h) / 460e9
    host = sum(x["cert_time"] for x in h)
    p = est.stats_["projected"]
    assert prof.host_link_bandwidth == 12e9 and prof.device_memory_bandwidth == 460e9
    assert p["profile"] == "fpga-u280-hbm"
    assert p["link"] == pytest.approx(link) and p["device_memory"] == pytest.approx(mem)
    assert p["host"] == pytest.approx(host) and host > 0  # at least the final certificate
    assert p["total"] == pytest.approx(link + mem + host)


def test_emulated_train_prints_projection_beside_measured_time(tmp_path, capsys):
    from sklearn.datasets import dump_svmlight_file

    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 10))
    f = tmp_path / "d.svm"
    dump_svmlight_file(X, np.where(X[:, 0] > 0, 1, -1), str(f), zero_based=False)
    rc = main(["train", "--model", "svm", "--data", str(f), "--device", "gpu-8gb", "--emulate",
               "--budget", "50%"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    assert "measured" in out and "on the host CPU (emulating gpu-8gb)" in out
    assert "projected time on gpu-8gb (bandwidth model, not a measurement)" in out
    assert "kernel variant tpa" in out  # the profile's variant runs on the host CPU
