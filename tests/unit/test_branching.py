"""The branching statevector engine against Aer's deferred-measurement path; its bitwise reproducibility."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
from qiskit.circuit.library import CCXGate

from qhybrid.backends import branching
from qhybrid.backends.aer import AerBackend
from qhybrid.backends.branching import Unsupported, branching_distributions
from qhybrid.cache.canonical import canonical_form
from qhybrid.cutting.deferred import OBSERVABLE_REGISTER, QPD_REGISTER
from qhybrid.cutting.plan import generate_subexperiments
from qhybrid.spec import RunSpec, problem_of
from tests.scenarios.helpers import round_trip_problems

TOLERANCE = 1e-12
RANDOM_CIRCUITS = 500


@pytest.fixture(scope="module")
def aer():
    return AerBackend("cpu", "CPU")  # branching_max_width=0: Aer runs everything


def dense(distribution) -> np.ndarray:
    return distribution.to_dense()


def assert_agree(aer, circuits):
    expected = aer.exact_distributions(circuits)
    got = branching_distributions(circuits)
    assert len(got) == len(circuits)
    for position, (a, b) in enumerate(zip(expected, got, strict=True)):
        assert a.num_observable_bits == b.num_observable_bits
        difference = float(np.abs(dense(a) - dense(b)).max())
        assert difference <= TOLERANCE, (position, difference)


def unique_subexperiments(spec: RunSpec) -> list[QuantumCircuit]:
    problem = problem_of(spec)
    experiments, _ = generate_subexperiments(problem.subcircuits, problem.subobservables)
    return list({id(c): c for label in experiments for c in experiments[label]}.values())


PROBLEMS = round_trip_problems()


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_every_subexperiment_of_the_round_trip_problems_agrees_with_aer(aer, name):
    assert_agree(aer, unique_subexperiments(PROBLEMS[name]))


ONE_QUBIT = ("h", "x", "y", "z", "s", "sdg", "t", "tdg", "sx", "rx", "ry", "rz", "p", "u")
TWO_QUBIT = ("cx", "cz", "cy", "swap", "rzz", "cp", "crx", "ecr")  # what Aer runs untranspiled


def random_circuit(rng: np.random.Generator) -> QuantumCircuit:
    """2-5 qubits, random gates, mid-circuit measurements into the QPD register, resets, final reads."""
    width = int(rng.integers(2, 6))
    qubits = QuantumRegister(width, "q")
    observable = ClassicalRegister(int(rng.integers(1, width + 1)), OBSERVABLE_REGISTER)
    qpd = ClassicalRegister(int(rng.integers(1, 4)), QPD_REGISTER)
    circuit = QuantumCircuit(qubits, observable, qpd)
    for _ in range(int(rng.integers(4, 25))):
        roll = rng.random()
        q = int(rng.integers(width))
        if roll < 0.12:
            circuit.measure(q, qpd[int(rng.integers(qpd.size))])
        elif roll < 0.2:
            circuit.reset(q)
        elif roll < 0.6:
            name = str(rng.choice(ONE_QUBIT))
            angles = [float(a) for a in rng.uniform(-np.pi, np.pi, 3)]
            if name in ("rx", "ry", "rz", "p"):
                getattr(circuit, name)(angles[0], q)
            elif name == "u":
                circuit.u(*angles, q)
            else:
                getattr(circuit, name)(q)
        else:
            other = int((q + 1 + rng.integers(width - 1)) % width)
            name = str(rng.choice(TWO_QUBIT))
            if name in ("rzz", "cp", "crx"):
                getattr(circuit, name)(float(rng.uniform(-np.pi, np.pi)), q, other)
            else:
                getattr(circuit, name)(q, other)
    for bit, q in enumerate(rng.permutation(width)[: observable.size]):
        circuit.measure(int(q), observable[bit])
    return circuit


def test_random_circuits_with_mid_circuit_measurements_and_resets_agree_with_aer(aer):
    rng = np.random.default_rng(20261130)
    circuits = [random_circuit(rng) for _ in range(RANDOM_CIRCUITS)]
    assert sum(c.count_ops().get("reset", 0) > 0 for c in circuits) > RANDOM_CIRCUITS // 3
    assert_agree(aer, circuits)


def test_a_bit_overwritten_by_a_later_measurement_keeps_the_later_value(aer):
    qubits = QuantumRegister(2, "q")
    observable = ClassicalRegister(1, OBSERVABLE_REGISTER)
    circuit = QuantumCircuit(qubits, observable)
    circuit.x(0)
    circuit.measure(0, observable[0])  # nothing later on qubit 0, but the bit is written again
    circuit.h(1)
    circuit.measure(1, observable[0])
    assert_agree(aer, [circuit])


def test_results_do_not_depend_on_the_batch(aer):
    circuits = unique_subexperiments(PROBLEMS["default"])
    together = branching_distributions(circuits)
    alone = [branching_distributions([c])[0] for c in circuits[::7]]
    reversed_order = branching_distributions(circuits[::-1])[::-1]
    for i, single in zip(range(0, len(circuits), 7), alone, strict=True):
        assert np.array_equal(single.weights, together[i].weights)
        assert np.array_equal(single.outcomes, together[i].outcomes)
    for a, b in zip(together, reversed_order, strict=True):
        assert np.array_equal(a.weights, b.weights)


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_a_canonical_form_runs_from_its_records_bitwise_as_its_circuit(aer, name):
    # The simulate step hands the backend canonical forms, not circuits: the engine reads
    # their records, and Aer gets the circuit built only when it must run one.
    forms = [canonical_form(c) for c in unique_subexperiments(PROBLEMS[name])]
    circuits = [form.circuit() for form in forms]
    assert [branching._program(f) for f in forms] == [branching._program(c) for c in circuits]
    for a, b in zip(branching_distributions(forms), branching_distributions(circuits), strict=True):
        assert np.array_equal(a.outcomes, b.outcomes)
        assert np.array_equal(a.weights, b.weights)
    for a, b in zip(aer.exact_distributions(forms[:4]), aer.exact_distributions(circuits[:4]), strict=True):
        assert np.array_equal(a.outcomes, b.outcomes)
        assert np.array_equal(a.weights, b.weights)


def test_gates_applied_row_chunk_by_row_chunk_change_no_bit(monkeypatch):
    # The engine caps the rows one gate application touches (to stay in cache). With the cap
    # at one row of the default workload's 5-qubit states, every application to a node of
    # several branches is split row by row (hundreds of them): every result must be bitwise
    # what the uncapped engine gives.
    circuits = unique_subexperiments(PROBLEMS["default"])
    whole = branching_distributions(circuits)
    assert {c.num_qubits for c in circuits} == {5}
    monkeypatch.setattr(branching, "_CHUNK_AMPLITUDES", 1 << 5)
    chunked = branching_distributions(circuits)
    for a, b in zip(whole, chunked, strict=True):
        assert np.array_equal(a.outcomes, b.outcomes)
        assert np.array_equal(a.weights, b.weights)


def test_results_are_bitwise_equal_in_another_process():
    script = (
        "import json; from qhybrid.spec import RunSpec, problem_of;"
        "from qhybrid.cutting.plan import generate_subexperiments;"
        "from qhybrid.backends.branching import branching_distributions;"
        "p = problem_of(RunSpec(scenario='cutting'));"
        "e, _ = generate_subexperiments(p.subcircuits, p.subobservables);"
        "cs = list({id(c): c for l in e for c in e[l]}.values());"
        "print(json.dumps([[float(w).hex() for w in d.weights] for d in branching_distributions(cs)]))"
    )
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    here = [
        [float(w).hex() for w in d.weights]
        for d in branching_distributions(unique_subexperiments(PROBLEMS["default"]))
    ]
    assert json.loads(out) == here


def test_the_cpu_backend_runs_what_the_engine_cannot_on_aer(aer):
    narrow = unique_subexperiments(PROBLEMS["default"])[:5]
    qubits = QuantumRegister(3, "q")
    observable = ClassicalRegister(3, OBSERVABLE_REGISTER)
    three = QuantumCircuit(qubits, observable)
    three.h(0)
    three.append(CCXGate(), [0, 1, 2])
    three.measure(qubits, observable)
    with pytest.raises(Unsupported):
        branching_distributions([three])
    cpu = AerBackend("cpu", "CPU", branching_max_width=11)
    results = cpu.exact_distributions([*narrow, three])
    # The narrow ones still ran on the engine (bitwise its own results), the 3-qubit gate on Aer.
    for got, own in zip(results[:5], branching_distributions(narrow), strict=True):
        assert np.array_equal(got.weights, own.weights)
    assert np.abs(dense(results[5]) - dense(aer.exact_distributions([three])[0])).max() <= TOLERANCE
    assert cpu.description()["branching"] == "qhybrid branching statevector up to 11 qubits"
