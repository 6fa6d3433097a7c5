"""``qhybrid gameday``: run the local chaos experiments with Chaos Toolkit and report.

Each experiment (``chaos/experiments/local/*.json``) runs through chaoslib in its
own workspace under ``OUT/<name>/``. The report is one Chaos Toolkit journal per
experiment, ``summary.json`` and ``summary.txt`` (status, hypothesis before and
after, faults injected, recoveries, results lost and duplicated, seconds), and
``timeline.png``. Lost and duplicated are counted here again from every run
directory the experiment registered, independently of its probes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qhybrid import atomic
from qhybrid.errors import InputError
from qhybrid.pipeline.rundir import RunDir

WORKSPACE_ENV = "QHYBRID_CHAOS_WORKSPACE"
SUMMARY_JSON_FILE = "summary.json"
SUMMARY_TEXT_FILE = "summary.txt"
TIMELINE_FILE = "timeline.png"
SETTINGS: dict[str, Any] = {"runtime": {"rollbacks": {"strategy": "always"}}}


def experiments_dir() -> Path:
    """Return the folder of the local experiments (chaos/experiments/local next to qhybrid_chaos)."""
    import qhybrid_chaos

    return Path(qhybrid_chaos.__file__).resolve().parent / "experiments" / "local"


def local_experiments(only: list[str] | None = None, directory: Path | None = None) -> list[Path]:
    """Return the experiment files to run, in name order; ``only`` picks some by file stem."""
    directory = directory or experiments_dir()
    found = sorted(directory.glob("*.json"))
    if only:
        names = {p.stem for p in found}
        unknown = sorted(set(only) - names)
        if unknown:
            raise InputError("--only", f"unknown experiments {unknown}; have {sorted(names)}")
        found = [p for p in found if p.stem in only]
    return found


def _hypothesis(journal: dict[str, Any], when: str) -> bool | None:
    state = (journal.get("steady_states") or {}).get(when)
    return None if state is None else bool(state.get("steady_state_met"))


def _accounting(workspace: Path) -> dict[str, int]:
    from qhybrid_chaos import workspace as ws
    from qhybrid_chaos.runs import run_accounting

    totals = {"runs": 0, "lost": 0, "duplicated": 0, "partial_files": 0}
    for entry in ws.read_record(str(workspace), "runs").values():
        if not RunDir(Path(entry["dir"])).manifest_file.is_file():
            continue
        try:
            counts = run_accounting(entry["dir"])
        except Exception:  # noqa: BLE001 - an unreadable run counts as everything lost
            counts = {"lost": 1, "duplicated": 0, "partial_files": 0}
        totals["runs"] += 1
        for key in ("lost", "duplicated", "partial_files"):
            totals[key] += counts[key]
    return totals


def run_one(path: Path, out: Path) -> dict[str, Any]:
    """Run one experiment file in the workspace ``out/<stem>``; return its summary row."""
    from chaoslib.experiment import run_experiment
    from chaoslib.loader import load_experiment
    from qhybrid_chaos import workspace as ws
    from qhybrid_chaos.cleanup import cleanup

    workspace = out / path.stem
    if workspace.exists() and any(workspace.iterdir()):
        raise InputError("--out", f"{workspace} is not empty; choose another --out")
    workspace.mkdir(parents=True, exist_ok=True)
    os.environ[WORKSPACE_ENV] = str(workspace)
    started = time.time()
    try:
        experiment = load_experiment(str(path), SETTINGS)
        journal = run_experiment(experiment, settings=SETTINGS)
        ended = time.time()
        counts = _accounting(workspace)  # before cleanup unmounts a tmpfs holding a run
    finally:
        cleanup(str(workspace))  # whatever a failed step left running, mounted or locked
    atomic.write_text(workspace / "journal.json", json.dumps(journal, indent=2, default=str) + "\n")
    ledger = ws.events(str(workspace))
    gateway = ws.read_record(str(workspace), "gateway-accounting")
    return {
        "experiment": path.stem,
        "title": journal.get("experiment", {}).get("title", ""),
        "status": journal.get("status"),
        "deviated": bool(journal.get("deviated")),
        # Chaos Toolkit records a failed method activity but still calls the run "completed":
        # a probe in the method that fails (say, the gateway answering 500 instead of 507) fails it here.
        "activities_failed": [
            entry.get("activity", {}).get("name", "?")
            for entry in journal.get("run", [])
            if entry.get("status") == "failed"
        ],
        "hypothesis_before": _hypothesis(journal, "before"),
        "hypothesis_after": _hypothesis(journal, "after"),
        "faults_injected": sum(1 for e in ledger if e["kind"] == "fault"),
        "recoveries": sum(1 for e in ledger if e["kind"] == "recovery"),
        "runs_checked": counts["runs"],
        "results_lost": counts["lost"] + counts["partial_files"],
        "results_duplicated": counts["duplicated"],
        "gateway_jobs": gateway or None,
        "seconds": round(ended - started, 1),
        "started": started,
        "ended": ended,
        "events": ledger,
        "journal": str(workspace / "journal.json"),
    }


def passed(row: dict[str, Any]) -> bool:
    """Return whether an experiment held its hypothesis, ran every step, and lost or duplicated nothing."""
    return (
        row["status"] == "completed"
        and not row["deviated"]
        and not row["activities_failed"]
        and row["hypothesis_before"] is True
        and row["hypothesis_after"] is True
        and row["results_lost"] == 0
        and row["results_duplicated"] == 0
    )


def summary_table(rows: list[dict[str, Any]]) -> str:
    """Return the fixed-width summary table."""
    header = (
        f"{'experiment':<20} {'status':<10} {'before':<6} {'after':<6} {'faults':>6} "
        f"{'recov':>5} {'lost':>4} {'dup':>4} {'seconds':>8}"
    )
    lines = [header, "-" * len(header)]

    def mark(value: bool | None) -> str:
        return "-" if value is None else ("met" if value else "FAIL")

    for row in rows:
        lines.append(
            f"{row['experiment']:<20} {str(row['status']):<10} {mark(row['hypothesis_before']):<6} "
            f"{mark(row['hypothesis_after']):<6} {row['faults_injected']:>6} {row['recoveries']:>5} "
            f"{row['results_lost']:>4} {row['results_duplicated']:>4} {row['seconds']:>8.1f}"
        )
    lines.append("-" * len(header))
    lines.append(
        f"{'total':<20} {sum(passed(r) for r in rows)}/{len(rows)} pass{'':<7}"
        f"{sum(r['faults_injected'] for r in rows):>6} {sum(r['recoveries'] for r in rows):>5} "
        f"{sum(r['results_lost'] for r in rows):>4} {sum(r['results_duplicated'] for r in rows):>4} "
        f"{sum(r['seconds'] for r in rows):>8.1f}"
    )
    return "\n".join(lines) + "\n"


def plot_timeline(rows: list[dict[str, Any]], path: Path) -> None:
    """Draw one row per experiment: its span, each fault injected (x) and each recovery (o)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    origin = min((r["started"] for r in rows), default=0.0)
    figure, axes = plt.subplots(figsize=(10, 1.0 + 0.6 * max(1, len(rows))))
    for y, row in enumerate(rows):
        colour = "tab:green" if passed(row) else "tab:red"
        axes.barh(y, row["ended"] - row["started"], left=row["started"] - origin, color=colour, alpha=0.25)
        faults = [e["t"] - origin for e in row["events"] if e["kind"] == "fault"]
        recoveries = [e["t"] - origin for e in row["events"] if e["kind"] == "recovery"]
        axes.plot(
            faults, [y] * len(faults), "x", color="tab:red", markersize=9, label="fault" if y == 0 else None
        )
        axes.plot(
            recoveries, [y] * len(recoveries), "o", color="tab:blue", fillstyle="none", markersize=8,
            label="recovery" if y == 0 else None,
        )  # fmt: skip
    axes.set_yticks(range(len(rows)), [r["experiment"] for r in rows])
    axes.invert_yaxis()
    axes.set_xlabel("seconds since the game day started")
    axes.set_title("qhybrid game day: faults injected (x) and recoveries (o); green = hypothesis held")
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def run_gameday(
    out: Path,
    only: list[str] | None = None,
    directory: Path | None = None,
    say: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Run the local experiments in sequence and write the report into ``out``; return the rows.

    ``say`` hears one line as each experiment starts and one as it ends.
    """
    try:
        import chaoslib  # noqa: F401
        import qhybrid_chaos  # noqa: F401
    except ImportError as error:
        raise InputError(
            "gameday", f"needs the chaos extra ({error.name} is missing): pip install -e '.[chaos]'"
        ) from None
    paths = local_experiments(only, directory)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for number, path in enumerate(paths, 1):
        if say:
            say(f"[{number}/{len(paths)}] {path.stem}: started")
        rows.append(run_one(path, out))
        if say:
            row = rows[-1]
            verdict = "passed" if passed(row) else "FAILED"
            say(
                f"[{number}/{len(paths)}] {path.stem}: {verdict} in {row['seconds']:.1f} s "
                f"({row['faults_injected']} faults, {row['recoveries']} recoveries, "
                f"{row['results_lost']} lost, {row['results_duplicated']} duplicated)"
            )
    atomic.write_json(out / SUMMARY_JSON_FILE, {"passed": all(passed(r) for r in rows), "experiments": rows})
    atomic.write_text(out / SUMMARY_TEXT_FILE, summary_table(rows))
    plot_timeline(rows, out / TIMELINE_FILE)
    return rows
