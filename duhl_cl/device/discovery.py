"""OpenCL device discovery: find the device a profile describes, never "platform 0".

A profile matches a device when each non-empty match field is a case-insensitive substring
of the corresponding OpenCL property. A device counts only if it compiles a trivial kernel
(:func:`usable`): PoCL 3.0 is present but cannot compile on CPUs its LLVM 14 does not know
(AMD Zen 5: "unknown target CPU 'generic'"). The default device is the host's CPU
(:data:`HOST_CPU_PROFILES`: PoCL, else Intel's CPU runtime). ``emulate=True`` runs a
profile whose device is absent on that host CPU device, keeping the profile's limits and
kernel variant.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import warnings
from dataclasses import dataclass
from functools import cache, lru_cache

from .profiles import DeviceProfile, load_profile

__all__ = [
    "DeviceError",
    "DeviceInfo",
    "Device",
    "HOST_CPU_PROFILES",
    "enumerate_devices",
    "host_cpu_profile",
    "loop_limit",
    "open_device",
    "usable",
]

# The host's CPU as an OpenCL device, in order of preference: the default device, and the
# one that emulates a profile whose device is absent.
HOST_CPU_PROFILES = ("pocl-cpu", "intel-cpu")
_NO_CPU_FIX = (
    "install a CPU OpenCL device: 'pip install pocl-binary-distribution' (PoCL), or, where "
    "PoCL cannot compile for this CPU, 'pip install \"duhl-cl[intel-cpu]\"' (Intel's CPU "
    "runtime, which also runs on AMD CPUs)"
)


class DeviceError(RuntimeError):
    """No OpenCL device matches, or the device cannot do what was asked."""


def _cl():
    # pyopencl is imported lazily so that profile handling and `--help` work without a driver.
    from .icd import register_python_drivers

    register_python_drivers()  # before the loader first reads its driver list
    import pyopencl as cl

    return cl


@dataclass(frozen=True)
class DeviceInfo:
    """What discovery reports about one OpenCL device."""

    platform_index: int
    device_index: int
    platform: str
    vendor: str
    name: str
    type: str
    global_mem: int
    max_alloc: int
    compute_units: int
    fp64: bool
    version: str
    extensions: tuple = ()  # the device's reported extensions
    opencl_c_version: str = "1.2"  # the newest OpenCL C it compiles, "major.minor"
    c_features: tuple = ()  # CL_DEVICE_OPENCL_C_FEATURES' names (OpenCL 3.0)

    def describe(self) -> str:
        return f"[{self.platform_index}:{self.device_index}] {self.platform} / {self.name} ({self.type})"


def _type_name(cl, t) -> str:
    if t & cl.device_type.GPU:
        return "GPU"
    if t & cl.device_type.ACCELERATOR:
        return "ACCELERATOR"
    if t & cl.device_type.CPU:
        return "CPU"
    return "OTHER"


def _c_version(dev) -> str:
    """The newest OpenCL C the device compiles, "major.minor": the largest of
    CL_DEVICE_OPENCL_C_ALL_VERSIONS (OpenCL 3.0; CL_DEVICE_OPENCL_C_VERSION names only the
    newest fully backward-compatible one: "1.2" on PoCL, which also compiles 3.0), else that
    one ("OpenCL C 1.2 pocl" -> "1.2")."""
    try:
        newest = max(v.version for v in dev.opencl_c_all_versions)
        return f"{newest >> 22}.{(newest >> 12) & 0x3FF}"
    except Exception:  # noqa: BLE001 -- an OpenCL 1.x/2.x device has no such query
        words = dev.opencl_c_version.split()
        return words[2] if len(words) > 2 and words[2][:1].isdigit() else "1.2"


def _c_features(dev) -> tuple:
    try:
        return tuple(sorted({f.name for f in dev.opencl_c_features}))
    except Exception:  # noqa: BLE001 -- before OpenCL 3.0
        return ()


@lru_cache(maxsize=1)
def _platforms():
    cl = _cl()
    try:
        return tuple(cl.get_platforms())
    except cl.Error as exc:  # no ICD installed at all
        raise DeviceError(f"no OpenCL platform is installed ({exc}); {_NO_CPU_FIX}") from None


def enumerate_devices() -> list[tuple[DeviceInfo, object]]:
    """Every OpenCL device present, as (info, pyopencl.Device) pairs."""
    cl = _cl()
    out = []
    for pi, plat in enumerate(_platforms()):
        try:
            devices = plat.get_devices()
        except cl.Error:
            continue
        for di, dev in enumerate(devices):
            info = DeviceInfo(
                platform_index=pi,
                device_index=di,
                platform=plat.name.strip(),
                vendor=dev.vendor.strip(),
                name=dev.name.strip(),
                type=_type_name(cl, dev.type),
                global_mem=int(dev.global_mem_size),
                max_alloc=int(dev.max_mem_alloc_size),
                compute_units=int(dev.max_compute_units),
                fp64="cl_khr_fp64" in dev.extensions or dev.double_fp_config != 0,
                version=dev.version.strip(),
                extensions=tuple(dev.extensions.split()),
                opencl_c_version=_c_version(dev),
                c_features=_c_features(dev),
            )
            out.append((info, dev))
    return out


@contextlib.contextmanager
def quiet_build():
    """Around a build: the compiler's log of a build that succeeded ("Compilation started",
    "Kernel was 16-way vectorized" from Intel's runtime) is not a warning for the user."""
    cl = _cl()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cl.CompilerWarning)
        yield


