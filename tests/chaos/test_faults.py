"""Fault actions on directories, disks and the network path to the gateway."""

from __future__ import annotations

import os
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from chaoslib.exceptions import ActivityFailed
from qhybrid_chaos import disk, proxy
from qhybrid_chaos import workspace as ws

ROOT = os.geteuid() == 0


def _register_run(workspace, name="victim"):
    directory = ws.root(workspace) / "runs" / name
    (directory / "results").mkdir(parents=True)
    ws.write_record(workspace, "runs", {name: {"pid": -1, "dir": str(directory), "log": "-"}})
    return directory / "results"


def test_unwritable_results_dir_refuses_writes_until_restored(workspace):
    results = _register_run(workspace)
    reply = disk.make_unwritable(workspace, "victim")
    assert reply["method"] == ("chattr" if ROOT and shutil.which("chattr") else "chmod")
    with pytest.raises(OSError):
        (results / "new.npz").write_bytes(b"x")
    disk.restore_writable(workspace, "victim")
    (results / "new.npz").write_bytes(b"x")
    assert [e["kind"] for e in ws.events(workspace)] == ["fault", "recovery"]


def test_restore_all_unlocks_what_a_failed_experiment_left(workspace):
    results = _register_run(workspace)
    disk.make_unwritable(workspace, "victim")
    assert disk.restore_all(workspace)["unlocked"] == 1
    (results / "ok").write_bytes(b"x")


@pytest.mark.skipif(not ROOT, reason="mounting a tmpfs needs root")
def test_small_disk_fills_to_enospc_and_frees(workspace):
    mount = disk.mount_small_disk(workspace, size="1m", where="d")
    try:
        assert os.path.ismount(mount)
        written = disk.fill_disk(workspace, where="d")
        assert written >= 512 * 1024
        with pytest.raises(OSError) as error:
            with open(os.path.join(mount, "more"), "wb") as handle:
                handle.write(b"\0" * 65536)
                handle.flush()
        assert error.value.errno == 28  # ENOSPC
        assert disk.free_disk(workspace, where="d") > 512 * 1024
    finally:
        disk.restore_all(workspace)
    assert not os.path.ismount(mount)


def test_fill_disk_refuses_a_file_system_it_did_not_mount(workspace):
    with pytest.raises(ActivityFailed, match="not a file system this workspace mounted"):
        disk.fill_disk(workspace, where="elsewhere")


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _reply(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = f'{{"path": "{self.path}", "method": "{self.command}"}}'.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _reply


def test_fault_proxy_passes_fails_and_stalls(workspace):
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=upstream.serve_forever, daemon=True)
    thread.start()
    try:
        upstream_url = f"http://127.0.0.1:{upstream.server_address[1]}"
        ws.write_record(workspace, "gateway", {"url": upstream_url, "pid": -1})
        url = proxy.start_fault_proxy(workspace)
        assert httpx.get(f"{url}/v1/backends").json() == {"path": "/v1/backends", "method": "GET"}
        assert proxy.set_fault_mode(workspace, "503") == "pass"
        failing = httpx.post(f"{url}/v1/jobs", json={})
        assert failing.status_code == 503 and failing.headers["Retry-After"] == "0"
        assert httpx.get(f"{url}/healthz").status_code == 200  # probes still pass through
        proxy.set_fault_mode(workspace, "stall")
        assert httpx.get(f"{url}/v1/jobs/x/result").status_code == 202
        assert httpx.post(f"{url}/v1/jobs", json={}).status_code == 200  # submissions still go through
        proxy.set_fault_mode(workspace, "pass")
        assert httpx.get(f"{url}/v1/jobs/x/result").status_code == 200
        with pytest.raises(ActivityFailed, match="unknown proxy mode"):
            proxy.set_fault_mode(workspace, "chaos")
        kinds = [(e["kind"], e["what"]) for e in ws.events(workspace)]
        assert kinds == [
            ("fault", "qpu-backend-503"),
            ("fault", "qpu-backend-stall"),
            ("recovery", "qpu-backend-restored"),
        ]
    finally:
        upstream.shutdown()
