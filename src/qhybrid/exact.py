"""Exact expectation values of the uncut circuit, for comparison with reconstruction."""

from __future__ import annotations

import numpy as np
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp, Statevector


def exact_term_values(circuit: QuantumCircuit, observable: SparsePauliOp) -> np.ndarray:
    """Return <psi|P_k|psi> for each Pauli term P_k, from one Aer statevector simulation.

    One saved statevector and Qiskit's single-pass Pauli expectation per term: a
    save instruction per term would make Aer copy the state once per term.
    """
    from qiskit_aer import AerSimulator

    simulator = AerSimulator(method="statevector", statevector_parallel_threshold=64)
    prepared = circuit.remove_final_measurements(inplace=False)
    prepared.save_statevector()
    state = Statevector(simulator.run(prepared, shots=1).result().get_statevector(0))
    return np.asarray([float(np.real(state.expectation_value(pauli))) for pauli in observable.paulis])
