"""A gateway process on 127.0.0.1 for load tests and benchmarks: trivial backend, one client token.

The load suite (``tests/load``), the gateway benchmark and anyone measuring the
gateway on a workstation start it the same way: ``qhybrid gateway serve`` in a
child process, with a config written next to its state, ready when ``/readyz``
answers 200. Only loopback is ever used.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from qhybrid.gateway.auth import hash_token, new_token, write_token_file

LOOPBACK = "127.0.0.1"
READY_TIMEOUT_S = 60.0


def free_port() -> int:
    """Return a TCP port on loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@dataclass
class LoopbackGateway:
    """A running gateway child process, its URL and the file holding its one client's token."""

    process: subprocess.Popen[bytes]
    url: str
    token_file: Path

    def stop(self) -> None:
        """Terminate the process (SIGTERM: it drains) and wait for it."""
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_gateway(
    out: Path,
    *,
    max_queued: int,
    seconds_per_job: float,
    concurrency: int,
    queue_options: dict[str, int] | None = None,
) -> LoopbackGateway:
    """Start ``qhybrid gateway serve`` with a trivial backend under ``out``; return it once ready."""
    import httpx

    out.mkdir(parents=True, exist_ok=True)
    token_file = out / "load-client.token"
    token = new_token()
    write_token_file(token_file, token)
    config = {
        "backends": [
            {
                "name": "trivial",
                "kind": "trivial",
                "seconds_per_job": seconds_per_job,
                "concurrency": concurrency,
            }
        ],
        "queue": {"max_queued_jobs": max_queued, "retry_after_seconds": 1, **(queue_options or {})},
        "clients": [{"name": "load", "token_sha256": hash_token(token)}],
    }
    (out / "gateway.yaml").write_text(yaml.safe_dump(config))
    port = free_port()
    with open(out / "gateway.log", "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "qhybrid", "gateway", "serve", "--host", LOOPBACK, "--port", str(port),
                "--config", str(out / "gateway.yaml"), "--state-dir", str(out / "gateway-state"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://{LOOPBACK}:{port}"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited: {(out / 'gateway.log').read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return LoopbackGateway(process, url, token_file)
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    process.wait()
    raise RuntimeError(f"gateway not ready in {READY_TIMEOUT_S:.0f} s")
