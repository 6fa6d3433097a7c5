"""Probes and actions on ``qhybrid run cutting`` processes and their run directories.

A run is registered in the workspace under a name, with the reference it must
reproduce bitwise (a fault-free baseline run with the same inputs) and what it
may fail over. :func:`runs_consistent` is the steady-state probe: it runs any
missing baseline, then checks every registered run.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

from chaoslib.exceptions import ActivityFailed
from qhybrid_chaos import workspace as ws

from qhybrid import atomic
from qhybrid.pipeline.rundir import RunDir, read_result_file

__all__ = [
    "kill_worker",
    "resume_run",
    "run_accounting",
    "run_cutting",
    "runs_consistent",
    "snapshot_results",
    "start_run",
    "wait_for_results",
    "wait_for_run",
]

RUNS = "runs"
BASELINES = "baselines"


def _gateway_flags(workspace: str, gateway_backend: str | None, via_proxy: bool) -> list[str]:
    if gateway_backend is None:
        return []
    gateway = ws.read_record(workspace, "gateway")
    if not gateway:
        raise ActivityFailed("no gateway was started in this workspace")
    url = gateway["url"]
    if via_proxy:
        proxy = ws.read_record(workspace, "proxy")
        if not proxy:
            raise ActivityFailed("no fault proxy was started in this workspace")
        url = proxy["url"]
    return [
        "--gateway-url", url,
        "--gateway-token-file", gateway["token_file"],
        "--gateway-backend", gateway_backend,
    ]  # fmt: skip


def _register(workspace: str, name: str, entry: dict[str, Any]) -> None:
    runs = ws.read_record(workspace, RUNS)
    if name in runs:
        raise ActivityFailed(f"run {name!r} is already registered in this workspace")
    runs[name] = entry
    ws.write_record(workspace, RUNS, runs)


def _update(workspace: str, name: str, **changes: Any) -> dict[str, Any]:
    runs = ws.read_record(workspace, RUNS)
    if name not in runs:
        raise ActivityFailed(f"no run {name!r} in this workspace")
    runs[name].update(changes)
    ws.write_record(workspace, RUNS, runs)
    return runs[name]


def start_run(
    workspace: str,
    name: str,
    args: list[str],
    reference: str,
    gateway_backend: str | None = None,
    via_proxy: bool = False,
    env: dict[str, str] | None = None,
    failover: str = "none",
    failover_reason: str | None = None,
    out: str | None = None,
) -> dict[str, Any]:
    """Start ``qhybrid run cutting ARGS --out <workspace>/runs/NAME`` in the background; register it.

    ``out`` puts the run directory elsewhere in the workspace (a path relative to it).

    ``reference`` names the baseline whose estimate it must equal bitwise; ``failover``
    is ``none`` (every planned QPU subexperiment must run there) or ``all`` (each must
    fail over, with ``failover_reason`` in its recorded reason).
    """
    directory = ws.root(workspace) / (out or f"runs/{name}")
    # No result cache: a game day injects faults into execution, which a warm cache would skip.
    command = [
        sys.executable, "-m", "qhybrid", "run", "cutting", *args, "--no-cache",
        *_gateway_flags(workspace, gateway_backend, via_proxy), "--out", str(directory),
    ]  # fmt: skip
    log = ws.root(workspace) / "logs" / f"run-{name}.log"
    process = ws.spawn(command, log, env)
    entry = {
        "dir": str(directory),
        "args": args,
        "env": env or {},
        "gateway_backend": gateway_backend,
        "via_proxy": via_proxy,
        "reference": reference,
        "failover": failover,
        "failover_reason": failover_reason,
        "pid": process.pid,
        "log": str(log),
        "exit_codes": [],
        "started_at": time.time(),
    }
    _register(workspace, name, entry)
    return {"name": name, "pid": process.pid, "dir": str(directory)}


def wait_for_run(workspace: str, name: str, timeout: float = 120.0, expect: str = "any") -> int | None:
    """Wait until run ``name``'s process ends; ``expect`` ``success``/``failure`` checks its exit code."""
    entry = ws.read_record(workspace, RUNS).get(name)
    if entry is None:
        raise ActivityFailed(f"no run {name!r} in this workspace")
    code = ws.wait_exit(entry["pid"], timeout)
    _update(workspace, name, exit_codes=[*entry["exit_codes"], code])
    if expect == "success" and code != 0:
        raise ActivityFailed(f"run {name!r} exited {code}; see {entry['log']}")
    if expect == "failure" and code == 0:
        raise ActivityFailed(f"run {name!r} succeeded although its fault should have stopped it")
    return code


