"""The ``duhl-cl`` command line: devices, train, predict, convert, build-kernels, demo.

One module per command family, each adding its own subparser (``add_*``) and running it
(``cmd_*``): :mod:`.train` (train, predict), :mod:`.convert`, :mod:`.devices` (devices, build-kernels),
:mod:`.demo`; :mod:`.args` holds the shared arguments. Every error a user can cause ends as
one ``error: ...`` line and exit status 2 (a device failing during a fit: 1); Ctrl-C ends with 130 (train writes the model so far
first); a fit that stops at --max-iter or --max-time before its tolerance ends with 0 and a
``not converged: ...`` line on stderr.
"""

from __future__ import annotations

import sys

from .convert import add_convert
from .demo import add_demo
from .devices import add_build_kernels, add_devices
from .train import add_predict, add_train

__all__ = ["main", "build_parser"]


def build_parser():
    import argparse

    p = argparse.ArgumentParser(prog="duhl-cl", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for add in (add_devices, add_train, add_predict, add_convert, add_build_kernels, add_demo):
        add(sub)
    return p


def main(argv=None):
    from ..device.binaries import PrebuiltError
    from ..device.discovery import DeviceError
    from ..device.faults import DeviceFault
    from ..device.ledger import MemoryBudgetError
    from ..device.profiles import ProfileError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DeviceFault as exc:
        # Not the input's fault: the device failed during the fit (1, as any failure).
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (
        ProfileError,
        DeviceError,
        MemoryBudgetError,
        PrebuiltError,
        ValueError,
        OSError,  # a file missing, unreadable or unwritable (FileNotFoundError, ...)
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # (Ctrl-C in a fit's rounds does not come here: train keeps the model so far, writes
        # it, and returns 130 itself.)
        print("interrupted", file=sys.stderr)
        return 130
