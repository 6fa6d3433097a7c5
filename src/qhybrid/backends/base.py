"""The small interface every execution backend implements."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from qiskit import QuantumCircuit

from qhybrid.cutting.outcomes import OutcomeDistribution


class Backend(Protocol):
    """Runs cutting subexperiments and returns their outcome distributions."""

    name: str

    def run(
        self,
        circuits: Sequence[QuantumCircuit],
        *,
        shots: int | None,
        seeds: Sequence[int],
        events: Callable[[dict[str, Any]], None] | None = None,
    ) -> list[OutcomeDistribution]:
        """Run each circuit; ``shots=None`` asks for the exact distribution.

        ``seeds[i]`` drives every random choice for ``circuits[i]``, so a circuit's
        result never depends on which batch or position it ran in. ``events`` hears
        progress from a backend that waits on a remote service (plain JSON data).
        """
        ...

    def check(self) -> None:
        """Fail with a configuration error (exit 2) when this backend cannot work as configured."""
        ...

    def description(self) -> dict[str, str]:
        """Return what a report needs to say about this backend (simulator, device, version)."""
        ...
