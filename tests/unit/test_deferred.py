"""The deferred-measurement transform against an independent branching simulation."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
from qiskit.quantum_info import Operator, Statevector

from qhybrid.backends import get_backend
from qhybrid.cutting.deferred import defer_measurements, reduce_to_parity


def branching_distribution(circuit: QuantumCircuit) -> dict[int, float]:
    """Exact joint distribution of all clbits by splitting the state at each measurement/reset."""
    qubit = {q: i for i, q in enumerate(circuit.qubits)}
    clbit = {c: i for i, c in enumerate(circuit.clbits)}
    branches = [(1.0, Statevector.from_int(0, 2**circuit.num_qubits), 0)]
    for instruction in circuit.data:
        name = instruction.operation.name
        if name == "barrier":
            continue
        if name in ("measure", "reset"):
            q = qubit[instruction.qubits[0]]
            new = []
            for weight, state, bits in branches:
                for outcome in (0, 1):
                    projector = np.diag([1.0 - outcome, float(outcome)])
                    projected = state.evolve(Operator(projector), [q])
                    p = float(np.real(projected.inner(projected)))
                    if p < 1e-15:
                        continue
                    projected = projected / np.sqrt(p)
                    if name == "reset" and outcome:
                        projected = projected.evolve(Operator(np.array([[0, 1], [1, 0]])), [q])
                    new_bits = bits
                    if name == "measure":
                        c = clbit[instruction.clbits[0]]
                        new_bits = (bits & ~(1 << c)) | (outcome << c)
                    new.append((weight * p, projected, new_bits))
            branches = new
        else:
            branches = [
                (w, s.evolve(Operator(instruction.operation), [qubit[x] for x in instruction.qubits]), b)
                for w, s, b in branches
            ]
    distribution: dict[int, float] = {}
    for weight, _state, bits in branches:
        distribution[bits] = distribution.get(bits, 0.0) + weight
    return distribution


def subexperiment_like() -> QuantumCircuit:
    """A circuit shaped like a cutting subexperiment: mid-circuit QPD measurements, a reset, final reads."""
    q = QuantumRegister(3, "q")
    obs = ClassicalRegister(3, "observable_measurements")
    qpd = ClassicalRegister(3, "qpd_measurements")
    circuit = QuantumCircuit(q, obs, qpd)
    circuit.ry(0.7, 0)
    circuit.rx(1.1, 1)
    circuit.cx(0, 1)
    circuit.measure(1, qpd[0])  # mid-circuit: qubit 1 is used again
    circuit.h(1)
    circuit.cx(1, 2)
    circuit.measure(0, qpd[1])
    circuit.reset(0)  # wire reused after a reset
    circuit.ry(0.3, 0)
    circuit.cx(2, 0)
    circuit.sdg(2)
    circuit.h(2)
    circuit.measure([0, 1, 2], obs)
    return circuit


def test_deferred_probabilities_equal_branching_simulation():
    # Given a circuit with mid-circuit measurements and a reset
    circuit = subexperiment_like()
    # When Aer computes its exact parity-reduced distribution
    backend = get_backend("cpu")
    [(dense, num_bits)] = backend.exact_probabilities([circuit])
    # Then it equals the branching simulation, folded the same way
    expected = np.zeros(2 << 3)
    for bits, p in branching_distribution(circuit).items():
        obs_bits = bits & 0b111
        parity = bin(bits >> 3).count("1") & 1
        expected[obs_bits | parity << 3] += p
    assert num_bits == 3
    np.testing.assert_allclose(dense, expected, atol=1e-12)


def test_deferral_adds_one_ancilla_per_reused_measurement_and_reset():
    deferred = defer_measurements(subexperiment_like())
    # Qubit 1 measured then reused, qubit 0 measured then reset-and-reused: 1 CX ancilla, 1 fresh wire.
    assert deferred.circuit.num_qubits == 3 + 2
    assert len(deferred.observable_qubits) == 3
    assert len(deferred.qpd_qubits) == 2  # the third QPD bit is never written
    assert "measure" not in deferred.circuit.count_ops()
    assert "reset" not in deferred.circuit.count_ops()


def test_classical_control_is_refused():
    circuit = QuantumCircuit(QuantumRegister(1), ClassicalRegister(1, "observable_measurements"))
    circuit.measure(0, 0)
    with circuit.if_test((circuit.clbits[0], 1)):
        circuit.x(0)
    circuit.measure(0, 0)
    with pytest.raises(ValueError, match="classically controlled"):
        defer_measurements(circuit)


def test_reduce_to_parity_folds_qpd_bits():
    # 1 observable bit, 2 qpd bits: index = obs | qpd << 1
    probabilities = np.arange(8, dtype=float)
    reduced = reduce_to_parity(probabilities, 1)
    # parity 0: qpd in {00, 11} -> indices {0,6} (obs 0), {1,7} (obs 1)
    # parity 1: qpd in {01, 10} -> indices {2,4} (obs 0), {3,5} (obs 1)
    np.testing.assert_array_equal(reduced, [0 + 6, 1 + 7, 2 + 4, 3 + 5])


def test_walsh_hadamard_gives_every_parity_expectation():
    from qhybrid.cutting.reconstruct import walsh_hadamard

    rng = np.random.default_rng(3)
    vector = rng.normal(size=16)
    spectrum = walsh_hadamard(vector)
    for mask in range(16):
        signs = np.array([(-1) ** bin(x & mask).count("1") for x in range(16)])
        assert spectrum[mask] == pytest.approx(float(vector @ signs), abs=1e-12)
