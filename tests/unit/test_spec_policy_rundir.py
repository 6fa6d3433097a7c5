"""RunSpec validation, policies, run-directory bookkeeping and atomic writes."""

from __future__ import annotations

import os

import numpy as np
import pytest

from qhybrid import atomic
from qhybrid.cutting.policies import POLICIES, get_policy
from qhybrid.errors import InputError
from qhybrid.pipeline.rundir import pending_ranges
from qhybrid.spec import RunSpec


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"mode": "sampled", "shots": 0}, "--shots", "positive"),
        ({"mode": "sampled", "shots": -5}, "--shots", "positive"),
        ({"mode": "exact", "shots": 100}, "--shots", "exact mode draws no shots"),
        ({"mode": "noisy"}, "--mode", "unknown mode"),
        ({"policy": "fastest"}, "--policy", "choose one of"),
        ({"max_width": 0}, "--max-width", "at least 1"),
        ({"partition": "AB", "max_width": 3}, "--max-width", "not both"),
        ({"seed": -1}, "--seed", "non-negative"),
    ],
)
def test_spec_rejects_bad_fields(kwargs, field, message):
    with pytest.raises(InputError, match=message) as info:
        RunSpec(scenario="cutting", **kwargs)
    assert info.value.field == field


def test_spec_hash_ignores_source_name_only():
    a = RunSpec(circuit_qasm="OPENQASM 3.0;", circuit_source="a.qasm", observable="Z", partition="A")
    b = RunSpec(circuit_qasm="OPENQASM 3.0;", circuit_source="b.qasm", observable="Z", partition="A")
    assert a.spec_hash() == b.spec_hash()
    assert (
        a.spec_hash()
        != RunSpec(circuit_qasm="OPENQASM 3.0;", observable="Z", partition="A", seed=1).spec_hash()
    )
    assert RunSpec.from_json(a.to_json()) == a


def test_width_policy_is_the_papers():
    policy = get_policy("width")
    assert [policy.backend_for(w) for w in (1, 5, 6, 20, 21, 40)] == [
        "qpu",
        "qpu",
        "cpu",
        "cpu",
        "gpu",
        "gpu",
    ]
    assert {get_policy("cpu").backend_for(w) for w in (1, 50)} == {"cpu"}
    with pytest.raises(InputError, match=r"choose one of \['cpu', 'gpu', 'qpu', 'width'\]"):
        get_policy("nope")
    assert set(POLICIES) == {"cpu", "gpu", "qpu", "width"}
    assert get_policy("qpu").backend_for(30) == "qpu" and get_policy("qpu").failover_for("qpu") == "cpu"


def test_pending_ranges_skip_done_and_respect_batch_size():
    assert pending_ranges([], 10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert pending_ranges([(0, 4), (8, 10)], 10, 4) == [(4, 8)]
    assert pending_ranges([(2, 5)], 7, 10) == [(0, 2), (5, 7)]
    assert pending_ranges([(0, 7)], 7, 3) == []


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "out.json"
    atomic.write_json(target, {"a": 1})

    def boom(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic.write_json(target, {"a": 2})
    assert atomic.read_json(target) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_npz_refuses_object_arrays(tmp_path):
    with pytest.raises(TypeError, match="dtype object"):
        atomic.write_npz(tmp_path / "x.npz", {"bad": np.array([{"a": 1}], dtype=object)})
    atomic.write_npz(tmp_path / "ok.npz", {"x": np.arange(3)})
    np.testing.assert_array_equal(atomic.read_npz(tmp_path / "ok.npz")["x"], [0, 1, 2])


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_give_the_mode_a_plain_write_would(tmp_path, umask, mode):
    before = os.umask(umask)
    try:
        # Given a umask, a file written atomically (mkstemp makes 0600) gets 0666 less the umask.
        atomic.write_json(tmp_path / "a.json", {"x": 1})
        assert atomic.current_umask() == umask
    finally:
        os.umask(before)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == mode


def test_spec_to_flags_and_back_is_the_same_spec(tmp_path):
    from qiskit import QuantumCircuit, qasm3

    from qhybrid.spec import PROBLEM_FLAGS, ProblemFlags, spec_from_flags, spec_to_args

    circuit = QuantumCircuit(4)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.cx(1, 2)
    circuit.ry(0.25, 3)
    path = tmp_path / "mine.qasm"
    path.write_text(qasm3.dumps(circuit))
    flag_types = {flag.flag: (flag.name, flag.type) for flag in PROBLEM_FLAGS}
    given = [
        {},
        {"qubits": 12, "reps": 2, "mode": "sampled", "seed": 5, "policy": "width"},
        {"circuit": path, "observable": "ZZII + 0.5*IIXX", "partition": "AABB"},
        {"circuit": path, "observable": "ZIIZ", "max_width": 2, "seed": 9},
    ]
    specs = [spec_from_flags(ProblemFlags(values)) for values in given]
    for spec in specs:
        # Given a spec written as flags (the generate pod's args), reading them back
        args = spec_to_args(spec, circuit_path=str(path))
        values = {}
        for flag, text in zip(args[::2], args[1::2], strict=True):
            name, kind = flag_types[flag]
            values[name] = kind(text)
        # gives the same spec, bit for bit in its hash.
        assert spec_from_flags(ProblemFlags(values)).spec_hash() == spec.spec_hash()
    with pytest.raises(ValueError, match="not problem flags"):
        ProblemFlags({"qbits": 3})
