"""Exact expectation values of the uncut circuit, for comparison with reconstruction."""

from __future__ import annotations

import numpy as np
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp


def exact_term_values(circuit: QuantumCircuit, observable: SparsePauliOp) -> np.ndarray:
    """Return <psi|P_k|psi> for each Pauli term P_k, from one Aer statevector simulation."""
    from qiskit_aer import AerSimulator

    simulator = AerSimulator(method="statevector", statevector_parallel_threshold=64)
    prepared = circuit.remove_final_measurements(inplace=False)
    qubits = list(range(circuit.num_qubits))
    for k, pauli in enumerate(observable.paulis):
        prepared.save_expectation_value(SparsePauliOp(pauli), qubits, label=f"term{k}")
    data = simulator.run(prepared, shots=1).result().data(0)
    return np.asarray([float(np.real(data[f"term{k}"])) for k in range(len(observable))])
