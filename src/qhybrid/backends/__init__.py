"""Execution backends, looked up by the names that policies use."""

from __future__ import annotations

from qhybrid.backends.aer import AerBackend
from qhybrid.backends.base import Backend, OutcomeDistribution
from qhybrid.backends.qpu import QpuFailures, gateway_settings, qpu_backend
from qhybrid.errors import InputError

BACKEND_NAMES = ("cpu", "gpu", "qpu")
SIMULATOR_BACKENDS = frozenset({"cpu", "gpu"})

_cache: dict[str, Backend] = {}


def _cache_key(name: str) -> str:
    # The qpu backend follows the gateway settings, which a process may change between runs.
    return f"qpu:{sorted(gateway_settings().items())}" if name == "qpu" else name


def get_backend(name: str) -> Backend:
    """Return the named backend, creating it once per process; fail clearly if it cannot run."""
    if name not in BACKEND_NAMES:
        raise InputError("backend", f"unknown backend {name!r}; choose one of {list(BACKEND_NAMES)}")
    key = _cache_key(name)
    if key not in _cache:
        if name == "cpu":
            _cache[key] = AerBackend("cpu", "CPU")
        elif name == "gpu":
            _cache[key] = AerBackend("gpu", "GPU")
        else:
            _cache[key] = qpu_backend()
    return _cache[key]


__all__ = [
    "BACKEND_NAMES",
    "SIMULATOR_BACKENDS",
    "Backend",
    "OutcomeDistribution",
    "QpuFailures",
    "get_backend",
]
