"""RunSpec validation, policies, run-directory bookkeeping and atomic writes."""

from __future__ import annotations

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
    with pytest.raises(InputError, match=r"choose one of \['cpu', 'gpu', 'width'\]"):
        get_policy("nope")
    assert set(POLICIES) == {"cpu", "gpu", "width"}


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
