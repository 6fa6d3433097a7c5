"""Probes and actions on a QPU gateway process started on loopback by the experiment.

The gateway runs as ``qhybrid gateway serve`` (or, for provider-credential
experiments, through :mod:`qhybrid_chaos.fake_provider`, which stands in for IBM
Quantum's service) on a free 127.0.0.1 port with its SQLite queue in the
workspace. Kills target only the process id recorded here.
"""

from __future__ import annotations

import math
import signal
import socket
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from chaoslib.exceptions import ActivityFailed
from qhybrid_chaos import workspace as ws

__all__ = [
    "gateway_jobs_exactly_once",
    "gateway_recovered",
    "large_job",
    "gateway_refuses_writes",
    "gateway_serving",
    "kill_gateway",
    "restart_gateway",
    "stop_gateway",
]

GATEWAY = "gateway"
STATE_DIR = "gateway-state"
PROVIDER_JOBS = "provider-jobs"


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(record: dict[str, Any], timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if not ws.alive(record["pid"]):
            tail = Path(record["log"]).read_text(errors="replace")[-2000:]
            raise ActivityFailed(f"the gateway exited while starting:\n{tail}")
        try:
            if httpx.get(f"{record['url']}/readyz", timeout=1).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise ActivityFailed(f"the gateway was not ready within {timeout:.0f} s")


def _spawn(workspace: str, record: dict[str, Any]) -> dict[str, Any]:
    process = ws.spawn(record["command"], Path(record["log"]), record.get("env"))
    record["pid"] = process.pid
    ws.write_record(workspace, GATEWAY, record)
    return record


def start_gateway(
    workspace: str,
    config: dict[str, Any],
    provider: bool = False,
    timeout: float = 60.0,
    state_volume: str | None = None,
    provider_seconds: float = 0.0,
) -> dict[str, Any]:
    """Start a gateway with ``config`` (the YAML schema, as a mapping); with ``provider`` behind a fake IBM.

    With ``state_volume`` (a size such as ``"4m"``) its state directory is a tmpfs of
    that size (root only), which the disk-full experiment fills. A fake provider's jobs
    run ``provider_seconds`` each and are kept in ``<workspace>/provider-jobs``. The gateway mints
    ``<state dir>/local-client.token`` for its one client.
    """
    root = ws.root(workspace)
    if state_volume is not None:
        from qhybrid_chaos import disk

        disk.mount_small_disk(workspace, size=state_volume, where=STATE_DIR)
    config_file = root / "gateway.yaml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    state_dir = root / STATE_DIR
    module = ["qhybrid_chaos.fake_provider"] if provider else ["qhybrid"]
    command = [
        sys.executable, "-m", *module, "gateway", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--config", str(config_file), "--state-dir", str(state_dir),
    ]  # fmt: skip
    env = {}
    if provider:
        from qhybrid_chaos import credentials
        from qhybrid_chaos.fake_provider import ACCEPTED_ENV, JOBS_ENV, SECONDS_ENV

        command += ["--credentials-dir", str(credentials.volume(workspace))]
        env[ACCEPTED_ENV] = str(credentials.accepted_file(workspace))
        env[JOBS_ENV] = str(root / PROVIDER_JOBS)
        env[SECONDS_ENV] = str(provider_seconds)
    record = {
        "command": command,
        "env": env,
        "url": f"http://127.0.0.1:{port}",
        "port": port,
        "state_dir": str(state_dir),
        "token_file": str(state_dir / "local-client.token"),
        "log": str(root / "logs" / "gateway.log"),
        "starts": 1,
    }
    _wait_ready(_spawn(workspace, record), timeout)
    return {"url": record["url"], "pid": record["pid"]}


def gateway_serving(
    workspace: str,
    config: dict[str, Any] | None = None,
    provider: bool = False,
    state_volume: str | None = None,
    provider_seconds: float = 0.0,
) -> bool:
    """Steady state: the workspace's gateway answers /healthz and /readyz (started on the first check)."""
    record = ws.read_record(workspace, GATEWAY)
    if not record:
        if config is None:
            raise ActivityFailed("no gateway runs in this workspace")
        start_gateway(
            workspace, config, provider, state_volume=state_volume, provider_seconds=provider_seconds
        )
        record = ws.read_record(workspace, GATEWAY)
    if not ws.alive(record["pid"]):
        raise ActivityFailed(f"the gateway (pid {record['pid']}) is not running")
    try:
        health = httpx.get(f"{record['url']}/healthz", timeout=5)
        ready = httpx.get(f"{record['url']}/readyz", timeout=5)
    except httpx.TransportError as error:
        raise ActivityFailed(f"the gateway does not answer: {type(error).__name__}") from None
    if health.status_code != 200 or ready.status_code != 200:
        raise ActivityFailed(f"the gateway is unhealthy: /readyz {ready.status_code} {ready.text[:200]}")
    return True


def _job_states(state_dir: str) -> dict[str, int]:
    database = Path(state_dir) / "jobs.sqlite3"
    if not database.is_file():
        return {}
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as db:
        return dict(db.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())


def kill_gateway(workspace: str) -> dict[str, Any]:
    """Fault: SIGKILL the gateway process; return the jobs its queue held at that moment."""
    record = ws.read_record(workspace, GATEWAY)
    if not record or not ws.alive(record["pid"]):
        raise ActivityFailed("no running gateway to kill")
    ws.kill(record["pid"], signal.SIGKILL)
    ws.wait_exit(record["pid"], 30)
    at_kill = _job_states(record["state_dir"])
    record["at_kill"] = at_kill
    ws.write_record(workspace, GATEWAY, record)
    ws.record_event(workspace, "fault", "kill-gateway", pid=record["pid"], jobs_at_kill=at_kill)
    return at_kill


def restart_gateway(workspace: str, timeout: float = 60.0) -> float:
    """Recovery: start the gateway again on the same port and state directory; return seconds to ready."""
    record = ws.read_record(workspace, GATEWAY)
    if not record:
        raise ActivityFailed("no gateway was started in this workspace")
    if ws.alive(record["pid"]):
        raise ActivityFailed("the gateway still runs")
    record["starts"] += 1
    seconds = _wait_ready(_spawn(workspace, record), timeout)
    ws.record_event(workspace, "recovery", "restart-gateway", seconds_to_ready=round(seconds, 2))
    return seconds


def stop_gateway(workspace: str) -> bool:
    """Stop the gateway with SIGTERM (rollback)."""
    record = ws.read_record(workspace, GATEWAY)
    if not record or not ws.alive(record["pid"]):
        return False
    ws.kill(record["pid"], signal.SIGTERM)
    ws.wait_exit(record["pid"], 30)
    return True


def _expected_jobs(workspace: str, runs: list[str]) -> int:
    """Gateway jobs the named runs needed: one per chunk of at most 64 QPU circuits in each result file."""
    from qhybrid.backends.qpu import DEFAULT_CIRCUITS_PER_JOB
    from qhybrid.pipeline.rundir import RunDir

    total = 0
    registered = ws.read_record(workspace, "runs")
    for name in runs:
        entry = registered.get(name)
        if entry is None:
            continue
        run_dir = RunDir(Path(entry["dir"]))
        for start, stop, backend in run_dir.result_files():
            _, meta = run_dir.read_results(start, stop, backend)
            planned_qpu = sum(1 for name in meta["backends"] if name == "qpu") + len(meta["failovers"])
            total += math.ceil(planned_qpu / DEFAULT_CIRCUITS_PER_JOB)
    return total


def gateway_jobs_exactly_once(workspace: str, backend: str, runs: list[str]) -> bool:
    """Steady state: on ``backend``, one job per key, each succeeded exactly once, as many as the runs needed.

    Reads the gateway's SQLite store read-only; ``runs`` are the registered runs that used
    ``backend`` (those not registered yet count zero jobs).
    """
    record = ws.read_record(workspace, GATEWAY)
    database = Path(record["state_dir"]) / "jobs.sqlite3"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as db:
        rows = db.execute(
            "SELECT job_key, state, completions, attempts FROM jobs WHERE backend = ?", (backend,)
        ).fetchall()
    keys = [row[0] for row in rows]
    counts = {
        "jobs": len(rows),
        "expected": _expected_jobs(workspace, runs),
        "duplicate_keys": len(keys) - len(set(keys)),
        "not_succeeded": sum(1 for row in rows if row[1] != "succeeded"),
        "completed_twice": sum(1 for row in rows if row[2] > 1),
        "rerun_after_restart": sum(1 for row in rows if row[3] > 1),
    }
    ws.write_record(workspace, "gateway-accounting", counts)
    problems = [
        f"{counts[k]} {k}" for k in ("duplicate_keys", "not_succeeded", "completed_twice") if counts[k]
    ]
    if counts["jobs"] != counts["expected"]:
        problems.append(f"{counts['jobs']} jobs in the store, {counts['expected']} expected")
    if problems:
        raise ActivityFailed(f"gateway backend {backend!r}: " + "; ".join(problems))
    return True


def large_job(key: str, backend: str) -> dict[str, Any]:
    """A job of 300 ten-qubit circuits, about 100 KB of QPY: a few need new pages on the volume."""
    from qiskit import QuantumCircuit

    from qhybrid.gateway.payload import encode_qpy

    circuits = []
    for index in range(300):
        circuit = QuantumCircuit(10, 10)
        for qubit in range(10):
            if index >> qubit & 1:
                circuit.x(qubit)
        circuit.measure(range(10), range(10))
        circuits.append(circuit)
    return {"job_key": key, "shots": 1, "backend": backend, "circuits": encode_qpy(circuits)}


def gateway_refuses_writes(
    workspace: str, backend: str, attempts: int = 40, hold_seconds: float = 0.0
) -> dict[str, Any]:
    """Probe (volume full): submits get 507 with Retry-After and /healthz still passes.

    (/readyz fails only while a small probe write fails too: after a refused large write the
    WAL is truncated, and a full volume may then take small writes again.)

    Submits large jobs to ``backend`` until one is refused (a full volume may still hold
    a few in free SQLite pages); the ones accepted are recorded for :func:`gateway_recovered`.
    Liveness is checked after ``hold_seconds`` more of a full volume.
    """
    record = ws.read_record(workspace, GATEWAY)
    headers = {"Authorization": f"Bearer {Path(record['token_file']).read_text().strip()}"}
    accepted, refused = [], None
    with httpx.Client(base_url=record["url"], headers=headers, timeout=30) as client:
        for index in range(attempts):
            answer = client.post("/v1/jobs", json=large_job(f"disk-full-probe-{index}", backend))
            if answer.status_code in (200, 202):
                accepted.append(answer.json()["id"])
                continue
            refused = answer
            break
        time.sleep(hold_seconds)  # stay full a while: the runs' own submits meet it and retry
        ready, health = client.get("/readyz"), client.get("/healthz")
    record["disk_full_readyz"] = ready.status_code
    record["disk_full_readyz"] = ready.status_code
    if refused is None:
        raise ActivityFailed(f"{attempts} large jobs were accepted: the volume is not full")
    if refused.status_code != 507 or "Retry-After" not in refused.headers:
        raise ActivityFailed(f"a full volume answered {refused.status_code} {refused.text[:200]}, not 507")
    if health.status_code != 200:
        raise ActivityFailed(f"/healthz answered {health.status_code} on a full volume: liveness must hold")
    record["disk_full_probe_jobs"] = accepted
    ws.write_record(workspace, GATEWAY, record)
    ws.record_event(workspace, "note", "gateway-refuses-writes", accepted_before_full=len(accepted))
    return {"status": refused.status_code, "error": refused.json()["error"], "accepted": len(accepted)}


def gateway_recovered(workspace: str, timeout: float = 60.0) -> bool:
    """Probe (space freed): /readyz passes, unrestarted, and every job the probe had accepted succeeded."""
    record = ws.read_record(workspace, GATEWAY)
    headers = {"Authorization": f"Bearer {Path(record['token_file']).read_text().strip()}"}
    deadline = time.monotonic() + timeout
    pending = list(record.get("disk_full_probe_jobs", []))
    with httpx.Client(base_url=record["url"], headers=headers, timeout=10) as client:
        while time.monotonic() < deadline:
            states = {job: client.get(f"/v1/jobs/{job}").json().get("state") for job in pending}
            ready = client.get("/readyz").status_code == 200
            if ready and all(state == "succeeded" for state in states.values()):
                if record.get("starts", 1) != 1:
                    raise ActivityFailed("the gateway was restarted; recovery must not need one")
                ws.record_event(workspace, "note", "gateway-writes-again", jobs=len(pending))
                return True
            time.sleep(0.2)
    raise ActivityFailed(f"not recovered within {timeout:.0f} s: ready={ready}, jobs {states}")