def run_cutting(workspace: str, name: str, args: list[str], reference: str, **options: Any) -> int | None:
    """Start a run and wait for it to succeed (a run in the foreground)."""
    timeout = float(options.pop("timeout", 180.0))
    start_run(workspace, name, args, reference, **options)
    return wait_for_run(workspace, name, timeout=timeout, expect="success")


def resume_run(workspace: str, name: str, timeout: float = 180.0, workers: int = 2) -> int | None:
    """Recovery: ``qhybrid run cutting --resume DIR`` for run ``name``, in the foreground."""
    entry = ws.read_record(workspace, RUNS).get(name)
    if entry is None:
        raise ActivityFailed(f"no run {name!r} in this workspace")
    if ws.alive(entry["pid"]):
        raise ActivityFailed(f"run {name!r} is still running; it cannot be resumed now")
    command = [
        sys.executable, "-m", "qhybrid", "run", "cutting", "--resume", entry["dir"],
        "--workers", str(workers), "--no-cache",
        *_gateway_flags(workspace, entry["gateway_backend"], entry["via_proxy"]),
    ]  # fmt: skip
    process = ws.spawn(command, Path(entry["log"]), entry["env"])
    _update(workspace, name, pid=process.pid)
    code = wait_for_run(workspace, name, timeout=timeout, expect="success")
    ws.record_event(workspace, "recovery", "resume", run=name)
    return code


def _result_paths(directory: Path) -> list[Path]:
    run_dir = RunDir(directory)
    return [run_dir.result_file(start, stop, backend) for start, stop, backend in run_dir.result_files()]


def wait_for_results(workspace: str, name: str, minimum: int, timeout: float = 120.0) -> int:
    """Wait until run ``name`` has at least ``minimum`` result files; fail if it ends first."""
    entry = ws.read_record(workspace, RUNS).get(name)
    if entry is None:
        raise ActivityFailed(f"no run {name!r} in this workspace")
    deadline = time.monotonic() + timeout
    while True:
        count = len(_result_paths(Path(entry["dir"])))
        if count >= minimum:
            return count
        if not ws.alive(entry["pid"]):
            raise ActivityFailed(f"run {name!r} ended with {count} result files before {minimum} existed")
        if time.monotonic() > deadline:
            raise ActivityFailed(f"run {name!r}: {count} result files after {timeout:.0f} s")
        time.sleep(0.005)


def snapshot_results(workspace: str, name: str) -> int:
    """Remember the result files that exist now: a resume must keep them, not redo them."""
    entry = ws.read_record(workspace, RUNS)[name]
    stamps = {}
    for path in _result_paths(Path(entry["dir"])):
        info = path.stat()
        stamps[path.name] = [info.st_ino, info.st_mtime_ns]
    _update(workspace, name, kept=stamps)
    return len(stamps)


def kill_worker(workspace: str, name: str) -> dict[str, Any]:
    """Fault: SIGKILL one worker process of run ``name`` (a child of the runner we started)."""
    entry = ws.read_record(workspace, RUNS).get(name)
    if entry is None:
        raise ActivityFailed(f"no run {name!r} in this workspace")
    deadline = time.monotonic() + 30
    workers = ws.children_of(entry["pid"])
    while not workers:
        if not ws.alive(entry["pid"]) or time.monotonic() > deadline:
            raise ActivityFailed(f"run {name!r} has no worker process to kill")
        time.sleep(0.01)
        workers = ws.children_of(entry["pid"])
    victim = workers[0]
    ws.kill(victim, signal.SIGKILL)
    kept = snapshot_results(workspace, name)
    ws.record_event(workspace, "fault", "kill-worker", run=name, pid=victim, results_before=kept)
    return {"killed": victim, "workers": workers, "results_before": kept}


