"""Found by the game days: a failed job's key queues it again; a job refused mid-rotation runs again."""

from __future__ import annotations

import pytest
import qiskit_ibm_runtime
from qhybrid_chaos.fake_provider import ACCEPTED_ENV, FakeRuntimeService

from qhybrid.gateway.config import BackendConfig
from qhybrid.gateway.credentials import CredentialStore
from qhybrid.gateway.providers import IBMQuantum, ProviderError
from tests.gateway.conftest import auth, base_config, bell, in_process, job_body
from tests.gateway.test_credentials import write_secret_volume


@pytest.fixture
def provider(tmp_path, monkeypatch):
    accepted = tmp_path / "accepted"
    accepted.write_text("")
    monkeypatch.setenv(ACCEPTED_ENV, str(accepted))
    monkeypatch.setattr(qiskit_ibm_runtime, "QiskitRuntimeService", FakeRuntimeService)
    volume = tmp_path / "provider"
    write_secret_volume(volume, {"ibm-quantum-token": "tok-1"}, 1)
    return accepted, volume


def test_resubmitting_a_failed_jobs_key_runs_it_again(tmp_path, provider):
    accepted, volume = provider
    data = base_config(backends=[{"name": "ibm", "kind": "ibm", "device": "d"}], default_backend="ibm")
    data["clients"] = data["clients"][:1]
    with in_process(tmp_path, data, credentials_dir=volume) as (client, gateway):
        first = client.post("/v1/jobs", json=job_body("k", [bell()]), headers=auth("alice"))
        assert first.status_code == 202
        job_id = first.json()["id"]
        failed = client.get(f"/v1/jobs/{job_id}/result", params={"wait": 30}, headers=auth("alice")).json()
        assert failed["state"] == "failed" and "IBMNotAuthorizedError" in failed["error"]
        assert gateway.store.shots_reserved("alice") == 0  # a failure gives its shots back

        accepted.write_text("tok-1\n")  # the provider accepts the token now
        again = client.post("/v1/jobs", json=job_body("k", [bell()]), headers=auth("alice"))
        assert again.status_code == 202 and again.json()["id"] == job_id  # the same job, queued again
        done = client.get(f"/v1/jobs/{job_id}/result", params={"wait": 30}, headers=auth("alice")).json()
        assert done["state"] == "succeeded" and done["attempts"] == 2 and done["completions"] == 1
        assert gateway.store.shots_reserved("alice") == 100 * 1
        # A succeeded job's key still returns that job, without running it again.
        third = client.post("/v1/jobs", json=job_body("k", [bell()]), headers=auth("alice"))
        assert third.status_code == 200 and third.json()["attempts"] == 2


def test_a_job_refused_because_its_token_was_rotated_out_runs_again_with_the_new_one(tmp_path, provider):
    accepted, volume = provider
    accepted.write_text("tok-1\n")
    store = CredentialStore(volume, interval=0.0)
    backend = IBMQuantum(BackendConfig(name="ibm", kind="ibm", device="d"), store, lambda: None)
    original = backend._sampler
    rotated = []

    def rotate_while_the_job_runs(device):
        if not rotated:  # after the device was opened with tok-1, before the job reaches the provider
            accepted.write_text("tok-1\ntok-2\n")
            write_secret_volume(volume, {"ibm-quantum-token": "tok-2"}, 2)
            accepted.write_text("tok-2\n")  # tok-1 revoked
            rotated.append(True)
        return original(device)

    backend._sampler = rotate_while_the_job_runs  # type: ignore[method-assign]
    counts = backend.run([bell()], 100, [7], lambda _: None)
    assert sum(counts[0].values()) == 100 and rotated
    assert store.current().token is not None and store.current().token.reveal() == "tok-2"

    # A refusal with no newer credentials is final: no retry.
    accepted.write_text("")
    write_secret_volume(volume, {"ibm-quantum-token": "tok-3"}, 3)
    with pytest.raises(ProviderError) as error:
        backend.run([bell()], 100, [7], lambda _: None)
    assert error.value.auth
