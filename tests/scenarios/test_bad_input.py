"""Each bad input: one clear line naming the problem, exit code 2, nothing half-written."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli
from tests.scenarios.helpers import rotations_circuit, write_qasm


def assert_clean_failure(result, *fragments):
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("qhybrid: error:")
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.stderr


def test_unreadable_qasm(tmp_path):
    bad = tmp_path / "bad.qasm"
    bad.write_text("OPENQASM 3.0;\nqubit[2] q;\nfoo q[0];\n")
    out = tmp_path / "out"
    result = run_cli(
        "run", "cutting", "--circuit", str(bad), "--observable", "ZZ", "--partition", "AB", "--out", str(out)
    )
    assert_clean_failure(result, "--circuit", "cannot parse", "bad.qasm")
    assert not out.exists()


def test_missing_circuit_file(tmp_path):
    result = run_cli(
        "run", "cutting", "--circuit", str(tmp_path / "nope.qasm"), "--observable", "ZZ", "--partition", "AB"
    )
    assert_clean_failure(result, "--circuit", "cannot read")


def test_observable_of_the_wrong_width(tmp_path):
    qasm = write_qasm(tmp_path / "c.qasm", rotations_circuit(4, 1, 1), version=2)
    out = tmp_path / "out"
    result = run_cli(
        "run",
        "cutting",
        "--circuit",
        str(qasm),
        "--observable",
        "ZZI",
        "--partition",
        "AABB",
        "--out",
        str(out),
    )
    assert_clean_failure(result, "--observable", "acts on 3 qubits but the circuit has 4")
    assert not out.exists()


def test_width_limit_no_cut_can_meet(tmp_path):
    qasm = write_qasm(tmp_path / "c.qasm", rotations_circuit(6, 3, 2))
    out = tmp_path / "out"
    result = run_cli(
        "run",
        "cutting",
        "--circuit",
        str(qasm),
        "--observable",
        "ZZZZZZ",
        "--max-width",
        "1",
        "--out",
        str(out),
    )
    assert_clean_failure(result, "--max-width", "no cut meets a width of 1")
    assert not out.exists()


@pytest.mark.parametrize("shots", ["0", "-10"])
def test_zero_or_negative_shots(tmp_path, shots):
    out = tmp_path / "out"
    result = run_cli("run", "cutting", "--mode", "sampled", "--shots", shots, "--out", str(out))
    assert_clean_failure(result, "--shots", "positive")
    assert not out.exists()


def test_output_directory_holding_another_run(tmp_path):
    out = tmp_path / "out"
    run_cli("run", "cutting", "--qubits", "4", "--reps", "1", "--out", str(out), check=True)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    result = run_cli("run", "cutting", "--qubits", "4", "--reps", "1", "--seed", "1", "--out", str(out))
    assert_clean_failure(result, "holds another run")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_non_empty_directory_that_is_not_a_run(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    result = run_cli("run", "cutting", "--out", str(tmp_path))
    assert_clean_failure(result, "not an empty directory")
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_qpu_policy_without_gateway_fails_before_writing(tmp_path):
    out = tmp_path / "out"
    result = run_cli("run", "cutting", "--policy", "width", "--mode", "sampled", "--out", str(out))
    assert_clean_failure(result, "qpu backend")
    assert not out.exists()
