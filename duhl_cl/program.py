"""Build OpenCL programs once per (device, source, options) and keep them.

Kernel files include ``model.h``; the builder inlines it so the cache key is the full text.
A failed build raises :class:`KernelBuildError` carrying the options, the build log and the
path of the exact source that failed (kept on disk for inspection).
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from pathlib import Path

from .resources import kernels_dir

__all__ = ["KernelBuildError", "kernel_source", "build_program", "get_kernel", "clear_cache"]

_CACHE: dict = {}
_KERNELS: dict = {}
_INCLUDE = re.compile(r'^#include "([A-Za-z0-9_.]+)"\s*$', re.M)


class KernelBuildError(RuntimeError):
    """The OpenCL compiler rejected a kernel; the message holds options, log and source path."""


def kernel_source(name: str) -> str:
    """The text of ``kernels_cl/<name>`` with its local ``#include "x.h"`` lines inlined
    (recursively, each header once: they have include guards, this keeps the text short)."""
    root = kernels_dir()
    seen: set = set()

    def expand(text):
        def inline(match):
            header = match.group(1)
            if header in seen:
                return ""
            seen.add(header)
            return expand((root / header).read_text())

        return _INCLUDE.sub(inline, text)

    return expand((root / name).read_text())


def defines_to_options(defines: dict) -> list[str]:
    return [f"-D{k}={int(v) if isinstance(v, bool) else v}" for k, v in sorted(defines.items())]


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
    device : duhl_cl.discovery.Device
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
        from .binaries import load_program

        prog = _CACHE[key] = load_program(device, name, src, options)
        return prog
    from .discovery import quiet_build

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
