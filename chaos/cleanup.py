"""Undo whatever an experiment left behind: processes it started, mounts, locked directories.

``qhybrid gameday`` calls :func:`cleanup` after every experiment, whatever its
outcome; experiments also name it as their rollback.
"""

from __future__ import annotations

import signal

from qhybrid_chaos import workspace as ws

__all__ = ["cleanup"]


def cleanup(workspace: str) -> dict[str, int]:
    """Stop every process the workspace started, restore directories and unmount its file systems."""
    from qhybrid_chaos import disk

    stopped = 0
    for entry in ws.read_record(workspace, "runs").values():
        if ws.alive(entry["pid"]):
            for child in ws.children_of(entry["pid"]):
                ws.kill(child, signal.SIGKILL)
            ws.kill(entry["pid"], signal.SIGKILL)
            ws.wait_exit(entry["pid"], 30)
            stopped += 1
    for name in ("proxy", "gateway"):
        record = ws.read_record(workspace, name)
        if record and ws.alive(record["pid"]):
            ws.kill(record["pid"], signal.SIGTERM)
            try:
                ws.wait_exit(record["pid"], 20)
            except Exception:  # noqa: BLE001 - a stuck process gets SIGKILL
                ws.kill(record["pid"], signal.SIGKILL)
                ws.wait_exit(record["pid"], 10)
            stopped += 1
    restored = disk.restore_all(workspace)
    return {"stopped": stopped, **restored}
