"""Locust load for the QPU gateway: submit jobs, long-poll their results, resubmit keys, list backends.

Run through ``tests/load/run_load.py``, which starts a gateway on loopback and
sets the environment this file reads:

- ``QHYBRID_GATEWAY_TOKEN_FILE``: the load client's bearer token (read from the file)
- ``QHYBRID_LOAD_CIRCUITS``: a file with base64 QPY circuits for the jobs
- ``QHYBRID_LOAD_SHAPE`` (constant | step | spike), ``QHYBRID_LOAD_USERS``, ``QHYBRID_LOAD_DURATION`` (s)
- ``QHYBRID_LOAD_RATE``: tasks per second per user (constant throughput pacing)

A 429 is the gateway's designed answer to overload: it is recorded under its own
name (``... [429 overload]``), not as a failure. Anything else that is not the
expected status is a failure, by kind.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from locust import FastHttpUser, LoadTestShape, constant_throughput, task

TOKEN = Path(os.environ["QHYBRID_GATEWAY_TOKEN_FILE"]).read_text().strip()
CIRCUITS = Path(os.environ["QHYBRID_LOAD_CIRCUITS"]).read_text().strip()
SHAPE = os.environ.get("QHYBRID_LOAD_SHAPE", "constant")
USERS = int(os.environ.get("QHYBRID_LOAD_USERS", "50"))
DURATION = float(os.environ.get("QHYBRID_LOAD_DURATION", "20"))
RATE = float(os.environ.get("QHYBRID_LOAD_RATE", "5"))
OVERLOAD = " [429 overload]"


class GatewayUser(FastHttpUser):
    """A workflow pod: mostly submits jobs and waits for them."""

    wait_time = constant_throughput(RATE)
    connection_timeout = 10.0
    network_timeout = 30.0

    def on_start(self) -> None:
        self.headers = {"Authorization": f"Bearer {TOKEN}"}
        self.last_key: str | None = None

    def _submit(self, key: str, expected: tuple[int, ...]) -> dict | None:
        body = {"job_key": key, "shots": 100, "circuits": CIRCUITS}
        with self.client.post(
            "/v1/jobs", json=body, headers=self.headers, name="POST /v1/jobs", catch_response=True
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
