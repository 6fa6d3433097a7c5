"""The experiment workspace: records of started processes and runs, and the fault/recovery ledger.

Faults only ever target what a workspace records as started by it (process ids
of children it spawned, directories it created), never processes found by name.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from chaoslib.exceptions import ActivityFailed

from qhybrid import atomic

__all__ = ["events", "record_event"]

EVENTS_FILE = "events.jsonl"
# Popen objects of the children started in this process, so they are reaped (no zombies).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def root(workspace: str | Path) -> Path:
    """Return the workspace directory, creating it."""
    path = Path(workspace)
    path.mkdir(parents=True, exist_ok=True)
    return path


def record_event(workspace: str, kind: str, what: str, **detail: Any) -> dict[str, Any]:
    """Append one ledger entry (``kind``: fault, recovery or note) and return it."""
    entry = {"t": time.time(), "kind": kind, "what": what, **detail}
    with open(root(workspace) / EVENTS_FILE, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, sort_keys=True) + "\n")
    return entry


def events(workspace: str) -> list[dict[str, Any]]:
    """Return the ledger entries in order."""
    path = root(workspace) / EVENTS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_record(workspace: str, name: str) -> dict[str, Any]:
    """Return the JSON record ``name`` (an empty dict when absent)."""
    path = root(workspace) / f"{name}.json"
    return atomic.read_json(path) if path.is_file() else {}


def write_record(workspace: str, name: str, data: dict[str, Any]) -> None:
    """Write the JSON record ``name`` atomically."""
    atomic.write_json(root(workspace) / f"{name}.json", data)


def spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a child process writing to ``log``; it is remembered so it can be waited for."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as handle:
        process = subprocess.Popen(
            args, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    _CHILDREN[process.pid] = process
    return process


def alive(pid: int) -> bool:
    """Return whether ``pid`` runs (a zombie child of ours is reaped and counts as ended)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_exit(pid: int, timeout: float) -> int | None:
    """Wait for ``pid`` to end; return its exit code when it is our child (None otherwise)."""
    deadline = time.monotonic() + timeout
    child = _CHILDREN.get(pid)
    if child is not None:
        try:
            return child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ActivityFailed(f"process {pid} still running after {timeout:.0f} s") from None
    while alive(pid):
        if time.monotonic() > deadline:
            raise ActivityFailed(f"process {pid} still running after {timeout:.0f} s")
        time.sleep(0.05)
    return None


def children_of(pid: int) -> list[int]:
    """Return the direct children of ``pid`` (from /proc; no name matching)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return sorted(found)


def kill(pid: int, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to ``pid`` if it still runs."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
