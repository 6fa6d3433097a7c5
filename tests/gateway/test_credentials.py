"""Provider credentials: Kubernetes-style Secret volume, reload without restart, never leaked."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from qhybrid.blueprint import gateway as blueprint_gateway
from qhybrid.blueprint.monitoring import metric_names
from qhybrid.gateway import credentials as creds_module
from qhybrid.gateway.credentials import CredentialStore, RedactingFilter, Secret
from tests.gateway.conftest import auth, base_config, bell, in_process, job_body

PROVIDER_REFUSALS = metric_names.GATEWAY_PROVIDER_AUTH_FAILURES_TOTAL
OLD = "ibm-token-OLD-0123456789abcdef"
NEW = "ibm-token-NEW-fedcba9876543210"


def write_secret_volume(directory: Path, data: dict[str, str], version: int) -> None:
    """Do what the kubelet does: a new timestamped dir, then atomically swap the ..data symlink."""
    directory.mkdir(exist_ok=True)
    target = directory / f"..2026_01_01_00_00_{version:02d}.000000000"
    target.mkdir()
    for name, value in data.items():
        (target / name).write_text(value)
    tmp_link = directory / "..data_tmp"
    tmp_link.symlink_to(target.name)
    os.replace(tmp_link, directory / "..data")
    for name in data:
        link = directory / name
        if not link.is_symlink():
            link.symlink_to(f"..data/{name}")


def test_file_names_match_the_blueprint_secret():
    assert creds_module.PROVIDER_TOKEN_FILE == blueprint_gateway.PROVIDER_TOKEN_FILE
    assert creds_module.PROVIDER_INSTANCE_FILE == blueprint_gateway.PROVIDER_INSTANCE_FILE


def test_symlink_swap_is_reloaded(tmp_path):
    volume = tmp_path / "provider"
    write_secret_volume(volume, {"ibm-quantum-token": OLD + "\n", "ibm-quantum-instance": "crn:one"}, 1)
    store = CredentialStore(volume, interval=0.05)
    first = store.current()
    assert first.token is not None and first.token.reveal() == OLD and first.instance == "crn:one"
    write_secret_volume(volume, {"ibm-quantum-token": NEW, "ibm-quantum-instance": "crn:two"}, 2)
    time.sleep(0.06)
    second = store.current()
    assert second.token is not None and second.token.reveal() == NEW and second.instance == "crn:two"
    assert second.generation == first.generation + 1
    time.sleep(0.06)
    assert store.current().generation == second.generation  # nothing changed: no reload


def test_secret_never_prints(tmp_path):
    secret = Secret(OLD)
    assert OLD not in repr(secret) and OLD not in str(secret) and OLD not in f"{secret}"


def test_log_records_are_scrubbed(tmp_path, caplog):
    volume = tmp_path / "provider"
    write_secret_volume(volume, {"ibm-quantum-token": OLD}, 1)
    store = CredentialStore(volume)
    logger = logging.getLogger("test.scrub")
    handler = logging.Handler()
    records = []
    handler.emit = records.append  # type: ignore[method-assign]
    handler.addFilter(RedactingFilter(store))
    logger.addHandler(handler)
    try:
        logger.error("provider said: bad token %s", OLD)
    finally:
        logger.removeHandler(handler)
    assert OLD not in records[0].getMessage() and "***" in records[0].getMessage()


class FakeRuntimeService:
    """Stands in for QiskitRuntimeService: no network here. Rejects OLD, echoing it like a careless server."""

    opened: list[str] = []

    def __init__(self, *, channel, token, instance):
        FakeRuntimeService.opened.append(token)
        if token == OLD:
            from qiskit_ibm_runtime.exceptions import IBMNotAuthorizedError

            raise IBMNotAuthorizedError(f"401 Unauthorized: token {token} is not valid")
        self.instance = instance

    def backend(self, name):
        from qhybrid.gateway.providers import fake_device

        return fake_device("fake_manila")


def test_ibm_adapter_reloads_rotated_token_without_restart_and_never_leaks_it(tmp_path, monkeypatch, caplog):
    import qiskit_ibm_runtime

    FakeRuntimeService.opened = []
    monkeypatch.setattr(qiskit_ibm_runtime, "QiskitRuntimeService", FakeRuntimeService)
    volume = tmp_path / "provider"
    write_secret_volume(volume, {"ibm-quantum-token": OLD}, 1)
    data = base_config(
        backends=[{"name": "ibm", "kind": "ibm", "device": "ibm_fake"}, "trivial", "aer"],
        default_backend="ibm",
    )
    data["clients"] = data["clients"][:1]
    caplog.set_level(logging.DEBUG)
    with in_process(tmp_path, data, credentials_dir=volume) as (client, gateway):
        generation = client.get("/readyz").json()["credentials_generation"]
        job = client.post("/v1/jobs", json=job_body("old", [bell()]), headers=auth("alice")).json()
        failed = client.get(f"/v1/jobs/{job['id']}/result", params={"wait": 30}, headers=auth("alice")).json()
        assert failed["state"] == "failed"
        assert "IBMNotAuthorizedError" in failed["error"] and "***" in failed["error"]
        metrics = client.get("/metrics").text
        refusals = [line for line in metrics.splitlines() if line.startswith(PROVIDER_REFUSALS)]
        assert refusals == [f"{PROVIDER_REFUSALS} 1.0"]  # the job's one attempt: no retry storm

        write_secret_volume(volume, {"ibm-quantum-token": NEW}, 2)
        deadline = time.monotonic() + 10
        while client.get("/readyz").json()["credentials_generation"] == generation:
            assert time.monotonic() < deadline, "credentials were not reloaded"
            time.sleep(0.05)
        job = client.post("/v1/jobs", json=job_body("new", [bell()]), headers=auth("alice")).json()
        done = client.get(f"/v1/jobs/{job['id']}/result", params={"wait": 60}, headers=auth("alice")).json()
        assert done["state"] == "succeeded", done
        assert FakeRuntimeService.opened == [OLD, NEW]  # the same process reopened the service
        assert f"{metric_names.GATEWAY_CREDENTIAL_RELOADS_TOTAL} 1.0" in client.get("/metrics").text
        everything = [client.get("/metrics").text, str(done), str(failed)]
        everything.append(str(client.get("/v1/backends", headers=auth("alice")).json()))
        del gateway
    everything.append(caplog.text)
    for text in everything:
        assert OLD not in text and NEW not in text


@pytest.mark.parametrize("content", ["", None])
def test_missing_or_empty_token_is_a_clear_provider_error(tmp_path, content):
    volume = tmp_path / "provider"
    volume.mkdir()
    if content is not None:
        (volume / "ibm-quantum-token").write_text(content)
    data = base_config(backends=[{"name": "ibm", "kind": "ibm", "device": "ibm_fake"}], default_backend="ibm")
    data["clients"] = data["clients"][:1]
    with in_process(tmp_path, data, credentials_dir=volume) as (client, _):
        job = client.post("/v1/jobs", json=job_body("x", [bell()]), headers=auth("alice")).json()
        failed = client.get(f"/v1/jobs/{job['id']}/result", params={"wait": 30}, headers=auth("alice")).json()
        assert failed["state"] == "failed" and "no provider token is mounted" in failed["error"]
