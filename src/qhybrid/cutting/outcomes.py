"""A subexperiment's result: the distribution that backends return and reconstruction reads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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

    def to_dense(self) -> np.ndarray:
        """Return the dense vector indexed by outcome (2 << num_observable_bits long): from_dense inverted."""
        dense = np.zeros(2 << self.num_observable_bits)
        dense[self.outcomes.astype(np.intp)] = self.weights
        return dense
