"""A full state volume, a dying worker, a stuck one: the gateway refuses honestly, loses nothing, recovers.

The full disk is real where the machine allows it (a 4 MiB tmpfs, as root) and
injected otherwise: the store's writer connection is wrapped so that every write
fails as SQLite fails on a full disk ("database or disk is full").
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from qhybrid_chaos.gateway import large_job

from qhybrid.blueprint.monitoring import metric_names
from qhybrid.gateway.store import WAL_SIZE_LIMIT_BYTES
from tests.gateway.conftest import auth, base_config, in_process, job_body
from tests.gateway.test_api import metric_value

ROOT = os.geteuid() == 0
CHUNK = 64 * 1024


class TmpfsFiller:
    """A real small file system under the state directory, filled to ENOSPC by a filler file."""

    def __init__(self, where: Path) -> None:
        where.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "qhybrid-test", str(where)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        self.where = where
        self.filler = where / "filler"

    def fill(self, _: Any) -> None:
        with open(self.filler, "ab") as handle:
            for _ in range(shutil.disk_usage(self.where).total // CHUNK + 16):
                try:
                    handle.write(b"\0" * CHUNK)
                    handle.flush()
                except OSError as error:
                    assert error.errno == errno.ENOSPC
                    break
        # A page-sized gap may remain: SQLite's own writes fill it soon.
        assert shutil.disk_usage(self.where).free < CHUNK

    def free(self, _: Any) -> None:
        self.filler.unlink()

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.where)], capture_output=True)


class FullWriter:
    """The store's writer connection, failing every write as SQLite does on a full disk while ``full``."""

    def __init__(self, real: sqlite3.Connection) -> None:
        self.real = real
        self.full = False

    def execute(self, sql: str, *args: Any) -> Any:
        if self.full and not sql.lstrip().upper().startswith(("ROLLBACK", "PRAGMA")):
            raise sqlite3.OperationalError("database or disk is full")
        return self.real.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class InjectedFiller:
    def __init__(self, where: Path) -> None:
        self.where = where
        self.writer: FullWriter | None = None

    def fill(self, gateway: Any) -> None:
        if self.writer is None:
            self.writer = gateway.store._writer = FullWriter(gateway.store._writer)
        self.writer.full = True

    def free(self, _: Any) -> None:
        assert self.writer is not None
        self.writer.full = False

    def close(self) -> None:
        pass


@pytest.fixture(params=["tmpfs", "injected"])
def volume(request, tmp_path) -> Iterator[TmpfsFiller | InjectedFiller]:
    if request.param == "tmpfs" and not ROOT:
        pytest.skip("mounting a tmpfs needs root; the injected variant covers the same path")
    filler = (TmpfsFiller if request.param == "tmpfs" else InjectedFiller)(tmp_path / "state")
    yield filler
    filler.close()