_PROBE = "__kernel void probe(__global float *x) { x[get_global_id(0)] += 1.0f; }"


@cache
def usable(info: DeviceInfo) -> str | None:
    """None when the device compiles a trivial kernel, else why not (the compiler's words).

    Checked once per device and process (a few ms): PoCL 3.0 from PyPI is present on every
    machine but, on a CPU newer than its LLVM 14, fails every build.
    """
    cl = _cl()
    try:
        dev = _platforms()[info.platform_index].get_devices()[info.device_index]
        with quiet_build():
            cl.Program(cl.Context([dev]), _PROBE).build()
    except cl.Error as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if "error" in ln.lower()]
        return (lines[-1] if lines else str(exc).strip().splitlines()[0])[:200]
    return None


# A work-item loops this many times in the probe below: twice the one cap we know (a few ms,
# under a simulator too). Each iteration stores to memory, so that no compiler folds the
# loop into its count.
_LOOP_PROBE_N = 1 << 17
_LOOP_PROBE = """
__kernel void loops(volatile __global int *out, const int n)
{
    for (int i = 0; i < n; ++i)
        out[0] = i + 1;
}"""


@cache
def loop_limit(info: DeviceInfo) -> int | None:
    """The most loop iterations one work-item completes on this device, measured; None when
    it completes the probe's 2**17 (no cap found).

    Mesa 22.3's llvmpipe (Rusticl's CPU device) ends every loop of a work-item silently once
    the work-item has iterated 65535 times in all (gallivm's LP_MAX_TGSI_LOOP_ITERATIONS, a
    guard against hung shaders), so a long serial pass would stop midway, its coefficients
    and shared vector out of step. The working set sizes its launches below the cap
    (duhl_cl.duhl.launches). Measured once per device and process (a few ms).
    """
    cl = _cl()
    import numpy as np

    dev = _platforms()[info.platform_index].get_devices()[info.device_index]
    ctx = cl.Context([dev])
    queue = cl.CommandQueue(ctx, dev)
    with quiet_build():
        kernel = cl.Kernel(cl.Program(ctx, _LOOP_PROBE).build(), "loops")
    out = np.zeros(1, np.int32)
    buf = cl.Buffer(ctx, cl.mem_flags.WRITE_ONLY, out.nbytes)
    kernel(queue, (1,), (1,), buf, np.int32(_LOOP_PROBE_N))
    cl.enqueue_copy(queue, out, buf)
    return None if int(out[0]) >= _LOOP_PROBE_N else int(out[0])


def _not_usable_note(devices) -> str:
    bad = [(i, usable(i)) for i, _ in devices if usable(i)]
    if not bad:
        return ""
    return "\nPresent but unable to compile kernels:\n" + "\n".join(
        f"  {i.describe()}: {why}" for i, why in bad
    )


