"""OpenCL errors during a fit, as one message: the device, the operation and the budget.

A failed allocation, enqueue or wait (out of resources, a lost device) surfaces from
pyopencl as a bare ``pyopencl.Error`` ("clEnqueueNDRangeKernel failed: OUT_OF_RESOURCES").
:func:`translating` wraps a fit's device work (duhl_cl.duhl.solver.solve and the path solver)
and turns one into a :class:`DeviceFault` that says which device, what the fit was doing
(read off the traceback: the working-set step and, for an allocation, the buffer and its
size), the memory budget, and what to try. The fit's own ``finally`` blocks have released
its buffers by then; the estimators set their fitted attributes only after a fit returns,
so a failed refit leaves the previous model in place.
"""

from __future__ import annotations

import contextlib
import os

from .discovery import DeviceError

__all__ = ["DeviceFault", "translating"]

# The steps of a fit that talk to the device (function names in duhl_cl.duhl and the
# ledger), in words.
_STEPS = {
    "alloc": "allocating device memory",
    "_allocate": "allocating the working set",
    "make_resident": "moving coordinates into device memory",
    "_upload": "copying coordinates to the device",
    "set_shared": "uploading the shared vector",
    "get_shared": "reading the shared vector back",
    "run_pass": "launching a coordinate-descent pass",
    "run_passes": "launching the round's passes",
    "resident_gaps": "launching the gap kernel",
    "read_alpha": "reading the coefficients back",
    "finish": "waiting for the round's kernels",
    "upload": "copying to the device",
    "download": "reading back from the device",
    "_build_kernels": "building the kernels",
}

# OpenCL's codes for running out of memory (CL_MEM_OBJECT_ALLOCATION_FAILURE,
# CL_OUT_OF_RESOURCES, CL_OUT_OF_HOST_MEMORY).
_MEMORY_CODES = (-4, -5, -6)
_MEMORY_WORDS = ("OUT_OF_RESOURCES", "MEM_OBJECT_ALLOCATION_FAILURE", "OUT_OF_HOST_MEMORY")


class DeviceFault(DeviceError):
    """The device failed during a fit; the message names the device, operation and budget."""


def _package_frames(tb):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    frames = []
    while tb is not None:
        if os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(root):
            frames.append(tb.tb_frame)
        tb = tb.tb_next
    return frames


def _operation(exc) -> str:
    """What the fit was doing, from the innermost step of the traceback that has a name."""
    frames = _package_frames(exc.__traceback__)
    for frame in reversed(frames):
        step = _STEPS.get(frame.f_code.co_name)
        if step is None:
            continue
        if frame.f_code.co_name == "alloc":
            name, nbytes = frame.f_locals.get("name"), frame.f_locals.get("nbytes")
            if name is not None and nbytes is not None:
                from .profiles import format_size

                return f"allocating {name!r} ({format_size(int(nbytes))})"
        return step
    return frames[-1].f_code.co_name if frames else "a device call"


def _code(exc):
    try:
        return exc.code
    except Exception:  # noqa: BLE001 -- a pyopencl.Error raised with a plain message
        return None


def describe(exc, device, budget) -> str:
    from .profiles import format_size

    memory = _code(exc) in _MEMORY_CODES or any(w in str(exc) for w in _MEMORY_WORDS)
    fix = (
        "lower memory_budget (the device may have less free memory than it reports, or "
        "another program holds some), or fit on a device with more memory"
        if memory
        else "the device or its driver failed: try again, or fit on another device"
    )
    return (
        f"{device.label()}: the device failed while {_operation(exc)} "
        f"({str(exc).strip().splitlines()[0][:160]}), with a memory budget of "
        f"{format_size(int(budget))}; the fit's device memory is released and the estimator "
        f"keeps its previous state; {fix}"
    )


@contextlib.contextmanager
def translating(device, budget):
    """Around a fit's device work: a ``pyopencl.Error`` becomes a :class:`DeviceFault`."""
    import pyopencl as cl

    try:
        yield
    except cl.Error as exc:
        raise DeviceFault(
            describe(exc, device, budget if budget else device.profile.budget)
        ) from exc
