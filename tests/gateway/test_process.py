"""The gateway as a real process on 127.0.0.1: 401 speed; kill -9 mid-load, nothing lost or run twice."""

from __future__ import annotations

import json
import re
import sqlite3
import statistics
import threading
import time

import httpx
import pytest

from qhybrid.blueprint.monitoring import metric_names
from qhybrid.gateway.auth import hash_token
from qhybrid.gateway.client import GatewayClient, GatewayError
from tests.gateway.conftest import TOKENS, GatewayProcess, auth, flips, job_body
from tests.gateway.test_api import metric_value


def config(seconds_per_job: float = 0.0) -> dict:
    return {
        "backends": [{"name": "dev", "kind": "trivial", "seconds_per_job": seconds_per_job}],
        "queue": {"max_queued_jobs": 100000},
        "clients": [{"name": "alice", "token_sha256": hash_token(TOKENS["alice"])}],
    }


@pytest.fixture
def process(tmp_path):
    gateway = GatewayProcess(tmp_path, config()).start()
    yield gateway
    gateway.stop()


def test_bad_tokens_get_401_fast_and_are_never_retried(process, tmp_path):
    timings = []
    with httpx.Client(base_url=process.url) as http:
        http.get("/healthz")  # connect once: time the answers, not the TCP handshake
        for i in range(100):
            headers = {"Authorization": f"Bearer wrong-{i}"} if i % 2 else {}
            started = time.perf_counter()
            response = http.get("/v1/backends", headers=headers)
            timings.append(time.perf_counter() - started)
            assert response.status_code == 401
        # A large body behind a bad token is refused before it is read.
        started = time.perf_counter()
        big = http.post("/v1/jobs", content=b"x" * 4_000_000, headers={"Authorization": "Bearer wrong"})
        big_seconds = time.perf_counter() - started
        assert big.status_code == 401
        metrics = http.get("/metrics").text
    assert statistics.median(timings) < 0.1, timings
    assert max(timings) < 1.0
    assert big_seconds < 2.0
    assert 'qhybrid_gateway_auth_failures_total{reason="invalid_token"} 51.0' in metrics
    assert 'qhybrid_gateway_auth_failures_total{reason="missing_token"} 50.0' in metrics

    token_file = tmp_path / "wrong.token"
    token_file.write_text("not-the-token")
    client = GatewayClient(process.url, token_file, max_attempts=6)
    started = time.perf_counter()
    with pytest.raises(GatewayError) as error:
        client.submit("AAAA", shots=1, job_key="k")
    assert error.value.status == 401 and client.retries == 0
    assert time.perf_counter() - started < 1.0
    assert "not-the-token" not in str(error.value)
    assert "not-the-token" not in process.logs()


def test_kill_9_mid_load_then_restart_loses_and_duplicates_nothing(tmp_path):
    gateway = GatewayProcess(tmp_path, config(seconds_per_job=0.005)).start()
    accepted: dict[str, str] = {}  # job key -> job id, for every 202/200 the clients saw
    uncertain: set[str] = set()  # submissions cut off by the kill: accepted or not, unknown
    stop = threading.Event()
    lock = threading.Lock()

    def submitter(worker: int) -> None:
        with httpx.Client(base_url=gateway.url, headers=auth("alice"), timeout=5) as http:
            for i in range(100000):
                if stop.is_set():
                    return
                key = f"w{worker}-{i}"
                try:
                    response = http.post("/v1/jobs", json=job_body(key, [flips(format(i % 8, "03b"))]))
                except httpx.TransportError:
                    with lock:
                        uncertain.add(key)
                    return
                assert response.status_code in (200, 202), response.text
                with lock:
                    accepted[key] = response.json()["id"]

    threads = [threading.Thread(target=submitter, args=(w,)) for w in range(6)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        gateway.kill9()  # mid-load: submissions in flight, jobs queued and one running
        stop.set()
        for thread in threads:
            thread.join(timeout=30)

        database = gateway.state_dir / "jobs.sqlite3"
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            at_kill = dict(db.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())
            keys_at_kill = {row[0] for row in db.execute("SELECT job_key FROM jobs")}
        assert set(accepted) <= keys_at_kill, "a job acknowledged with 202 was not recorded"
        assert at_kill.get("queued", 0) + at_kill.get("running", 0) > 0, at_kill

        gateway.start()  # same state dir, same port
        resubmitted = {"same_job": 0, "new_job": 0}
        with httpx.Client(base_url=gateway.url, headers=auth("alice"), timeout=30) as http:
            for key in sorted(uncertain):
                worker, i = key[1:].split("-")
                response = http.post("/v1/jobs", json=job_body(key, [flips(format(int(i) % 8, "03b"))]))
                assert response.status_code in (200, 202)
                resubmitted["same_job" if response.status_code == 200 else "new_job"] += 1
                accepted[key] = response.json()["id"]
            for key, job_id in accepted.items():
                final = http.get(f"/v1/jobs/{job_id}/result", params={"wait": 60}).json()
                assert final["state"] == "succeeded", final
                i = int(key.split("-")[1]) % 8
                expected = hex(int(format(i, "03b")[::-1], 2))  # qubit 0 is the lowest classical bit
                assert final["result"]["results"][0]["counts"] == {expected: 100}
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            rows = db.execute("SELECT job_key, state, completions, attempts FROM jobs").fetchall()
        assert len(rows) == len({row[0] for row in rows}) == len(accepted)  # one job per key, none extra
        assert all(state == "succeeded" and completions == 1 for _, state, completions, _ in rows)
        rerun = sum(1 for *_, attempts in rows if attempts == 2)
        assert rerun == at_kill.get("running", 0) and all(attempts in (1, 2) for *_, attempts in rows)
        with httpx.Client(base_url=gateway.url, timeout=10) as http:
            reruns = metric_value(http, metric_names.GATEWAY_JOB_RERUNS_TOTAL, backend="dev")
        assert reruns == rerun  # a simulator's re-run is harmless, but counted
        recovered = re.search(r"recovered (\d+) queued jobs \((\d+) of them were running\)", gateway.logs())
        assert recovered is not None
        assert int(recovered.group(1)) == at_kill.get("queued", 0) + at_kill.get("running", 0)
        summary = {
            "accepted_before_kill": len(accepted) - resubmitted["new_job"],
            "cut_off_by_kill": len(uncertain),
            "resubmitted": resubmitted,
            "at_kill": at_kill,
            "jobs_after_restart": len(rows),
            "completed_exactly_once": sum(1 for row in rows if row[2] == 1),
            "interrupted_runs_redone": rerun,
        }
        print("kill -9 counts:", json.dumps(summary, sort_keys=True))
        (tmp_path / "kill9-summary.json").write_text(json.dumps(summary))
    finally:
        stop.set()
        gateway.stop()


def test_the_access_log_never_holds_a_query_string(tmp_path):
    # Given a gateway logging every request, and clients that put tokens in the query string,
    gateway = GatewayProcess(
        tmp_path, {"backends": ["trivial"], "clients": []}, extra_args=("--access-log",)
    ).start()
    secret = "query-token-that-must-not-be-logged"
    try:
        for path in ("/v1/backends", "/v1/jobs/nope", "/healthz"):
            httpx.get(f"{gateway.url}{path}?token={secret}&x=1", timeout=10)
    finally:
        gateway.stop()
    log = gateway.log_file.read_text()
    # then the access log shows each request's path, and never the query.
    assert '"GET /v1/backends?<redacted> HTTP/1.1" 401' in log
    assert '"GET /healthz?<redacted> HTTP/1.1" 200' in log
    assert secret not in log and "x=1" not in log
