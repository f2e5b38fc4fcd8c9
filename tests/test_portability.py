"""What the package reads from a device's reported features, and the workarounds it takes.

- the "tpa" pass's atomics: native float atomics where the device reports an extension for
  them (cl_ext_float_atomics, Intel's cl_intel_global_float_atomics) and compiles OpenCL C
  2.0 or later, the compare-and-swap loop elsewhere, and the loop again, said in stats_,
  where the native build fails; the choice is made from the reported extensions;
- the loop cap some devices put on a work-item (Mesa 22.3's llvmpipe ends every loop after
  65535 iterations in all, silently): measured, and the serial passes cut into launches that
  stay under it, with the same certified objective as one launch.
"""

from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp

import duhl_cl as dc
from duhl_cl import kernels
from duhl_cl.device import discovery
from duhl_cl.device.build import KernelBuildError
from duhl_cl.duhl import launches, working_set
from duhl_cl.kernels import TpaPass, defines_to_options, tpa_atomics


def _fake(extensions, c_version, features=()):
    info = SimpleNamespace(
        extensions=tuple(extensions), opencl_c_version=c_version, c_features=tuple(features)
    )
    return SimpleNamespace(info=info)


FP32_ADD = "__opencl_c_ext_fp32_global_atomic_add"


@pytest.mark.parametrize(
    "extensions, c_version, features, double, want",
    [
        (["cl_khr_fp64", "cl_ext_float_atomics"], "3.0", (), False, "native"),
        (["cl_khr_fp64", "cl_ext_float_atomics"], "3.0", (), True, "native"),
        (["cl_intel_global_float_atomics"], "2.0", (), False, "native"),
        (["cl_ext_float_atomics"], "1.2", (), False, "compare-and-swap"),  # no atomic types
        # the features are listed: only the precision whose add is listed
        (["cl_ext_float_atomics"], "3.0", (FP32_ADD,), False, "native"),
        (["cl_ext_float_atomics"], "3.0", (FP32_ADD,), True, "compare-and-swap"),
        (["cl_khr_int64_base_atomics", "cl_khr_fp64"], "3.0", (), False, "compare-and-swap"),
        ([], "1.2", (), False, "compare-and-swap"),
    ],
)
def test_tpa_atomics_are_chosen_from_the_reported_extensions(
    extensions, c_version, features, double, want
):
    device = _fake(extensions, c_version, features)
    assert tpa_atomics(device, double=double) == want
    base = {"USE_DOUBLE": int(double), "SPARSE": 0}
    device.profile = SimpleNamespace(work_group_size=64)
    device.cl_device = SimpleNamespace(max_work_group_size=256)
    options = defines_to_options(TpaPass.defines(device, base))
    assert ("-DNATIVE_ATOMIC_ADD=1" in options) == (want == "native")
    std = f"-cl-std=CL{'3' if c_version.startswith('3') else '2'}.0"
    assert (std in options) == (want == "native")
    assert "-DNATIVE_ATOMIC_ADD=1" not in defines_to_options(
        TpaPass.defines(device, base, native=False)
    )


@pytest.mark.every_device
def test_tpa_reports_its_atomics_and_falls_back_when_native_does_not_build(
    device, regression_data, monkeypatch
):
    X, y = regression_data
    ref = dc.Lasso(alpha=0.1, tol=1e-6, dtype="float32", device=device).fit(X, y)
    est = dc.Lasso(alpha=0.1, tol=1e-6, dtype="float32", device=device, kernel_variant="tpa")
    est.fit(X, y)
    assert est.stats_["atomics"] == tpa_atomics(device, double=False)
    assert abs(est.objective_ - ref.objective_) <= ref.dual_gap_ + est.dual_gap_
    # A device that reports float atomics whose native add does not build (here: the build
    # fails as a driver's would): the fit runs the loop, and says why.
    real_get_kernel = working_set.get_kernel

    def failing(dev, program, defines, kernel):
        if defines.get("NATIVE_ATOMIC_ADD"):
            raise KernelBuildError(f"OpenCL build of {program} failed (injected)")
        return real_get_kernel(dev, program, defines, kernel)

    monkeypatch.setattr(kernels, "tpa_atomics", lambda d, double: "native")
    monkeypatch.setattr(working_set, "get_kernel", failing)
    # (the failure is remembered per context: this test's own memory, not the process's)
    monkeypatch.setattr(TpaPass, "_NATIVE_FAILED", {})
    est = dc.Lasso(alpha=0.1, tol=1e-6, dtype="float32", device=device, kernel_variant="tpa")
    est.fit(X, y)
    assert est.stats_["atomics"].startswith("compare-and-swap (the native add did not build")
    assert "(injected)" in est.stats_["atomics"]
    assert abs(est.objective_ - ref.objective_) <= ref.dual_gap_ + est.dual_gap_
    # A second fit does not try the native build again.
    builds = []
    monkeypatch.setattr(working_set, "get_kernel", lambda *a: builds.append(a[2]) or failing(*a))
    est.fit(X, y)
    assert est.stats_["atomics"].startswith("compare-and-swap (the native add did not build")
    assert not any(d.get("NATIVE_ATOMIC_ADD") for d in builds)


@pytest.mark.every_device
def test_loop_limit_is_measured(device):
    limit = discovery.loop_limit(device.info)
    assert limit is None or 1000 < limit < 1 << 17
    if "llvmpipe" in device.info.name and device.cl_device.driver_version.startswith("22."):
        assert limit == 65535  # what the probe is for: Mesa 22's gallivm guard
    elif "Portable" in device.info.platform or "Intel" in device.info.platform:
        assert limit is None


