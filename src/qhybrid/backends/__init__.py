"""Execution backends, looked up by the names that policies use."""

from __future__ import annotations

from qhybrid.backends.aer import AerBackend
from qhybrid.backends.base import Backend, OutcomeDistribution
from qhybrid.backends.qpu import qpu_backend
from qhybrid.errors import InputError

BACKEND_NAMES = ("cpu", "gpu", "qpu")
SIMULATOR_BACKENDS = frozenset({"cpu", "gpu"})

_cache: dict[str, Backend] = {}


def get_backend(name: str) -> Backend:
    """Return the named backend, creating it once per process; fail clearly if it cannot run."""
    if name not in BACKEND_NAMES:
        raise InputError("backend", f"unknown backend {name!r}; choose one of {list(BACKEND_NAMES)}")
    if name not in _cache:
        if name == "cpu":
            _cache[name] = AerBackend("cpu", "CPU")
        elif name == "gpu":
            _cache[name] = AerBackend("gpu", "GPU")
        else:
            qpu_backend()
    return _cache[name]


__all__ = ["BACKEND_NAMES", "SIMULATOR_BACKENDS", "Backend", "OutcomeDistribution", "get_backend"]
