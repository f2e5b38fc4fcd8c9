"""Shared fixtures: the OpenCL devices present that compile kernels (simulators excepted),
small problems.

A missing OpenCL device is a failure, never a skip. A device that is present but cannot
compile (PoCL 3.0 on a CPU its LLVM 14 does not know) is left out, and said so in the
report header; if it leaves no device, that is the failure.

Tests marked ``every_device`` (the kernel tests, the scikit-learn comparisons, the budgeted
DuHL tests) run on every device; the others on the default one (the device ``open_device()``
opens: PoCL on the CPU), which keeps the suite's time from growing with each device. A
parametrised case that a device cannot run (float64 without cl_khr_fp64, the float64 "tpa"
pass without 64-bit atomics) is skipped with the reason read from the device's reported
features (duhl_cl.kernels' ``unsupported``), never from its name.
"""

import os
import tempfile

# PoCL writes compiled kernels to a cache; each run gets its own writable one.
os.environ["POCL_CACHE_DIR"] = tempfile.mkdtemp(prefix="duhl-cl-pocl-cache-")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from duhl_cl.kernels import VARIANTS  # noqa: E402 -- a test taking `kernel_variant` runs each

SIMULATORS = ("oclgrind",)


def _devices():
    from duhl_cl.device.discovery import enumerate_devices, usable

    try:
        found = enumerate_devices()
    except Exception:  # noqa: BLE001 -- reported by the failing fixture below
        return [], []
    real = [info for info, _ in found if not any(s in info.platform.lower() for s in SIMULATORS)]
    unusable = [(info, usable(info)) for info in real if usable(info)]
    return [info for info in real if not usable(info)], unusable


DEVICES, UNUSABLE = _devices()


def _default_first(devices):
    """The device the package opens by default first, then the others."""
    from duhl_cl.device.discovery import host_cpu_profile, matches
    from duhl_cl.device.profiles import load_profile

    try:
        profile = load_profile(host_cpu_profile())
    except Exception:  # noqa: BLE001 -- no default device: the fixture's failure says so
        return devices
    return sorted(devices, key=lambda info: not matches(profile, info))


DEVICES = _default_first(DEVICES)


def pytest_report_header(config):
    lines = [f"OpenCL devices under test: {', '.join(d.describe() for d in DEVICES) or 'none'}"]
    lines += [f"left out (cannot compile kernels): {i.describe()}: {why}" for i, why in UNUSABLE]
    return lines


def pytest_generate_tests(metafunc):
    if "device" in metafunc.fixturenames:
        every = metafunc.definition.get_closest_marker("every_device") is not None
        chosen = DEVICES if every else DEVICES[:1]
        params = chosen or [None]
        ids = [f"{d.name[:24]}" for d in chosen] or ["no-device"]
        metafunc.parametrize("device_info", params, ids=ids, scope="session")
    if "kernel_variant" in metafunc.fixturenames:
        metafunc.parametrize("kernel_variant", VARIANTS)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "every_device: run on every OpenCL device present, not only the default"
    )
    config.addinivalue_line("markers", "float64: the test fits in double precision")


@pytest.fixture(autouse=True)
def _device_features(request):
    """Skip a case the device cannot run, saying why from its reported features."""
    if "device" not in request.fixturenames or not hasattr(request.node, "callspec"):
        return
    params = request.node.callspec.params
    if params.get("device_info") is None:
        return
    dtype = "float64" if request.node.get_closest_marker("float64") else params.get("dtype")
    if dtype is None:
        return
    from duhl_cl.kernels import pass_routine

    variant = params.get("kernel_variant")
    why = pass_routine(variant or "serial").unsupported(request.getfixturevalue("device"), dtype)
    if why is not None:
        what = f"{variant} in {np.dtype(dtype).name}" if variant else np.dtype(dtype).name
        pytest.skip(f"{what}: {why}")


@pytest.fixture(scope="session")
def device(device_info):
    if device_info is None:
        pytest.fail(
            "no OpenCL device that compiles kernels found: install one (pip install "
            "pocl-binary-distribution, or pip install '.[intel-cpu]' where PoCL cannot compile "
            "for this CPU); the tests never skip for a missing device"
            + "".join(f"\n  {i.describe()}: {why}" for i, why in UNUSABLE)
        )
    from duhl_cl.device.discovery import open_device

    return open_device(device_info)


@pytest.fixture
def on_default_device(device_info):
    """Whether this case runs on the default device (the first of DEVICES), where an
    every_device property test draws its full sample; the others draw a part of it."""
    return not DEVICES or device_info is DEVICES[0]


@pytest.fixture(scope="session")
def regression_data():
    """A well-conditioned regression problem with a sparse truth (converges in seconds)."""
    rng = np.random.default_rng(0)
    n, d = 240, 30
    X = rng.standard_normal((n, d))
    X[rng.random((n, d)) < 0.6] = 0.0  # also a meaningful sparse matrix
    beta = np.zeros(d)
    beta[:6] = rng.uniform(-2, 2, 6)
    y = X @ beta + 0.3 * rng.standard_normal(n) + 1.5
    return X, y


@pytest.fixture(scope="session")
def classification_data():
    """Two overlapping classes, labels in {0, 1} (not +-1, to exercise the mapping)."""
    rng = np.random.default_rng(1)
    n, d = 240, 20
    X = rng.standard_normal((n, d))
    X[rng.random((n, d)) < 0.5] = 0.0
    w = rng.standard_normal(d)
    y = (X @ w + 0.8 * rng.standard_normal(n) > 0.2).astype(int)
    return X, y
