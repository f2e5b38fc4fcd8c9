"""Arguments that several ``duhl-cl`` commands share."""

from __future__ import annotations

import argparse

__all__ = ["device_args", "passes_arg"]


def device_args(q):
    """--device and --emulate."""
    q.add_argument(
        "--device",
        default=None,
        help="profile name or path to a .toml profile (default: the host CPU, pocl-cpu, "
        "or intel-cpu where PoCL cannot compile)",
    )
    q.add_argument(
        "--emulate",
        action="store_true",
        help="run the profile on the host CPU device if its own device is absent",
    )


def passes_arg(text):
    """--passes-per-round: an integer >= 1 or 'auto'."""
    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1 or 'auto', got {text!r}")
    return n
