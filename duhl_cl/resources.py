"""Where the OpenCL sources and device profiles live, installed or in a source tree.

An installed wheel ships them as ``duhl_cl/_kernels`` and ``duhl_cl/_devices`` (see the
package-dir mapping in pyproject.toml); a source tree or an editable install keeps them at
the repository's top level as ``kernels_cl/`` and ``devices/``.
"""

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def _find(installed: str, in_tree: str) -> Path:
    for candidate in (_HERE / installed, _HERE.parent / in_tree):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"duhl_cl cannot find its {in_tree}/ directory (looked in {_HERE / installed} and "
        f"{_HERE.parent / in_tree}); reinstall the package"
    )


def kernels_dir() -> Path:
    """Directory holding the OpenCL C sources (``*.cl``, ``*.h``)."""
    return _find("_kernels", "kernels_cl")


def devices_dir() -> Path:
    """Directory holding the shipped device profiles (``*.toml``)."""
    return _find("_devices", "devices")
