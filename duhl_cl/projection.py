"""Projected time on a profiled device: a bandwidth model fed by what a fit counted.

A fit run on PoCL (emulating a profile, or as itself) records per round the bytes it moved
over the link, the passes, and the entries of the resident coordinates; the host's float64
certificates are timed as they ran. The projection asks how long the same rounds would take
on the profile's device if it were limited by its bandwidths alone:

    T = (H2D + D2H) / B_link
        + sum over rounds of (passes * 2 + 1) * nnz * (e + r) / B_mem
        + the certificates' measured host time

where H2D and D2H are the fit's bytes each way, nnz the entries resident that round (one
for an empty coordinate), e the bytes of one stored entry (value, plus a 4-byte index when
sparse), r the bytes of one real (4 or 8): a pass reads every resident entry twice (for u,
then for the update) with the shared-vector element each time, and the gap kernel reads
them once more. B_link and B_mem are the profile's host_link and device_memory bandwidths.
It is a model, not a measurement: it leaves out kernel launch latency, compute, atomics
and the host refresh (which overlaps the device), so it is a lower bound for a
bandwidth-bound kernel and a guide to how the rounds split between link and memory.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Projection", "project", "project_fit"]


@dataclass(frozen=True)
class Projection:
    """Projected seconds on ``profile`` (see the module docstring for the formula)."""

    profile: str
    total: float
    link: float
    device_memory: float
    host: float

    def describe(self) -> str:
        return (
            f"projected time on {self.profile} (bandwidth model, not a measurement): "
            f"{self.total:.3f} s = link {self.link:.3f} s + device memory "
            f"{self.device_memory:.3f} s + host certificates {self.host:.3f} s"
        )


def project(
    history, profile, *, entry_bytes: int, real_bytes: int, bytes_moved: int | None = None
) -> Projection:
    """Project a fit's rounds onto ``profile``'s bandwidths.

    Parameters
    ----------
    history : list of dict
        The fit's ``history_`` (records with bytes_h2d, bytes_d2h, passes, nnz_visited,
        cert_time).
    profile : duhl_cl.device.profiles.DeviceProfile
    entry_bytes : int
        Bytes of one stored entry on the device (value, plus index when sparse).
    real_bytes : int
        Bytes of one real number on the device (4 or 8).
    bytes_moved : int, optional
        All bytes the fit moved both ways, including those before its first round (labels,
        starting vector); default: the sum of the rounds' bytes.
    """
    link = mem = host = 0.0
    if bytes_moved is None:
        bytes_moved = sum(r.get("bytes_h2d", 0) + r.get("bytes_d2h", 0) for r in history)
    link = bytes_moved / profile.host_link_bandwidth
    for rec in history:
        nnz = rec.get("nnz_visited", 0)
        reads = 2 * rec.get("passes", 0) + (1 if nnz else 0)
        mem += reads * nnz * (entry_bytes + real_bytes) / profile.device_memory_bandwidth
        host += rec.get("cert_time", 0.0)
    return Projection(profile.name, link + mem + host, link, mem, host)


def project_fit(history, stats, profile) -> Projection:
    """:func:`project` for a fitted estimator: its ``history_`` and ``stats_`` (which carry
    the bytes moved, the precision and the device bytes of a stored entry)."""
    import numpy as np

    return project(
        history,
        profile,
        entry_bytes=stats["entry_bytes"],
        real_bytes=np.dtype(stats["dtype"]).itemsize,
        bytes_moved=stats["bytes_h2d"] + stats["bytes_d2h"],
    )
