"""Observable parsing and content fingerprints."""

from __future__ import annotations

import io

import numpy as np
import pytest
from qiskit import QuantumCircuit, qpy
from qiskit.quantum_info import SparsePauliOp

from qhybrid.cutting.fingerprint import circuit_fingerprint, derive_seed, observable_fingerprint
from qhybrid.cutting.observables import format_pauli_sum, load_observable, parse_pauli_sum
from qhybrid.errors import InputError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.5*ZZII + XIXI", [("ZZII", 0.5), ("XIXI", 1.0)]),
        ("-ZZ - 2 * XY+1e-3*II", [("ZZ", -1.0), ("XY", -2.0), ("II", 1e-3)]),
        ("ZI\n+ 0.25 IZ  # comment", [("ZI", 1.0), ("IZ", 0.25)]),
    ],
)
def test_parse_pauli_sum(text, expected):
    assert parse_pauli_sum(text) == SparsePauliOp.from_list(expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty observable"),
        ("ZZ ZZ", "missing \\+ or -"),
        ("ZZ + ZZZ", "different widths"),
        ("0.5*ZQ", "cannot parse"),
    ],
)
def test_parse_errors_name_the_flag(text, message):
    with pytest.raises(InputError, match=message) as info:
        parse_pauli_sum(text)
    assert str(info.value).startswith("--observable:")


def test_load_observable_from_file_checks_width(tmp_path):
    path = tmp_path / "h.txt"
    path.write_text("0.5*ZZI\n+ XIX\n")
    assert load_observable(str(path), 3).num_qubits == 3
    with pytest.raises(InputError, match="acts on 3 qubits but the circuit has 4"):
        load_observable(str(path), 4)


def test_format_round_trips_exactly():
    observable = SparsePauliOp.from_list([("XYZ", 0.1), ("ZZI", -1 / 3), ("III", 2.0)])
    assert parse_pauli_sum(format_pauli_sum(observable)) == observable
    assert observable_fingerprint(parse_pauli_sum(format_pauli_sum(observable))) == observable_fingerprint(
        observable
    )


def _circuit(angle: float) -> QuantumCircuit:
    circuit = QuantumCircuit(2, 2)
    circuit.ry(angle, 0)
    circuit.cx(0, 1)
    circuit.measure([0, 1], [0, 1])
    return circuit


def test_fingerprint_survives_qpy_round_trip():
    circuit = _circuit(0.123456789)
    buffer = io.BytesIO()
    qpy.dump(circuit, buffer)
    buffer.seek(0)
    [loaded] = qpy.load(buffer)
    assert circuit_fingerprint(loaded) == circuit_fingerprint(circuit)


def test_fingerprint_ignores_qpy_version_header_but_sees_every_bit_of_a_parameter():
    # The fingerprint is computed from the circuit, never from serialised bytes whose header
    # names the Qiskit version: two QPY versions of one circuit load to the same fingerprint.
    circuit = _circuit(0.5)
    buffers = []
    for version in (13, qpy.QPY_VERSION):
        buffer = io.BytesIO()
        qpy.dump(circuit, buffer, version=version)
        buffer.seek(0)
        buffers.append(buffer)
    fingerprints = {circuit_fingerprint(qpy.load(b)[0]) for b in buffers}
    assert fingerprints == {circuit_fingerprint(circuit)}
    assert circuit_fingerprint(_circuit(np.nextafter(0.5, 1.0))) != circuit_fingerprint(circuit)


def test_derived_seeds_depend_on_run_seed_and_content_only():
    fingerprint = circuit_fingerprint(_circuit(0.5))
    assert derive_seed(7, fingerprint) == derive_seed(7, fingerprint)
    assert derive_seed(7, fingerprint) != derive_seed(8, fingerprint)
    assert derive_seed(7, fingerprint) != derive_seed(7, circuit_fingerprint(_circuit(0.6)))
    assert 0 <= derive_seed(7, fingerprint) < 2**63


# ------------------------------------------------------------------------ fingerprints of custom operations


def _custom(name: str, body: list[str]):
    from qiskit.circuit import Gate

    definition = QuantumCircuit(1, name=name)
    for gate in body:
        getattr(definition, gate)(0)
    gate = Gate(name, 1, [])
    gate.definition = definition
    return gate


