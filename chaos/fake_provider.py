"""A stand-in for IBM Quantum's service, so provider faults can run without the network.

``python -m qhybrid_chaos.fake_provider gateway serve ...`` is ``qhybrid gateway
serve`` with ``qiskit_ibm_runtime.QiskitRuntimeService`` and ``SamplerV2``
replaced by :class:`FakeRuntimeService` and :class:`FakeSamplerV2`:

- the service accepts only the tokens listed (one a line) in the file named by
  ``QHYBRID_CHAOS_PROVIDER_TOKENS`` (the provider's side of a credential),
  refusing others with ``IBMNotAuthorizedError`` as the real service does;
- a job outlives the gateway process, as a job at a remote provider does: it is
  recorded under ``QHYBRID_CHAOS_PROVIDER_JOBS`` (its circuits as QPY, no pickle)
  with its id, and ``service.job(id)`` finds it after a restart. Each submission
  appends one line to ``submissions.log`` there, so a test can count what the
  provider was paid for. ``QHYBRID_CHAOS_PROVIDER_SECONDS`` is how long a job
  runs; its result is a seeded Aer SamplerV2 run, the same for the same job.

The gateway's IBM adapter (SamplerV2, provider job ids, re-attach, credential
reload) runs unchanged against it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["ACCEPTED_ENV", "JOBS_ENV", "SECONDS_ENV", "FakeRuntimeService", "FakeSamplerV2", "submissions"]

ACCEPTED_ENV = "QHYBRID_CHAOS_PROVIDER_TOKENS"
JOBS_ENV = "QHYBRID_CHAOS_PROVIDER_JOBS"
SECONDS_ENV = "QHYBRID_CHAOS_PROVIDER_SECONDS"
SUBMISSIONS_LOG = "submissions.log"
SEED = 20260101


def _accepted(token: str) -> bool:
    accepted_file = os.environ.get(ACCEPTED_ENV)
    return accepted_file is not None and token in Path(accepted_file).read_text().split()


class FakeRuntimeService:
    """Opens only with an accepted token; serves one seeded Aer device under any name."""

    def __init__(self, *, channel: str, token: str, instance: str | None = None, **_: Any) -> None:
        """Check ``token`` against the accepted list, as the provider would."""
        from qiskit_ibm_runtime.exceptions import IBMNotAuthorizedError

        if not _accepted(token):
            raise IBMNotAuthorizedError("401 Client Error: Unauthorized: the API token is not valid")
        self.channel, self.instance, self._token = channel, instance, token

    def backend(self, name: str) -> Any:
        """Return the seeded simulator standing in for ``name``; it refuses jobs once the token is revoked."""
        from qiskit_aer import AerSimulator

        token = self._token

        class Device(AerSimulator):
            token = ""

            def run(self, circuits: Any, **options: Any) -> Any:
                from qiskit_ibm_runtime.exceptions import IBMNotAuthorizedError

                if not _accepted(token):
                    raise IBMNotAuthorizedError("401 Client Error: Unauthorized: the API token was revoked")
                return super().run(circuits, **options)

        device = Device(seed_simulator=SEED, max_parallel_threads=1)
        device.token = token
        return device

    def job(self, job_id: str) -> FakeRuntimeJob:
        """Return a job submitted earlier, by any process (the provider keeps it)."""
        from qiskit_ibm_runtime.exceptions import RuntimeJobNotFound

        directory = _jobs_dir() / job_id
        if not job_id.isalnum() or not (directory / "job.json").is_file():
            raise RuntimeJobNotFound(f"job {job_id} not found")
        return FakeRuntimeJob(directory)


def _jobs_dir() -> Path:
    value = os.environ.get(JOBS_ENV)
    if not value:
        raise RuntimeError(f"{JOBS_ENV} names no directory for the fake provider's jobs")
    path = Path(value)
    path.mkdir(parents=True, exist_ok=True)
    return path


def submissions(jobs_dir: Path) -> list[str]:
    """Return the provider job ids submitted so far, in order (one per paid submission)."""
    log = jobs_dir / SUBMISSIONS_LOG
    return log.read_text().split() if log.is_file() else []


class FakeRuntimeJob:
    """A job at the fake provider: it runs for ``QHYBRID_CHAOS_PROVIDER_SECONDS`` after submission."""

    def __init__(self, directory: Path) -> None:
        """Open the job recorded in ``directory``."""
        self.directory = directory

    def job_id(self) -> str:
        """Return the provider's id."""
        return self.directory.name

    def result(self) -> Any:
        """Wait for the job to end, then return its (seeded, reproducible) PrimitiveResult."""
        import json
        import time

        from qiskit import qpy
        from qiskit_aer.primitives import SamplerV2 as AerSamplerV2

        meta = json.loads((self.directory / "job.json").read_text())
        ends = meta["submitted_at"] + meta["seconds"]
        for _ in range(int(meta["seconds"] / 0.05) + 2):  # bounded: the job's run time
            if time.time() >= ends:
                break
            time.sleep(0.05)
        with open(self.directory / "circuits.qpy", "rb") as handle:
            circuits = qpy.load(handle)
        return AerSamplerV2(seed=SEED).run(circuits, shots=meta["shots"]).result()


class FakeSamplerV2:
    """``qiskit_ibm_runtime.SamplerV2`` for a device of :class:`FakeRuntimeService`: jobs kept on disk."""

    def __init__(self, mode: Any) -> None:
        """Bind to the device (the sampler's mode)."""
        self.device = mode

    def run(self, pubs: list[Any], *, shots: int | None = None) -> FakeRuntimeJob:
        """Record a job (refused once the device's token is revoked) and return it."""
        import json
        import time
        import uuid

        from qiskit import qpy
        from qiskit_ibm_runtime.exceptions import IBMNotAuthorizedError

        from qhybrid import atomic

        if not _accepted(self.device.token):
            raise IBMNotAuthorizedError("401 Client Error: Unauthorized: the API token was revoked")
        directory = _jobs_dir() / uuid.uuid4().hex
        directory.mkdir()
        with open(directory / "circuits.qpy", "wb") as handle:
            qpy.dump(list(pubs), handle)
        meta = {
            "shots": shots or 1024,
            "submitted_at": time.time(),
            "seconds": float(os.environ.get(SECONDS_ENV, 0)),
        }
        atomic.write_text(directory / "job.json", json.dumps(meta))  # last: its presence means "submitted"
        with open(_jobs_dir() / SUBMISSIONS_LOG, "a", encoding="ascii") as log:
            log.write(directory.name + "\n")
            log.flush()
            os.fsync(log.fileno())
        return FakeRuntimeJob(directory)


def main() -> None:
    """Run the qhybrid command line with the fake service in place."""
    import qiskit_ibm_runtime

    qiskit_ibm_runtime.QiskitRuntimeService = FakeRuntimeService
    qiskit_ibm_runtime.SamplerV2 = FakeSamplerV2
    from qhybrid.cli import main as qhybrid_main

    qhybrid_main()


if __name__ == "__main__":
    main()
