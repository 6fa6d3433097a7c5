"""Execution backends, looked up by the names that policies use."""

from __future__ import annotations

from collections.abc import Sequence

from qhybrid.backends.aer import BRANCHING_MAX_WIDTH, AerBackend
from qhybrid.backends.base import Backend, OutcomeDistribution
from qhybrid.backends.qpu import EventSink, GatewaySettings, QpuFailures, qpu_backend
from qhybrid.errors import InputError

BACKEND_NAMES = ("cpu", "gpu", "qpu")
SIMULATOR_BACKENDS = frozenset({"cpu", "gpu"})

# One instance per backend (and per gateway settings for qpu) per process: building an
# Aer simulator or a gateway client for every batch would cost more than small batches.
_instances: dict[tuple[str, GatewaySettings | None], Backend] = {}


def get_backend(name: str, gateway: GatewaySettings | None = None) -> Backend:
    """Return the named backend, creating it once per process; fail clearly if it cannot run.

    ``gateway`` says where the qpu backend finds the QPU gateway; the simulators ignore it.
    """
    if name not in BACKEND_NAMES:
        raise InputError("backend", f"unknown backend {name!r}; choose one of {list(BACKEND_NAMES)}")
    key = (name, (gateway or GatewaySettings()) if name == "qpu" else None)
    if key not in _instances:
        if name == "cpu":
            _instances[key] = AerBackend("cpu", "CPU", branching_max_width=BRANCHING_MAX_WIDTH)
        elif name == "gpu":
            _instances[key] = AerBackend("gpu", "GPU")
        else:
            _instances[key] = qpu_backend(gateway or GatewaySettings())
    return _instances[key]


def check_backends(names: Sequence[str], gateway: GatewaySettings | None = None) -> None:
    """Create each named backend and check its configuration: fail fast, before any subexperiment runs."""
    for name in names:
        get_backend(name, gateway).check()


__all__ = [
    "BACKEND_NAMES",
    "SIMULATOR_BACKENDS",
    "Backend",
    "EventSink",
    "GatewaySettings",
    "OutcomeDistribution",
    "QpuFailures",
    "check_backends",
    "get_backend",
]
