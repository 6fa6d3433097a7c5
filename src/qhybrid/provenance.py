"""What every result carries about how it was made."""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from typing import Any

# The packages whose versions can change a number in a result.
TRACKED_PACKAGES = (
    "qhybrid",
    "qiskit",
    "qiskit-aer",
    "qiskit-addon-cutting",
    "numpy",
    "scipy",
)


def package_versions() -> dict[str, str]:
    """Return the installed version of each tracked package ("absent" when not installed)."""
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def environment() -> dict[str, Any]:
    """Return the package versions plus interpreter and platform."""
    return {
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
