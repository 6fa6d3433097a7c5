"""Gateway actions and probes against a real gateway process on loopback, behind the stand-in provider."""

from __future__ import annotations

import os

import pytest
from chaoslib.exceptions import ActivityFailed
from qhybrid_chaos import credentials, gateway
from qhybrid_chaos import workspace as ws
from qhybrid_chaos.fake_provider import ACCEPTED_ENV, FakeRuntimeService
from qiskit_ibm_runtime.exceptions import IBMNotAuthorizedError

from tests.gateway.conftest import bell

CONFIG = {
    "default_backend": "ibm",
    "backends": [{"name": "ibm", "kind": "ibm", "device": "ibm_chaos"}],
    "credentials": {"reload_interval_seconds": 0.1},
}


def test_fake_provider_accepts_only_listed_tokens_and_refuses_jobs_after_revocation(tmp_path, monkeypatch):
    accepted = tmp_path / "accepted"
    accepted.write_text("good\n")
    monkeypatch.setenv(ACCEPTED_ENV, str(accepted))
    with pytest.raises(IBMNotAuthorizedError, match="401"):
        FakeRuntimeService(channel="x", token="bad")
    device = FakeRuntimeService(channel="x", token="good").backend("ibm_chaos")
    first = device.run(bell(), shots=100).result().get_counts()
    assert device.run(bell(), shots=100).result().get_counts() == first  # seeded: the same counts
    accepted.write_text("other\n")
    with pytest.raises(IBMNotAuthorizedError, match="revoked"):
        device.run(bell(), shots=100)


def test_gateway_serving_kill_restart_rotate_and_job_accounting(workspace):
    assert gateway.gateway_serving(workspace, CONFIG, provider=True)
    record = ws.read_record(workspace, "gateway")
    assert os.path.isfile(record["token_file"])
    assert gateway.gateway_jobs_exactly_once(workspace, "ibm", runs=[])
    assert ws.read_record(workspace, "gateway-accounting")["jobs"] == 0

    generation = credentials.credentials_generation(workspace)
    assert credentials.rotate_credentials(workspace, "chaos-token-0002", revoke_previous=True) > generation
    accepted = credentials.accepted_file(workspace).read_text().split()
    assert accepted == ["chaos-token-0002"]  # the old one revoked at the provider
    credentials.rotate_credentials(workspace, "not-valid", valid=False)
    assert "not-valid" not in credentials.accepted_file(workspace).read_text()
    volume = credentials.volume(workspace)
    assert (volume / "ibm-quantum-token").read_text().strip() == "not-valid"
    assert os.path.islink(volume / "..data")

    gateway.kill_gateway(workspace)
    with pytest.raises(ActivityFailed, match="not running"):
        gateway.gateway_serving(workspace)
    with pytest.raises(ActivityFailed, match="no running gateway"):
        gateway.kill_gateway(workspace)
    assert gateway.restart_gateway(workspace) < 60
    assert gateway.gateway_serving(workspace)
    assert ws.read_record(workspace, "gateway")["port"] == record["port"]
    kinds = [(e["kind"], e["what"]) for e in ws.events(workspace)]
    assert kinds == [
        ("fault", "credentials-rotated"),
        ("fault", "credentials-invalid"),
        ("fault", "kill-gateway"),
        ("recovery", "restart-gateway"),
    ]
    assert gateway.stop_gateway(workspace)


def test_gateway_serving_without_a_gateway_or_config_fails(workspace):
    with pytest.raises(ActivityFailed, match="no gateway runs"):
        gateway.gateway_serving(workspace)
