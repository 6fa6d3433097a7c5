"""The small interface every execution backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

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
    ) -> list[OutcomeDistribution]:
        """Run each circuit; ``shots=None`` asks for the exact distribution.

        ``seeds[i]`` drives every random choice for ``circuits[i]``, so a circuit's
        result never depends on which batch or position it ran in.
        """
        ...

    def description(self) -> dict[str, str]:
        """Return what a report needs to say about this backend (simulator, device, version)."""
        ...
