"""Runs accepted jobs: one FIFO queue per backend, worked by that backend's ``concurrency`` threads.

A worker claims a job with a conditional UPDATE before running it, so a job
enqueued twice (say, by recovery and a late notification) still runs once.
Circuits parsed at admission are handed over in memory; after a restart they
are decoded again from the stored payload.

No worker dies of an exception: it logs, backs off and goes on. A write the
store refuses for lack of space (:class:`StorageFull`) is retried with backoff
until it succeeds, so a result computed while the volume is full is kept once
space is freed. Each worker beats a heartbeat; :meth:`Executor.health` names a
dead worker, or one stuck outside a backend call, so ``/healthz`` can fail and
the liveness probe restart the pod.
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
from qhybrid.gateway.store import JobStore, StorageFull

log = logging.getLogger("qhybrid.gateway.executor")
_Item = tuple[str, str] | None  # ("run" | "resume", job id), or None to stop a worker
BACKOFF_FIRST_SECONDS, BACKOFF_MAX_SECONDS = 0.1, 5.0
WEDGED_AFTER_SECONDS = 120.0  # a worker this long in one step outside a backend call is stuck
IDLE_BEAT_SECONDS = 1.0


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
        self._beats: dict[str, tuple[str, float]] = {}  # thread name -> (phase, since when)
        self._stopping = threading.Event()
        self.wedged_after = WEDGED_AFTER_SECONDS
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
        for job_id in requeued:
            # It was running when the last process died and had no provider job to fetch: it
            # runs again. Harmless on a simulator; counted, because on a device it costs twice.
            status = self.store.status(job_id)
            if status is not None:
                self.metrics.reruns.labels(status["backend"]).inc()
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

    def health(self) -> list[str]:
        """Name each worker that is dead, or stuck in one step too long.

        Waiting for work beats every second, and a backend call is bounded by the
        backend's own timeouts, so neither counts as stuck.
        """
        problems = []
        now = time.monotonic()
        for thread in self._threads:
            if not thread.is_alive():
                problems.append(f"worker {thread.name} is dead")
                continue
            phase, since = self._beats.get(thread.name, ("idle", now))
            if phase not in ("idle", "backend") and now - since > self.wedged_after:
                problems.append(f"worker {thread.name} is stuck in {phase} for {now - since:.0f} s")
        return problems

    def _beat(self, phase: str) -> None:
        self._beats[threading.current_thread().name] = (phase, time.monotonic())

    def _durably(self, write: Callable[[], Any]) -> Any:
        """Run a store write, retrying with backoff while the volume is full (until stopping)."""
        delay = BACKOFF_FIRST_SECONDS
        while True:
            self._beat("store")
            try:
                return write()
            except StorageFull as error:
                if self._stopping.is_set():
                    raise  # the job stays running in the store; recovery requeues it
                log.warning("job store refused a write (%s); retrying in %.1f s", error, delay)
                self._stopping.wait(delay)
                delay = min(delay * 2, BACKOFF_MAX_SECONDS)

    def stop(self, timeout: float = 10.0) -> None:
        """Let each worker finish its current job, then stop; queued jobs stay in the store."""
        self._stopping.set()
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
        delay = BACKOFF_FIRST_SECONDS
        while True:
            self._beat("idle")
            try:
                item = self._queues[name].get(timeout=IDLE_BEAT_SECONDS)
            except queue.Empty:
                continue
            if item is None:
                return
            try:
                self._handle(name, backend, item)
                delay = BACKOFF_FIRST_SECONDS
            except Exception:  # noqa: BLE001 - a worker must survive anything; log and back off
                log.exception(
                    "worker for %s: unexpected error on job %s; backing off %.1f s", name, item[1], delay
                )
                self._stopping.wait(delay)
                delay = min(delay * 2, BACKOFF_MAX_SECONDS)

    def _handle(self, name: str, backend: GatewayBackend, item: tuple[str, str]) -> None:
        kind, job_id = item
        self._beat("claim")
        try:
            token = self.store.claim(job_id) if kind == "run" else self.store.adopt(job_id)
        except Exception:
            # Still queued (or running) in the store: try again after the backoff, so a
            # store that failed once (a full volume, a bug) does not strand the job.
            self._queues[name].put(item)
            raise
        if token is None:
            self._parsed.pop(job_id, None)
            return  # cancelled, or already run
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
        self._beat("backend")
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
                    lambda provider_id: self._record_provider_job(job_id, token, provider_id),
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
        final = self._durably(lambda: self.store.finish(job_id, token, result))
        if final is not None:
            self.metrics.jobs.labels(name, "succeeded").inc()
            self.metrics.latency.labels(name).observe(max(0.0, final["finished_at"] - final["created_at"]))
            self.metrics.shots.labels(final["client"], name).inc(final["shots"] * final["num_circuits"])
        self.notify(job_id)

    def _record_provider_job(self, job_id: str, token: str, provider_job_id: str) -> None:
        self._durably(lambda: self.store.record_provider_job(job_id, token, provider_job_id))
        self._beat("backend")  # back to waiting on the provider

    def _failed(self, job_id: str, token: str, backend: str, message: str) -> None:
        final = self._durably(lambda: self.store.fail(job_id, token, message))
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
