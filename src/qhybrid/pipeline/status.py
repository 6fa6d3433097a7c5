"""Where a run directory stands (``qhybrid status``) and what runs a folder holds (``runs list``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from qhybrid import atomic
from qhybrid.errors import InputError
from qhybrid.pipeline.rundir import RunDir, pending_ranges


def run_status(root: Path) -> dict[str, Any]:
    """Return the steps done, the pending ranges of unique subexperiments, and the estimate if any."""
    run_dir = RunDir(root)
    if not root.is_dir():
        raise InputError("DIR", f"{root} is not a directory")
    spec = run_dir.read_spec()
    status: dict[str, Any] = {"run_dir": str(root), "spec_hash": spec.spec_hash(), "steps": {}}
    steps = status["steps"]
    steps["generate"] = run_dir.manifest_file.is_file()
    if steps["generate"]:
        manifest = run_dir.read_manifest()
        backends = [entry["backend"] for entry in manifest["plan"]["unique"]]
        done = run_dir.done_ranges(backends)
        total = len(backends)
        finished = sum(stop - start for start, stop in done)
        status["unique"] = total
        status["executed"] = finished
        status["pending"] = pending_ranges(done, total, max(1, total))
        steps["execute"] = finished == total
    else:
        steps["execute"] = False
    steps["reconstruct"] = run_dir.reconstruction_file.is_file()
    steps["report"] = run_dir.report_file.is_file()
    if steps["reconstruct"]:
        reconstruction = atomic.read_json(run_dir.reconstruction_file)
        status["estimate"] = reconstruction["estimate"]
        status["standard_error"] = reconstruction["standard_error"]
        status["error"] = reconstruction["error"]
    return status


def status_text(status: dict[str, Any]) -> str:
    """Return the status as lines for a person."""
    steps = status["steps"]
    lines = [f"run             {status['run_dir']} (spec {status['spec_hash'][:12]})"]
    lines.append(
        "steps           " + ", ".join(f"{name} {'done' if ok else 'pending'}" for name, ok in steps.items())
    )
    if "unique" in status:
        pending = ", ".join(f"[{start}, {stop})" for start, stop in status["pending"]) or "none"
        lines.append(f"executed        {status['executed']} of {status['unique']} unique subexperiments")
        lines.append(f"pending ranges  {pending}")
    if "estimate" in status:
        lines.append(
            f"estimate        {status['estimate']:+.12f}"
            + (f" (error {status['error']:+.3e})" if status["error"] is not None else "")
        )
    if not all(steps.values()):
        lines.append(f"next            qhybrid run cutting --resume {status['run_dir']}")
    return "\n".join(lines) + "\n"


def list_runs(root: Path) -> list[dict[str, Any]]:
    """Return one row per run directory under ``root`` (oldest first); unreadable ones are skipped."""
    rows = []
    for spec_file in sorted(root.glob("*/run.json")) if root.is_dir() else []:
        try:
            meta = atomic.read_json(spec_file)
            spec = meta["spec"]
        except (OSError, ValueError, KeyError):
            continue
        run_dir = RunDir(spec_file.parent)
        created = meta.get("created_at") or datetime.fromtimestamp(spec_file.stat().st_mtime, UTC).isoformat(
            timespec="seconds"
        )
        row: dict[str, Any] = {
            "date": created.replace("T", " ").removesuffix("+00:00"),
            "label": meta.get("label"),
            "problem": _problem(spec),
            "mode": spec["mode"] + (f" {spec['shots']} shots" if spec.get("shots") else ""),
            "directory": str(run_dir.root),
        }
        if run_dir.report_file.is_file():
            report = atomic.read_json(run_dir.report_file)
            row.update(
                estimate=report["estimate"], error=report["error"], wall=report["timings"].get("total_wall")
            )
        rows.append(row)
    return sorted(rows, key=lambda row: row["date"])


def _problem(spec: dict[str, Any]) -> str:
    if spec.get("scenario"):
        name = f"{spec['scenario']}"
        if spec.get("qubits"):
            name += f" {spec['qubits']}q"
    else:
        name = Path(spec.get("circuit_source") or "circuit").name
    if spec.get("max_width"):
        name += f" w<={spec['max_width']}"
    return name