def _random_circuit(rng, names=("foo", "bar")) -> QuantumCircuit:
    """Two qubits, three operations from a small space, so equal circuits recur often."""
    circuit = QuantumCircuit(2)
    for _ in range(3):
        kind = int(rng.integers(4))
        qubit = int(rng.integers(2))
        if kind == 0:
            getattr(circuit, ["h", "x", "s"][int(rng.integers(3))])(qubit)
        elif kind == 1:
            circuit.cx(qubit, 1 - qubit)
        else:
            picks = rng.integers(5, size=int(rng.integers(1, 3)))
            body = [["id", "x", "h", "z", "s"][int(i)] for i in picks]
            circuit.append(_custom(names[int(rng.integers(len(names)))], body), [qubit])
    return circuit


def test_a_custom_gate_is_fingerprinted_by_its_definition_not_its_name():
    from qiskit.circuit import QuantumRegister

    def one(name: str, body: list[str], register: str = "q", barrier: bool = False) -> QuantumCircuit:
        circuit = QuantumCircuit(QuantumRegister(1, register))
        if barrier:
            circuit.barrier()
        circuit.append(_custom(name, body), [0])
        return circuit

    assert circuit_fingerprint(one("foo", ["id"])) != circuit_fingerprint(one("foo", ["x"]))
    # Names of gates and of quantum registers, and barriers, change nothing a backend computes.
    assert circuit_fingerprint(one("foo", ["x"])) == circuit_fingerprint(one("bar", ["x"], "other", True))


def test_unitary_gates_are_fingerprinted_by_their_matrix_and_qpy_keeps_every_fingerprint():
    import io

    from qiskit import qpy
    from qiskit.circuit.library import UnitaryGate

    def with_matrix(matrix) -> QuantumCircuit:
        circuit = QuantumCircuit(1)
        circuit.append(UnitaryGate(matrix), [0])
        circuit.append(_custom("foo", ["h", "s"]), [0])
        return circuit

    x, z = np.array([[0, 1], [1, 0]]), np.array([[1, 0], [0, -1]])
    assert circuit_fingerprint(with_matrix(x)) != circuit_fingerprint(with_matrix(z))
    buffer = io.BytesIO()
    qpy.dump([with_matrix(x)], buffer)
    [loaded] = qpy.load(io.BytesIO(buffer.getvalue()))
    assert circuit_fingerprint(loaded) == circuit_fingerprint(with_matrix(x))


def test_circuits_whose_custom_gates_differ_in_effect_never_share_a_fingerprint():
    from qiskit.quantum_info import Operator

    rng = np.random.default_rng(20261129)
    differing = 0
    for _ in range(500):
        seed = int(rng.integers(2**32))
        # Given two circuits of the same shape and gate names whose definitions may differ,
        a, b = _random_circuit(np.random.default_rng(seed)), _random_circuit(np.random.default_rng(seed))
        for instruction in b.data:
            if instruction.operation.name in ("foo", "bar"):
                body = [["x", "h", "z"][int(rng.integers(3))]]
                instruction.operation.definition = _custom(instruction.operation.name, body).definition
        if not Operator(a).equiv(Operator(b)):
            differing += 1
            # then different effects mean different fingerprints.
            assert circuit_fingerprint(a) != circuit_fingerprint(b)
    assert differing > 100  # the property was really exercised


def test_ten_thousand_circuits_with_different_distributions_never_share_a_fingerprint():
    from qiskit.quantum_info import Statevector

    rng = np.random.default_rng(7)
    seen: dict[str, tuple[float, ...]] = {}
    shared = 0
    for _ in range(10_000):
        circuit = _random_circuit(rng)
        distribution = tuple(np.round(Statevector(circuit).probabilities(), 12))
        fingerprint = circuit_fingerprint(circuit)
        if fingerprint in seen:
            shared += 1
            assert seen[fingerprint] == distribution
        seen[fingerprint] = distribution
    # The space is small: many circuits recur (shared fingerprints), and many distributions differ.
    assert shared > 1000 and len(set(seen.values())) > 5
