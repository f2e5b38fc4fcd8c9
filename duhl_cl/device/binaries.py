"""Prebuilt kernel binaries: build them for a device, save them, load them back.

FPGA flows compile kernels offline (hours, with the vendor's tools) and load bitstreams at
run time; a profile with ``build = "prebuilt"`` therefore loads every program from the
directory its ``kernel.binaries`` names (relative to the profile file) instead of compiling
source. ``duhl-cl build-kernels --device NAME --out DIR`` writes such a directory for any
device that can compile the sources (PoCL, GPUs): one binary per (kernel file, -D options,
source text) and ``manifest.json``, which records the device the binaries were built for.
Loading checks that record against the device first, so a mismatch is a clear error rather
than CL_INVALID_BINARY, and a missing program names the command that builds it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..kernels import VARIANTS, kernel_source, program_options
from ..kernels import programs as catalogue
from ..models import model_names, model_spec
from .discovery import quiet_build

__all__ = ["PrebuiltError", "device_identity", "build_binaries", "load_program", "binaries_dir"]

MANIFEST = "manifest.json"


class PrebuiltError(RuntimeError):
    """Prebuilt binaries are missing, or were built for another device."""


def device_identity(device) -> dict:
    """What a binary is tied to: platform, vendor, device name, driver and OpenCL versions."""
    d = device.cl_device
    return {
        "platform": device.info.platform,
        "vendor": device.info.vendor,
        "device": device.info.name,
        "driver_version": d.driver_version.strip(),
        "version": device.info.version,
    }


def _key(name: str, options: list[str], src: str) -> str:
    return f"{name} {' '.join(options)} {hashlib.sha1(src.encode()).hexdigest()}"


def binaries_dir(profile) -> Path | None:
    """The directory a prebuilt profile names, resolved against the profile file."""
    if not profile.binaries:
        return None
    p = Path(profile.binaries).expanduser()
    if not p.is_absolute() and profile.path not in ("", "(generated)"):
        p = Path(profile.path).parent / p
    return p


def _read_manifest(directory: Path, profile_name: str) -> dict:
    f = directory / MANIFEST
    if not f.is_file():
        raise PrebuiltError(
            f"profile {profile_name!r} loads prebuilt kernels from {directory}, which holds no "
            f"{MANIFEST}; build them with 'duhl-cl build-kernels --device {profile_name} --out "
            f"{directory}'"
        )
    return json.loads(f.read_text())


def load_program(device, name: str, src: str, options: list[str]):
    """The program ``name`` with ``options`` from the profile's prebuilt binaries (built)."""
    import pyopencl as cl

    profile = device.profile
    directory = binaries_dir(profile)
    if directory is None:
        raise PrebuiltError(
            f'profile {profile.name!r} has build = "prebuilt" but names no binaries '
            f"(kernel.binaries); build them with 'duhl-cl build-kernels --device {profile.name} "
            f'--out DIR\' and set kernel.binaries = "DIR" in {profile.path}'
        )
    manifest = _read_manifest(directory, profile.name)
    have, want = manifest.get("device", {}), device_identity(device)
    diff = [k for k in want if have.get(k) != want[k]]
    if diff:
        rows = ", ".join(f"{k}: built for {have.get(k)!r}, this device {want[k]!r}" for k in diff)
        raise PrebuiltError(
            f"the prebuilt kernels in {directory} were built for another device ({rows}); "
            f"rebuild them for this one with 'duhl-cl build-kernels --device {profile.name} "
            f"--out {directory}'"
        )
    entry = manifest.get("programs", {}).get(_key(name, options, src))
    if entry is None:
        raise PrebuiltError(
            f"no prebuilt binary of {name} with options {' '.join(options)} (for this version's "
            f"source) in {directory}; rebuild with 'duhl-cl build-kernels --device "
            f"{profile.name} --out {directory}' (without --model/--dtype limits, or with the "
            f"ones this fit needs)"
        )
    binary = (directory / entry).read_bytes()

    try:
        with quiet_build():
            return cl.Program(device.context, [device.cl_device], [binary]).build(options=options)
    except cl.Error as exc:
        raise PrebuiltError(
            f"the device rejected the prebuilt binary {directory / entry} ({name}, "
            f"{' '.join(options)}): {exc}; rebuild it with 'duhl-cl build-kernels --device "
            f"{profile.name} --out {directory}'"
        ) from None


def build_binaries(device, out, *, models=None, dtypes=None, variants=None, progress=print):
    """Compile every program a fit can need on ``device`` and save them under ``out``.

    Parameters
    ----------
    device : duhl_cl.device.discovery.Device
        A device that compiles OpenCL C source.
    out : path
        Directory for the binaries and manifest.json (created).
    models, dtypes, variants : sequences, optional
        Limit the set (default: every model, the precisions the device has, every variant).

    Returns the number of programs written.
    """
    import pyopencl as cl

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    kernel_models = [model_spec(m).kernel for m in (models or model_names())]
    dtypes = list(dtypes or (["float32", "float64"] if device.fp64 else ["float32"]))
    variants = list(variants or VARIANTS)
    programs = {}
    for name, defines in catalogue(device, kernel_models, dtypes, variants):
        src = kernel_source(name)
        options = program_options(device, defines)
        key = _key(name, options, src)
        if key in programs:
            continue
        with quiet_build():
            prog = cl.Program(device.context, src).build(options=options)
        binary = prog.get_info(cl.program_info.BINARIES)[0]
        fname = f"{Path(name).stem}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.bin"
        (out / fname).write_bytes(binary)
        programs[key] = fname
        if progress:
            progress(f"  {name:22s} {' '.join(options):40s} -> {fname}")
    old = {}
    if (out / MANIFEST).is_file():
        prev = json.loads((out / MANIFEST).read_text())
        if prev.get("device") == device_identity(device):
            old = prev.get("programs", {})  # add to binaries of the same device
    manifest = {"device": device_identity(device), "programs": {**old, **programs}}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return len(programs)
