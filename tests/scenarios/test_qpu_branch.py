"""The QPU branch: the paper's width policy against a local gateway with an emulated device, and failover."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qhybrid.backends import GatewaySettings
from qhybrid.errors import InputError
from qhybrid.gateway.auth import hash_token
from qhybrid.pipeline.runner import run_local
from qhybrid.spec import RunSpec
from tests.gateway.conftest import GatewayProcess, free_port

TOKEN = "workflow-token-" + "w" * 32
SHOTS = 256


def gateway_config(**extra):
    data = {
        "default_backend": "fake_manila",
        "backends": ["emulator:fake_manila", "aer"],
        "clients": [{"name": "qhybrid-workflow", "token_sha256": hash_token(TOKEN), **extra}],
    }
    return data


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "gateway.token"
    path.write_text(TOKEN + "\n")
    return path


def use_gateway(url, token_file, backend=None, attempts=3) -> GatewaySettings:
    # Settings travel as an argument, here and (as JSON) to the worker processes.
    return GatewaySettings(url=url, token_file=token_file, backend=backend, max_attempts=attempts)


def spec(policy="width", seed=3):
    return RunSpec(scenario="cutting", mode="sampled", shots=SHOTS, seed=seed, policy=policy)


def test_width_policy_runs_the_default_workload_on_an_emulated_device(tmp_path, token_file):
    gateway = GatewayProcess(tmp_path, gateway_config()).start()
    try:
        settings = use_gateway(gateway.url, token_file)
        report = run_local(spec(), tmp_path / "run", workers=2, batch_size=64, gateway=settings)
        metrics = __import__("httpx").get(f"{gateway.url}/metrics").text
    finally:
        gateway.stop()
    provenance = report["provenance"]
    assert set(provenance["backend_per_subexperiment"]) == {"qpu"}  # every subexperiment is 5 qubits wide
    assert provenance["failovers"] == []
    qpu_section = report["qpu"]
    assert qpu_section["ran"] == {"qpu": 250} and qpu_section["failed_over"] == 0
    assert qpu_section["device"]["device"] == "fake_manila"
    assert report["exact"] is not None and np.isfinite(report["estimate"])
    assert qpu_section["noise_induced_error"] == report["estimate"] - report["exact"]
    assert qpu_section["shot_noise_standard_error"] == report["standard_error"] > 0
    assert abs(report["error"]) < 1.0
    # The gateway metered every shot of the 250 subexperiments to this workflow.
    assert (
        f'qhybrid_gateway_shots_total{{backend="fake_manila",client="qhybrid-workflow"}} {250 * SHOTS}.0'
        in metrics
    )
    summary = (tmp_path / "run" / "summary.txt").read_text()
    assert "noise error" in summary and "qpu branch" in summary
    print(summary)


def test_unreachable_gateway_at_start_up_is_a_configuration_error(tmp_path, token_file):
    settings = use_gateway(f"http://127.0.0.1:{free_port()}", token_file, attempts=2)
    with pytest.raises(InputError, match="--gateway-url: GET /v1/backends: gave up after 2 attempts"):
        run_local(spec(), tmp_path / "failover", gateway=settings)
    assert not (tmp_path / "failover").exists()


def test_partial_failover_when_the_shot_budget_runs_out(tmp_path, token_file):
    # Room for two of the four 64-circuit jobs (noiseless aer keeps this quick): later jobs get a 403.
    gateway = GatewayProcess(tmp_path, gateway_config(shot_budget=128 * SHOTS)).start()
    try:
        # A 403 is no transient failure: only --failover always moves those subexperiments.
        settings = GatewaySettings(
            url=gateway.url, token_file=token_file, backend="aer", max_attempts=3, failover="always"
        )
        report = run_local(spec(), tmp_path / "partial", workers=1, batch_size=64, gateway=settings)
    finally:
        gateway.stop()
    ran = report["provenance"]["backend_per_subexperiment"]
    failovers = report["provenance"]["failovers"]
    assert ran.count("qpu") == 128 and ran.count("cpu") == 122 and len(failovers) == 122
    assert all("shot budget exceeded" in f["reason"] and "403" in f["reason"] for f in failovers)
    assert [f["subexperiment"] for f in failovers] == [i for i, name in enumerate(ran) if name == "cpu"]
    assert json.loads((tmp_path / "partial" / "report.json").read_text())["qpu"]["failed_over"] == 122
    assert "noise error" in (tmp_path / "partial" / "summary.txt").read_text()
