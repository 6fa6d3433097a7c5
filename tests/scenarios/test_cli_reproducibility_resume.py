"""Through the real CLI: bitwise reproducibility, resume after a kill, and the report's contents."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from qhybrid.atomic import read_npz
from qhybrid.pipeline.rundir import read_result_file
from tests.conftest import REPO, run_cli


def estimate_of(directory) -> float:
    return json.loads((directory / "report.json").read_text())["estimate"]


@pytest.mark.parametrize("mode_args", [["--mode", "exact"], ["--mode", "sampled", "--shots", "1000"]])
def test_bitwise_identical_across_processes_and_worker_counts(tmp_path, mode_args):
    # Given the same inputs and seed, run in three separate processes with 1 and 2 workers
    # (computed each time: with the cache, later runs would be served before execute)
    common = ["run", "cutting", "--seed", "42", "--batch-size", "32", "--no-cache", *mode_args]
    runs = {
        "one": [*common, "--workers", "1"],
        "two": [*common, "--workers", "2"],
        "again": [*common, "--workers", "1"],
    }
    for name, args in runs.items():
        run_cli(*args, "--out", str(tmp_path / name), check=True)
    # Then the estimates and every result file are bitwise identical
    estimates = {name: estimate_of(tmp_path / name).hex() for name in runs}
    assert len(set(estimates.values())) == 1, estimates

    # Result arrays (not the metadata, which holds timings) are identical for equal batching.
    def arrays(name):
        out = {}
        for path in sorted((tmp_path / name / "results").iterdir()):
            data = read_npz(path)
            out[path.name] = {k: v.tobytes() for k, v in data.items() if k != "meta"}
        return out

    assert arrays("one") == arrays("again")
    reconstructions = [
        json.loads((tmp_path / n / "reconstruction.json").read_text())["term_values"] for n in runs
    ]
    assert reconstructions[0] == reconstructions[1] == reconstructions[2]
    # And a run served from the (test session's) cache gives the same bits.
    run_cli(*[a for a in common if a != "--no-cache"], "--out", str(tmp_path / "cached"), check=True)
    assert estimate_of(tmp_path / "cached").hex() == estimates["one"]


def test_resume_after_kill_gives_the_same_estimate(tmp_path):
    # Given a reference run that was not interrupted (no cache: the victim must compute)
    args = ["run", "cutting", "--mode", "sampled", "--shots", "2000", "--seed", "5", "--batch-size", "16"]
    args.append("--no-cache")
    run_cli(*args, "--out", str(tmp_path / "reference"), check=True)
    # When a second run is killed (SIGKILL) once some but not all results exist
    victim = tmp_path / "victim"
    process = subprocess.Popen(
        [sys.executable, "-m", "qhybrid", *args, "--out", str(victim)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = list((victim / "results").glob("range-*.npz")) if (victim / "results").is_dir() else []
        if len(done) >= 2:
            break
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = len(list((victim / "results").glob("range-*.npz")))
    assert 2 <= finished < 16, "the kill should land mid-execute"
    assert not (victim / "report.json").exists()
    # Every result file that exists is whole (a kill mid-write leaves at most a hidden
    # temporary file, which nothing reads).
    for path in (victim / "results").glob("range-*.npz"):
        read_result_file(path)
    # Then --resume finishes only the rest, reproduces the estimate bitwise, and leaves
    # no temporary file behind.
    resumed = run_cli("run", "cutting", "--resume", str(victim), "--workers", "2", "--no-cache", check=True)
    assert "estimate" in resumed.stdout
    assert estimate_of(victim).hex() == estimate_of(tmp_path / "reference").hex()
    assert not [p for p in victim.rglob("*.tmp")], "no temporary files survive a resume"


def test_resume_clears_temporaries_a_killed_writer_left(tmp_path):
    # Given a finished run in which a killed writer left its temporary file
    out = tmp_path / "run"
    run_cli("run", "cutting", "--qubits", "4", "--reps", "1", "--out", str(out), check=True)
    stale = out / "results" / ".range-000000-000016.npz.k1ll3d.tmp"
    stale.write_bytes(b"half a result")
    estimate = estimate_of(out)
    # When the run is resumed, then the temporary file is gone and nothing else changed
    run_cli("run", "cutting", "--resume", str(out), check=True)
    assert not stale.exists()
    assert estimate_of(out).hex() == estimate.hex()


def test_rerun_into_the_same_directory_is_idempotent(tmp_path):
    out = tmp_path / "run"
    run_cli("run", "cutting", "--qubits", "4", "--reps", "1", "--out", str(out), check=True)
    stamps = {p: p.stat().st_mtime_ns for p in (out / "results").iterdir()}
    run_cli("run", "cutting", "--qubits", "4", "--reps", "1", "--out", str(out), check=True)
    assert {p: p.stat().st_mtime_ns for p in (out / "results").iterdir()} == stamps


def test_report_carries_provenance_and_a_plot_when_asked(tmp_path):
    out = tmp_path / "run"
    result = run_cli(
        "run", "cutting", "--mode", "sampled", "--shots", "512", "--seed", "9", "--out", str(out), check=True
    )
    for word in ("estimate", "exact", "error"):
        assert word in result.stdout
    report = json.loads((out / "report.json").read_text())
    provenance = report["provenance"]
    assert provenance["seed"] == 9 and provenance["shots"] == 512 and provenance["mode"] == "sampled"
    assert set(provenance["environment"]["packages"]) >= {
        "qiskit",
        "qiskit-aer",
        "qiskit-addon-cutting",
        "numpy",
    }
    assert len(provenance["circuit_fingerprint"]) == 64 and len(provenance["observable_fingerprint"]) == 64
    assert len(provenance["backend_per_subexperiment"]) == report["counts"]["unique"] == 250
    assert provenance["backends"]["cpu"]["simulator"] == "qiskit-aer AerSimulator"
    assert {"generate", "simulation", "reconstruct", "execute_wall", "total_wall"} <= set(report["timings"])
    assert report["counts"]["duplicates"] == 182
    assert "250 unique" in (out / "summary.txt").read_text()
    # A run draws terms.png only when asked: later with `runs plot`, or with --plot
    assert not (out / "terms.png").exists()
    plotted = run_cli("runs", "plot", str(out), check=True)
    assert plotted.stdout.strip() == str(out / "terms.png")
    png = (out / "terms.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    (out / "terms.png").unlink()
    run_cli("run", "cutting", "--resume", str(out), "--plot", check=True)  # a finished run: drawn only
    assert (out / "terms.png").read_bytes() == png  # a pure function of the report's numbers
    missing = run_cli("runs", "plot", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and "no report.json" in missing.stderr


def test_steps_run_separately_match_the_runner(tmp_path):
    out = tmp_path / "steps"
    run_cli("step", "generate", "--out", str(out), "--seed", "4", check=True)
    run_cli("step", "execute", "--run-dir", str(out), "--start", "0", "--stop", "100", check=True)
    incomplete = run_cli("step", "reconstruct", "--run-dir", str(out))
    assert (
        incomplete.returncode == 2 and "150 of 250 unique subexperiments have no result" in incomplete.stderr
    )
    run_cli("step", "execute", "--run-dir", str(out), "--start", "100", check=True)
    run_cli("step", "reconstruct", "--run-dir", str(out), check=True)
    run_cli("step", "report", "--run-dir", str(out), check=True)
    run_cli("run", "cutting", "--seed", "4", "--out", str(tmp_path / "runner"), check=True)
    assert estimate_of(out).hex() == estimate_of(tmp_path / "runner").hex()
    assert os.path.exists(out / "terms.png")
