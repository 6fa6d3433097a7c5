"""How each variant of the reproducibility suite makes its run directory."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qhybrid.pipeline.runner import run_local
from qhybrid.spec import RunSpec, spec_to_args
from tests.conftest import REPO, run_cli

VARIANTS = ("workers-2", "batch-size-7", "process", "killed-resumed", "workflow-replay")
KILL_BATCH = 4  # 63 ranges: room for the kill to land between the first and the last
KILL_ATTEMPTS = 3


def in_process(spec: RunSpec, out: Path, **options) -> Path:
    run_local(spec, out, **options)
    return out


def in_a_process(spec: RunSpec, out: Path) -> Path:
    run_cli("run", "cutting", *spec_to_args(spec), "--out", str(out), check=True)
    return out


def killed_then_resumed(spec: RunSpec, root: Path) -> Path:
    for attempt in range(KILL_ATTEMPTS):
        victim = root / f"attempt-{attempt}"
        process = subprocess.Popen(
            [sys.executable, "-m", "qhybrid", "run", "cutting", *spec_to_args(spec)]
            # A cold run (no cache): a warm one serves everything before execute starts.
            + ["--batch-size", str(KILL_BATCH), "--out", str(victim), "--no-cache"],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        results = victim / "results"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if results.is_dir() and len(list(results.glob("range-*.npz"))) >= 2:
                break
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
        process.wait()
        finished = len(list(results.glob("range-*.npz"))) if results.is_dir() else 0
        if 2 <= finished < -(-250 // KILL_BATCH) and not (victim / "report.json").exists():
            break
    else:
        pytest.fail(f"the kill never landed mid-execute in {KILL_ATTEMPTS} attempts")
    kept = {path.name: path.stat().st_mtime_ns for path in results.glob("range-*.npz")}
    run_cli("run", "cutting", "--resume", str(victim), "--workers", "2", "--no-cache", check=True)
    # Only the missing ranges ran: the killed run's files are untouched, new ones fill the gaps.
    after = {path.name: path.stat().st_mtime_ns for path in results.glob("range-*.npz")}
    assert kept.items() < after.items()
    return victim


def replayed_from_yaml(spec: RunSpec, root: Path) -> Path:
    workflow = root / "wf.yaml"
    run_cli("workflow", "render", "--stack", "kind", *spec_to_args(spec), "--out", str(workflow), check=True)
    run_cli("workflow", "replay", "--root", str(root / "pods"), "--file", str(workflow), check=True)
    [report] = (root / "pods").rglob("report.json")
    files = sorted(p.name for p in (report.parent / "results").iterdir())
    assert files and all(name.endswith("-cpu.npz") for name in files), files
    return report.parent


def make(variant: str, spec: RunSpec, root: Path) -> Path:
    if variant == "reference":
        return in_process(spec, root)
    if variant == "workers-2":
        return in_process(spec, root, workers=2, batch_size=32)
    if variant == "batch-size-7":
        out = in_process(spec, root, batch_size=7)
        assert len(list((out / "results").iterdir())) == 36
        return out
    if variant == "process":
        return in_a_process(spec, root)
    if variant == "killed-resumed":
        return killed_then_resumed(spec, root)
    if variant == "workflow-replay":
        return replayed_from_yaml(spec, root)
    raise AssertionError(variant)
