"""Gateways for tests: in-process (FastAPI TestClient) and real uvicorn subprocesses on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from qiskit import QuantumCircuit

from qhybrid.gateway.app import Gateway, build_gateway, create_app
from qhybrid.gateway.auth import hash_token
from qhybrid.gateway.config import parse_config
from qhybrid.gateway.credentials import CredentialStore
from qhybrid.gateway.payload import encode_qpy
from qhybrid.gateway.store import JobStore

REPO = Path(__file__).resolve().parents[2]
TOKENS = {
    "alice": "alice-" + "a" * 40,
    "bob": "bob-" + "b" * 40,
    "carol": "carol-" + "c" * 40,  # expired
}


def base_config(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "default_backend": "trivial",
        "backends": [
            "trivial",
            "aer",
            {"name": "slow", "kind": "trivial", "seconds_per_job": 0.5},
        ],
        "clients": [
            {"name": "alice", "token_sha256": hash_token(TOKENS["alice"])},
            {
                "name": "bob",
                "token_sha256": hash_token(TOKENS["bob"]),
                "shot_budget": 3000,
                "backends": ["trivial", "slow"],
            },
            {
                "name": "carol",
                "token_sha256": hash_token(TOKENS["carol"]),
                "expires_at": "2001-01-01T00:00:00Z",
            },
        ],
    }
    data.update(overrides)
    return data


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


def bell() -> QuantumCircuit:
    circuit = QuantumCircuit(2, 2)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.measure([0, 1], [0, 1])
    return circuit


def flips(pattern: str) -> QuantumCircuit:
    """X on each qubit whose character is 1 (qubit 0 first), then measure all: one outcome."""
    circuit = QuantumCircuit(len(pattern), len(pattern))
    for q, bit in enumerate(pattern):
        if bit == "1":
            circuit.x(q)
    circuit.measure(range(len(pattern)), range(len(pattern)))
    return circuit


def job_body(key: str, circuits: list[QuantumCircuit] | None = None, **extra: Any) -> dict[str, Any]:
    body = {"job_key": key, "shots": 100, "circuits": encode_qpy(circuits or [flips("101")])}
    body.update(extra)
    return body


@contextlib.contextmanager
def in_process(
    tmp_path: Path, data: dict[str, Any] | None = None, credentials_dir: Path | None = None
) -> Iterator[tuple[TestClient, Gateway]]:
    config = parse_config(data or base_config())
    store = JobStore(tmp_path / "jobs.sqlite3")
    credentials = CredentialStore(credentials_dir, interval=0.1)
    gateway = build_gateway(config, store, credentials)
    with TestClient(create_app(gateway)) as client:
        yield client, gateway
    store.close()


@pytest.fixture
def gateway(tmp_path):
    with in_process(tmp_path) as pair:
        yield pair


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GatewayProcess:
    """``qhybrid gateway serve`` in a subprocess on 127.0.0.1."""

    def __init__(
        self,
        tmp_path: Path,
        data: dict[str, Any],
        *,
        credentials_dir: Path | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.config_file = tmp_path / "gateway.yaml"
        self.config_file.write_text(yaml.safe_dump(data))
        self.state_dir = tmp_path / "state"
        self.log_file = tmp_path / "gateway.log"
        self.credentials_dir = credentials_dir
        self.extra_args = extra_args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> GatewayProcess:
        args = [
            sys.executable, "-m", "qhybrid", "gateway", "serve",
            "--port", str(self.port),
            "--config", str(self.config_file),
            "--state-dir", str(self.state_dir),
        ]  # fmt: skip
        if self.credentials_dir is not None:
            args += ["--credentials-dir", str(self.credentials_dir)]
        args += list(self.extra_args)
        log = open(self.log_file, "ab")  # noqa: SIM115 - the child writes to it
        self.process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=dict(os.environ)
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"gateway exited {self.process.returncode}:\n{self.log_file.read_text()}"
                )
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"gateway not ready in {timeout} s:\n{self.log_file.read_text()}")

    def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def logs(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
