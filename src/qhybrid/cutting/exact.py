"""Exact expectation values of the uncut circuit, for comparison with reconstruction."""

from __future__ import annotations

import os

import numpy as np
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp, Statevector

# Qiskit's switch for "already inside a parallel section": its Rust code then runs serially.
_SERIAL_ENV = "QISKIT_IN_PARALLEL"


def exact_term_values(circuit: QuantumCircuit, observable: SparsePauliOp) -> np.ndarray:
    """Return <psi|P_k|psi> for each Pauli term P_k, from one Aer statevector simulation.

    One saved statevector and Qiskit's single-pass Pauli expectation per term: a
    save instruction per term would make Aer copy the state once per term. Qiskit
    sums a Pauli expectation over threads from about 19 qubits on, in an order that
    changes from call to call (the last bits of the value with it), so the sums run
    serially here (``QISKIT_IN_PARALLEL=TRUE`` while they run): the same circuit
    gives the same bits every time (tests/reproducibility).
    """
    from qiskit_aer import AerSimulator

    simulator = AerSimulator(method="statevector", statevector_parallel_threshold=64)
    prepared = circuit.remove_final_measurements(inplace=False)
    prepared.save_statevector()
    state = Statevector(simulator.run(prepared, shots=1).result().get_statevector(0))
    before = os.environ.get(_SERIAL_ENV)
    os.environ[_SERIAL_ENV] = "TRUE"
    try:
        return np.asarray([float(np.real(state.expectation_value(pauli))) for pauli in observable.paulis])
    finally:
        if before is None:
            del os.environ[_SERIAL_ENV]
        else:
            os.environ[_SERIAL_ENV] = before
