"""Issue 13, part 5: each bad input prints exactly one line, exits 2 and leaves the output untouched."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import run_cli


def snapshot(path):
    """Every file under ``path`` with its size and mtime (None when ``path`` does not exist)."""
    if not path.exists():
        return None
    return sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*"))


def assert_one_line(result, expected):
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == f"qhybrid: error: {expected}\n", result.stderr


@pytest.fixture(scope="module")
def sampled_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sampled") / "run"
    run_cli(
        "run", "cutting", "--qubits", "4", "--mode", "sampled", "--shots", "64", "--out", str(out), check=True
    )
    return out


def test_one_qubit_reference_circuit(tmp_path):
    out = tmp_path / "run"
    result = run_cli("run", "cutting", "--qubits", "1", "--out", str(out))
    assert_one_line(result, "--qubits: the reference circuit is cut in two, so it needs at least 2, got 1")
    assert not out.exists()


def test_out_under_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "run"
    result = run_cli("run", "cutting", "--out", str(out))
    assert_one_line(result, f"--out: cannot write {out}: {tmp_path / 'file'} is not a directory")


def test_out_on_a_read_only_file_system(tmp_path):
    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)], capture_output=True
    ).returncode:
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        out = mount / "run"
        result = run_cli("run", "cutting", "--out", str(out))
        assert_one_line(result, f"--out: cannot write {out}: Read-only file system")
        assert snapshot(mount) == []
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_step_report_before_reconstruct(tmp_path):
    out = tmp_path / "run"
    run_cli("step", "generate", "--qubits", "4", "--out", str(out), check=True)
    before = snapshot(out)
    result = run_cli("step", "report", "--run-dir", str(out))
    assert_one_line(
        result,
        f"--run-dir: {out}: reconstruct has not finished (no reconstruction.json); "
        f"run qhybrid step reconstruct --run-dir {out} first",
    )
    assert snapshot(out) == before


def test_workflow_check_missing_file_and_bad_yaml(tmp_path):
    missing = tmp_path / "missing.yaml"
    assert_one_line(run_cli("workflow", "check", "--file", str(missing)), f"--file: {missing}: no such file")
    bad = tmp_path / "bad.yaml"
    bad.write_text("spec:\n  templates: [\n")
    assert_one_line(
        run_cli("workflow", "check", "--file", str(bad)),
        f"--file: {bad}: not valid YAML: "
        "expected the node content, but found '<stream end>' at line 3, column 1",
    )


def test_workflow_submit_without_an_api_server(tmp_path):
    missing = tmp_path / "nope.kubeconfig"
    assert_one_line(
        run_cli("workflow", "submit", "--kubeconfig", str(missing)), f"--kubeconfig: {missing}: no such file"
    )
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: abc}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
    )
    assert_one_line(
        run_cli("workflow", "submit", "--kubeconfig", str(kubeconfig)),
        "--kubeconfig: cannot reach the API server at https://127.0.0.1:9: [Errno 111] Connection refused",
    )


def test_observable_file_that_does_not_exist(tmp_path):
    out = tmp_path / "run"
    result = run_cli("run", "cutting", "--observable", "missing.txt", "--out", str(out))
    assert_one_line(result, "--observable: missing.txt: no such file (and not a Pauli sum)")
    assert not out.exists()


def test_resume_with_other_shots(sampled_run):
    before = snapshot(sampled_run)
    result = run_cli("run", "cutting", "--resume", str(sampled_run), "--shots", "2000")
    assert_one_line(
        result,
        f"--shots: {sampled_run} holds a run with --shots 64, not 2000; "
        "drop --shots to resume it, or start a new run with --out",
    )
    assert snapshot(sampled_run) == before


def test_openqasm_for_loop(tmp_path):
    circuit = tmp_path / "loop.qasm"
    circuit.write_text(
        'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[2] q;\nfor int i in [0:1] { h q[i]; }\n'
    )
    out = tmp_path / "run"
    result = run_cli(
        "run",
        "cutting",
        "--circuit",
        str(circuit),
        "--observable",
        "ZZ",
        "--partition",
        "AB",
        "--out",
        str(out),
    )
    assert_one_line(
        result,
        f"--circuit: {circuit} uses an OpenQASM 'for' statement; cutting takes a plain sequence of gates, "
        "so unroll it (write out each iteration or branch)",
    )
    assert not out.exists()


def test_rerunning_a_finished_run_keeps_its_report(sampled_run):
    before = snapshot(sampled_run)
    report = (sampled_run / "report.json").read_text()
    result = run_cli("run", "cutting", "--resume", str(sampled_run), "--quiet")
    assert result.returncode == 0, result.stderr
    assert (sampled_run / "report.json").read_text() == report
    assert snapshot(sampled_run) == before
