"""The reference scenario: distributed circuit cutting of a hardware-efficient ansatz.

``efficient_su2(N, su2_gates=["ry"], entanglement="linear", reps=R)`` with angles
from a seeded RNG, observable ``H = sum_i Z_i + 0.5 sum_i Z_i Z_{i+1}``, cut into
two halves. Linear entanglement puts one CX across the middle per repetition, so
the default N=10, R=3 has exactly 3 cut CX gates: 6**3 = 216 subexperiments per half.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit.library import efficient_su2
from qiskit.quantum_info import SparsePauliOp


@dataclass(frozen=True, kw_only=True)
class CuttingScenario:
    """The reference workload's builders and defaults."""

    name: str = "cutting"
    default_qubits: int = 10
    default_reps: int = 3

    def circuit(self, qubits: int, reps: int, seed: int) -> QuantumCircuit:
        """Build the ansatz with angles drawn uniformly from [-pi, pi) by a seeded RNG."""
        if qubits < 2:
            raise ValueError(f"qubits must be at least 2, got {qubits}")
        if reps < 1:
            raise ValueError(f"reps must be at least 1, got {reps}")
        ansatz = efficient_su2(qubits, su2_gates=["ry"], entanglement="linear", reps=reps)
        angles = np.random.default_rng(seed).uniform(-np.pi, np.pi, ansatz.num_parameters)
        return ansatz.assign_parameters(angles)

    def observable(self, qubits: int) -> SparsePauliOp:
        """Return H = sum_i Z_i + 0.5 sum_i Z_i Z_{i+1}."""
        terms: list[tuple[str, list[int], float]] = [("Z", [i], 1.0) for i in range(qubits)]
        terms += [("ZZ", [i, i + 1], 0.5) for i in range(qubits - 1)]
        return SparsePauliOp.from_sparse_list(terms, num_qubits=qubits)

    def partition(self, qubits: int) -> str:
        """Label the lower half of the qubits A and the upper half B."""
        half = qubits // 2
        return "A" * half + "B" * (qubits - half)


SCENARIO = CuttingScenario()
