"""The small interface every execution backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from qiskit import QuantumCircuit


@dataclass(frozen=True)
class OutcomeDistribution:
    """One subexperiment's result over (observable bits | QPD parity << num_observable_bits).

    Exact mode: ``weights`` are probabilities and ``shots`` is None. Sampled mode:
    ``weights`` are counts summing to ``shots``. Outcomes with zero weight are dropped.
    """

    outcomes: np.ndarray  # uint64, strictly increasing
    weights: np.ndarray  # float64
    num_observable_bits: int
    shots: int | None

    @classmethod
    def from_dense(
        cls, dense: np.ndarray, num_observable_bits: int, shots: int | None
    ) -> OutcomeDistribution:
        """Keep the nonzero entries of a dense vector indexed by outcome."""
        nonzero = np.flatnonzero(dense)
        return cls(nonzero.astype(np.uint64), dense[nonzero].astype(np.float64), num_observable_bits, shots)


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
