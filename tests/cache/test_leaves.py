"""Leaf forms: every subexperiment of a partition from one canonical body (qhybrid.cache.leaves).

A leaf must be the subexperiment's circuit up to a relabelling (so its distribution, mapped
back, is the circuit's), its text must be what its circuit writes out (``cache verify``),
its result must not depend on which other leaves share its batch, and a relabelled copy of
a partition must give the same leaves.
"""

from __future__ import annotations

import numpy as np
import pytest
from qiskit import QuantumCircuit, qasm3
from qiskit.quantum_info import SparsePauliOp

from qhybrid.backends.aer import AerBackend
from qhybrid.backends.branching import branching_distributions
from qhybrid.cache.canonical import NotCanonicalisable
from qhybrid.cache.entries import circuit_from_qpy, qpy_bytes
from qhybrid.cache.leaves import LEAF_SCHEMA, PartitionLeaves, ProblemLeaves, leaf_text
from qhybrid.cutting.assemble import SubcircuitTemplate
from qhybrid.cutting.observables import format_pauli_sum
from qhybrid.cutting.plan import (
    generate_fingerprinted_subexperiments,
    observable_collection,
    partition_templates,
)
from qhybrid.spec import RunSpec, problem_of
from tests.scenarios.helpers import rotations_circuit, round_trip_problems

PROBLEMS = round_trip_problems()


def leaves_and_circuits(spec: RunSpec) -> tuple[list, list[QuantumCircuit]]:
    """Each distinct subexperiment of ``spec`` with its leaf (None when its partition has none)."""
    problem = problem_of(spec)
    templates = partition_templates(problem.subcircuits)
    origins: dict[int, tuple] = {}
    experiments, _, _ = generate_fingerprinted_subexperiments(
        problem.subcircuits, problem.subobservables, origins=origins, templates=templates
    )
    groups = {label: observable_collection(problem.subobservables[label]).groups for label in templates}
    leaves = ProblemLeaves(templates, groups)
    circuits = list({id(c): c for listed in experiments.values() for c in listed}.values())
    return [leaves.leaf(origins.get(id(c))) for c in circuits], circuits


@pytest.fixture(scope="module")
def aer():
    return AerBackend("cpu", "CPU")  # branching_max_width=0: Aer runs everything


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_every_leaf_is_its_subexperiment_relabelled(aer, name):
    leaves, circuits = leaves_and_circuits(PROBLEMS[name])
    with_leaves = [i for i, leaf in enumerate(leaves) if leaf is not None]
    assert len(with_leaves) == len(leaves)  # gate cuts only (the automatic cuts chose gate cuts too)
    expected = aer.exact_distributions([circuits[i] for i in with_leaves])
    on_engine = branching_distributions([leaves[i] for i in with_leaves])
    on_aer = aer.exact_distributions([leaves[i] for i in with_leaves])
    for i, want, engine, aer_leaf in zip(with_leaves, expected, on_engine, on_aer, strict=True):
        leaf = leaves[i]
        assert leaf.text.startswith(LEAF_SCHEMA)
        for got in (engine, aer_leaf):
            mapped = leaf.ref().to_circuit_labels(got)
            assert float(np.abs(mapped.to_dense() - want.to_dense()).max()) <= 1e-12, i
    # Distinct subexperiments (distinct local operations) have distinct leaves.
    assert len({leaves[i].key for i in with_leaves}) == len(with_leaves)


@pytest.mark.parametrize("name", ["default", "x_and_y_terms", "three_partitions"])
def test_a_leaf_circuit_writes_out_as_its_text_and_runs_to_the_same_bits(name):
    # The engine runs leaves segment by segment, stacked; a stored leaf's circuit (what
    # `cache verify` recomputes) runs by the plain walk: the bits must be the same.
    leaves, _ = leaves_and_circuits(PROBLEMS[name])
    stored = [circuit_from_qpy(qpy_bytes(leaf.circuit())) for leaf in leaves]
    assert [leaf_text(circuit) for circuit in stored] == [leaf.text for leaf in leaves]
    for stacked, plain in zip(branching_distributions(leaves), branching_distributions(stored), strict=True):
        assert np.array_equal(stacked.outcomes, plain.outcomes)
        assert stacked.weights.tobytes() == plain.weights.tobytes()


def test_a_leaf_gives_the_same_bits_alone_or_with_its_siblings():
    # Two problems' leaves in one batch (partitions of 5 and 3 qubits), as a run may mix them.
    problems = ("default", "three_partitions")
    leaves = [leaf for name in problems for leaf in leaves_and_circuits(PROBLEMS[name])[0]]
    together = branching_distributions(leaves)
    backwards = branching_distributions(leaves[::-1])[::-1]
    for i in range(0, len(leaves), 9):
        (alone,) = branching_distributions([leaves[i]])
        assert alone.weights.tobytes() == together[i].weights.tobytes()
        assert np.array_equal(alone.outcomes, together[i].outcomes)
    for a, b in zip(together, backwards, strict=True):
        assert a.weights.tobytes() == b.weights.tobytes()


def test_a_body_with_a_reset_or_a_measurement_has_no_leaves():
    # Wire cuts put resets in a partition: its subexperiments are canonicalised one by one.
    for extra in ("reset", "measure"):
        body = QuantumCircuit(2, 1 if extra == "measure" else 0)
        body.h(0)
        body.reset(0) if extra == "reset" else body.measure(0, 0)
        body.cx(0, 1)
        with pytest.raises(NotCanonicalisable):
            PartitionLeaves(SubcircuitTemplate(body, []), [])
    assert ProblemLeaves({}, {}).leaf(None) is None


def test_a_relabelled_problem_has_the_same_leaves():
    # The x_and_y_terms problem with the qubits of each partition taken in another order
    # (and its observable moved with them): every partition is the same circuit relabelled.
    circuit = rotations_circuit(6, 2, seed=11)
    observable = SparsePauliOp.from_list(
        [("XXIIII", 0.5), ("IIIYYI", -1.0), ("ZIIIIX", 0.75), ("IYIZII", 1.25)]
    )
    order = [2, 0, 1, 4, 5, 3]  # qubit i of the original is qubit order[i] of the copy
    moved = QuantumCircuit(6).compose(circuit, qubits=order)
    original = RunSpec(
        circuit_qasm=qasm3.dumps(circuit), observable=format_pauli_sum(observable), partition="AAABBB"
    )
    relabelled = RunSpec(
        circuit_qasm=qasm3.dumps(moved),
        observable=format_pauli_sum(observable.apply_layout(order)),
        partition="AAABBB",
    )
    first, _ = leaves_and_circuits(original)
    second, _ = leaves_and_circuits(relabelled)
    assert sorted(leaf.key for leaf in first) == sorted(leaf.key for leaf in second)
    # The same leaves, but not from the same labelling: the hit kind says "relabelled".
    assert sorted(leaf.normal for leaf in first) != sorted(leaf.normal for leaf in second)
