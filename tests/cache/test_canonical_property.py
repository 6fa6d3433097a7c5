"""Acceptance 1 of the cache: semantic hits are bitwise what recomputation gives, and never wrong.

Hypothesis (derandomised: a fixed seed) draws random subexperiment-like circuits: 2 to 5
qubits, an observable register read at the end, QPD bits measured mid-circuit, resets,
one- and two-qubit gates. Each comes with four variants that must share its canonical form:
renamed, reordered (another order of commuting operations), identity-padded (barriers, zero-angle
rotations, self-inverse pairs) and qubit-relabelled (with the observable bits permuted).
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
from qiskit.circuit.library import (
    CXGate,
    CZGate,
    HGate,
    RXGate,
    RYGate,
    RZGate,
    RZZGate,
    SdgGate,
    SGate,
    XGate,
)

from qhybrid.backends.aer import AerBackend
from qhybrid.cache import session as cache_session
from qhybrid.cache.canonical import canonical_form
from qhybrid.cache.session import CacheSession, CacheSettings
from qhybrid.cutting.deferred import OBSERVABLE_REGISTER, QPD_REGISTER
from qhybrid.cutting.fingerprint import circuit_fingerprint, known_instruction_tokens
from qhybrid.pipeline import simulate as simulate_module
from qhybrid.pipeline.simulate import simulate

EXAMPLES = 400  # x 5 circuits each = 2,000 circuits
ONE_QUBIT = [HGate, XGate, SGate, SdgGate]
ROTATIONS = [RXGate, RYGate, RZGate]
BACKEND = AerBackend("cpu", "CPU")
# canonical key -> dense distribution of the first circuit seen with it, across all examples
SEEN: dict[str, np.ndarray] = {}
COUNTED = {"circuits": 0}


def dense(distribution) -> np.ndarray:
    return distribution.to_dense()


@st.composite
def subexperiments(draw) -> tuple[int, int, int, list[tuple], int]:
    """Return (qubits, observable bits, qpd bits, ops, seed): ops as (kind, params, qubits, clbits)."""
    n = draw(st.integers(2, 5))
    num_qpd = draw(st.integers(0, 2))
    angle = st.floats(-3.1, 3.1, allow_nan=False).map(lambda a: round(a, 3))
    ops: list[tuple] = []
    for _ in range(draw(st.integers(3, 18))):
        kind = draw(st.sampled_from(["one", "rot", "cx", "cz", "rzz", "reset"]))
        if kind == "one":
            ops.append(("g", draw(st.sampled_from(ONE_QUBIT)), (), (draw(st.integers(0, n - 1)),), ()))
        elif kind == "rot":
            gate = draw(st.sampled_from(ROTATIONS))
            ops.append(("g", gate, (draw(angle),), (draw(st.integers(0, n - 1)),), ()))
        elif kind == "reset":
            ops.append(("reset", None, (), (draw(st.integers(0, n - 1)),), ()))
        else:
            a, b = draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True))
            gate = {"cx": CXGate, "cz": CZGate, "rzz": RZZGate}[kind]
            ops.append(("g", gate, (draw(angle),) if kind == "rzz" else (), (a, b), ()))
    for j in range(num_qpd):  # QPD measurements mid-circuit, then more gates may follow
        position = draw(st.integers(0, len(ops)))
        ops.insert(position, ("measure", None, (), (draw(st.integers(0, n - 1)),), (("p", j),)))
    observed = draw(st.permutations(list(range(n))))
    for bit, q in enumerate(observed):
        ops.append(("measure", None, (), (q,), (("o", bit),)))
    return n, n, num_qpd, ops, draw(st.integers(0, 2**31))


def build(n: int, num_obs: int, num_qpd: int, ops: list[tuple], *, qreg: str = "q") -> QuantumCircuit:
    observable = ClassicalRegister(num_obs, OBSERVABLE_REGISTER)
    registers = [QuantumRegister(n, qreg), observable]
    qpd = ClassicalRegister(num_qpd, QPD_REGISTER) if num_qpd else None
    if qpd is not None:
        registers.append(qpd)
    circuit = QuantumCircuit(*registers)
    for kind, gate, params, qubits, clbits in ops:
        if kind == "g":
            circuit.append(gate(*params), list(qubits))
        elif kind == "reset":
            circuit.reset(qubits[0])
        elif kind == "barrier":
            circuit.barrier(*qubits)
        else:
            role, index = clbits[0]
            circuit.measure(qubits[0], (observable if role == "o" else qpd)[index])
    return circuit


def reordered(ops: list[tuple], rng: random.Random) -> list[tuple]:
    """Another order of commuting ops: an op waits only for earlier ops it does not commute with
    (ops on shared qubits or classical bits, unless both are diagonal: rz, cz, rzz, s, measure, ...)."""
    remaining = list(range(len(ops)))
    out = []

    def diagonal(op: tuple) -> bool:
        return op[0] == "measure" or op[1] in (RZGate, CZGate, RZZGate, SGate, SdgGate)

    def blocks(j: int, i: int) -> bool:
        shared = (set(ops[i][3]) & set(ops[j][3])) or (set(ops[i][4]) & set(ops[j][4]))
        return bool(shared) and not (diagonal(ops[i]) and diagonal(ops[j]))

    while remaining:
        ready = []
        for position, i in enumerate(remaining):
            if not any(blocks(j, i) for j in remaining[:position]):
                ready.append(i)
        choice = rng.choice(ready)
        remaining.remove(choice)
        out.append(ops[choice])
    return out


def padded(ops: list[tuple], n: int, rng: random.Random) -> list[tuple]:
    out = list(ops)
    for _ in range(rng.randint(1, 4)):
        q = rng.randrange(n)
        pad = rng.choice(
            [
                [("g", RZGate, (0.0,), (q,), ())],
                [("g", HGate, (), (q,), ()), ("g", HGate, (), (q,), ())],
                [("g", XGate, (), (q,), ()), ("g", XGate, (), (q,), ())],
                [("barrier", None, (), tuple(range(n)), ())],
            ]
        )
        position = rng.randint(0, len(out))
        out[position:position] = pad
    return out


def relabelled(ops: list[tuple], n: int, rng: random.Random) -> tuple[list[tuple], list[int]]:
    qubits = list(range(n))
    rng.shuffle(qubits)
    bits = list(range(n))
    rng.shuffle(bits)
    out = []
    for kind, gate, params, wires, clbits in ops:
        moved = tuple(("o", bits[i]) if role == "o" else (role, i) for role, i in clbits)
        out.append((kind, gate, params, tuple(qubits[q] for q in wires), moved))
    return out, bits


def to_canonical_bits(distribution, form):
    """Renumber a circuit's observable bits as its canonical form numbers them."""
    inverse = [0] * len(form.observable_bits)
    for bit, canonical_bit in enumerate(form.observable_bits):
        inverse[canonical_bit] = bit
    return replace(form.ref(), observable_bits=tuple(inverse)).to_circuit_labels(distribution)


