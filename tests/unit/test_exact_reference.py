"""The exact reference: a statevector up to 20 qubits, an MPS above while it stays exact, else none."""

from __future__ import annotations

import numpy as np
import pytest
from qhybrid.scenarios import CUTTING

import qhybrid.cutting.exact as exact


def test_the_mps_reference_agrees_with_the_statevector():
    circuit, observable = CUTTING.circuit(22, 3, 0), CUTTING.observable(22)
    statevector = exact.exact_term_values(circuit, observable)
    mps, how = exact.mps_term_values(circuit, observable)
    assert np.abs(mps - statevector).max() <= 1e-12  # 1.6e-14 measured (Aer's own SVD: 6e-11)
    assert how["method"] == "matrix_product_state"
    assert how["max_bond_dimension"] == 8  # 2**reps for this linear ansatz
    assert "1e-16" in how["truncation"]


def test_the_mps_reference_is_bitwise_repeatable():
    circuit, observable = CUTTING.circuit(24, 2, 1), CUTTING.observable(24)
    first, _ = exact.mps_term_values(circuit, observable)
    second, _ = exact.mps_term_values(circuit, observable)
    assert [v.hex() for v in first] == [v.hex() for v in second]


def test_narrow_circuits_get_a_statevector_and_wide_ones_an_mps():
    narrow = CUTTING.circuit(10, 3, 0)
    _, how = exact.reference_term_values(narrow, CUTTING.observable(10), statevector_max_qubits=26)
    assert how == {"method": "statevector"}
    wide = CUTTING.circuit(40, 1, 0)
    values, how = exact.reference_term_values(wide, CUTTING.observable(40), statevector_max_qubits=26)
    assert how["method"] == "matrix_product_state" and len(values) == 79


def test_an_mps_that_would_truncate_is_not_used(monkeypatch):
    monkeypatch.setattr(exact, "MPS_MAX_BOND_DIMENSION", 4)  # the 22-qubit reps-3 circuit needs 8
    circuit, observable = CUTTING.circuit(22, 3, 0), CUTTING.observable(22)
    with pytest.raises(exact.NotExact):
        exact.mps_term_values(circuit, observable)
    with pytest.raises(exact.NotExact):  # too wide for the statevector fallback as well
        exact.reference_term_values(circuit, observable, statevector_max_qubits=21)
    _, how = exact.reference_term_values(circuit, observable, statevector_max_qubits=26)
    assert how == {"method": "statevector"}
