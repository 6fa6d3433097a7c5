"""A fault-injecting HTTP proxy in front of the gateway: a slow or failing QPU backend on demand.

``python -m qhybrid_chaos.proxy --port P --upstream URL --mode-file F`` forwards
every request to the gateway, except as the mode file (re-read per request) says:

- ``pass``: forward unchanged;
- ``503``: answer every ``/v1`` request 503 with Retry-After: 0 (a failing backend);
- ``stall``: forward submissions, but answer every result poll 202 after a pause, so
  no job ever finishes in the client's time limit (a slow backend).

The actions :func:`start_fault_proxy` and :func:`set_fault_mode` drive it.
"""

from __future__ import annotations

import argparse
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from chaoslib.exceptions import ActivityFailed
from qhybrid_chaos import workspace as ws

__all__ = ["set_fault_mode", "start_fault_proxy"]

MODES = ("pass", "503", "stall")
PROXY = "proxy"
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "server", "date"}


def _handler(upstream: str, mode_file: Path) -> type[BaseHTTPRequestHandler]:
    client = httpx.Client(base_url=upstream, timeout=120)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

        def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for key, value in headers.items():
                if key.lower() not in _HOP_HEADERS:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            mode = mode_file.read_text().strip() if mode_file.is_file() else "pass"
            if self.path.startswith("/v1/") and mode == "503":
                detail = b'{"error": "unavailable", "detail": "chaos: backend failing (503)"}'
                self._answer(503, detail, {"Content-Type": "application/json", "Retry-After": "0"})
                return
            if mode == "stall" and self.command == "GET" and "/result" in self.path:
                time.sleep(0.2)
                detail = b'{"state": "running", "detail": "chaos: backend stalled"}'
                self._answer(202, detail, {"Content-Type": "application/json", "Retry-After": "0"})
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
            try:
                response = client.request(self.command, self.path, content=body, headers=headers)
            except httpx.TransportError:
                self._answer(502, b'{"error": "bad_gateway"}', {"Content-Type": "application/json"})
                return
            self._answer(response.status_code, response.content, dict(response.headers))

        do_GET = do_POST = do_DELETE = _forward

    return Handler


def serve(port: int, upstream: str, mode_file: Path) -> None:
    """Serve until killed."""
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(upstream, mode_file))
    server.daemon_threads = True
    server.serve_forever()


def start_fault_proxy(workspace: str, mode: str = "pass", timeout: float = 20.0) -> str:
    """Start the proxy in front of the workspace's gateway; return its URL."""
    from qhybrid_chaos.gateway import free_port

    gateway = ws.read_record(workspace, "gateway")
    if not gateway:
        raise ActivityFailed("start the gateway before its proxy")
    root = ws.root(workspace)
    mode_file = root / "proxy-mode"
    mode_file.write_text(mode)
    port = free_port()
    command = [
        sys.executable, "-m", "qhybrid_chaos.proxy", "--port", str(port),
        "--upstream", gateway["url"], "--mode-file", str(mode_file),
    ]  # fmt: skip
    process = ws.spawn(command, root / "logs" / "proxy.log")
    url = f"http://127.0.0.1:{port}"
    ws.write_record(workspace, PROXY, {"pid": process.pid, "url": url, "mode_file": str(mode_file)})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not ws.alive(process.pid):
            raise ActivityFailed("the fault proxy exited while starting")
        try:
            httpx.get(f"{url}/healthz", timeout=1)
            return url
        except httpx.TransportError:
            time.sleep(0.05)
    raise ActivityFailed(f"the fault proxy did not answer within {timeout:.0f} s")


def set_fault_mode(workspace: str, mode: str) -> str:
    """Fault (``503``, ``stall``) or recovery (``pass``): switch what the proxy does to new requests."""
    if mode not in MODES:
        raise ActivityFailed(f"unknown proxy mode {mode!r}; use one of {list(MODES)}")
    record = ws.read_record(workspace, PROXY)
    if not record:
        raise ActivityFailed("no fault proxy runs in this workspace")
    previous = Path(record["mode_file"]).read_text().strip()
    Path(record["mode_file"]).write_text(mode)
    if mode != "pass":
        ws.record_event(workspace, "fault", f"qpu-backend-{mode}", previous=previous)
    elif previous != "pass":
        ws.record_event(workspace, "recovery", "qpu-backend-restored", previous=previous)
    return previous


def main(argv: list[str] | None = None) -> None:
    """Command line: ``--port``, ``--upstream``, ``--mode-file``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--mode-file", type=Path, required=True)
    options = parser.parse_args(argv)
    serve(options.port, options.upstream, options.mode_file)


if __name__ == "__main__":
    main()
