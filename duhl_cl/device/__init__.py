"""Devices: profiles, discovery, program builds and prebuilt binaries, and the memory ledger.

- :mod:`.profiles`: device profiles (devices/*.toml) as data, validated;
- :mod:`.icd`: the OpenCL drivers installed from PyPI, registered for pyopencl's loader;
- :mod:`.discovery`: matching profiles to the OpenCL devices present, opening one;
- :mod:`.build`: program builds, cached per (device, source, options);
- :mod:`.binaries`: prebuilt binaries (FPGA profiles) and their builder;
- :mod:`.ledger`: every device allocation of a fit, against its budget.
"""

from .discovery import Device, DeviceError, open_device
from .ledger import Ledger, MemoryBudgetError
from .profiles import DeviceProfile, ProfileError, list_profiles, load_profile

__all__ = [
    "Device",
    "DeviceError",
    "DeviceProfile",
    "Ledger",
    "MemoryBudgetError",
    "ProfileError",
    "list_profiles",
    "load_profile",
    "open_device",
]
