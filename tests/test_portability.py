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

import pytest
import scipy.sparse as sp

import duhl_cl as dc
from duhl_cl import kernels
from duhl_cl.device import discovery
from duhl_cl.device.build import KernelBuildError
from duhl_cl.duhl import launches, working_set
from duhl_cl.kernels import TpaPass, defines_to_options, tpa_atomics


def _fake(extensions, c_version):
    info = SimpleNamespace(extensions=tuple(extensions), opencl_c_version=c_version)
    return SimpleNamespace(info=info)


@pytest.mark.parametrize(
    "extensions, c_version, want",
    [
        (["cl_khr_fp64", "cl_ext_float_atomics"], "3.0", "native"),
        (["cl_intel_global_float_atomics"], "2.0", "native"),
        (["cl_ext_float_atomics"], "1.2", "compare-and-swap"),  # no atomic types in C 1.2
        (["cl_khr_int64_base_atomics", "cl_khr_fp64"], "3.0", "compare-and-swap"),
        ([], "1.2", "compare-and-swap"),
    ],
)
def test_tpa_atomics_are_chosen_from_the_reported_extensions(extensions, c_version, want):
    device = _fake(extensions, c_version)
    assert tpa_atomics(device, double=False) == want
    base = {"USE_DOUBLE": 0, "SPARSE": 0}
    device.profile = SimpleNamespace(work_group_size=64)
    device.cl_device = SimpleNamespace(max_work_group_size=256)
    options = defines_to_options(TpaPass.defines(device, base))
    assert ("-DNATIVE_ATOMIC_ADD=1" in options) == (want == "native")
    assert ("-cl-std=CL3.0" in options) == (want == "native")
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
    est = dc.Lasso(alpha=0.1, tol=1e-6, dtype="float32", device=device, kernel_variant="tpa")
    est.fit(X, y)
    assert est.stats_["atomics"].startswith("compare-and-swap (the native add did not build")
    assert abs(est.objective_ - ref.objective_) <= ref.dual_gap_ + est.dual_gap_


@pytest.mark.every_device
def test_loop_limit_is_measured(device):
    limit = discovery.loop_limit(device.info)
    assert limit is None or 1000 < limit < 1 << 20
    if "llvmpipe" in device.info.name and device.info.version.startswith("OpenCL 3.0"):
        # What the probe is for (Mesa 22.3's gallivm); newer Mesa may lift it.
        assert limit in (None, 65535)


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
