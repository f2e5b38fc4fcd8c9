"""Device profiles: TOML files describing an OpenCL device class and its limits.

A profile says how to find its OpenCL device (substrings of platform, vendor, type and
device name), how much device memory the package may use, the largest single allocation,
the memory banks, the kernel variant and work-group size, the precision, how programs are
built, and the host-link and device-memory bandwidths. Profiles are validated on load: an
unknown key, a missing key or a bad value is a :class:`ProfileError` naming the file, the
key, what was given and what is allowed.
"""

from __future__ import annotations

import numbers
import os
import re
import sys
import tomllib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..kernels import VARIANTS
from ..resources import devices_dir

__all__ = [
    "DeviceProfile",
    "ProfileError",
    "load_profile",
    "list_profiles",
    "parse_size",
    "parse_bandwidth",
    "parse_budget",
    "resolve_budget",
    "format_size",
]

PRECISIONS = ("float32", "float64")
BUILD_MODES = ("source", "prebuilt")
DEVICE_TYPES = ("CPU", "GPU", "ACCELERATOR", "ANY")

_SIZE_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


class ProfileError(ValueError):
    """A device profile is missing, malformed or names an unknown key."""


def parse_size(value, *, what="size") -> int:
    """Parse ``"256 MiB"``, ``"8 GiB"``, ``"1.5GB"`` or a plain byte count into bytes."""
    if isinstance(value, bool):
        raise ValueError(
            f"{what}: expected a size such as '256 MiB' or a byte count, got {value!r}"
        )
    if isinstance(value, numbers.Integral):
        if value <= 0:
            raise ValueError(f"{what}: must be positive, got {value}")
        return int(value)
    if isinstance(value, float) and value.is_integer() and value > 0:
        return int(value)
    if not isinstance(value, str):
        raise ValueError(
            f"{what}: expected a size such as '256 MiB' or a byte count, got {value!r}"
        )
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", value)
    unit = (m.group(2) or "b").lower() if m else None
    if not m or unit not in _SIZE_UNITS:
        raise ValueError(
            f"{what}: cannot read {value!r}; write a number of bytes or a number with one of "
            f"the units B, KB, MB, GB, KiB, MiB, GiB (e.g. '256 MiB')"
        )
    if not m.group(2) and "." in m.group(1):
        # A bare "0.5" is no byte count (it would be cut to 0 or 1 byte, silently): ask.
        raise ValueError(
            f"{what}: {value!r} has no unit and is not a whole number of bytes; add a unit "
            f"(e.g. '{m.group(1)} MiB') or write a whole number of bytes"
        )
    n = int(float(m.group(1)) * _SIZE_UNITS[unit])
    if n <= 0:
        raise ValueError(f"{what}: must be positive, got {value!r}")
    return n


def parse_budget(value, data_bytes: int, name: str = "memory_budget"):
    """A memory budget in bytes: None, bytes, a size ("64MiB") or a fraction of the data
    ("10%" of ``data_bytes``). Not converted: a float or a string without a unit that is not
    a whole number of bytes (``0.5``, ``"0.5"``) is refused, with the forms that would do."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            frac = float(value.strip()[:-1]) / 100
        except ValueError:
            frac = None
        if frac is None or not 0 < frac < float("inf"):
            raise ValueError(
                f"{name}: cannot read {value!r}; write a percentage above 0 of the "
                f"data (e.g. '10%'), a size (e.g. '64 MiB') or a number of bytes"
            )
        return max(int(frac * data_bytes), 1)
    bare = isinstance(value, str) and re.fullmatch(r"\s*[0-9]*\.[0-9]+\s*", value)
    fraction = isinstance(value, float) and not value.is_integer()
    if bare or fraction:
        # Someone passing 0.5 likely means half the data; parameters are not reinterpreted,
        # so say which spellings mean what.
        x = float(value)
        pct = f"'{x * 100:g}%'" if 0 < x <= 1 else "e.g. '10%'"
        kind = "a string without a unit" if bare else "a float"
        raise ValueError(
            f"{name} {value!r} is {kind} and not a whole number of bytes; for a "
            f"fraction of the data write a percentage ({pct}), for a size a string with a "
            f"unit (e.g. '{x:g} GiB'), or pass a whole number of bytes (an int)"
        )
    return parse_size(value, what=name)


def _first_caller_outside_package() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside duhl_cl (the
    user's fit call, however deep the package's own frames go; Python 3.12 has
    ``skip_file_prefixes`` for this)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def resolve_budget(value, data_bytes: int, profile: DeviceProfile):
    """The device bytes a fit may use (None: the profile's budget): ``value`` as
    :func:`parse_budget` reads it, at most the profile's budget (what the device ledger
    enforces), with a warning that names the budget used where ``value`` asks for more than
    the profile's budget, or for more than all of the data."""
    budget = parse_budget(value, data_bytes)
    if budget is None:
        return None
    if budget > profile.budget:
        # The ledger would cap it anyway (duhl_cl.duhl.working_set): say so rather than
        # report a smaller stats_["budget"] without a word.
        warnings.warn(
            f"memory_budget {value!r} ({format_size(budget)}, {budget} bytes) is above the "
            f"budget of device profile {profile.label()!r}: using the profile's "
            f"{format_size(profile.budget)} ({profile.budget} bytes); to allow more, raise "
            f"memory.budget in the profile ({profile.path})",
            UserWarning,
            stacklevel=_first_caller_outside_package(),
        )
        return profile.budget
    if isinstance(value, str) and value.strip().endswith("%") and budget > data_bytes:
        # Honoured as given, not cut to 100%: device memory also holds the shared vectors
        # and each coordinate's state, so a budget above the data can be what keeps every
        # coordinate resident (policy "full" needs that).
        warnings.warn(
            f"memory_budget {value!r} is more than all of the data ({format_size(data_bytes)}"
            f" of device bytes): the budget is {value.strip()} of it, as given: "
            f"{format_size(budget)} ({budget} bytes); device memory also holds the shared "
            f"vectors and each coordinate's state, so more than the data can be needed to "
            f"hold every coordinate; for a part of the data pass at most '100%', or pass a "
            f"size (e.g. '64 MiB')",
            UserWarning,
            stacklevel=_first_caller_outside_package(),
        )
    return budget


