"""``duhl-cl devices`` and ``duhl-cl build-kernels``: what is present, and prebuilt binaries."""

from __future__ import annotations

import time

from ..kernels import VARIANTS
from ..models import model_names

__all__ = ["add_devices", "add_build_kernels", "cmd_devices", "cmd_build_kernels"]


def add_devices(sub):
    q = sub.add_parser("devices", help="list OpenCL platforms, devices and matching profiles")
    q.set_defaults(func=cmd_devices)


def add_build_kernels(sub):
    q = sub.add_parser(
        "build-kernels", help="compile every kernel for a device and save the binaries"
    )
    q.add_argument("--device", required=True, help="profile name or path of the device")
    q.add_argument("--out", required=True, help="directory for the binaries and manifest.json")
    q.add_argument(
        "--model", action="append", choices=model_names(aliases=True), metavar="MODEL",
        help=f"only this model (repeatable): {', '.join(model_names())}",
    )  # fmt: skip
    q.add_argument(
        "--dtype", action="append", choices=("float32", "float64"), help="only this precision"
    )
    q.add_argument(
        "--variant",
        action="append",
        choices=VARIANTS,
        help="only this kernel variant (repeatable)",
    )
    q.set_defaults(func=cmd_build_kernels)


def cmd_devices(args):
    from ..device.discovery import _NO_CPU_FIX, enumerate_devices, matches, usable
    from ..device.profiles import format_size, list_profiles, load_profile

    profiles = [load_profile(p) for p in list_profiles()]
    devices = enumerate_devices()
    if not devices:
        print(f"no OpenCL devices found; {_NO_CPU_FIX}")
    for info, _ in devices:
        prof = [p.name for p in profiles if matches(p, info)]
        print(f"{info.describe()}")
        print(f"    vendor {info.vendor}, {info.version}, {info.compute_units} compute units")
        print(
            f"    global memory {format_size(info.global_mem)}, largest allocation "
            f"{format_size(info.max_alloc)}, fp64 {'yes' if info.fp64 else 'no'}"
        )
        print(
            f"    profiles: {', '.join(prof) if prof else '(none match; any profile can run emulated on the host CPU)'}"
        )
        why = usable(info) if "oclgrind" not in info.platform.lower() else None
        if why:
            print(f"    cannot compile kernels here: {why}")
    print("\nprofiles shipped:")
    for p in profiles:
        banks = f"{p.banks} x {format_size(p.bank_size)}" if p.banks > 1 else "1 bank"
        print(
            f"  {p.name:16s} budget {format_size(p.budget):>10s}  {banks:16s} variant "
            f"{p.kernel_variant:8s} {p.precision}  {p.build:8s}  {p.description}"
        )
    return 0


def cmd_build_kernels(args):
    from ..device.binaries import build_binaries
    from ..device.discovery import open_device

    device = open_device(args.device)
    print(
        f"duhl-cl build-kernels: {device.info.name} ({device.info.platform}), profile "
        f"{device.profile.name}, into {args.out}",
        flush=True,
    )
    t0 = time.perf_counter()
    n = build_binaries(
        device, args.out, models=args.model, dtypes=args.dtype, variants=args.variant
    )
    print(
        f"{n} programs built in {time.perf_counter() - t0:.1f} s; a profile loads them with "
        f'build = "prebuilt" and binaries = "{args.out}" in its [kernel] section'
    )
    return 0