def run(circuits: list[QuantumCircuit], session: CacheSession):
    return simulate(
        BACKEND,
        lambda positions: [circuits[p] for p in positions],
        fingerprints=[circuit_fingerprint(c) for c in circuits],
        shots=None,
        seeds=[0] * len(circuits),
        session=session,
        run="property test",
    )


@pytest.fixture(scope="module")
def store_folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("property-lmdb")


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(subexperiments())
def test_every_hit_equals_recomputation_and_no_two_circuits_share_an_entry(store_folder, example):
    n, num_obs, num_qpd, ops, seed = example
    rng = random.Random(seed)
    base = build(n, num_obs, num_qpd, ops)
    moved_ops, _ = relabelled(ops, n, rng)
    variants = [
        build(n, num_obs, num_qpd, ops, qreg="renamed"),
        build(n, num_obs, num_qpd, reordered(ops, rng)),
        build(n, num_obs, num_qpd, padded(ops, n, rng)),
        build(n, num_obs, num_qpd, moved_ops),
    ]
    COUNTED["circuits"] += 1 + len(variants)
    forms = [canonical_form(c) for c in [base, *variants]]
    keys = {form.key for form in forms}
    assert len(keys) == 1, "a renamed, reordered, padded or relabelled variant got another canonical form"
    # Renamed, reordered and padded variants are the base up to stages 1-2 in its own labelling:
    # a hit between them is a "canonical" one, which their equal normal digests say.
    assert {form.normal for form in forms[:4]} == {forms[0].normal}
    # The tokens a fingerprint computed give the same form as tokens computed afresh.
    for circuit in [base, *variants]:
        known = known_instruction_tokens(circuit_fingerprint(circuit))
        assert known is not None
        assert canonical_form(circuit, known) == canonical_form(circuit)

    # Warm: the base computes and writes; each variant is then a hit (from memory or the store).
    cache_session.reset_sessions()
    shared = CacheSession(CacheSettings(location=str(store_folder)))
    served = run([base, *variants], shared)
    # Cold, in a fresh session with no store: every circuit recomputed on its own.
    cache_session.reset_sessions()
    recomputed = [
        run([circuit], CacheSession(CacheSettings(enabled=False)))[0] for circuit in [base, *variants]
    ]
    for hit, again in zip(served, recomputed, strict=True):
        assert hit.outcomes.tobytes() == again.outcomes.tobytes()
        assert hit.weights.tobytes() == again.weights.tobytes()
    # And each is what the circuit means: Aer on the circuit as written, to 1e-12.
    direct = BACKEND.exact_distributions([base, *variants])
    for hit, truth in zip(served, direct, strict=True):
        np.testing.assert_allclose(dense(hit), dense(truth), atol=1e-12, rtol=0)
    # Two examples that share a canonical form must mean the same distribution (compared on
    # the canonical form's observable bits: each circuit may number them its own way).
    (key,) = keys
    in_canonical_bits = dense(to_canonical_bits(direct[0], canonical_form(base)))
    if key in SEEN:
        np.testing.assert_allclose(in_canonical_bits, SEEN[key], atol=1e-12, rtol=0)
    SEEN[key] = in_canonical_bits


