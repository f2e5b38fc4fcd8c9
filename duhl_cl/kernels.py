"""The kernel catalogue: every OpenCL program of kernels_cl/, its defines, arguments and launch.

One routine object per kernel (CLBlast's routine classes) owns its variant's defines, its
argument order after the common ones, and its launch shape; :func:`programs` lists every
(file, defines) a fit can build, for the prebuilt binaries. Sources are read from
``kernels_cl/`` (``duhl_cl/_kernels`` when installed) with their local headers inlined, so
that a program's cache key is its full text.

Called by the device working set (duhl_cl.duhl.working_set), which builds each routine once
with :func:`duhl_cl.device.build.get_kernel` and enqueues it, and by the binary builder
(duhl_cl.device.binaries). Nothing here talks to a device: a routine is bound to kernels
built elsewhere.
"""

from __future__ import annotations

import itertools
import re

import numpy as np

from .models import Model, kernel_defines
from .resources import kernels_dir

__all__ = [
    "VARIANTS",
    "WG",
    "PassRoutine",
    "base_defines",
    "device_defines",
    "program_options",
    "defines_to_options",
    "grid",
    "kernel_source",
    "n_buckets",
    "pass_routine",
    "programs",
    "tpa_atomics",
    "tpa_group_size",
]

VARIANTS = ("serial", "tpa", "bucketed")  # the pass kernels a profile may name

# Work-group size of the one-work-item-per-piece kernels (gap, gradient, scatter, merge).
# Fixed, because PoCL compiles a kernel anew for every local size it is launched with
# (letting the runtime choose one per global size cost a compilation per size: ~0.1 s each).
WG = 32

_INCLUDE = re.compile(r'^#include "([A-Za-z0-9_.]+)"\s*$', re.M)


