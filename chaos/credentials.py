"""Provider-credential faults: rotate the mounted Secret as the kubelet does, valid or not.

The gateway's ``--credentials-dir`` is a Secret-style volume in the workspace:
files are symlinks through ``..data``, and an update writes a new timestamped
directory and swaps ``..data`` atomically. The provider's side (which tokens it
accepts) is a file read by :mod:`qhybrid_chaos.fake_provider`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
from chaoslib.exceptions import ActivityFailed
from qhybrid_chaos import workspace as ws

__all__ = ["credentials_generation", "rotate_credentials"]

TOKEN_FILE = "ibm-quantum-token"
INSTANCE_FILE = "ibm-quantum-instance"
FIRST_TOKEN = "chaos-token-0001"


def volume(workspace: str) -> Path:
    """Return the Secret-style volume, provisioning the first token on first use."""
    path = ws.root(workspace) / "provider-secret"
    if not (path / "..data").exists():
        _accept(workspace, FIRST_TOKEN)
        _write_volume(path, FIRST_TOKEN, 1)
    return path


def accepted_file(workspace: str) -> Path:
    """Return the file of tokens the fake provider accepts."""
    return ws.root(workspace) / "provider-accepted-tokens"


def _accept(workspace: str, token: str) -> None:
    path = accepted_file(workspace)
    tokens = path.read_text().split() if path.is_file() else []
    path.write_text("\n".join([*tokens, token]) + "\n")


def _revoke(workspace: str, token: str) -> None:
    path = accepted_file(workspace)
    path.write_text("\n".join(t for t in path.read_text().split() if t != token) + "\n")


def _write_volume(directory: Path, token: str, version: int) -> None:
    """Do what the kubelet does: a new timestamped directory, then an atomic ``..data`` symlink swap."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"..chaos_{version:04d}"
    target.mkdir()
    (target / TOKEN_FILE).write_text(token + "\n")
    (target / INSTANCE_FILE).write_text("crn:v1:chaos:instance\n")
    link = directory / "..data_tmp"
    link.unlink(missing_ok=True)
    link.symlink_to(target.name)
    os.replace(link, directory / "..data")
    for name in (TOKEN_FILE, INSTANCE_FILE):
        if not (directory / name).is_symlink():
            (directory / name).symlink_to(f"..data/{name}")


def credentials_generation(workspace: str) -> int:
    """Return the credentials generation the gateway reports on /readyz."""
    url = ws.read_record(workspace, "gateway")["url"]
    return int(httpx.get(f"{url}/readyz", timeout=5).json()["credentials_generation"])


def rotate_credentials(
    workspace: str,
    token: str,
    valid: bool = True,
    revoke_previous: bool = False,
    kind: str = "fault",
    timeout: float = 20.0,
) -> int:
    """Swap the mounted token for ``token`` and wait until the gateway has reloaded it.

    ``valid`` makes the provider accept it first (a real rotation); ``revoke_previous``
    then revokes the token it replaced, so a gateway still using that one fails.
    ``kind`` records the step as a fault or a recovery. Returns the new generation.
    """
    directory = volume(workspace)
    previous = (directory / TOKEN_FILE).read_text().strip()
    before = credentials_generation(workspace)
    if valid:
        _accept(workspace, token)
    version = len([p for p in directory.iterdir() if p.name.startswith("..chaos_")]) + 1
    _write_volume(directory, token, version)
    deadline = time.monotonic() + timeout
    while (generation := credentials_generation(workspace)) <= before:
        if time.monotonic() > deadline:
            raise ActivityFailed(f"the gateway did not reload its credentials within {timeout:.0f} s")
        time.sleep(0.1)
    if revoke_previous:
        _revoke(workspace, previous)
    what = "credentials-rotated" if valid else "credentials-invalid"
    ws.record_event(workspace, kind, what, generation=generation, revoked_previous=revoke_previous)
    return generation