def test_tokens_of_another_length_are_refused():
    circuit = build(2, 1, 0, [("g", HGate, (), (0,), ()), ("measure", None, (), (1,), (("o", 0),))])
    known = known_instruction_tokens(circuit_fingerprint(circuit))
    assert known is not None and len(known) == 2
    for wrong in (known[:1], (*known, known[0])):
        with pytest.raises(ValueError, match="tokens for a"):
            canonical_form(circuit, wrong)


def test_the_property_test_saw_two_thousand_circuits():
    assert COUNTED["circuits"] >= 2000


def test_a_colliding_key_is_caught_by_the_canonical_form_comparison(tmp_path, monkeypatch):
    # Given a key function that sends every form to one key,
    monkeypatch.setattr(simulate_module, "result_key", lambda identity, key: b"qhybrid:r1:collide")
    first, second = QuantumCircuit(2), QuantumCircuit(2)
    for circuit, angle in ((first, 0.3), (second, 1.1)):
        circuit.add_register(ClassicalRegister(2, OBSERVABLE_REGISTER))
        circuit.ry(angle, 0)
        circuit.cx(0, 1)
        circuit.measure([0, 1], [0, 1])
    run([first], CacheSession(CacheSettings(location=str(tmp_path / "lmdb"))))
    # when another circuit is looked up in a new process's session, the stored entry is refused,
    fresh = CacheSession(CacheSettings(location=str(tmp_path / "lmdb")))
    (result,) = run([second], fresh)
    assert fresh.counts["collision"] == 1 and fresh.counts["computed"] == 1
    assert not any(k.startswith("hit_") for k in fresh.counts)
    # and what comes back is the second circuit's own distribution.
    (truth,) = BACKEND.exact_distributions([second])
    np.testing.assert_allclose(dense(result), dense(truth), atol=1e-12, rtol=0)
