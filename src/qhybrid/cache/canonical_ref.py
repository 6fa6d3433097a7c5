"""A canonical form as plain data: what a cache lookup needs, carried by a plan without circuits."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from qhybrid.cutting.outcomes import OutcomeDistribution


@dataclass(frozen=True)
class CanonicalRef:
    """What a lookup needs of a canonical form, as plain data: a plan can carry it without circuits."""

    key: str
    check: str
    normal: str
    observable_bits: tuple[int, ...]

    def to_json(self) -> list[Any]:
        """Plain data for a manifest."""
        return [self.key, self.check, self.normal, list(self.observable_bits)]

    @classmethod
    def from_json(cls, data: list[Any]) -> CanonicalRef:
        """Read :meth:`to_json`'s output."""
        key, check, normal, bits = data
        return cls(str(key), str(check), str(normal), tuple(int(b) for b in bits))

    def to_circuit_labels(self, canonical: OutcomeDistribution) -> OutcomeDistribution:
        """Map a distribution of the canonical circuit onto the circuit's own observable bits."""
        if self.observable_bits == tuple(range(len(self.observable_bits))):
            return canonical
        outcomes = canonical.outcomes
        low = np.uint64((1 << canonical.num_observable_bits) - 1)
        mapped = outcomes & ~low  # the QPD parity bit does not move
        if canonical.num_observable_bits <= _TABLE_BITS:
            mapped |= _moved_bits_table(self.observable_bits)[(outcomes & low).astype(np.intp)]
        else:
            mapped |= _moved_bits(outcomes, self.observable_bits)
        order = np.argsort(mapped, kind="stable")
        return OutcomeDistribution(
            mapped[order], canonical.weights[order], canonical.num_observable_bits, canonical.shots
        )


# Up to this many observable bits a lookup table (2**bits entries, 512 KiB at 16) maps them.
_TABLE_BITS = 16


def _moved_bits(values: np.ndarray, observable_bits: tuple[int, ...]) -> np.ndarray:
    """The circuit's observable bits each value's canonical observable bits stand for."""
    moved = np.zeros_like(values)
    for bit, canonical_bit in enumerate(observable_bits):
        moved |= ((values >> np.uint64(canonical_bit)) & np.uint64(1)) << np.uint64(bit)
    return moved


@lru_cache(maxsize=256)
def _moved_bits_table(observable_bits: tuple[int, ...]) -> np.ndarray:
    """:func:`_moved_bits` of every value of the canonical observable bits, as a lookup table."""
    table = _moved_bits(np.arange(1 << len(observable_bits), dtype=np.uint64), observable_bits)
    table.setflags(write=False)
    return table
