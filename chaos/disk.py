"""Faults on the artifact directory: unwritable (immutable or read-only) and full (a tiny tmpfs).

As root, permission bits do not stop writes, so a directory is made unwritable
with ``chattr +i`` (the immutable attribute, which binds root too); otherwise
with ``chmod 0555``. A full disk is a real one: a small tmpfs mounted in the
workspace (root only) that a filler file fills to ENOSPC mid-run.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from chaoslib.exceptions import ActivityFailed
from qhybrid_chaos import workspace as ws

from qhybrid.pipeline.rundir import RunDir

__all__ = ["fill_disk", "free_disk", "make_unwritable", "mount_small_disk", "restore_all", "restore_writable"]

DISK = "disk"
CHUNK = 64 * 1024


def _is_root() -> bool:
    return os.geteuid() == 0


def _run_dir(workspace: str, name: str) -> Path:
    entry = ws.read_record(workspace, "runs").get(name)
    if entry is None:
        raise ActivityFailed(f"no run {name!r} in this workspace")
    return Path(entry["dir"])


def _lock(path: Path, on: bool) -> str:
    if _is_root() and shutil.which("chattr"):
        result = subprocess.run(["chattr", "+i" if on else "-i", str(path)], capture_output=True, text=True)
        if result.returncode == 0:
            return "chattr"
        if on:
            raise ActivityFailed(f"chattr +i {path}: {result.stderr.strip()}")
    path.chmod(0o555 if on else 0o755)
    return "chmod"


def make_unwritable(workspace: str, name: str) -> dict[str, Any]:
    """Fault: make run ``name``'s results directory unwritable while it runs."""
    target = RunDir(_run_dir(workspace, name)).results_dir
    if not target.is_dir():
        raise ActivityFailed(f"{target}: no results directory yet")
    method = _lock(target, True)
    probe = target / ".chaos-write-probe"
    try:
        probe.write_bytes(b"x")
    except OSError:
        pass
    else:
        probe.unlink()
        _lock(target, False)
        raise ActivityFailed(f"{target}: still writable after {method}")
    record = ws.read_record(workspace, DISK)
    record.setdefault("locked", []).append(str(target))
    ws.write_record(workspace, DISK, record)
    ws.record_event(workspace, "fault", "results-dir-unwritable", run=name, method=method)
    return {"path": str(target), "method": method}


def restore_writable(workspace: str, name: str) -> str:
    """Recovery: make run ``name``'s results directory writable again."""
    target = RunDir(_run_dir(workspace, name)).results_dir
    method = _lock(target, False)
    record = ws.read_record(workspace, DISK)
    record["locked"] = [p for p in record.get("locked", []) if p != str(target)]
    ws.write_record(workspace, DISK, record)
    ws.record_event(workspace, "recovery", "results-dir-writable", run=name)
    return method


def mount_small_disk(workspace: str, size: str = "16m", where: str = "disk") -> str:
    """Mount a tmpfs of ``size`` at ``<workspace>/<where>`` (root only) for a run to fill."""
    if not _is_root():
        raise ActivityFailed("mounting a tmpfs needs root; run the full-disk experiment as root")
    target = ws.root(workspace) / where
    target.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "qhybrid-chaos", str(target)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise ActivityFailed(f"mount tmpfs at {target}: {result.stderr.strip()}")
    record = ws.read_record(workspace, DISK)
    record.setdefault("mounts", []).append(str(target))
    ws.write_record(workspace, DISK, record)
    return str(target)


def fill_disk(workspace: str, where: str = "disk") -> int:
    """Fault: write a filler file on ``<workspace>/<where>`` until the file system is full (ENOSPC)."""
    target = ws.root(workspace) / where
    if str(target) not in ws.read_record(workspace, DISK).get("mounts", []):
        raise ActivityFailed(f"{target} is not a file system this workspace mounted")
    filler = target / ".chaos-filler"
    total = shutil.disk_usage(target).total
    written = 0
    # Unbuffered: a buffered writer would try to flush its last chunk again on close, and
    # fail with the very ENOSPC this fault is after.
    with open(filler, "ab", buffering=0) as handle:
        for _ in range(total // CHUNK + 16):  # bounded: the file system's whole size
            try:
                handle.write(b"\0" * CHUNK)
                handle.flush()
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                break
            written += CHUNK
    if shutil.disk_usage(target).free >= CHUNK:
        raise ActivityFailed(f"{target}: still {shutil.disk_usage(target).free} bytes free")
    ws.record_event(workspace, "fault", "disk-full", where=str(target), filler_bytes=written)
    return written


def free_disk(workspace: str, where: str = "disk") -> int:
    """Recovery: delete the filler file; return the bytes free afterwards."""
    target = ws.root(workspace) / where
    (target / ".chaos-filler").unlink(missing_ok=True)
    ws.record_event(workspace, "recovery", "disk-freed", where=str(target))
    return shutil.disk_usage(target).free


def restore_all(workspace: str, unmount: bool = True) -> dict[str, int]:
    """Unlock every directory this workspace locked and (``unmount``) unmount its file systems.

    An experiment's rollback keeps the mounts (its runs stay readable for the report);
    ``qhybrid gameday`` unmounts after counting.
    """
    record = ws.read_record(workspace, DISK)
    for path in record.get("locked", []):
        if Path(path).exists():
            _lock(Path(path), False)
    for filler in [Path(m) / ".chaos-filler" for m in record.get("mounts", [])]:
        filler.unlink(missing_ok=True)
    if not unmount:
        unlocked = len(record.get("locked", []))
        ws.write_record(workspace, DISK, {**record, "locked": []})
        return {"unlocked": unlocked, "unmounted": 0}
    for mount in record.get("mounts", []):
        subprocess.run(["umount", mount], capture_output=True)
        if os.path.ismount(mount):
            subprocess.run(["umount", "-l", mount], capture_output=True)
    unlocked, unmounted = len(record.get("locked", [])), len(record.get("mounts", []))
    if record:
        ws.write_record(workspace, DISK, {"locked": [], "mounts": []})
    return {"unlocked": unlocked, "unmounted": unmounted}