def grid(n):
    """Global size of a WG-wide launch over ``n`` items."""
    return (-(-max(n, 1) // WG) * WG,)


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
    """``-DKEY=value`` build options, sorted (part of a program's cache key); the key
    ``CL_STD`` is the language version instead (``-cl-std=CL3.0``)."""
    return [
        f"-cl-std={v}" if k == "CL_STD" else f"-D{k}={int(v) if isinstance(v, bool) else v}"
        for k, v in sorted(defines.items())
    ]


# CPU implementations whose Clang compiles for the host's vector unit and honours an
# under-aligned vector typedef (kernels_cl/slot.h). Not Rusticl on llvmpipe (a CPU device too):
# its process died in the first dense pass with them; nor Oclgrind's simulator.
HOST_CPU_PLATFORMS = ("Intel(R) OpenCL", "Portable Computing Language")


def device_defines(device) -> dict:
    """Defines that follow from the device itself, added to every program built for it:
    ``HOST_CPU=1`` on a CPU device of :data:`HOST_CPU_PLATFORMS`, so that dense slots take
    plain unaligned vector loads and prefetches (kernels_cl/slot.h) where the target triple
    does not say x86-64 (Intel's CPU runtime compiles for SPIR64)."""
    info = getattr(device, "info", None)
    if info is None or info.type != "CPU" or info.platform not in HOST_CPU_PLATFORMS:
        return {}
    return {"HOST_CPU": 1}


def program_options(device, defines: dict) -> list[str]:
    """The build options of a program for ``device``: its :func:`device_defines`, then
    ``defines`` (which win), as :func:`defines_to_options` writes them."""
    return defines_to_options({**device_defines(device), **defines})


def base_defines(model, dtype, sparse: bool, weighted: bool | None = None) -> dict:
    """The defines every program of one fit shares (kernels_cl/model.h).

    ``model`` is a kernel model (a :class:`duhl_cl.models.Model` class or instance): its
    code and the table's model codes (:func:`duhl_cl.models.kernel_defines`); ``weighted``
    (default: whether a bound model has sample weights) sets WEIGHTED.
    """
    if weighted is None:
        weighted = isinstance(model, Model) and model.weighted
    return {
        **kernel_defines(model),
        "WEIGHTED": int(bool(weighted)),
        "USE_DOUBLE": int(np.dtype(dtype) == np.float64),
        "SPARSE": int(bool(sparse)),
    }


def n_buckets(device) -> int:
    """Buckets of the "bucketed" variant: the profile's ``kernel.buckets``, else one per
    compute unit; at least two.

    At least two so that the merge is exercised (and the variant differs from "serial")
    even on a one-unit sub-device.
    """
    want = int(getattr(device.profile, "buckets", 0) or device.cl_device.max_compute_units)
    return max(2, want)


def tpa_group_size(device) -> int:
    """Work-group size of the "tpa" variant: the profile's, else 64, as a power of two that
    the device accepts."""
    want = device.profile.work_group_size
    want = want if want > 1 else 64
    limit = int(device.cl_device.max_work_group_size)
    g = 1
    while g * 2 <= min(want, limit):
        g *= 2
    return g


# Extensions whose OpenCL C add on a float in global memory is atomic_fetch_add_explicit:
# Khronos' (its feature macros __opencl_c_ext_fp32/fp64_global_atomic_add), Intel's own.
FLOAT_ATOMICS = {
    "cl_ext_float_atomics": ("__opencl_c_ext_fp32_global_atomic_add",
                             "__opencl_c_ext_fp64_global_atomic_add"),
    "cl_intel_global_float_atomics": ("cl_intel_global_float_atomics",
                                      "cl_intel_global_float_atomics"),
}  # fmt: skip


def tpa_atomics(device, double: bool) -> str:
    """How the "tpa" pass adds into the shared vector on ``device``: ``"native"`` where the
    device reports float atomics (an extension of :data:`FLOAT_ATOMICS`, with OpenCL C 2.0
    or later for its atomic types) and, where it lists its OpenCL C features, the global add
    for this precision; else ``"compare-and-swap"``, the portable loop on the value's bits.
    Chosen from the reported extensions and features at build time; the kernel refuses to
    build the native add where the compiler lacks it, and the routine then takes the loop."""
    info = device.info
    if int(info.opencl_c_version.split(".")[0] or 0) < 2:
        return "compare-and-swap"
    named = [ext for ext in FLOAT_ATOMICS if ext in info.extensions]
    if not named:
        return "compare-and-swap"
    wanted = {FLOAT_ATOMICS[ext][1 if double else 0] for ext in named}
    listed = {f for f in info.c_features if "_global_atomic_add" in f and "_ext_fp" in f}
    if listed and not wanted & listed:
        return "compare-and-swap"  # the features are listed, and this precision's is not
    return "native"


def _cl_std(device) -> str:
    """The -cl-std of the native add: the newest OpenCL C the device compiles, 2.0 or 3.0."""
    return "CL3.0" if int(device.info.opencl_c_version.split(".")[0]) >= 3 else "CL2.0"


class PassRoutine:
    """One pass variant's kernels, bound: ``enqueue`` launches passes over a slot list.

    The common arguments (``args``, built by the working set) are those every pass kernel
    takes first: pool values and indices, slot offsets and lengths, the visit list with its
    start and count, coefficients, squared norms, labels, the shared vector, dim, l1, l2,
    C, bias, 1/m (kernels_cl/cd_pass.cl). Each variant appends its own.
    """

    name = ""
    program = ""
    kernel = ""
    one_launch = False  # whether a round's passes can be one launch

    def __init__(self, device, base: dict, get_kernel):
        self.k_pass = get_kernel(device, self.program, self.defines(device, base), self.kernel)

    @classmethod
    def defines(cls, device, base: dict) -> dict:
        return dict(base)

    @classmethod
    def unsupported(cls, device, dtype) -> str | None:
        """Why this variant cannot run on ``device`` in ``dtype``, from the device's reported
        features (None: it can)."""
        if np.dtype(dtype) == np.float64 and not device.fp64:
            return f"{device.info.name} reports no double precision (cl_khr_fp64)"
        return None

    @classmethod
    def copies(cls, device) -> int:
        """Private copies of the shared vector the variant needs in device memory."""
        return 0

    def enqueue(self, queue, args, count, *, n_passes=1, seed=0, state=None):
        raise NotImplementedError


class SerialPass(PassRoutine):
    """Exact sequential descent by one work-item; n_passes passes, shuffled on the device
    from ``seed`` (0: the list as given), in one launch."""

    name, program, kernel, one_launch = "serial", "cd_pass.cl", "cd_pass", True

    def enqueue(self, queue, args, count, *, n_passes=1, seed=0, state=None):
        self.k_pass(queue, (1,), (1,), *args, np.int32(n_passes), np.uint32(seed))


class TpaPass(PassRoutine):
    """TPA-SCD: one work-group of ``group`` work-items a coordinate, one launch a pass."""

    name, program, kernel = "tpa", "cd_pass_tpa.cl", "cd_pass_tpa"
    _NATIVE_FAILED: dict = {}  # (context, double) -> what stats_ says, once a build failed

    def __init__(self, device, base, get_kernel):
        self.group = tpa_group_size(device)
        self.atomics = tpa_atomics(device, bool(base["USE_DOUBLE"]))
        key = (id(device.context), bool(base["USE_DOUBLE"]))
        if self.atomics == "native" and key in self._NATIVE_FAILED:
            self.atomics = self._NATIVE_FAILED[key]  # known not to build: not tried again
        if self.atomics != "native":
            self.k_pass = get_kernel(
                device, self.program, self.defines(device, base, native=False), self.kernel
            )
            return
        try:
            self.k_pass = get_kernel(
                device, self.program, self.defines(device, base, native=True), self.kernel
            )
        except RuntimeError as exc:  # device.build's KernelBuildError (build imports us)
            # The extension is reported but its add does not build (a driver that lists it
            # without the add for this precision): the portable loop, and stats_ says why.
            lines = str(exc).splitlines()
            why = next((ln.strip() for ln in lines if "error" in ln.lower()), lines[0])[:160]
            self.atomics = f"compare-and-swap (the native add did not build: {why})"
            self._NATIVE_FAILED[key] = self.atomics
            self.k_pass = get_kernel(
                device, self.program, self.defines(device, base, native=False), self.kernel
            )

    @classmethod
    def defines(cls, device, base, native=None):
        out = dict(base, WG=tpa_group_size(device))
        if native is None:
            native = tpa_atomics(device, bool(base["USE_DOUBLE"])) == "native"
        if native:
            out.update(NATIVE_ATOMIC_ADD=1, CL_STD=_cl_std(device))
        return out

    @classmethod
    def unsupported(cls, device, dtype):
        why = super().unsupported(device, dtype)
        if why is None and np.dtype(dtype) == np.float64:
            if "cl_khr_int64_base_atomics" not in device.info.extensions:
                why = (f"{device.info.name} reports no 64-bit atomics "
                       f"(cl_khr_int64_base_atomics), which the float64 'tpa' pass needs")  # fmt: skip
        return why

    def enqueue(self, queue, args, count, *, n_passes=1, seed=0, state=None):
        self.k_pass(queue, (count * self.group,), (self.group,), *args)


class BucketedPass(PassRoutine):
    """CoCoA buckets: ``n_buckets`` work-items each descend on a private copy of the shared
    vector (sigma' = buckets), then ``merge_buckets`` adds their changes over sigma'.
    ``state`` gives the copies' buffer, the shared vector's buffer and length, and the real
    type."""

    name, program, kernel = "bucketed", "cd_pass_bucketed.cl", "cd_pass_bucketed"

    @classmethod
    def copies(cls, device):
        return n_buckets(device)

    def __init__(self, device, base, get_kernel):
        super().__init__(device, base, get_kernel)
        self.n_buckets = n_buckets(device)
        self.k_merge = get_kernel(device, self.program, dict(base), "merge_buckets")

    def enqueue(self, queue, args, count, *, n_passes=1, seed=0, state=None):
        copies, v, vdim, real = state
        nb = min(self.n_buckets, count)
        self.k_pass(queue, (nb,), (1,), *args, copies, np.int32(vdim), real(nb))
        self.k_merge(
            queue, grid(vdim), (WG,), v, copies, np.int32(vdim), np.int32(nb), real(1.0 / nb)
        )


_PASSES = {r.name: r for r in (SerialPass, TpaPass, BucketedPass)}


def pass_routine(variant: str):
    """The routine class of a pass variant."""
    if variant not in _PASSES:
        raise ValueError(
            f"kernel_variant must be one of {', '.join(map(repr, VARIANTS))} (or None for "
            f"the profile's), got {variant!r}"
        )
    return _PASSES[variant]


def programs(device, kernel_models, dtypes, variants):
    """Every (kernel file, defines) a fit of these kernel models (Model classes), precisions
    and variants builds: the gap and scatter programs and each variant's pass program, dense
    and sparse, without and with sample weights."""
    for model in sorted(set(kernel_models), key=lambda k: k.code):
        for dtype in dtypes:
            for sparse, weighted in itertools.product((0, 1), (0, 1)):
                base = base_defines(model, dtype, sparse, weighted)
                yield "gap.cl", base
                yield "scatter.cl", base
                for v in variants:
                    r = _PASSES[v]
                    yield r.program, r.defines(device, base)
