"""Service-account clients: projected tokens checked by a real TokenReview server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time

import httpx
import pytest

from qhybrid.blueprint.monitoring import metric_names
from qhybrid.blueprint.names import GATEWAY_TOKEN_AUDIENCE
from qhybrid.errors import InputError
from qhybrid.gateway.auth import hash_token
from qhybrid.gateway.client import GatewayClient
from qhybrid.gateway.config import parse_config
from qhybrid.gateway.kubernetes_auth import (
    ReviewRejected,
    TokenReviewer,
    resolve_api_url,
)
from tests.gateway.conftest import (
    GatewayProcess,
    auth,
    base_config,
    free_port,
    in_process,
    job_body,
)
from tests.gateway.fake_kubernetes import FakeKubernetesApi, self_signed_certificate, write_atomically
from tests.gateway.test_api import metric_value

NAMESPACE, ACCOUNT = "qhybrid-workflows", "qhybrid-workflow"
REVIEWS = metric_names.GATEWAY_TOKEN_REVIEWS_TOTAL
FAILURES = metric_names.GATEWAY_AUTH_FAILURES_TOTAL


@pytest.fixture
def api():
    server = FakeKubernetesApi().serve()
    yield server
    server.stop()


def own_token_file(api, tmp_path):
    path = tmp_path / "serviceaccount" / "token"
    path.parent.mkdir(exist_ok=True)
    path.write_text(api.gateway_token + "\n")
    return path


def config(api, tmp_path, **kubernetes):
    data = base_config()
    data["clients"].append(
        {
            "name": "qhybrid-workflow",
            "kubernetes_service_account": f"{NAMESPACE}/{ACCOUNT}",
            "shot_budget": 1_000_000,
            "backends": ["trivial"],
        }
    )
    data["kubernetes"] = {"api_url": api.url, "token_file": str(own_token_file(api, tmp_path)), **kubernetes}
    return data


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_a_projected_token_maps_to_its_service_accounts_client(api, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    token = api.issue(NAMESPACE, ACCOUNT)
    with in_process(tmp_path, config(api, tmp_path)) as (client, _):
        budget = client.get("/v1/budget", headers=bearer(token))
        assert budget.status_code == 200, budget.text
        assert budget.json() == {"client": "qhybrid-workflow", "shot_budget": 1_000_000, "shots_used": 0}
        submitted = client.post("/v1/jobs", json=job_body("k8s-1"), headers=bearer(token))
        assert submitted.status_code == 202, submitted.text
        final = client.get(
            f"/v1/jobs/{submitted.json()['id']}/result", params={"wait": 30}, headers=bearer(token)
        )
        assert final.json()["state"] == "succeeded"
        # the per-client backend list applies as for any client
        assert (
            client.post("/v1/jobs", json=job_body("k", backend="aer"), headers=bearer(token)).status_code
            == 403
        )
        assert api.calls == 1  # every later request was answered from the cache
        assert metric_value(client, REVIEWS, result="authenticated") == 1
        # hashed-token clients are unchanged and never reach the API
        assert client.get("/v1/budget", headers=auth("alice")).json()["client"] == "alice"
        assert client.get("/v1/budget", headers=auth("carol")).status_code == 401  # expired
        assert api.calls == 1
    assert token not in caplog.text and api.gateway_token not in caplog.text


def forged(audience=GATEWAY_TOKEN_AUDIENCE):
    """JWT-shaped, for our audience, but issued by nobody."""
    payload = base64.urlsafe_b64encode(json.dumps({"aud": [audience], "exp": time.time() + 600}).encode())
    return f"eyJhbGciOiJSUzI1NiJ9.{payload.decode().rstrip('=')}.c2ln"


def wrong_audience_claimed(api):
    return api.issue(NAMESPACE, ACCOUNT, audiences=("https://kubernetes.default.svc",))


def wrong_audience_issued(api):
    token = api.issue(NAMESPACE, ACCOUNT)
    api.issued[token].audiences = ["vault"]  # the claims we can read say otherwise: the API decides
    return token


def not_audience_aware(api):
    api.ignore_audiences = True
    return api.issue(NAMESPACE, ACCOUNT)


@pytest.mark.parametrize(
    ("make", "calls", "fragment"),
    [
        (wrong_audience_claimed, 0, "not for audience 'qpu-gateway'"),
        (wrong_audience_issued, 1, "refused by the Kubernetes API"),
        (not_audience_aware, 1, "not for audience 'qpu-gateway'"),
        (lambda api: forged(), 1, "refused by the Kubernetes API"),
        (lambda api: api.issue("other-namespace", ACCOUNT), 1, "other-namespace/qhybrid-workflow is not a"),
        (lambda api: api.issue(NAMESPACE, "default"), 1, "qhybrid-workflows/default is not a client"),
        (lambda api: api.issue(NAMESPACE, ACCOUNT, ttl=-5), 0, "expired"),
        (lambda api: "not-a-jwt-" + "x" * 40, 0, "invalid bearer token"),
    ],
    ids=[
        "aud-claimed",
        "aud-issued",
        "aud-ignored",
        "unauthenticated",
        "namespace",
        "account",
        "expired",
        "junk",
    ],
)
def test_refused_tokens_get_401_at_once_counted_and_cached(api, tmp_path, make, calls, fragment):
    token = make(api)
    with in_process(tmp_path, config(api, tmp_path)) as (client, _):
        for _ in range(3):
            started = time.perf_counter()
            response = client.get("/v1/budget", headers=bearer(token))
            assert time.perf_counter() - started < 1.0
            assert response.status_code == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert response.json()["error"] == "invalid_token" and fragment in response.json()["detail"]
            assert token not in response.text
        assert api.calls == calls  # a refused token is asked about once, then cached
        assert metric_value(client, FAILURES, reason="invalid_token") == 3
        assert metric_value(client, REVIEWS, result="rejected") == calls


def test_an_unreachable_api_is_503_with_retry_after_not_401(api, tmp_path):
    token = api.issue(NAMESPACE, ACCOUNT)
    data = config(api, tmp_path, api_url=f"http://127.0.0.1:{free_port()}")
    with in_process(tmp_path, data) as (client, _):
        first = client.get("/v1/budget", headers=bearer(token))
        assert first.status_code == 503, first.text
        assert first.headers["Retry-After"] == "2" and first.json()["error"] == "auth_unavailable"
        assert token not in first.text
        # within the hold-off the API is not asked again: still 503, one failed call counted
        assert client.get("/v1/budget", headers=bearer(token)).status_code == 503
        assert metric_value(client, REVIEWS, result="error") == 1
        assert metric_value(client, FAILURES, reason="invalid_token") == 0
        assert client.get("/v1/budget", headers=auth("alice")).status_code == 200  # hashed tokens still work


def test_api_errors_are_503_and_the_gateway_recovers_with_its_rotated_own_token(api, tmp_path, caplog):
    token = api.issue(NAMESPACE, ACCOUNT)
    data = config(api, tmp_path)
    with in_process(tmp_path, data) as (client, _):
        api.fail_with = 500
        assert client.get("/v1/budget", headers=bearer(token)).status_code == 503
        api.fail_with = None
        time.sleep(1.1)  # past the hold-off after a failure
        # the API now refuses the gateway's own token (it was rotated): still 503, never 401
        old_own = api.gateway_token
        api.gateway_token = "gateway-sa-rotated-" + "r" * 30
        assert client.get("/v1/budget", headers=bearer(token)).status_code == 503
        assert "system:auth-delegator" in caplog.text
        # the kubelet writes the new token: the gateway re-reads it
        own = tmp_path / "serviceaccount" / "token"
        replacement = own.with_name("token.new")
        replacement.write_text(api.gateway_token)
        replacement.replace(own)
        time.sleep(1.1)
        assert client.get("/v1/budget", headers=bearer(token)).status_code == 200
        assert metric_value(client, REVIEWS, result="error") == 2
        assert metric_value(client, REVIEWS, result="authenticated") == 1
    assert old_own not in caplog.text and api.gateway_token not in caplog.text and token not in caplog.text


def test_accepted_tokens_are_cached_only_for_cache_seconds(api, tmp_path):
    token = api.issue(NAMESPACE, ACCOUNT)
    with in_process(tmp_path, config(api, tmp_path, cache_seconds=0.5)) as (client, _):
        assert client.get("/v1/budget", headers=bearer(token)).status_code == 200
        assert client.get("/v1/budget", headers=bearer(token)).status_code == 200
        assert api.calls == 1
        api.revoke(token)  # its pod was deleted
        time.sleep(0.6)
        assert client.get("/v1/budget", headers=bearer(token)).status_code == 401
        assert api.calls == 2


def run(coroutine):
    # Not asyncio.run: it leaves the main thread without an event loop, which Pulumi's mocks need.
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()


class Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def reviewer(api, tmp_path, **settings):
    data = config(api, tmp_path, **settings)
    parsed = parse_config(data)
    monotonic, wall = Clock(1000.0), Clock(time.time())
    calls = []
    review = TokenReviewer(
        parsed.kubernetes, parsed.clients, count=calls.append, clock=monotonic, wall_clock=wall
    )
    return review, monotonic, wall, calls


def test_the_cache_never_outlives_the_tokens_own_expiry(api, tmp_path):
    review, monotonic, wall, results = reviewer(api, tmp_path, cache_seconds=60)
    token = api.issue(NAMESPACE, ACCOUNT, ttl=10)

    async def scenario():
        assert (await review.review(token, hash_token(token))).name == "qhybrid-workflow"
        monotonic.now += 9
        await review.review(token, hash_token(token))
        assert api.calls == 1  # cached
        monotonic.now += 2  # 11 s later: past the token's exp, well inside cache_seconds
        await review.review(token, hash_token(token))  # (the wall clock, and the fake API, still accept it)
        assert api.calls == 2
        monotonic.now += 11
        wall.now += 11  # the token's own exp has passed: refused without asking
        with pytest.raises(ReviewRejected, match="expired"):
            await review.review(token, hash_token(token))
        assert api.calls == 2
        await review.aclose()

    run(scenario())
    assert results == ["authenticated", "authenticated"]


def test_concurrent_requests_with_one_token_share_one_review(api, tmp_path):
    review, *_ = reviewer(api, tmp_path)
    token, other = api.issue(NAMESPACE, ACCOUNT), api.issue(NAMESPACE, ACCOUNT)
    api.delay = 0.3

    async def scenario():
        clients = await asyncio.gather(
            *(review.review(t, hash_token(t)) for t in [token] * 20 + [other] * 20)
        )
        assert {c.name for c in clients} == {"qhybrid-workflow"}
        await review.aclose()

    run(scenario())
    assert api.calls == 2


def test_https_with_the_configured_ca(tmp_path):
    (tmp_path / "server").mkdir()
    (tmp_path / "other").mkdir()
    certificate = self_signed_certificate(tmp_path / "server")
    api = FakeKubernetesApi().serve(certificate)
    try:
        token = api.issue(NAMESPACE, ACCOUNT)
        assert api.url.startswith("https://")
        with in_process(tmp_path, config(api, tmp_path, ca_file=str(certificate[0]))) as (client, _):
            assert client.get("/v1/budget", headers=bearer(token)).status_code == 200
        wrong_ca = self_signed_certificate(tmp_path / "other")[0]
        with in_process(tmp_path, config(api, tmp_path, ca_file=str(wrong_ca))) as (client, _):
            assert client.get("/v1/budget", headers=bearer(token)).status_code == 503  # not our API server
        missing = config(api, tmp_path, ca_file=str(tmp_path / "missing.crt"))
        with pytest.raises(InputError, match="kubernetes.ca_file"), in_process(tmp_path, missing):
            pass
    finally:
        api.stop()


def test_in_cluster_defaults_and_a_gateway_outside_a_cluster_fails_at_start(api, tmp_path, monkeypatch):
    parsed = parse_config(config(api, tmp_path)).kubernetes
    defaults = parse_config({"backends": ["aer"]}).kubernetes
    assert str(defaults.token_file) == "/var/run/secrets/kubernetes.io/serviceaccount/token"
    assert str(defaults.ca_file) == "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
    assert defaults.audience == GATEWAY_TOKEN_AUDIENCE and defaults.api_url is None
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    assert resolve_api_url(defaults, env) == "https://10.96.0.1:443"
    assert resolve_api_url(defaults, {"KUBERNETES_SERVICE_HOST": "fd00::1"}) == "https://[fd00::1]:443"
    assert resolve_api_url(parsed, {}) == api.url
    data = config(api, tmp_path)
    del data["kubernetes"]["api_url"]
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(InputError, match="KUBERNETES_SERVICE_HOST is unset"), in_process(tmp_path, data):
        pass


@pytest.mark.parametrize(
    ("client", "kubernetes", "fragment"),
    [
        ({"kubernetes_service_account": "ns/sa", "token_sha256": "0" * 64}, {}, "exactly one of"),
        ({}, {}, "exactly one of"),
        ({"kubernetes_service_account": "no-slash"}, {}, "<namespace>/<service account name>"),
        ({"kubernetes_service_account": "Bad_NS/sa"}, {}, "<namespace>/<service account name>"),
        ({"kubernetes_service_account": "ns/sa", "expires_at": "2030-01-01"}, {}, "their own expiry"),
        ({"kubernetes_service_account": "ns/sa"}, {"cache_seconds": 61}, "at most 60"),
        ({"kubernetes_service_account": "ns/sa"}, {"api_url": "kubernetes"}, "http(s)://host"),
        ({"kubernetes_service_account": "ns/sa"}, {"token": "x"}, "unknown keys"),
    ],
)
def test_config_errors_name_the_key(client, kubernetes, fragment):
    data = {"backends": ["aer"], "clients": [{"name": "c", **client}], "kubernetes": kubernetes}
    with pytest.raises(InputError) as caught:
        parse_config(data)
    assert fragment in str(caught.value)


def test_two_clients_may_not_share_a_service_account():
    data = {
        "backends": ["aer"],
        "clients": [
            {"name": "a", "kubernetes_service_account": "ns/sa"},
            {"name": "b", "kubernetes_service_account": "ns/sa"},
        ],
    }
    with pytest.raises(InputError, match="share a kubernetes_service_account"):
        parse_config(data)


def test_the_client_rereads_a_projected_token_the_kubelet_rotates(tmp_path):
    directory = tmp_path / "projected"
    write_atomically(directory, {"token": "first-token"})
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        return httpx.Response(200, json={"backends": [], "limits": {}})

    client = GatewayClient("http://gateway", directory / "token", transport=httpx.MockTransport(handler))
    client.backends()
    client.backends()
    write_atomically(directory, {"token": "second-token"})
    assert (directory / "token").read_text() == "second-token" and (directory / "token").is_symlink()
    client.backends()
    assert seen == ["Bearer first-token"] * 2 + ["Bearer second-token"]


def test_a_worker_with_a_rotating_projected_token_uses_a_live_gateway(api, tmp_path):
    # The gateway as it runs in its pod (uvicorn subprocess), the engine's client as in a worker pod.
    first = api.issue(NAMESPACE, ACCOUNT)
    projected = tmp_path / "worker" / "gateway-token"
    write_atomically(projected, {"token": first})
    gateway = GatewayProcess(tmp_path, config(api, tmp_path)).start()
    client = GatewayClient(gateway.url, projected / "token", max_attempts=3, backoff_base=0.05)
    try:
        assert client.request("GET", "/v1/budget").json()["client"] == "qhybrid-workflow"
        second = api.issue(NAMESPACE, ACCOUNT)
        write_atomically(projected, {"token": second})
        api.revoke(first)  # only the new token is valid now
        job = client.submit(job_body("rotated")["circuits"], shots=100, job_key="rotated")
        assert client.wait(job["id"])["state"] == "succeeded"
        assert api.reviewed == [first, second]
        # a refused token is final at once: no retries against a 401
        write_atomically(projected, {"token": api.issue(NAMESPACE, "intruder")})
        with pytest.raises(Exception, match="401") as refused:
            client.backends()
        assert client.retries == 0 and "intruder" in str(refused.value)
    finally:
        client.close()
        gateway.stop()
    logs = gateway.logs()
    assert "gateway ready" in logs
    for secret in (first, second, api.gateway_token):
        assert secret not in logs