def host_cpu_profile(devices=None) -> str:
    """The first of :data:`HOST_CPU_PROFILES` whose device is present and compiles."""
    devices = enumerate_devices() if devices is None else devices
    for name in HOST_CPU_PROFILES:
        prof = load_profile(name)
        if any(matches(prof, i) and usable(i) is None for i, _ in devices):
            return name
    raise DeviceError(
        f"no CPU OpenCL device that compiles kernels is present; {_NO_CPU_FIX}. Devices "
        f"present:\n{_listing(devices)}{_not_usable_note(devices)}"
    )


def matches(profile: DeviceProfile, info: DeviceInfo) -> bool:
    """Whether ``info`` is a device of the kind ``profile`` describes."""

    def sub(needle, hay):
        return needle.lower() in hay.lower()

    return (
        sub(profile.match_platform, info.platform)
        and sub(profile.match_vendor, info.vendor)
        and sub(profile.match_name, info.name)
        and (profile.match_type == "ANY" or profile.match_type == info.type)
    )


def _listing(devices) -> str:
    if not devices:
        return "  (no OpenCL devices at all)"
    return "\n".join("  " + info.describe() + f", vendor {info.vendor!r}" for info, _ in devices)


def _generic_profile(info: DeviceInfo) -> DeviceProfile:
    """A profile for a device no shipped profile describes: its own limits, serial kernels."""
    from .profiles import DeviceProfile as P

    return P(
        name=f"generic:{info.name}",
        description=f"derived from the device's own properties ({info.platform})",
        source="OpenCL device queries",
        path="(generated)",
        match_platform=info.platform,
        match_vendor=info.vendor,
        match_type=info.type,
        match_name=info.name,
        budget=int(info.global_mem * 0.9),
        max_alloc=info.max_alloc,
        banks=1,
        bank_size=info.global_mem,
        host_alignment=64,
        kernel_variant="serial",
        work_group_size=1,
        buckets=0,
        precision="float32",
        build="source",
        binaries="",
        host_link_bandwidth=10e9,
        device_memory_bandwidth=20e9,
        device_compute_units=0,
        host_threads=0,
    )


def _open_info(info: DeviceInfo) -> Device:
    from .profiles import list_profiles

    profile = next(
        (p for p in map(load_profile, list_profiles()) if matches(p, info)), None
    ) or _generic_profile(info)
    cl_dev, ctx, queue = _context_for(
        info.platform_index, info.device_index, profile.device_compute_units
    )
    budget = min(profile.budget, info.global_mem)
    profile = dataclasses.replace(
        profile, budget=budget, max_alloc=min(profile.max_alloc, info.max_alloc, budget)
    )
    return Device(profile=profile, info=info, cl_device=cl_dev, context=ctx, queue=queue)


@dataclass
class Device:
    """An opened device: its profile (limits in force), context and queue."""

    profile: DeviceProfile
    info: DeviceInfo
    cl_device: object
    context: object
    queue: object

    @property
    def emulated(self) -> bool:
        return self.profile.emulated

    @property
    def fp64(self) -> bool:
        return self.info.fp64

    @property
    def loop_limit(self) -> int | None:
        """The device's cap on one work-item's loop iterations (:func:`loop_limit`)."""
        return loop_limit(self.info)

    def label(self) -> str:
        return f"{self.profile.label()} on {self.info.name}"

    # An opened device is a handle to process-wide OpenCL state: copies share it (clone
    # deep-copies parameters) and pickles reopen the same device in the new process.
    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        return (_reopen, (self.profile, self.info))


def _reopen(profile: DeviceProfile, info: DeviceInfo) -> Device:
    cl_dev, ctx, queue = _context_for(
        info.platform_index, info.device_index, profile.device_compute_units
    )
    return Device(profile=profile, info=info, cl_device=cl_dev, context=ctx, queue=queue)


