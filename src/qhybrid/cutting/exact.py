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


# At most this many qubits the reference is a statevector (2**20 amplitudes, 16 MiB: fast);
# above, a matrix product state when the circuit keeps its bonds small, else (up to
# EXACT_REFERENCE_MAX_QUBITS) a statevector again, else none.
STATEVECTOR_REFERENCE_MAX_QUBITS = 20
# The bond dimension an MPS reference may reach. Reaching it would mean Aer truncated to
# fit: the reference would no longer be exact, so it is not used.
MPS_MAX_BOND_DIMENSION = 256
# Aer's default: Schmidt coefficients whose square is below this are dropped (numerically zero).
MPS_TRUNCATION_THRESHOLD = 1e-16


class NotExact(RuntimeError):
    """An MPS simulation would have had to truncate beyond numerical zero."""


def mps_term_values(
    circuit: QuantumCircuit, observable: SparsePauliOp
) -> tuple[np.ndarray, dict[str, object]]:
    """Return <psi|P_k|psi> for each Pauli term from Aer's matrix product state simulator, and how.

    Truncation is bounded: only Schmidt coefficients below ``MPS_TRUNCATION_THRESHOLD``
    (squared) are dropped, and the bond dimension is capped at ``MPS_MAX_BOND_DIMENSION``;
    a simulation that reaches the cap raises NotExact rather than return a truncated value.
    One thread, so the same circuit gives the same bits every time.
    """
    from qiskit_aer import AerSimulator
    from qiskit_aer.library import SaveExpectationValue, SaveMatrixProductState

    simulator = AerSimulator(
        method="matrix_product_state",
        matrix_product_state_max_bond_dimension=MPS_MAX_BOND_DIMENSION,
        matrix_product_state_truncation_threshold=MPS_TRUNCATION_THRESHOLD,
        # LAPACK's SVD: Aer's own agrees with a statevector to only ~6e-11 on the 22-qubit
        # scenario circuit, LAPACK's to 1.6e-14 (measured; tests/scenarios keep checking it).
        mps_lapack=True,
        max_parallel_threads=1,
        mps_omp_threads=1,
    )
    prepared = circuit.remove_final_measurements(inplace=False)
    for index, pauli in enumerate(observable.paulis):
        support = [q for q in range(pauli.num_qubits) if pauli.z[q] or pauli.x[q]]
        if not support:
            continue  # the identity: its value is 1
        prepared.append(
            SaveExpectationValue(pauli[support], label=f"t{index}"), [prepared.qubits[q] for q in support]
        )
    prepared.append(SaveMatrixProductState(prepared.num_qubits, label="mps"), prepared.qubits)
    result = simulator.run(prepared, shots=1).result()
    if not result.success:
        raise RuntimeError(f"qiskit-aer's MPS simulation failed: {result.status}")
    data = result.data(0)
    bond = max((len(lambdas) for lambdas in data["mps"][1]), default=1)
    if bond >= MPS_MAX_BOND_DIMENSION:
        raise NotExact(f"the MPS bond dimension reached its cap of {MPS_MAX_BOND_DIMENSION}")
    values = np.asarray(
        [float(np.real(data[f"t{i}"])) if f"t{i}" in data else 1.0 for i in range(len(observable.paulis))]
    )
    how = {
        "method": "matrix_product_state",
        "max_bond_dimension": int(bond),
        "truncation": (
            f"Schmidt coefficients below {MPS_TRUNCATION_THRESHOLD:g} (squared) dropped; "
            f"bond dimension {bond} under the cap of {MPS_MAX_BOND_DIMENSION}; LAPACK SVD"
        ),
    }
    return values, how


def reference_term_values(
    circuit: QuantumCircuit, observable: SparsePauliOp, *, statevector_max_qubits: int
) -> tuple[np.ndarray, dict[str, object]]:
    """Return the exact term values and how they were computed (``method`` and its parameters).

    A statevector up to ``STATEVECTOR_REFERENCE_MAX_QUBITS``; above, an MPS when its bonds stay
    under the cap; else a statevector up to ``statevector_max_qubits``. Raises NotExact
    when none of those applies.
    """
    width = circuit.num_qubits
    if width <= STATEVECTOR_REFERENCE_MAX_QUBITS:
        return exact_term_values(circuit, observable), {"method": "statevector"}
    try:
        return mps_term_values(circuit, observable)
    except NotExact:
        if width > statevector_max_qubits:
            raise
    return exact_term_values(circuit, observable), {"method": "statevector"}
