"""Build OpenCL programs once per (device, source, options) and keep them.

Kernel files include headers; :func:`duhl_cl.kernels.kernel_source` inlines them, so the
cache key is the full text. Prebuilt profiles load binaries instead (:mod:`.binaries`).
A failed build raises :class:`KernelBuildError` carrying the options, the build log and the
path of the exact source that failed (kept on disk for inspection).
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from ..kernels import defines_to_options, kernel_source
from . import binaries
from .discovery import quiet_build

__all__ = ["KernelBuildError", "build_program", "get_kernel", "clear_cache"]

_CACHE: dict = {}
_KERNELS: dict = {}


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
    options = defines_to_options(defines)
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
    if origin[0] == "prebuilt":
        prog = _CACHE[key] = binaries.load_program(device, name, src, options)
        return prog
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
