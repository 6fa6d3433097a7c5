"""Issue 13, parts 2-4 and 6: progress, --json, status, runs list, cost preview, cut finding, the report."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys

import jsonschema
import numpy as np
import pytest
from qhybrid.scenarios.qaoa import BRIDGED_EDGES, maxcut_observable, qaoa_maxcut_circuit
from qiskit import ClassicalRegister, QuantumCircuit

from qhybrid.pipeline.report_schema import REPORT_SCHEMA, SCHEMA_VERSION
from qhybrid.pipeline.runner import run_local
from qhybrid.spec import RunSpec
from tests.conftest import REPO, regenerating, run_cli
from tests.scenarios.helpers import rotations_circuit, statevector_value, write_qasm

EXAMPLE = REPO / "scenarios" / "examples" / "qaoa-maxcut-petersen-p2"


def run_in_a_terminal(args: list[str]) -> tuple[int, str]:
    """Run ``qhybrid ARGS`` with stdout and stderr on a pseudo-terminal; return its exit code and output."""
    controller, terminal = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "160"}
    process = subprocess.Popen(
        [sys.executable, "-m", "qhybrid", *args], stdout=terminal, stderr=terminal, cwd=REPO, env=env
    )
    os.close(terminal)
    chunks = []
    while True:
        try:
            data = os.read(controller, 65536)
        except OSError:  # the terminal closed: the process is gone
            break
        if not data:
            break
        chunks.append(data)
    os.close(controller)
    return process.wait(timeout=300), b"".join(chunks).decode(errors="replace")


def test_progress_on_a_terminal_and_json_for_scripts(tmp_path):
    out = tmp_path / "run"
    code, screen = run_in_a_terminal(
        ["run", "cutting", "--qubits", "12", "--reps", "4", "--batch-size", "8", "--out", str(out)]
    )
    assert code == 0, screen
    counts = set(re.findall(r"executing +cpu\S*\s.*?(\d+)/(\d+)", screen))
    assert len(counts) >= 2, screen  # the bar was drawn more than once, at different counts
    assert "estimate" in screen and "\x1b[" in screen  # then the summary; rich drew with escapes
    # --json: one JSON object on stdout, the same numbers as report.json; --quiet draws nothing.
    again = run_cli("run", "cutting", "--qubits", "12", "--reps", "4", "--out", str(tmp_path / "j"), "--json")
    assert again.returncode == 0 and again.stderr == "", again.stderr
    summary = json.loads(again.stdout)
    report = json.loads((tmp_path / "j" / "report.json").read_text())
    for key in ("estimate", "standard_error", "exact", "error", "counts", "timings"):
        assert summary[key] == report[key]
    assert summary["spec_hash"] == report["provenance"]["spec_hash"] and summary["report"].endswith(
        "report.json"
    )


def test_the_qaoa_example_files_are_what_the_generator_writes(tmp_path):
    from qhybrid.scenarios.qaoa import write_example

    for written in write_example(tmp_path):
        assert written.read_text() == (EXAMPLE.parent / written.name).read_text(), written.name


def test_plan_and_the_subexperiment_cap_on_the_qaoa_example(tmp_path):
    flags = ["--circuit", f"{EXAMPLE}.qasm", "--observable", f"{EXAMPLE}.observable", "--max-width", "9"]
    plan = run_cli("plan", *flags)
    assert plan.returncode == 0, plan.stderr
    assert "subexperiments  93312, at most 31250 unique" in plan.stdout
    assert (
        "cuts            6: gate cut of rzz (A|B)" in plan.stdout and "widths {'A': 9, 'B': 1}" in plan.stdout
    )
    assert re.search(r"estimate +memory [\d.]+ [KMG]iB, disk [\d.]+ [KMG]iB", plan.stdout), plan.stdout
    out = tmp_path / "run"
    refused = run_cli("run", "cutting", *flags, "--out", str(out))
    assert refused.returncode == 2 and not out.exists()
    assert "subexperiments  93312" in refused.stderr  # the plan is shown
    assert refused.stderr.splitlines()[-1] == (
        "qhybrid: error: --max-subexperiments: this problem has 93312 subexperiments, over the limit of "
        "20000 (the plan above shows their cost); raise --max-subexperiments to run it"
    )


def bridged_qaoa() -> QuantumCircuit:
    return qaoa_maxcut_circuit(BRIDGED_EDGES, layers=2, seed=11)


def barrier_circuit() -> QuantumCircuit:
    circuit = rotations_circuit(8, 2, 5)
    circuit.barrier()  # full width, between the layers of a second copy
    circuit.compose(rotations_circuit(8, 1, 6), inplace=True)
    circuit.add_register(ClassicalRegister(8, "c"))
    return circuit


def ccx_circuit() -> QuantumCircuit:
    rng = np.random.default_rng(7)
    circuit = QuantumCircuit(6)
    for qubit in range(6):
        circuit.ry(rng.uniform(-3, 3), qubit)
    for a, b in ((0, 1), (1, 2), (3, 4), (4, 5)):
        circuit.cx(a, b)
    circuit.ccx(1, 2, 3)  # the only gate joining qubits 0-2 to 3-5
    for qubit in range(6):
        circuit.rx(rng.uniform(-3, 3), qubit)
    circuit.cx(0, 1)
    circuit.cx(4, 5)
    return circuit


@pytest.mark.parametrize(
    ("name", "build", "observable", "cut"),
    [
        ("barrier", barrier_circuit, "ZIIIIIIZ + 0.5*IIIZZIII + XXIIIIII", ["--max-width", "4"]),
        ("ccx", ccx_circuit, "ZZZZZZ + 0.25*IXIIYI", ["--max-width", "4"]),
        ("qaoa", bridged_qaoa, None, ["--partition", "AAAAABBBBB"]),
        ("qaoa auto", bridged_qaoa, None, ["--max-width", "5"]),
    ],
)
def test_circuits_people_write_cut_and_match_the_statevector(tmp_path, name, build, observable, cut):
    circuit = build()
    path = write_qasm(tmp_path / f"{name.replace(' ', '-')}.qasm", circuit)
    observable = observable or "file"
    if observable == "file":
        from qhybrid.cutting.observables import format_pauli_sum

        (tmp_path / "h.txt").write_text(format_pauli_sum(maxcut_observable(BRIDGED_EDGES)))
        observable = str(tmp_path / "h.txt")
    result = run_cli(
        "run", "cutting", "--circuit", str(path), "--observable", observable, *cut,
        "--out", str(tmp_path / "run"), "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    from qhybrid.cutting.observables import load_observable

    expected = statevector_value(
        circuit.remove_final_measurements(inplace=False),
        load_observable(observable, 10 if "qaoa" in name else circuit.num_qubits),
    )
    assert abs(summary["estimate"] - expected) < 1e-9
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert set(report["problem"]["partition_widths"]) <= set("ABCDEFGH")  # letters, as manual labels
    preprocessing = report["problem"]["preprocessing"]
    if name == "barrier":
        assert preprocessing == {"barriers_removed": 1, "classical_bits_dropped": 8}
    if name == "ccx":
        assert preprocessing == {"decomposed_gates": {"ccx": 1}}
    if "qaoa" in name:
        assert {c["gate"] for c in report["problem"]["cuts"]} == {"rzz"} and report["problem"][
            "num_cuts"
        ] == 2


def test_status_runs_list_no_shards_and_labels(tmp_path):
    spec = RunSpec(scenario="cutting", qubits=6)
    run_dir = tmp_path / "runs" / "first"
    report = run_local(spec, run_dir, keep_shards=False, batch_size=16, label="nightly", progress=False)
    assert not (run_dir / "subexperiments").exists()
    for result in (run_dir / "results").iterdir():  # lose half the results: status shows them pending
        if int(result.name.split("-")[1]) >= 16:
            result.unlink()
    (run_dir / "report.json").unlink()
    (run_dir / "reconstruction.json").unlink()
    status = run_cli("status", str(run_dir))
    assert status.returncode == 0
    assert (
        "steps           generate done, execute pending, reconstruct pending, report pending" in status.stdout
    )
    assert "pending ranges  [16, " in status.stdout
    # This process still holds generate's circuits; another one rebuilds them from the spec
    # (the killed-and-resumed reproducibility variant does that).
    resumed = run_local(spec, run_dir, progress=False)
    assert resumed["estimate"] == report["estimate"]
    listing = run_cli("runs", "list", "--root", str(tmp_path / "runs"))
    row = listing.stdout.splitlines()[1]
    assert "nightly" in row and "cutting 6q" in row and f"{report['estimate']:+.10f}" in row


def test_shards_are_written_only_for_processes_that_read_them(tmp_path):
    spec = RunSpec(scenario="cutting", qubits=4)
    in_process = run_local(spec, tmp_path / "in-process", progress=False)  # --workers 1, the default
    assert not (tmp_path / "in-process" / "subexperiments").exists()
    asked = run_local(spec, tmp_path / "asked", keep_shards=True, progress=False)  # --shards
    shards = sorted((tmp_path / "asked" / "subexperiments").glob("shard-*.qpy"))
    assert shards
    manifest = json.loads((tmp_path / "asked" / "manifest.json").read_text())
    assert manifest["shards_written"] is True and len(manifest["shard_sha256"]) == len(shards)
    assert asked["estimate"] == in_process["estimate"]
    shardless = subprocess.run(  # the CLI's default is the same as run_local's
        [sys.executable, "-m", "qhybrid", "run", "cutting", "--qubits", "4", "--quiet", "--no-cache",
         "--out", str(tmp_path / "cli")],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert shardless.returncode == 0, shardless.stderr
    assert not (tmp_path / "cli" / "subexperiments").exists()
    # Resumed with worker processes, which read shards: the runner writes them once, first.
    for result in (tmp_path / "in-process" / "results").iterdir():
        result.unlink()
    for name in ("report.json", "reconstruction.json"):
        (tmp_path / "in-process" / name).unlink()
    resumed = run_local(spec, tmp_path / "in-process", workers=2, batch_size=4, progress=False)
    assert resumed["estimate"] == in_process["estimate"]
    manifest = json.loads((tmp_path / "in-process" / "manifest.json").read_text())
    assert manifest["shards_written"] is True
    assert len(manifest["shard_sha256"]) == len(list((tmp_path / "in-process" / "subexperiments").iterdir()))


def test_every_report_follows_its_schema_and_the_schema_file_is_current(tmp_path):
    schema_file = REPO / "docs" / "report.schema.json"
    text = json.dumps(REPORT_SCHEMA, indent=2, sort_keys=True) + "\n"
    if regenerating():
        schema_file.write_text(text)
    assert schema_file.read_text() == text, "docs/report.schema.json is stale: REGENERATE=1 pytest -k schema"
    validator = jsonschema.Draft202012Validator(REPORT_SCHEMA)
    for mode in ("exact", "sampled"):
        shots = 128 if mode == "sampled" else None
        report = run_local(RunSpec(scenario="cutting", qubits=4, mode=mode, shots=shots), tmp_path / mode)
        validator.validate(report)
        assert report["schema_version"] == SCHEMA_VERSION
    broken = {**report, "estimate": "high"}
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(broken)
    assert np.isfinite(report["estimate"])
