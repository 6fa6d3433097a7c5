"""OpenQASM 3 parsing in worker processes, under a time and memory budget that is enforced.

The pre-scan (``cutting.qasm_guard``) refuses what is plainly too costly in
milliseconds; what passes it is parsed here, never in the gateway's own process:

- each worker is ``python -m qhybrid.gateway.parse_pool MEMORY_MIB``, which imports
  Qiskit, then caps its address space at what it uses plus ``MEMORY_MIB``
  (``RLIMIT_AS``): a parse that needs more fails with MemoryError inside the worker,
  which answers and exits;
- the gateway waits at most ``parse_seconds`` for an answer, then kills the worker
  (SIGKILL) and starts another;
- requests and answers are JSON lines (texts in, QPY as base64 out): nothing is
  pickled across the process boundary.

Either refusal is a 413 ``circuit_too_costly`` naming the budget. The event loop
and ``/healthz`` never wait on a parse, and a parse's memory is the worker's, not
the gateway's, so it is given back when a worker is replaced.
"""

from __future__ import annotations

import base64
import io
import json
import os
import queue
import resource
import select
import subprocess
import sys
import threading
import time
from typing import Any

from qiskit import QuantumCircuit

from qhybrid.gateway.payload import PayloadError, encode_qpy, parse_qasm3_texts

READY = {"ready": True}
START_TIMEOUT_S = 120.0


class _Worker:
    """One parse process and its pipes."""

    def __init__(self, memory_mib: int) -> None:
        env = {**os.environ, "RAYON_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "qhybrid.gateway.parse_pool", str(memory_mib)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self._buffer = b""
        ready = self.read_line(START_TIMEOUT_S)
        if json.loads(ready) != READY:
            raise RuntimeError(f"parse worker did not start: {ready[:200]!r}")

    def ask(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request; return its answer, or raise TimeoutError / EOFError."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request).encode() + b"\n")
        self.process.stdin.flush()
        answer: dict[str, Any] = json.loads(self.read_line(timeout))
        return answer

    def read_line(self, timeout: float) -> bytes:
        """Return the next line of the worker's answers, waiting at most ``timeout`` seconds."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise EOFError
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def kill(self) -> None:
        """Stop the process for good."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


class ParsePool:
    """A bounded set of parse workers, started on first use (or by :meth:`warm`)."""

    def __init__(self, *, workers: int, seconds: float, memory_mib: int) -> None:
        """Allow ``workers`` processes, ``seconds`` per parse and ``memory_mib`` MiB each."""
        self.size, self.seconds, self.memory_mib = workers, seconds, memory_mib
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._lock = threading.Lock()
        self._count = 0
        self.replaced = 0  # workers killed for a budget, or dead

    def warm(self) -> None:
        """Start every worker now (the gateway does before serving: the first parse is not slow)."""
        started = []
        while True:
            worker = self._new_worker()
            if worker is None:
                break
            started.append(worker)
        for worker in started:
            self._idle.put(worker)

    def _new_worker(self) -> _Worker | None:
        with self._lock:
            if self._count >= self.size:
                return None
            self._count += 1
        try:
            return _Worker(self.memory_mib)
        except BaseException:
            with self._lock:
                self._count -= 1
            raise

    def _take(self) -> _Worker:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        worker = self._new_worker()
        if worker is not None:
            return worker
        try:
            # Admission is bounded (max_admissions_in_flight), so this wait is too.
            return self._idle.get(timeout=2 * self.seconds)
        except queue.Empty:
            raise PayloadError(503, "parser_busy", "circuits: every OpenQASM parser is busy; retry") from None

    def _discard(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            self._count -= 1
            self.replaced += 1

    def parse(self, texts: list[str], *, max_qubits: int, max_operations: int) -> list[QuantumCircuit]:
        """Parse ``texts`` in a worker; raise PayloadError (413 for a budget) on refusal."""
        from qiskit import qpy

        worker = self._take()
        request = {"texts": texts, "max_qubits": max_qubits, "max_operations": max_operations}
        try:
            answer = worker.ask(request, self.seconds)
        except TimeoutError:
            self._discard(worker)
            raise PayloadError(
                413,
                "circuit_too_costly",
                f"circuits: parsing took longer than the budget of {self.seconds:g} s",
            ) from None
        except (EOFError, OSError, ValueError):
            self._discard(worker)
            raise PayloadError(
                413,
                "circuit_too_costly",
                f"circuits: the parser stopped (its memory budget is {self.memory_mib} MiB)",
            ) from None
        if answer.get("exiting"):
            self._discard(worker)
        else:
            self._idle.put(worker)
        if not answer["ok"]:
            raise PayloadError(answer["status"], answer["code"], answer["message"])
        return list(qpy.load(io.BytesIO(base64.b64decode(answer["qpy"]))))

    def close(self) -> None:
        """Stop the idle workers (busy ones are stopped as they come back)."""
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                return
            self._discard(worker)


def _address_space_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1])
    raise RuntimeError("no VmSize in /proc/self/status")


def _serve(memory_mib: int) -> None:
    """The worker's loop: one JSON request per line on stdin, one answer per line on stdout."""
    from qiskit import qasm3  # noqa: F401 - imported before the cap, which must not count it

    limit = _address_space_kib() * 1024 + memory_mib * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    out = sys.stdout.buffer
    out.write(json.dumps(READY).encode() + b"\n")
    out.flush()
    for line in sys.stdin.buffer:
        exiting = False
        try:
            request = json.loads(line)
            circuits = parse_qasm3_texts(
                request["texts"], max_qubits=request["max_qubits"], max_operations=request["max_operations"]
            )
            answer: dict[str, Any] = {"ok": True, "qpy": encode_qpy(circuits)}
        except PayloadError as error:
            answer = {"ok": False, "status": error.status, "code": error.code, "message": error.message}
        except (KeyError, TypeError, ValueError) as error:
            answer = {
                "ok": False,
                "status": 400,
                "code": "malformed_circuits",
                "message": f"circuits: {error}",
            }
        except MemoryError:
            # The heap may be damaged: answer, then exit; the gateway starts a fresh worker.
            exiting = True
            answer = {
                "ok": False,
                "status": 413,
                "code": "circuit_too_costly",
                "message": f"circuits: parsing exceeded the memory budget of {memory_mib} MiB",
                "exiting": True,
            }
        out.write(json.dumps(answer).encode() + b"\n")
        out.flush()
        if exiting:
            return


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