def parse_bandwidth(value, *, what="bandwidth") -> float:
    """Parse ``"12 GB/s"`` or ``"460 GiB/s"`` into bytes per second."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    if isinstance(value, str) and value.strip().lower().endswith("/s"):
        return float(parse_size(value.strip()[:-2], what=what))
    raise ValueError(f"{what}: cannot read {value!r}; write e.g. '12 GB/s' or bytes per second")


def format_size(n: float) -> str:
    """Human-readable binary size: ``format_size(3 * 2**20) == '3.0 MiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class DeviceProfile:
    """A validated device profile (see ``devices/*.toml``).

    Sizes are in bytes and bandwidths in bytes per second.
    """

    name: str
    description: str
    source: str
    path: str
    match_platform: str
    match_vendor: str
    match_type: str
    match_name: str
    budget: int
    max_alloc: int
    banks: int
    bank_size: int
    host_alignment: int
    kernel_variant: str
    work_group_size: int
    buckets: int  # "bucketed" variant: its bucket count (0: one per compute unit, >= 2)
    precision: str
    build: str
    binaries: str
    host_link_bandwidth: float
    device_memory_bandwidth: float
    device_compute_units: int = 0
    host_threads: int = 0
    emulated: bool = field(default=False)
    emulated_on: str = field(default="")  # the host CPU profile that runs it when emulated

    def label(self) -> str:
        """Name as shown in every output: ``"fpga-u280-hbm (emulated on pocl-cpu)"``."""
        return (
            f"{self.name} (emulated on {self.emulated_on or 'the host CPU'})"
            if self.emulated
            else self.name
        )


# The schema: section -> key -> (parser, allowed-text). Parsers raise ValueError with a reason.
def _str(v, what):
    if not isinstance(v, str):
        raise ValueError(f"expected a string, got {v!r}")
    return v


def _choice(options):
    def parse(v, what):
        if v not in options:
            raise ValueError(f"given {v!r}, allowed: {', '.join(map(repr, options))}")
        return v

    return parse


def _posint(v, what):
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ValueError(f"given {v!r}, allowed: a positive integer")
    return v


def _count(v, what):
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"given {v!r}, allowed: an integer >= 0 (0 = all)")
    return v


def _size(v, what):
    return parse_size(v, what=what)


def _bw(v, what):
    return parse_bandwidth(v, what=what)


_SCHEMA = {
    "": {"name": _str, "description": _str, "source": _str},
    "match": {
        "platform": _str,
        "vendor": _str,
        "type": _choice(DEVICE_TYPES),
        "name": _str,
    },
    "memory": {
        "budget": _size,
        "max_alloc": _size,
        "banks": _posint,
        "bank_size": _size,
        "host_alignment": _size,
    },
    "kernel": {
        "variant": _choice(VARIANTS),
        "work_group_size": _posint,
        "buckets": _count,
        "precision": _choice(PRECISIONS),
        "build": _choice(BUILD_MODES),
        "binaries": _str,
    },
    "split": {"device_compute_units": _count, "host_threads": _count},
    "bandwidth": {"host_link": _bw, "device_memory": _bw},
}


