"""What every result carries about how it was made."""

from __future__ import annotations

import functools
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
    return dict(_installed_versions())


@functools.cache  # reading package metadata parses files: once per process is enough
def _installed_versions() -> tuple[tuple[str, str], ...]:
    versions = []
    for name in TRACKED_PACKAGES:
        try:
            versions.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            versions.append((name, "absent"))
    return tuple(versions)


# CPU features that select different numeric kernels (BLAS, NumPy loops, Aer's SIMD
# paths), so a bit-level difference between two machines can be told from a bug.
_KERNEL_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512dq", "avx512vl", "sse4_2", "neon", "asimd")


@functools.cache  # the CPU does not change while a process runs
def cpu_description() -> str:
    """Return the CPU model and its kernel-selecting features, e.g. ``"Xeon ... [avx2 fma]"``."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model") and model in ("", platform.machine()):
                    model = value.strip()
                elif key in ("flags", "Features"):
                    flags = set(value.split())
                    break
    except OSError:
        pass
    features = " ".join(flag for flag in _KERNEL_FLAGS if flag in flags)
    return f"{model} [{features}]"


def environment() -> dict[str, Any]:
    """Return the package versions plus interpreter, platform and CPU."""
    return {
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_description(),
    }
