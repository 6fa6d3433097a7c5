"""Runs accepted jobs: one FIFO queue per backend, worked by that backend's ``concurrency`` threads.

A worker claims a job with a conditional UPDATE before running it, so a job
enqueued twice (say, by recovery and a late notification) still runs once.
Circuits parsed at admission are handed over in memory; after a restart they
are decoded again from the stored payload.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from qiskit import QuantumCircuit

from qhybrid.gateway.credentials import CredentialStore, redact
from qhybrid.gateway.metrics import GatewayMetrics
from qhybrid.gateway.payload import decode_circuits
from qhybrid.gateway.providers import GatewayBackend, NotResumable, ProviderError
from qhybrid.gateway.store import JobStore

log = logging.getLogger("qhybrid.gateway.executor")
_Item = tuple[str, str] | None  # ("run" | "resume", job id), or None to stop a worker


class Executor:
    """The gateway's worker threads."""

    def __init__(
        self,
        store: JobStore,
        backends: dict[str, GatewayBackend],
        metrics: GatewayMetrics,
        credentials: CredentialStore,
        notify: Callable[[str], None],
    ) -> None:
        """Prepare one queue per backend; nothing runs before :meth:`start`."""
        self.store = store
        self.backends = backends
        self.metrics = metrics
        self.credentials = credentials
        self.notify = notify
        self._queues: dict[str, queue.Queue[_Item]] = {name: queue.Queue() for name in backends}
        self._parsed: dict[str, list[QuantumCircuit]] = {}
        self._threads: list[threading.Thread] = []
        self.recovered: dict[str, int] = {}

    def start(self) -> None:
        """Recover what a previous process left, then start the workers."""
        requeued, resume = self.store.recover()
        queued = self.store.ids_in_state("queued")
        for job_id in resume:
            status = self.store.status(job_id)
            assert status is not None
            self._put(status["backend"], ("resume", job_id))
        for job_id, backend in queued:
            self._put(backend, ("run", job_id))
        self.recovered = {"requeued_running": len(requeued), "queued": len(queued), "resumed": len(resume)}
        if queued or resume:
            log.info(
                "recovered %d queued jobs (%d of them were running) and %d provider jobs to fetch",
                len(queued),
                len(requeued),
                len(resume),
            )
        for name, runner in self.backends.items():
            for index in range(runner.config.concurrency):
                thread = threading.Thread(
                    target=self._work, args=(name,), name=f"run-{name}-{index}", daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def alive(self) -> bool:
        """Return True while every worker thread runs."""
        return bool(self._threads) and all(thread.is_alive() for thread in self._threads)

    def stop(self, timeout: float = 10.0) -> None:
        """Let each worker finish its current job, then stop; queued jobs stay in the store."""
        for name, backend in self.backends.items():
            # Drop what is waiting (it stays queued in the store) so workers stop promptly.
            pending = self._queues[name]
            while True:
                try:
                    pending.get_nowait()
                except queue.Empty:
                    break
            for _ in range(backend.config.concurrency):
                pending.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def submit(self, job_id: str, backend: str, circuits: list[QuantumCircuit]) -> None:
        """Queue a freshly accepted job, keeping its parsed circuits for the worker."""
        self._parsed[job_id] = circuits
        self._put(backend, ("run", job_id))

    def _put(self, backend: str, item: tuple[str, str]) -> None:
        target = self._queues.get(backend)
        if target is None:
            # A job for a backend removed from the config since it was accepted.
            token = self.store.claim(item[1]) if item[0] == "run" else self.store.adopt(item[1])
            if token is not None:
                self._failed(item[1], token, backend, f"backend {backend!r} is no longer configured")
            return
        target.put(item)

    def _work(self, name: str) -> None:
        backend = self.backends[name]
        while True:
            item = self._queues[name].get()
            if item is None:
                return
            kind, job_id = item
            token = self.store.claim(job_id) if kind == "run" else self.store.adopt(job_id)
            if token is None:
                self._parsed.pop(job_id, None)
                continue  # cancelled, or already run
            try:
                self._run(job_id, token, name, backend, resume=kind == "resume")
            except Exception as error:  # noqa: BLE001 - a worker must survive any job
                log.exception("job %s: unexpected error", job_id)
                self._failed(job_id, token, name, f"gateway error: {type(error).__name__}")

    def _run(self, job_id: str, token: str, name: str, backend: GatewayBackend, *, resume: bool) -> None:
        status = self.store.status(job_id)
        assert status is not None
        fmt, payload, seeds = self.store.payload(job_id)
        circuits = self._parsed.pop(job_id, None)
        if circuits is None:
            circuits = decode_circuits(fmt, payload.decode("ascii") if fmt == "qpy" else _json_list(payload))
        started = time.perf_counter()
        try:
            counts = None
            if resume and status["provider_job_id"]:
                try:
                    counts = backend.resume(status["provider_job_id"], circuits)
                except NotResumable:
                    counts = None
            if counts is None:
                counts = backend.run(
                    circuits,
                    status["shots"],
                    seeds,
                    lambda provider_id: self.store.record_provider_job(job_id, token, provider_id),
                )
        except ProviderError as error:
            self._failed(job_id, token, name, str(error))
            return
        except Exception as error:  # noqa: BLE001 - any backend failure fails the job, not the worker
            message = redact(f"{name}: {type(error).__name__}: {error}", self.credentials.secrets())
            self._failed(job_id, token, name, " ".join(message.split())[:500])
            return
        result: dict[str, Any] = {
            "backend": name,
            "shots": status["shots"],
            "results": [
                {"counts": c, "num_clbits": circuit.num_clbits, "seed": seed}
                for c, circuit, seed in zip(counts, circuits, seeds, strict=True)
            ],
            "execution_seconds": time.perf_counter() - started,
            "properties": backend.properties(),
        }
        final = self.store.finish(job_id, token, result)
        if final is not None:
            self.metrics.jobs.labels(name, "succeeded").inc()
            self.metrics.latency.labels(name).observe(max(0.0, final["finished_at"] - final["created_at"]))
            self.metrics.shots.labels(final["client"], name).inc(final["shots"] * final["num_circuits"])
        self.notify(job_id)

    def _failed(self, job_id: str, token: str, backend: str, message: str) -> None:
        final = self.store.fail(job_id, token, message)
        if final is not None:
            self.metrics.jobs.labels(backend, "failed").inc()
            self.metrics.latency.labels(backend).observe(max(0.0, final["finished_at"] - final["created_at"]))
        self._parsed.pop(job_id, None)
        self.notify(job_id)


def _json_list(payload: bytes) -> list[str]:
    import json

    value = json.loads(payload)
    assert isinstance(value, list)
    return value