def _validate(raw: dict, path: str) -> DeviceProfile:
    out = {}
    sections = {k for k in _SCHEMA if k}
    for key, value in raw.items():
        if isinstance(value, dict):
            if key not in sections:
                raise ProfileError(
                    f"{path}: unknown section [{key}]; allowed sections: "
                    f"{', '.join('[' + s + ']' for s in sorted(sections))}"
                )
        elif key not in _SCHEMA[""]:
            raise ProfileError(
                f"{path}: unknown key {key!r}; allowed top-level keys: "
                f"{', '.join(sorted(_SCHEMA['']))} and the sections "
                f"{', '.join('[' + s + ']' for s in sorted(sections))}"
            )
    for section, keys in _SCHEMA.items():
        table = raw if section == "" else raw.get(section)
        where = section + "." if section else ""
        if table is None:
            raise ProfileError(f"{path}: missing section [{section}] (keys: {', '.join(keys)})")
        if section:
            for key in table:
                if key not in keys:
                    raise ProfileError(
                        f"{path}: unknown key '{where}{key}'; allowed in [{section}]: "
                        f"{', '.join(keys)}"
                    )
        for key, parse in keys.items():
            if key not in table:
                raise ProfileError(f"{path}: missing key '{where}{key}'")
            try:
                out[(section, key)] = parse(table[key], f"{where}{key}")
            except ValueError as exc:
                raise ProfileError(f"{path}: bad value for '{where}{key}': {exc}") from None
    g = out.__getitem__
    budget, max_alloc = g(("memory", "budget")), g(("memory", "max_alloc"))
    banks, bank_size = g(("memory", "banks")), g(("memory", "bank_size"))
    if banks * bank_size < budget:
        raise ProfileError(
            f"{path}: memory.budget ({format_size(budget)}) exceeds banks x bank_size "
            f"({banks} x {format_size(bank_size)}); lower the budget or fix the banks"
        )
    if max_alloc > budget:
        max_alloc = budget  # no single buffer can be larger than the whole budget
    if g(("kernel", "build")) == "prebuilt" and not g(("kernel", "binaries")):
        name = g(("", "name"))
        raise ProfileError(
            f'{path}: kernel.build is "prebuilt" but kernel.binaries is empty; build the '
            f"binaries where the device's OpenCL compiler is installed with 'duhl-cl "
            f'build-kernels --device {name} --out DIR\' and set kernel.binaries = "DIR" '
            f"(absolute, ~/..., or relative to this file)"
        )
    align = g(("memory", "host_alignment"))
    if align < 1 or align & (align - 1):
        raise ProfileError(
            f"{path}: memory.host_alignment must be a power of two (bytes), got {align}; "
            f"use e.g. 64 or 4096"
        )
    return DeviceProfile(
        name=g(("", "name")),
        description=g(("", "description")),
        source=g(("", "source")),
        path=path,
        match_platform=g(("match", "platform")),
        match_vendor=g(("match", "vendor")),
        match_type=g(("match", "type")),
        match_name=g(("match", "name")),
        budget=budget,
        max_alloc=max_alloc,
        banks=banks,
        bank_size=bank_size,
        host_alignment=g(("memory", "host_alignment")),
        kernel_variant=g(("kernel", "variant")),
        work_group_size=g(("kernel", "work_group_size")),
        buckets=g(("kernel", "buckets")),
        precision=g(("kernel", "precision")),
        build=g(("kernel", "build")),
        binaries=g(("kernel", "binaries")),
        host_link_bandwidth=g(("bandwidth", "host_link")),
        device_memory_bandwidth=g(("bandwidth", "device_memory")),
        device_compute_units=g(("split", "device_compute_units")),
        host_threads=g(("split", "host_threads")),
    )


def list_profiles() -> list[str]:
    """Names of the profiles shipped with the package."""
    return sorted(p.stem for p in devices_dir().glob("*.toml"))


def load_profile(spec) -> DeviceProfile:
    """Load a profile by shipped name (``"pocl-cpu"``), by path, or pass one through.

    Parameters
    ----------
    spec : str, os.PathLike or DeviceProfile
        A shipped profile name, a path to a ``.toml`` file, or a loaded profile.
    """
    if isinstance(spec, DeviceProfile):
        return spec
    if spec is None:
        spec = "pocl-cpu"
    spec_s = str(spec)
    path = Path(spec_s)
    if not (path.suffix == ".toml" or path.exists() or "/" in spec_s):
        path = devices_dir() / f"{spec_s}.toml"
        if not path.exists():
            raise ProfileError(
                f"unknown device profile {spec_s!r}; shipped profiles: "
                f"{', '.join(list_profiles())}; or pass the path of a .toml profile "
                f"(run 'duhl-cl devices' to see what is present)"
            )
    if not path.is_file():
        raise ProfileError(f"device profile file {spec_s!r} does not exist")
    # A fit opens its profile several times (the host CPU's choice, the device, the split);
    # parsing the TOML each time was 2-3 ms of a 10 ms fit. Profiles are frozen, so one
    # parse serves until the file changes.
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    cached = _LOADED.get(key)
    if cached is not None:
        return cached
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from None
    profile = _validate(raw, str(path))
    _LOADED[key] = profile
    return profile


_LOADED: dict = {}
