"""Faults on the device during a fit, injected through wrappers of pyopencl and the pass
routine: a clear DeviceFault (the device, the operation, the budget), every device buffer
released (the ledgers back to zero), and the estimator's previous fit untouched."""

import re

import numpy as np
import pyopencl as cl
import pytest

import duhl_cl as dc
from duhl_cl import kernels
from duhl_cl.device.faults import DeviceFault
from duhl_cl.device.ledger import live_ledgers_bytes


def _fitted_state(est):
    return {k: v for k, v in vars(est).items() if k.endswith("_") and not k.startswith("_")}


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], np.ndarray):
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        else:
            assert a[k] == b[k] or a[k] is b[k], k


def _fail_after(calls, n, error):
    """A wrapper of ``calls`` that raises ``error`` on its n-th call."""
    count = [0]

    def wrapper(*args, **kwargs):
        count[0] += 1
        if count[0] == n:
            raise error
        return calls(*args, **kwargs)

    return wrapper


def _problems(regression_data):
    X, y = regression_data
    rng = np.random.default_rng(5)
    return (X, y), (X + 0.1 * rng.standard_normal(X.shape), y[::-1].copy())


@pytest.mark.parametrize("where", ["allocation", "pass launch", "wait"])
def test_a_device_fault_is_a_clear_error_that_releases_and_keeps_the_fit(
    device, regression_data, where, monkeypatch
):
    (X, y), (X2, y2) = _problems(regression_data)
    est = dc.Lasso(alpha=0.05, tol=1e-6, device=device, memory_budget="40%", random_state=0)
    est.fit(X, y)
    before = _fitted_state(est)
    assert live_ledgers_bytes() == 0
    if where == "allocation":
        error = cl.MemoryError("clCreateBuffer failed: MEM_OBJECT_ALLOCATION_FAILURE")
        monkeypatch.setattr(cl, "Buffer", _fail_after(cl.Buffer, 6, error))
        said = r"allocating '[a-z0-9 ]+' \([0-9.]+ [KMG]?i?B\)"
    elif where == "pass launch":
        error = cl.RuntimeError("clEnqueueNDRangeKernel failed: OUT_OF_RESOURCES")
        routine = kernels.pass_routine("serial")
        monkeypatch.setattr(routine, "enqueue", _fail_after(routine.enqueue, 3, error))
        said = "launching (a coordinate-descent pass|the round's passes)"
    else:
        error = cl.RuntimeError("clFinish failed: OUT_OF_RESOURCES")
        monkeypatch.setattr(
            cl.CommandQueue, "finish", _fail_after(cl.CommandQueue.finish, 2, error)
        )
        said = "waiting for the round's kernels"
    with pytest.raises(DeviceFault) as info:
        est.fit(X2, y2)
    message = str(info.value)
    assert device.label() in message
    assert "the device failed while" in message
    assert re.search(said, message), message
    assert "memory budget of" in message and "lower memory_budget" in message
    assert live_ledgers_bytes() == 0  # every buffer of the failed fit released
    _same(before, _fitted_state(est))  # the previous model is intact
    # And the device still works: the same refit, without the fault, succeeds.
    monkeypatch.undo()
    est.fit(X2, y2)
    assert est.converged_ and live_ledgers_bytes() == 0


def _fail_from(calls, n, error):
    """A wrapper of ``calls`` that raises ``error`` on its n-th call and every one after."""
    count = [0]

    def wrapper(*args, **kwargs):
        count[0] += 1
        if count[0] >= n:
            raise error
        return calls(*args, **kwargs)

    return wrapper


def test_a_device_that_keeps_failing_reports_the_first_fault(device, regression_data, monkeypatch):
    """A lost device fails every wait after the first fault: the cleanup (which waits for
    the queue before releasing) must not replace the first error, nor skip the release, nor
    report a final certificate or call the callback with one."""
    (X, y), (X2, y2) = _problems(regression_data)
    est = dc.Lasso(alpha=0.05, tol=1e-6, device=device, memory_budget="40%", random_state=0)
    est.fit(X, y)
    before = _fitted_state(est)
    records = []
    error = cl.RuntimeError("clFinish failed: OUT_OF_RESOURCES")
    monkeypatch.setattr(cl.CommandQueue, "finish", _fail_from(cl.CommandQueue.finish, 2, error))
    with pytest.raises(DeviceFault, match="waiting for the round's kernels"):
        est.fit(X2, y2, callback=records.append)
    assert not any(r.get("final") for r in records)
    monkeypatch.undo()
    assert live_ledgers_bytes() == 0
    _same(before, _fitted_state(est))


def test_a_failed_classifier_refit_keeps_its_classes(device, classification_data, monkeypatch):
    X, y = classification_data
    est = dc.LinearSVC(device=device).fit(X, y)
    before = _fitted_state(est)
    error = cl.RuntimeError("clEnqueueNDRangeKernel failed: OUT_OF_RESOURCES")
    routine = kernels.pass_routine(est.stats_["kernel_variant"])
    monkeypatch.setattr(routine, "enqueue", _fail_after(routine.enqueue, 1, error))
    with pytest.raises(DeviceFault):
        est.fit(X, np.where(y == 1, "yes", "no"))  # other labels
    _same(before, _fitted_state(est))
    assert live_ledgers_bytes() == 0


def test_a_failure_that_is_not_memory_says_so(device, regression_data, monkeypatch):
    X, y = regression_data
    error = cl.LogicError("clEnqueueNDRangeKernel failed: INVALID_KERNEL_ARGS")
    routine = kernels.pass_routine("serial")
    monkeypatch.setattr(routine, "enqueue", _fail_after(routine.enqueue, 1, error))
    est = dc.Lasso(alpha=0.05, device=device)
    with pytest.raises(DeviceFault, match="the device or its driver failed"):
        est.fit(X, y)
    assert not hasattr(est, "coef_")
    assert live_ledgers_bytes() == 0