@pytest.mark.every_device
@pytest.mark.parametrize("sparse", [False, True])
def test_passes_cut_under_a_loop_cap_give_the_same_fit(
    device, regression_data, sparse, monkeypatch
):
    """A cap of 400 iterations (one coordinate of the 240-row data costs 2 x its entries + 8)
    forces each pass into many launches and the multi-pass launch apart: the fit must certify
    the same objective as the uncut one."""
    X, y = regression_data
    X = sp.csr_matrix(X) if sparse else X
    kw = dict(alpha=0.05, tol=1e-6, dtype="float32", device=device, random_state=0)
    ref = dc.Lasso(**kw).fit(X, y)
    pieces = []
    real = launches.Launches._launch_pieces

    def counting(self, slots):
        out = real(self, slots)
        pieces.append(len(out))
        return out

    monkeypatch.setattr(type(device), "loop_limit", property(lambda d: 1200))
    monkeypatch.setattr(launches.Launches, "_launch_pieces", counting)
    est = dc.Lasso(**kw).fit(X, y)
    assert pieces and max(pieces) > 1  # passes were cut
    assert est.converged_
    assert abs(est.objective_ - ref.objective_) <= ref.dual_gap_ + est.dual_gap_
    # A coordinate too long for one work-item under the cap is refused, naming the cap.
    monkeypatch.setattr(type(device), "loop_limit", property(lambda d: 300))
    with pytest.raises(ValueError, match=r"ends any work-item's loops after 300 iterations"):
        dc.Lasso(**kw).fit(X, y)


@pytest.mark.every_device
def test_a_rounds_passes_split_into_few_launches_under_a_loop_cap(device, monkeypatch):
    """A cap that lets a launch do a few passes of a round but not all: the round's passes
    go in launches of as many passes as fit (not one launch a pass, each with a host
    shuffle), every launch under the cap; the fit certifies the uncapped objective."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((400, 12))
    y = (X @ rng.standard_normal(12) + 0.5 * rng.standard_normal(400) > 0).astype(int)
    kw = dict(C=0.05, tol=1e-6, dtype="float32", device=device, random_state=0)
    ref = dc.LogisticRegression(**kw).fit(X, y)
    allowed, launched = [], []
    per_launch = launches.Launches._passes_per_launch
    enqueue = kernels.SerialPass.enqueue

    def recording_allowed(self, n_passes):
        out = per_launch(self, n_passes)
        allowed.append((n_passes, out))
        return out

    def recording_enqueue(self, queue, args, count, *, n_passes=1, seed=0, state=None):
        launched.append(n_passes)
        return enqueue(self, queue, args, count, n_passes=n_passes, seed=seed, state=state)

    # One sample costs a work-item at most 2 x 12 entries + 8 + 50 Newton steps: under a
    # budget of 40000 (half the cap) a pass over all 400 rows (33200) fits once, 4 passes of
    # 100 rows fit, 256 do not.
    monkeypatch.setattr(type(device), "loop_limit", property(lambda d: 80000))
    monkeypatch.setattr(launches.Launches, "_passes_per_launch", recording_allowed)
    monkeypatch.setattr(kernels.SerialPass, "enqueue", recording_enqueue)
    est = dc.LogisticRegression(memory_budget="25%", **kw).fit(X, y)
    assert est.converged_
    assert abs(est.objective_ - ref.objective_) <= ref.dual_gap_ + est.dual_gap_
    split = [(n, k) for n, k in allowed if 1 <= k < n]
    assert split, allowed  # some round's passes did not fit one launch, yet more than one did
    assert max(launched) > 1 and max(launched) <= max(k for _, k in allowed)
    # The launches of the rounds: as few as the cap allows, not one a pass.
    assert len(launched) <= sum(-(-n // k) if k else n for n, k in allowed)


@pytest.mark.every_device
def test_a_pass_longer_than_a_work_item_cap_gives_the_reference_fit(device):
    """Sparse dual logistic regression on 3000 samples: one serial pass costs a work-item
    about 3000 x (2 x 6 entries + 8 + the step's up to 50 Newton iterations) = 210000 loop
    iterations, beyond llvmpipe's 65535; the fit must reach liblinear's objective."""
    import sklearn.linear_model as sklm

    rng = np.random.default_rng(7)
    X = sp.random(3000, 30, density=0.2, random_state=7, format="csr", dtype=np.float32)
    y = (X @ rng.standard_normal(30) + 0.3 * rng.standard_normal(3000) > 0).astype(int)
    est = dc.LogisticRegression(C=1.0, tol=1e-5, dtype="float32", device=device, random_state=0)
    est.fit(X, y)
    X64 = X.astype(np.float64)
    ref = sklm.LogisticRegression(
        C=1.0, solver="liblinear", dual=True, tol=1e-12, max_iter=10**6, random_state=0
    ).fit(X64, y)

    def objective(coef, b):  # liblinear's: the intercept is a feature of value 1
        m = np.where(y == 1, 1.0, -1.0) * (X64 @ coef + b)
        return 0.5 * (coef @ coef + b * b) + np.logaddexp(0, -m).sum()

    f, f_ref = (
        objective(est.coef_[0], est.intercept_[0]),
        objective(ref.coef_[0], ref.intercept_[0]),
    )
    assert est.converged_
    assert abs(f - f_ref) <= 1e-4 * abs(f_ref), (f, f_ref)
    assert f - f_ref <= est.dual_gap_ + 1e-9 * abs(f_ref)
