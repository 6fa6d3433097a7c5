"""Named policies that choose a backend for each subexperiment.

A policy is an ordered table of (widest subexperiment it takes, backend); the
first row whose width bound holds wins. Tables are data so they can be shown,
validated and extended without code.
"""

from __future__ import annotations

from dataclasses import dataclass

from qhybrid.errors import InputError

# What may move off the QPU when its gateway calls fail: nothing, only what failed for a
# reason that may pass (unreachable, overloaded, timed out), or everything.
FAILOVER_MODES = ("never", "transient", "always")
DEFAULT_FAILOVER = "transient"


def check_failover(mode: str) -> None:
    """Refuse a failover mode that is not one of FAILOVER_MODES, naming --failover."""
    if mode not in FAILOVER_MODES:
        raise InputError("--failover", f"unknown mode {mode!r}; choose one of {list(FAILOVER_MODES)}")


@dataclass(frozen=True, kw_only=True)
class WidthPolicy:
    """Route a subexperiment by its width (number of qubits of its subcircuit)."""

    name: str
    description: str
    rules: tuple[tuple[int | None, str], ...]  # (max width or None for any, backend name)
    # (backend, simulator to fail over to) when that backend's calls keep failing
    # for a subexperiment; the report names each subexperiment that failed over and why.
    failover: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        """Reject a table that leaves some width without a backend."""
        if not self.rules or self.rules[-1][0] is not None:
            raise ValueError(f"policy {self.name!r} must end with a catch-all rule (None, backend)")

    def backend_for(self, width: int) -> str:
        """Return the backend name for a subexperiment of ``width`` qubits."""
        for max_width, backend in self.rules:
            if max_width is None or width <= max_width:
                return backend
        raise AssertionError("unreachable: the last rule is a catch-all")

    def failover_for(self, backend: str) -> str | None:
        """Return the backend that takes over subexperiments ``backend`` failed, if any."""
        return dict(self.failover).get(backend)


POLICIES: dict[str, WidthPolicy] = {
    policy.name: policy
    for policy in (
        WidthPolicy(
            name="cpu", description="everything on the CPU simulator (local default)", rules=((None, "cpu"),)
        ),
        WidthPolicy(name="gpu", description="everything on the GPU simulator", rules=((None, "gpu"),)),
        WidthPolicy(
            name="qpu",
            description="everything on the QPU through the gateway; what keeps failing for a transient "
            "reason fails over to the CPU (see --failover)",
            rules=((None, "qpu"),),
            failover=(("qpu", "cpu"),),
        ),
        WidthPolicy(
            name="width",
            description="the paper's toy policy: <=5 qubits on the QPU, <=20 on CPU, wider on GPU; "
            "QPU subexperiments whose gateway calls keep failing fail over to the CPU",
            rules=((5, "qpu"), (20, "cpu"), (None, "gpu")),
            failover=(("qpu", "cpu"),),
        ),
    )
}


def get_policy(name: str) -> WidthPolicy:
    """Return the named policy or fail listing the valid names."""
    try:
        return POLICIES[name]
    except KeyError:
        raise InputError("--policy", f"unknown policy {name!r}; choose one of {sorted(POLICIES)}") from None
