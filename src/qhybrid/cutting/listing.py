"""A circuit as indexed records: what an engine reads when no QuantumCircuit is built.

The canonical forms of the result cache are listings (:mod:`qhybrid.cache.canonical`), and
the simulators read them (:mod:`qhybrid.backends`); the type lives here, below both.
"""

from __future__ import annotations

from typing import Protocol

from qiskit import QuantumCircuit
from qiskit.circuit import CircuitInstruction

# One instruction as the engine reads it: (instruction, qubit indices, clbit indices). The
# instruction gives name, parameters and matrix; its own wires are not read.
Record = tuple[CircuitInstruction, tuple[int, ...], tuple[int, ...]]


class Listing(Protocol):
    """A circuit given as records instead of a QuantumCircuit (a canonical form is one)."""

    @property
    def num_qubits(self) -> int:
        """Qubits of the circuit."""

    @property
    def num_clbits(self) -> int:
        """Classical bits of the circuit."""

    @property
    def observable_clbits(self) -> tuple[int, ...]:
        """Clbit indices of the observable register, in register order."""

    @property
    def qpd_clbits(self) -> tuple[int, ...]:
        """Clbit indices of the QPD register, in register order (none without one)."""

    def records(self) -> list[Record]:
        """The circuit's instructions, in order, on qubit and clbit indices."""

    def circuit(self) -> QuantumCircuit:
        """Build the circuit (for engines that need a QuantumCircuit)."""
