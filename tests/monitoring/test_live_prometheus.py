"""A live check of the SLO alerts: Debian's Prometheus on loopback scrapes a real gateway.

The gateway (``qhybrid gateway serve`` in a subprocess on 127.0.0.1) authenticates
workers' service-account tokens with a TokenReview API (the stand-in of
tests/gateway/fake_kubernetes.py, a real HTTP server on loopback). Traffic is one fresh
token per request, so each needs a review. Making the review API answer 500 is the
injected backend failure: the gateway answers those requests 503, which burns the
gateway-availability SLO.

Prometheus runs our rules as ``alerts.rule_groups`` renders them, with one change: the
burn-rate windows are on a compressed clock (seconds for hours), so that the fast-burn
alert can fire and resolve within a test. The expressions are otherwise the deployed ones.
The test prints how long the alert took to fire after the failure began and to resolve
after it ended.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from qhybrid.blueprint.monitoring import alerts
from qhybrid.blueprint.monitoring import metric_names as m
from qhybrid.blueprint.monitoring.slos import BurnAlert, BurnWindows
from tests.gateway.conftest import GatewayProcess, free_port
from tests.gateway.fake_kubernetes import FakeKubernetesApi
from tests.gateway.test_kubernetes_auth import ACCOUNT, NAMESPACE, config

pytestmark = pytest.mark.monitoring

PROMETHEUS = shutil.which("prometheus")
ALERT = "QhybridQpuGatewayAvailabilityFastBurn"
# The fast burn on a compressed clock: 1h -> 30 s, 5m -> 6 s; the slow one likewise.
COMPRESSED = BurnWindows(
    slo_window="10m",
    fast=BurnAlert(speed="Fast", long="30s", short="6s", factor=14.4, for_="0s", severity="critical"),
    slow=BurnAlert(speed="Slow", long="60s", short="12s", factor=6.0, for_="0s", severity="warning"),
)
DEADLINE_S = 40  # for each wait: the alert to fire, then to resolve
REQUESTS_PER_SECOND = 20


@pytest.fixture
def review_api() -> Iterator[FakeKubernetesApi]:
    server = FakeKubernetesApi().serve()
    yield server
    server.stop()


@pytest.fixture
def gateway(review_api, tmp_path) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path, config(review_api, tmp_path)).start()
    yield process
    process.stop()


@pytest.fixture
def prometheus(gateway, tmp_path) -> Iterator[str]:
    if PROMETHEUS is None:
        pytest.skip("prometheus not on PATH: apt-get install prometheus (.ci/run does)")
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": alerts.rule_groups(COMPRESSED)}, sort_keys=False))
    settings = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                "job_name": m.JOB_QPU_GATEWAY,
                "static_configs": [{"targets": [gateway.url.removeprefix("http://")]}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(settings))
    port = free_port()
    log = open(tmp_path / "prometheus.log", "ab")  # noqa: SIM115 - the child writes to it
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ),
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(url), 30, "Prometheus to be ready", tmp_path / "prometheus.log")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def wait_for(check: Any, seconds: float, what: str, log: Path | None = None) -> float:
    """Poll ``check`` every 0.25 s until it is true; return the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if check():
            return time.monotonic() - started
        time.sleep(0.25)
    tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"timed out after {seconds} s waiting for {what}\n{tail}")


def alert_state(url: str) -> str | None:
    """The fast-burn alert's state in Prometheus (pending/firing), or None when it is not active."""
    alerts_now = httpx.get(f"{url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    states = [a["state"] for a in alerts_now if a["labels"]["alertname"] == ALERT]
    return states[0] if states else None


def query(url: str, expr: str) -> list[dict[str, Any]]:
    return list(httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5).json()["data"]["result"])


class Traffic:
    """Worker-like requests, each with a freshly issued service-account token, until stopped."""

    def __init__(self, api: FakeKubernetesApi, gateway_url: str) -> None:
        self.api, self.url = api, gateway_url
        self.statuses: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as client:
            # Bounded: the test stops it, and it stops by itself after 3 minutes regardless.
            end = time.monotonic() + 180
            while not self.stop.is_set() and time.monotonic() < end:
                token = self.api.issue(NAMESPACE, ACCOUNT)
                answer = client.get("/v1/budget", headers={"Authorization": f"Bearer {token}"})
                self.statuses.append(answer.status_code)
                self.api.revoke(token)
                self.stop.wait(1 / REQUESTS_PER_SECOND)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def test_fast_burn_alert_fires_on_5xx_and_resolves_after_recovery(prometheus, gateway, review_api):
    with Traffic(review_api, gateway.url) as traffic:
        # Healthy: Prometheus scrapes the gateway, the SLI is 0 and nothing is active.
        wait_for(
            lambda: bool(query(prometheus, 'slo:sli_error:ratio_rate6s{slo="gateway-availability"} == 0')),
            DEADLINE_S,
            "a healthy availability SLI",
        )
        assert alert_state(prometheus) is None
        healthy = len(traffic.statuses)
        assert healthy > 0 and set(traffic.statuses) == {200}

        review_api.fail_with = 500  # the TokenReview backend fails: the gateway answers 503
        to_fire = wait_for(lambda: alert_state(prometheus) == "firing", DEADLINE_S, f"{ALERT} to fire")
        assert 503 in traffic.statuses[healthy:]
        burning = query(prometheus, 'slo:sli_error:ratio_rate30s{slo="gateway-availability"}')
        assert burning and float(burning[0]["value"][1]) > 14.4 * 0.001

        review_api.fail_with = None  # recovered
        to_resolve = wait_for(lambda: alert_state(prometheus) is None, DEADLINE_S, f"{ALERT} to resolve")
        recovered = len(traffic.statuses)
        wait_for(lambda: len(traffic.statuses) > recovered + 5, 10, "traffic after recovery")
        assert set(traffic.statuses[recovered:]) == {200}
    print(
        f"\n{ALERT}: fired {to_fire:.1f} s after the 5xx began, resolved {to_resolve:.1f} s after "
        f"recovery (compressed clock: 1h -> 30 s, 5m -> 6 s; scrape and evaluation every 1 s; "
        f"{len(traffic.statuses)} requests)"
    )
