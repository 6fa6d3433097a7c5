"""Exact mode reconstructs the statevector value to 1e-9, as in qiskit-addon-cutting's round-trip tests."""

from __future__ import annotations

import pytest
from qhybrid.scenarios import CUTTING
from qiskit import qasm3
from qiskit.quantum_info import SparsePauliOp

from tests.scenarios.helpers import rotations_circuit, run, statevector_value

TOLERANCE = 1e-9


def test_default_workload(tmp_path):
    # Given the reference workload (10 qubits, reps 3, two halves)
    report = run(tmp_path, scenario="cutting")
    # Then it has 3 cuts, 216 subexperiments per half, 250 unique of 432
    assert report["problem"]["num_cuts"] == 3
    assert report["counts"] == {
        "subexperiments": 432,
        "unique": 250,
        "duplicates": 182,
        "by_backend": {"cpu": 250},
    }
    # And the estimate matches an independent statevector computation
    exact = statevector_value(CUTTING.circuit(10, 3, 0), CUTTING.observable(10))
    assert abs(report["estimate"] - exact) <= TOLERANCE
    assert abs(report["exact"] - exact) <= 1e-12
    for term in report["terms"]:
        assert abs(term["value"] - term["exact"]) <= TOLERANCE


def test_x_and_y_terms_several_commuting_groups(tmp_path):
    circuit = rotations_circuit(6, 2, seed=11)
    observable = SparsePauliOp.from_list(
        [("XXIIII", 0.5), ("IIIYYI", -1.0), ("ZIIIIX", 0.75), ("IYIZII", 1.25)]
    )
    report = run(
        tmp_path,
        circuit_qasm=qasm3.dumps(circuit),
        observable="0.5*XXIIII - 1.0*IIIYYI + 0.75*ZIIIIX + 1.25*IYIZII",
        partition="AAABBB",
    )
    assert abs(report["estimate"] - statevector_value(circuit, observable)) <= TOLERANCE
    # Several commuting groups means more than one subexperiment per QPD sample per partition.
    assert report["counts"]["subexperiments"] > 2 * 6 ** report["problem"]["num_cuts"]


def test_automatic_cuts_for_a_width_limit(tmp_path):
    circuit = CUTTING.circuit(6, 2, 5)
    report = run(
        tmp_path,
        circuit_qasm=qasm3.dumps(circuit),
        observable="ZZIIII + 0.5*IIIZZI + IIXIIZ",
        max_width=3,
        seed=5,
    )
    observable = SparsePauliOp.from_list([("ZZIIII", 1.0), ("IIIZZI", 0.5), ("IIXIIZ", 1.0)])
    assert max(report["problem"]["partition_widths"].values()) <= 3
    assert report["problem"]["num_cuts"] >= 1
    assert abs(report["estimate"] - statevector_value(circuit, observable)) <= TOLERANCE


def test_three_partitions(tmp_path):
    report = run(tmp_path, scenario="cutting", qubits=9, reps=1, partition="AAABBBCCC", seed=3)
    assert sorted(report["problem"]["partition_widths"]) == ["A", "B", "C"]
    exact = statevector_value(CUTTING.circuit(9, 1, 3), CUTTING.observable(9))
    assert abs(report["estimate"] - exact) <= TOLERANCE


def test_40_qubits_in_four_pieces_against_an_mps_reference(tmp_path):
    # 3 cuts: the ansatz crosses each of the 3 piece boundaries once (reps 1).
    report = run(
        tmp_path, scenario="cutting", qubits=40, reps=1, partition="A" * 10 + "B" * 10 + "C" * 10 + "D" * 10
    )
    assert report["problem"]["num_cuts"] == 3
    reference = report["provenance"]["exact_reference"]
    assert reference["computed"] and reference["method"] == "matrix_product_state"
    assert reference["max_bond_dimension"] == 2
    assert abs(report["error"]) <= 1e-8


@pytest.mark.slow
def test_24_qubits_4_cuts(tmp_path):
    report = run(tmp_path, scenario="cutting", qubits=24, reps=4)
    assert report["problem"]["num_cuts"] == 4
    assert abs(report["error"]) <= TOLERANCE
