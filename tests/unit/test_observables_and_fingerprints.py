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
