"""Gateway actions and probes against a real gateway process on loopback, behind the stand-in provider."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest
from chaoslib.exceptions import ActivityFailed
from qhybrid_chaos import credentials, gateway
from qhybrid_chaos import workspace as ws
from qhybrid_chaos.fake_provider import ACCEPTED_ENV, FakeRuntimeService, submissions
from qiskit_ibm_runtime.exceptions import IBMNotAuthorizedError

from qhybrid.gateway.payload import encode_qpy
from tests.gateway.conftest import bell, flips
from tests.gateway.test_api import metric_value

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


def test_a_provider_job_running_at_a_kill_9_is_fetched_after_restart_not_paid_twice(workspace):
    # Three jobs of 1.5 s each at the provider, one at a time; the gateway dies while the
    # first runs there. Its provider job id was recorded before the wait, so the restarted
    # gateway re-attaches to it: the provider sees exactly one submission per accepted job.
    assert gateway.gateway_serving(workspace, CONFIG, provider=True, provider_seconds=1.5)
    record = ws.read_record(workspace, "gateway")
    headers = {"Authorization": f"Bearer {Path(record['token_file']).read_text().strip()}"}
    patterns = ["101", "011", "110"]
    with httpx.Client(base_url=record["url"], headers=headers, timeout=30) as client:
        ids = [
            client.post(
                "/v1/jobs", json={"job_key": f"k{p}", "shots": 50, "circuits": encode_qpy([flips(p)])}
            ).json()["id"]
            for p in patterns
        ]
        deadline = time.monotonic() + 60
        while not client.get(f"/v1/jobs/{ids[0]}").json()["provider_job_id"]:
            assert time.monotonic() < deadline, "the first job never reached the provider"
            time.sleep(0.02)
    gateway.kill_gateway(workspace)
    provider_jobs = ws.root(workspace) / gateway.PROVIDER_JOBS
    assert len(submissions(provider_jobs)) == 1  # the kill came while the first job ran there
    gateway.restart_gateway(workspace)
    with httpx.Client(base_url=record["url"], headers=headers, timeout=90) as client:
        finals = [client.get(f"/v1/jobs/{i}/result", params={"wait": 60}).json() for i in ids]
        assert [f["state"] for f in finals] == ["succeeded"] * 3, finals
        for final, pattern in zip(finals, patterns, strict=True):
            expected = hex(int(pattern[::-1], 2))  # qubit 0 is the lowest classical bit
            assert final["result"]["results"][0]["counts"] == {expected: 50}
        assert [f["attempts"] for f in finals] == [1, 1, 1]  # re-attached, not claimed again
        assert metric_value(client, "qhybrid_gateway_job_reruns_total", backend="ibm") == 0
    paid = submissions(provider_jobs)
    assert len(paid) == 3 and sorted(paid) == sorted(f["provider_job_id"] for f in finals)
    assert gateway.stop_gateway(workspace)