def run_accounting(directory: str) -> dict[str, Any]:
    """Count unique subexperiments with no result (lost) or with more than one (duplicated).

    Each result file is read in full (a partial file fails to load), and the ids
    it holds come from its own metadata, not from its name.
    """
    run_dir = RunDir(Path(directory))
    total = run_dir.read_manifest()["counts"]["unique"]
    seen = [0] * total
    for path in _result_paths(run_dir.root):
        try:
            _, meta = read_result_file(path)
        except Exception as error:  # noqa: BLE001 - any unreadable file is a corrupt result
            raise ActivityFailed(f"{path}: unreadable result file ({type(error).__name__})") from None
        for uid in meta["ids"]:
            seen[uid] += 1
    partial = [str(p) for p in run_dir.root.rglob("*.tmp")]
    return {
        "unique": total,
        "result_files": len(_result_paths(run_dir.root)),
        "lost": sum(1 for n in seen if n == 0),
        "duplicated": sum(1 for n in seen if n > 1),
        "partial_files": len(partial),
    }


def _check_run(name: str, entry: dict[str, Any], estimate_hex: str | None) -> dict[str, Any]:
    directory = Path(entry["dir"])
    if ws.alive(entry["pid"]):
        raise ActivityFailed(f"run {name!r} is still running")
    report_file = RunDir(directory).report_file
    if not report_file.is_file():
        raise ActivityFailed(f"run {name!r} did not complete (no report.json); see {entry['log']}")
    report = atomic.read_json(report_file)
    counts = run_accounting(str(directory))
    redone = 0
    for file_name, (inode, mtime) in entry.get("kept", {}).items():
        info = (RunDir(directory).results_dir / file_name).stat()
        redone += int((info.st_ino, info.st_mtime_ns) != (inode, mtime))
    counts.update(redone=redone, estimate=report["estimate"].hex())
    problems = [
        f"{counts[key]} {key}" for key in ("lost", "duplicated", "partial_files", "redone") if counts[key]
    ]
    if estimate_hex is not None and report["estimate"].hex() != estimate_hex:
        problems.append(
            f"estimate {report['estimate'].hex()} != reference {entry['reference']} {estimate_hex}"
        )
    failovers = report["provenance"].get("failovers", [])
    planned_qpu = report["counts"]["by_backend"].get("qpu", 0)
    if entry["failover"] == "none" and failovers:
        problems.append(f"{len(failovers)} subexperiments failed over: {failovers[0]['reason']}")
    if entry["failover"] == "all":
        reason = entry.get("failover_reason") or ""
        if len(failovers) != planned_qpu or not planned_qpu:
            problems.append(f"{len(failovers)} of {planned_qpu} QPU subexperiments failed over, not all")
        elif not all(reason in f["reason"] for f in failovers):
            problems.append(f"a failover reason lacks {reason!r}: {failovers[0]['reason']}")
    counts["failovers"] = len(failovers)
    if problems:
        raise ActivityFailed(f"run {name!r}: " + "; ".join(problems))
    return counts


def runs_consistent(workspace: str, baselines: list[dict[str, Any]]) -> bool:
    """Steady state: fault-free baselines complete, and every registered run equals its reference bitwise.

    Missing baselines are run first (``{"name", "args", "gateway_backend"?, "via_proxy"?,
    "env"?}``). Every run must have ended with a report, no unique subexperiment lost or
    duplicated, no partial file, no kept result redone, and its failovers as declared.
    """
    done = ws.read_record(workspace, BASELINES)
    for spec in baselines:
        if spec["name"] in done:
            continue
        options = {k: v for k, v in spec.items() if k in ("gateway_backend", "via_proxy", "env")}
        run_cutting(workspace, f"baseline-{spec['name']}", spec["args"], spec["name"], **options)
        report = atomic.read_json(
            RunDir(ws.root(workspace) / "runs" / f"baseline-{spec['name']}").report_file
        )
        done[spec["name"]] = report["estimate"].hex()
        ws.write_record(workspace, BASELINES, done)
    accounting = {}
    for name, entry in ws.read_record(workspace, RUNS).items():
        accounting[name] = _check_run(name, entry, done.get(entry["reference"]))
    ws.write_record(workspace, "accounting", accounting)
    return True
