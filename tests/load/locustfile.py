"""Locust load for the QPU gateway: submit jobs, long-poll their results, resubmit keys, list backends.

Run through ``tests/load/run_load.py``, which starts a gateway on loopback and
sets the environment this file reads:

- ``QHYBRID_GATEWAY_TOKEN_FILE``: the load client's bearer token (read from the file)
- ``QHYBRID_LOAD_CIRCUITS``: a file with base64 QPY circuits for the jobs
- ``QHYBRID_LOAD_SHAPE`` (constant | step | spike), ``QHYBRID_LOAD_USERS``, ``QHYBRID_LOAD_DURATION`` (s)
- ``QHYBRID_LOAD_RATE``: tasks per second per user (constant throughput pacing)
- ``QHYBRID_LOAD_SUBMIT_TIMES``: where to write every submit's client-side time (ms, one a line,
  any status), so the run can set its exact p99 beside the gateway's own histogram

A 429 is the gateway's designed answer to overload: it is recorded under its own
name (``... [429 overload]``), not as a failure. Anything else that is not the
expected status is a failure, by kind.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from locust import FastHttpUser, LoadTestShape, constant_throughput, events, task

TOKEN = Path(os.environ["QHYBRID_GATEWAY_TOKEN_FILE"]).read_text().strip()
CIRCUITS = Path(os.environ["QHYBRID_LOAD_CIRCUITS"]).read_text().strip()
SHAPE = os.environ.get("QHYBRID_LOAD_SHAPE", "constant")
USERS = int(os.environ.get("QHYBRID_LOAD_USERS", "50"))
DURATION = float(os.environ.get("QHYBRID_LOAD_DURATION", "20"))
RATE = float(os.environ.get("QHYBRID_LOAD_RATE", "5"))
OVERLOAD = " [429 overload]"
BODY_HEAD = ('{"shots": 100, "circuits": "' + CIRCUITS + '", "job_key": "').encode("ascii")
BODY_TAIL = b'"}'
SUBMIT_TIMES = os.environ.get("QHYBRID_LOAD_SUBMIT_TIMES")
_submit_ms: list[float] = []


@events.request.add_listener
def _note_submit(request_type: str, name: str, response_time: float, **_: object) -> None:
    if request_type == "POST" and name.startswith("POST /v1/jobs"):
        _submit_ms.append(response_time)


_client_lag_ms: list[float] = []


def _sample_client_lag() -> None:
    """How late this process's own (gevent) loop runs a 10 ms timer: the load generator's queueing."""
    import time

    import gevent

    for _ in range(int(DURATION * 100) + 1500):  # bounded: the run plus its stop timeout
        planned = time.perf_counter() + 0.01
        gevent.sleep(0.01)
        _client_lag_ms.append(max(0.0, (time.perf_counter() - planned) * 1000))


@events.test_start.add_listener
def _start_lag_sampler(**_: object) -> None:
    import gevent

    gevent.spawn(_sample_client_lag)


@events.quitting.add_listener
def _write_submit_times(**_: object) -> None:
    if SUBMIT_TIMES:
        Path(SUBMIT_TIMES).write_text("".join(f"{ms:.3f}\n" for ms in _submit_ms))
        Path(SUBMIT_TIMES).with_name("client_loop_lag_ms.txt").write_text(
            "".join(f"{ms:.3f}\n" for ms in _client_lag_ms)
        )


class GatewayUser(FastHttpUser):
    """A workflow pod: mostly submits jobs and waits for them."""

    wait_time = constant_throughput(RATE)
    connection_timeout = 10.0
    network_timeout = 30.0

    def on_start(self) -> None:
        self.headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        self.last_key: str | None = None

    def _submit(self, key: str, expected: tuple[int, ...]) -> dict | None:
        # The body is spliced from bytes encoded once: JSON-encoding a large body per request
        # would spend the load generator's CPU and inflate the client-side times it measures.
        body = BODY_HEAD + key.encode("ascii") + BODY_TAIL
        with self.client.post(
            "/v1/jobs", data=body, headers=self.headers, name="POST /v1/jobs", catch_response=True
        ) as response:
            if response.status_code == 429:
                if "Retry-After" not in response.headers:
                    response.failure("429 without Retry-After")
                    return None
                response.request_meta["name"] += OVERLOAD
                response.success()
                return None
            if response.status_code not in expected:
                response.failure(f"status {response.status_code}: {response.text[:120]}")
                return None
            response.success()
            return response.json()

    @task(10)
    def submit_and_wait(self) -> None:
        key = uuid.uuid4().hex
        job = self._submit(key, (202,))
        if job is None:
            return
        self.last_key = key
        with self.client.get(
            f"/v1/jobs/{job['id']}/result?wait=20",
            headers=self.headers,
            name="GET /v1/jobs/{id}/result",
            catch_response=True,
        ) as response:
            if response.status_code == 200 and response.json()["state"] == "succeeded":
                response.success()
            elif response.status_code == 202:
                response.success()  # still queued after the long poll: slow, not wrong
            else:
                response.failure(f"status {response.status_code}: {response.text[:120]}")

    @task(1)
    def resubmit(self) -> None:
        if self.last_key is not None:
            self._submit(self.last_key, (200,))  # the same key returns the same job

    @task(1)
    def backends(self) -> None:
        self.client.get("/v1/backends", headers=self.headers, name="GET /v1/backends")

    @task(1)
    def bad_token(self) -> None:
        with self.client.get(
            "/v1/backends",
            headers={"Authorization": "Bearer wrong"},
            name="GET /v1/backends [bad token]",
            catch_response=True,
        ) as response:
            if response.status_code == 401:
                response.success()
            else:
                response.failure(f"expected 401, got {response.status_code}")


class NamedShape(LoadTestShape):
    """The load shape named by QHYBRID_LOAD_SHAPE, over QHYBRID_LOAD_DURATION seconds."""

    def tick(self) -> tuple[int, float] | None:
        t = self.get_run_time()
        if t >= DURATION:
            return None
        if SHAPE == "step":  # four equal steps up to USERS
            step = min(3, int(4 * t / DURATION))
            return max(1, USERS * (step + 1) // 4), USERS
        if SHAPE == "spike":  # a fifth of the users, all of them in the middle fifth, then a fifth again
            return (USERS if 0.4 * DURATION <= t < 0.6 * DURATION else max(1, USERS // 5)), USERS
        return USERS, USERS