@cache
def _context_for(pi: int, di: int, units: int = 0):
    # One context and one in-order queue per device (or sub-device) for the life of the
    # process: creating contexts per fit is slow and some drivers leak them.
    cl = _cl()
    dev = _platforms()[pi].get_devices()[di]
    if units > dev.max_compute_units:
        raise DeviceError(
            f"the profile asks for split.device_compute_units = {units}, but "
            f"{dev.name.strip()} has {dev.max_compute_units} compute units; set it to at most "
            f"{dev.max_compute_units} (0: the whole device)"
        )
    if 0 < units < dev.max_compute_units:
        # The core split: the device gets a sub-device of `units` compute units, leaving the
        # rest of a CPU to the host's gap refresh (unit A).
        try:
            P = cl.device_partition_property
            dev = dev.create_sub_devices([P.BY_COUNTS, units, P.BY_COUNTS_LIST_END])[0]
        except cl.Error as exc:
            warnings.warn(
                f"{dev.name.strip()} cannot be split into a sub-device of {units} compute units "
                f"({exc}); using the whole device", stacklevel=3,
            )  # fmt: skip
    ctx = cl.Context([dev])
    return dev, ctx, cl.CommandQueue(ctx, dev)


def _ordinal(n_found: int, profile) -> int:
    """Which of the ``n_found`` devices matching ``profile`` to open: ``$DUHL_CL_DEVICE_ORDINAL``
    (0 = the first, as CUDA_VISIBLE_DEVICES picks one GPU of several for a worker process)."""
    raw = os.environ.get("DUHL_CL_DEVICE_ORDINAL", "").strip()
    if not raw:
        return 0
    if not raw.isdigit() or int(raw) >= n_found:
        raise DeviceError(
            f"DUHL_CL_DEVICE_ORDINAL={raw!r}: {n_found} device(s) match profile "
            f"{profile.name!r}; set it to 0..{n_found - 1}, or unset it for the first"
        )
    return int(raw)


def open_device(spec=None, *, emulate: bool = False) -> Device:
    """Open the device described by a profile.

    Parameters
    ----------
    spec : str, path, DeviceProfile, Device, DeviceInfo or None
        Profile name or path; None means ``$DUHL_CL_DEVICE`` if set, else the host's CPU
        (:func:`host_cpu_profile`: ``"pocl-cpu"``, or ``"intel-cpu"`` where PoCL cannot
        compile). Of several devices matching the profile, ``$DUHL_CL_DEVICE_ORDINAL``
        picks one (default: the first). A DeviceInfo from :func:`enumerate_devices` opens that very device with the first
        shipped profile matching it, or limits read from the device itself.
    emulate : bool
        Run the profile on the host's CPU device when its own device is absent, with the
        profile's budget, largest allocation and kernel variant; outputs say "emulated".
    """
    if isinstance(spec, Device):
        return spec
    if isinstance(spec, DeviceInfo):
        return _open_info(spec)
    devices = enumerate_devices()
    if spec is None:
        spec = os.environ.get("DUHL_CL_DEVICE") or host_cpu_profile(devices)
    profile = load_profile(spec)
    present = [(i, d) for i, d in devices if matches(profile, i)]
    found = [(i, d) for i, d in present if usable(i) is None]
    emulated = False
    if not found and emulate:
        host = load_profile(host_cpu_profile(devices))
        found = [(i, d) for i, d in devices if matches(host, i) and usable(i) is None]
        emulated = host.name
    if not found:
        why = "the OpenCL device matching" if present else "no OpenCL device matches"
        raise DeviceError(
            f"{why} profile {profile.name!r}{' cannot compile kernels' if present else ''} "
            f"({profile.path}: platform "
            f"~{profile.match_platform!r}, vendor ~{profile.match_vendor!r}, type "
            f"{profile.match_type}, name ~{profile.match_name!r}). Devices present:\n"
            f"{_listing(devices)}{_not_usable_note(devices)}\nUse a profile that matches one "
            f"of them (see 'duhl-cl devices'), or emulate this one on the host's CPU with "
            f"emulate=True / --emulate."
        )
    info, _ = found[_ordinal(len(found), profile)]
    cl_dev, ctx, queue = _context_for(
        info.platform_index, info.device_index, profile.device_compute_units
    )
    # The limits in force are the profile's, clipped to what the device itself reports.
    budget = profile.budget if emulated else min(profile.budget, info.global_mem)
    max_alloc = min(profile.max_alloc, info.max_alloc, budget)
    profile = dataclasses.replace(
        profile, budget=budget, max_alloc=max_alloc, emulated=bool(emulated),
        emulated_on=emulated or "",
    )  # fmt: skip
    return Device(profile=profile, info=info, cl_device=cl_dev, context=ctx, queue=queue)
