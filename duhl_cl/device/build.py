"""Build OpenCL programs once per (device, source, options) and keep them.

Kernel files include headers; :func:`duhl_cl.kernels.kernel_source` inlines them, so the
cache key is the full text. Prebuilt profiles load binaries instead (:mod:`.binaries`).
A failed build raises :class:`KernelBuildError` carrying the options, the build log and the
path of the exact source that failed (kept on disk for inspection).

The builds are timed: :func:`build_seconds` is the process's total, and :func:`watch_builds`
tells a listener when each one starts and how long it took, so that a fit can say what part
of its time went to the compiler (a cold PoCL cache compiles for seconds).
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
import threading
import time
from pathlib import Path

from ..kernels import kernel_source, program_options
from . import binaries
from .discovery import quiet_build

__all__ = [
    "KernelBuildError",
    "build_program",
    "build_seconds",
    "clear_cache",
    "get_kernel",
    "watch_builds",
]

_CACHE: dict = {}
_KERNELS: dict = {}
# Seconds spent in program builds (source compiled or binaries loaded) in this process, and
# who wants to hear of each; under the lock, as fits may run in threads.
_BUILD_LOCK = threading.Lock()
_BUILD = {"seconds": 0.0, "programs": 0}
_LISTENERS: list = []


class KernelBuildError(RuntimeError):
    """The OpenCL compiler rejected a kernel; the message holds options, log and source path."""


def _origin(device):
    """Where a device's programs come from: source, or a directory of prebuilt binaries (one
    context can serve both, e.g. PoCL under two profiles). Emulated on PoCL, a prebuilt
    (FPGA) profile compiles source: its binaries are for the real device."""
    if device.profile.build == "prebuilt" and not device.emulated:
        return ("prebuilt", device.profile.binaries, device.profile.path)
    return ("source",)


def build_program(device, name: str, defines: dict):
    """Build ``kernels_cl/<name>`` for ``device`` with ``-D`` defines; cached.

    Parameters
    ----------
    device : duhl_cl.device.discovery.Device
    name : str
        Kernel file name, e.g. ``"cd_pass.cl"``.
    defines : dict
        Preprocessor defines, e.g. ``{"MODEL": 1, "USE_DOUBLE": 0, "SPARSE": 1}``.
    """
    import pyopencl as cl

    src = kernel_source(name)
    options = program_options(device, defines)
    origin = _origin(device)
    key = (
        id(device.context),
        origin,
        hashlib.sha1(src.encode()).hexdigest(),
        tuple(options),
    )
    prog = _CACHE.get(key)
    if prog is not None:
        return prog
    with _timed(device, name, origin[0]):
        if origin[0] == "prebuilt":
            prog = binaries.load_program(device, name, src, options)
        else:
            try:
                with quiet_build():
                    prog = cl.Program(device.context, src).build(options=options)
            except cl.Error as exc:
                keep = Path(tempfile.mkdtemp(prefix="duhl-cl-build-")) / name
                keep.write_text(src)
                raise KernelBuildError(
                    f"OpenCL build of {name} failed on {device.info.name} with options "
                    f"{' '.join(options)}; the exact source is kept at {keep}\n{exc}"
                ) from None
    _CACHE[key] = prog
    return prog


@contextlib.contextmanager
def _timed(device, name, origin):
    """Count one program build's seconds (a failed one's too: the time was spent) and tell
    the listeners of its start and its end."""
    with _BUILD_LOCK:
        listeners = list(_LISTENERS)
    for fn in listeners:
        fn(device, name, origin, None)
    t0 = time.perf_counter()
    try:
        yield
    finally:
        dt = time.perf_counter() - t0
        with _BUILD_LOCK:
            _BUILD["seconds"] += dt
            _BUILD["programs"] += 1
        for fn in listeners:
            fn(device, name, origin, dt)


def build_seconds() -> float:
    """Seconds this process has spent building programs (compiling source or loading
    prebuilt binaries); the cached ones cost nothing again. A fit's share is the
    difference across it."""
    with _BUILD_LOCK:
        return _BUILD["seconds"]


@contextlib.contextmanager
def watch_builds(listener):
    """Within the block, ``listener(device, name, origin, seconds)`` hears of each program
    build: with ``seconds`` None as it starts, then with its measured seconds.

    Parameters
    ----------
    listener : callable
        Called with the :class:`~duhl_cl.device.discovery.Device`, the kernel file's name,
        ``"source"`` or ``"prebuilt"``, and None or the build's seconds.
    """
    with _BUILD_LOCK:
        _LISTENERS.append(listener)
    try:
        yield listener
    finally:
        with _BUILD_LOCK:
            _LISTENERS.remove(listener)


def get_kernel(device, name: str, defines: dict, kernel: str):
    """The kernel ``kernel`` of ``kernels_cl/<name>`` built with ``defines``; cached.

    pyopencl makes a new kernel object on every attribute lookup, so these are kept too.
    """
    key = (id(device.context), _origin(device), name, tuple(sorted(defines.items())), kernel)
    k = _KERNELS.get(key)
    if k is None:
        import pyopencl as cl

        k = _KERNELS[key] = cl.Kernel(build_program(device, name, defines), kernel)
    return k


def clear_cache() -> None:
    _KERNELS.clear()
    _CACHE.clear()