def _wait_states(client, ids: list[str], timeout: float = 60.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        states = {i: client.get(f"/v1/jobs/{i}", headers=auth("alice")).json()["state"] for i in ids}
        if all(state in ("succeeded", "failed", "cancelled") for state in states.values()):
            break
        time.sleep(0.1)
    return states


def test_full_volume_answers_507_keeps_every_accepted_job_and_recovers_without_restart(volume):
    with in_process(volume.where) as (client, gateway):
        accepted = []
        for i in range(3):  # running on the slow backend while the volume fills: results wait to be written
            answer = client.post(
                "/v1/jobs", json=job_body(f"before-{i}", backend="slow"), headers=auth("alice")
            )
            assert answer.status_code == 202
            accepted.append(answer.json()["id"])
        volume.fill(gateway)

        refused = None
        for i in range(40):  # bounded: a 4 MiB volume holds far fewer than 40 such jobs
            answer = client.post("/v1/jobs", json=large_job(f"full-{i}", "trivial"), headers=auth("alice"))
            if answer.status_code == 202:
                accepted.append(answer.json()["id"])
                continue
            refused = answer
            break
        assert refused is not None, "the volume never filled"
        assert refused.status_code == 507, refused.text
        assert refused.json()["error"] == "storage_full" and "refused the write" in refused.json()["detail"]
        assert int(refused.headers["Retry-After"]) >= 1

        if isinstance(volume, InjectedFiller):  # every write fails, the readiness probe's too
            ready = client.get("/readyz")
            assert ready.status_code == 503 and "job store cannot write" in " ".join(ready.json()["problems"])
        assert client.get("/healthz").status_code == 200  # full is not dead: a restart frees nothing
        assert metric_value(client, metric_names.GATEWAY_STORAGE_WRITABLE) == 0
        assert metric_value(client, metric_names.GATEWAY_STORAGE_WRITE_FAILURES_TOTAL) >= 1
        assert (
            metric_value(client, metric_names.GATEWAY_ADMISSION_REJECTIONS_TOTAL, reason="storage_full") >= 1
        )
        time.sleep(1.5)  # the slow jobs finish meanwhile; their result writes fail and are retried
        assert gateway.executor.health() == [] and gateway.executor.alive()

        volume.free(gateway)
        states = _wait_states(client, accepted)
        assert states == dict.fromkeys(accepted, "succeeded"), states  # 0 accepted jobs lost
        assert client.get("/readyz").status_code == 200
        again = client.post("/v1/jobs", json=job_body("after"), headers=auth("alice"))
        assert again.status_code == 202
        assert _wait_states(client, [again.json()["id"]]) == {again.json()["id"]: "succeeded"}
        assert metric_value(client, metric_names.GATEWAY_STORAGE_WRITABLE) == 1
        wal = volume.where / "jobs.sqlite3-wal"
        assert not wal.exists() or wal.stat().st_size <= WAL_SIZE_LIMIT_BYTES + 64 * 1024


class _KillThread(BaseException):
    """Escapes ``except Exception``: the one way left for a worker thread to die."""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_healthz_fails_when_a_worker_thread_is_dead(tmp_path):
    with in_process(tmp_path) as (client, gateway):
        assert client.get("/healthz").json() == {"status": "ok"}
        backend = gateway.backends["slow"]

        def die(*_: Any) -> Any:
            raise _KillThread

        backend.run = die  # type: ignore[method-assign]
        client.post("/v1/jobs", json=job_body("doomed", backend="slow"), headers=auth("alice"))
        deadline = time.monotonic() + 10
        while gateway.executor.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        health = client.get("/healthz")
        assert health.status_code == 503
        assert health.json()["problems"] == ["worker run-slow-0 is dead"]
        assert client.get("/readyz").status_code == 503


def test_a_worker_survives_a_failing_store_and_healthz_names_a_stuck_one(tmp_path):
    with in_process(tmp_path, base_config()) as (client, gateway):
        store = gateway.store
        real_claim, calls = store.claim, {"n": 0}

        def flaky_claim(job_id: str) -> str | None:
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("a store bug")
            return real_claim(job_id)

        store.claim = flaky_claim  # type: ignore[method-assign]
        job = client.post("/v1/jobs", json=job_body("flaky"), headers=auth("alice")).json()
        # The worker logs, backs off and claims the job again: it lives on, and so does the job.
        second = client.post("/v1/jobs", json=job_body("next"), headers=auth("alice")).json()
        assert _wait_states(client, [job["id"], second["id"]]) == dict.fromkeys(
            [job["id"], second["id"]], "succeeded"
        )
        assert calls["n"] >= 3
        assert gateway.executor.alive() and client.get("/healthz").status_code == 200

        gateway.executor.wedged_after = 0.2
        real_finish = store.finish

        def stuck_finish(*args: Any) -> Any:
            time.sleep(1.0)
            return real_finish(*args)

        store.finish = stuck_finish  # type: ignore[method-assign]
        client.post("/v1/jobs", json=job_body("stuck"), headers=auth("alice"))
        deadline, health = time.monotonic() + 10, None
        while time.monotonic() < deadline:
            health = client.get("/healthz")
            if health.status_code == 503:
                break
            time.sleep(0.05)
        assert health is not None and health.status_code == 503
        assert "is stuck in store" in health.json()["problems"][0]
