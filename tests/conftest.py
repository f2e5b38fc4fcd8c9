"""Shared fixtures: every OpenCL device present that compiles kernels (simulators excepted),
small problems.

A missing OpenCL device is a failure, never a skip. A device that is present but cannot
compile (PoCL 3.0 on a CPU its LLVM 14 does not know) is left out, and said so in the
report header; if it leaves no device, that is the failure.
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


def pytest_report_header(config):
    lines = [f"OpenCL devices under test: {', '.join(d.describe() for d in DEVICES) or 'none'}"]
    lines += [f"left out (cannot compile kernels): {i.describe()}: {why}" for i, why in UNUSABLE]
    return lines


def pytest_generate_tests(metafunc):
    if "device" in metafunc.fixturenames:
        params = DEVICES or [None]
        ids = [f"{d.name[:24]}" for d in DEVICES] or ["no-device"]
        metafunc.parametrize("device_info", params, ids=ids, scope="session")
    if "kernel_variant" in metafunc.fixturenames:
        metafunc.parametrize("kernel_variant", VARIANTS)


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
