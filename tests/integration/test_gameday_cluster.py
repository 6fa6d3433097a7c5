"""Game days on the kind stack: the load suite against the in-cluster gateway, then the chaos experiments.

Runs inside the session that holds the ``kind_stack`` fixture (conftest.py), after
the readiness checks and the scenario workflow (conftest orders the modules), so
every fault lands on a platform already shown healthy. Journals, chaostoolkit
logs, experiment state and the load summary go to the fixture's log folder
(``QHYBRID_CLUSTER_LOG_DIR``: the nightly uploads it). Run with ``pytest -m cluster
tests/integration``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qhybrid.blueprint.names import (
    GATEWAY_NAME,
    GATEWAY_NAMESPACE,
    GATEWAY_TOKEN_AUDIENCE,
    WORKFLOW_SERVICE_ACCOUNT,
)
from tests.integration.conftest import REPO, KindStack

pytestmark = pytest.mark.cluster

# The least destructive first: the secret deletion needs `pulumi up` to heal.
CLUSTER_EXPERIMENTS = ("terminate-worker-pods", "kill-gateway-pod", "drain-gpu-node", "delete-gateway-secret")
EXPERIMENT_TIMEOUT_S = 60 * 60
PORT_FORWARD_READY_S = 60


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _kubectl(kind_stack: KindStack, *args: str, timeout: float = 120) -> str:
    result = subprocess.run(
        ["kubectl", "--kubeconfig", str(kind_stack.kubeconfig_path), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result.stdout


def test_load_suite_against_the_in_cluster_gateway(kind_stack: KindStack):
    import httpx

    from tests.load.run_load import run

    assert shutil.which("kubectl"), "kubectl is needed to port-forward the gateway"
    out = kind_stack.log_dir / "load-in-cluster"
    out.mkdir(parents=True, exist_ok=True)
    # The gateway's one client is the workflow's service account (TokenReview): borrow a short token of it.
    namespace = kind_stack.config.workflow_namespace
    token = _kubectl(
        kind_stack, "create", "token", WORKFLOW_SERVICE_ACCOUNT, "-n", namespace,
        "--audience", GATEWAY_TOKEN_AUDIENCE, "--duration", "3600s",
    ).strip()  # fmt: skip
    token_file = out / "workflow-sa.token"
    token_file.touch(mode=0o600)
    token_file.write_text(token + "\n")
    port = _free_port()
    forward = subprocess.Popen(
        ["kubectl", "--kubeconfig", str(kind_stack.kubeconfig_path), "-n", GATEWAY_NAMESPACE,
         "port-forward", f"svc/{GATEWAY_NAME}", f"{port}:{kind_stack.config.gateway_port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + PORT_FORWARD_READY_S
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the gateway is not ready through the port-forward"
            time.sleep(1)
        summary = run(out, shape="step", duration=20, users=20, rate=2, url=url, token_file=token_file)
    finally:
        forward.terminate()
        forward.wait(timeout=30)
        token_file.unlink(missing_ok=True)
    assert summary["unexpected_failures"] == 0, summary["failures_by_kind"]
    assert summary["submitted_ok"] > 0
    assert (out / "summary.json").is_file()


@pytest.mark.parametrize("name", CLUSTER_EXPERIMENTS)
def test_cluster_chaos_experiment(kind_stack: KindStack, name: str):
    chaos = Path(sys.executable).with_name("chaos")
    assert chaos.is_file(), "the chaos CLI (chaostoolkit) is not installed in this venv"
    pytest.importorskip("chaosk8s", reason="chaostoolkit-kubernetes is not installed")
    out = kind_stack.log_dir / "chaos"
    out.mkdir(parents=True, exist_ok=True)
    journal = out / f"{name}.journal.json"
    env = {
        **os.environ,
        "KUBECONFIG": str(kind_stack.kubeconfig_path),
        "QHYBRID_CHAOS_STATE": str(out / f"{name}.state.json"),
    }
    result = subprocess.run(
        [str(chaos), "--log-file", str(out / f"{name}.log"), "run", "--rollback-strategy", "always",
         "--journal-path", str(journal), str(REPO / "chaos" / "experiments" / "cluster" / f"{name}.json")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=EXPERIMENT_TIMEOUT_S,
    )  # fmt: skip
    (out / f"{name}.stdout.txt").write_text(result.stdout + result.stderr)
    assert journal.is_file(), result.stderr[-3000:]
    ran = json.loads(journal.read_text())
    assert ran["status"] == "completed" and not ran["deviated"], (
        f"{name}: status {ran['status']}, deviated {ran['deviated']} (see {journal.name})"
    )
    # A fault that was not injected proves nothing: every activity of the method must have run.
    failed = [(r["activity"]["name"], r.get("exception")) for r in ran["run"] if r["status"] != "succeeded"]
    assert not failed, f"{name}: activities failed: {failed}"
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads((out / f"{name}.state.json").read_text())
    assert state and all(entry["checked"] for entry in state), state
