"""The QPU backend: subexperiments go to real or emulated hardware through the cluster's QPU gateway.

The gateway holds the provider credentials; this backend only knows the
gateway's URL and the path of a file holding this workflow's own bearer token,
given as :class:`GatewaySettings` (the CLI builds them from ``--gateway-url``,
``--gateway-token-file`` and ``--gateway-backend``, or their environment
variables, at the edge). Without a URL it refuses to start, before any file is
written.

Each batch becomes gateway jobs of at most the gateway's circuits-per-job limit,
with one seed per circuit and a job key derived from the circuits' content, so
a retried or resumed batch gets the same gateway job back instead of spending
QPU time twice. Counts come back over the circuit's classical bits and are
reduced here to (observable bits | QPD parity), the same distribution the
simulators return. Chunks whose gateway calls keep failing are reported as
:class:`QpuFailures`, carrying what did succeed, so the step can fail them over.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from qiskit import QuantumCircuit

from qhybrid.cutting.deferred import OBSERVABLE_REGISTER, QPD_REGISTER
from qhybrid.cutting.fingerprint import circuit_fingerprint
from qhybrid.cutting.outcomes import OutcomeDistribution
from qhybrid.cutting.policies import DEFAULT_FAILOVER, check_failover
from qhybrid.errors import BackendUnavailable, InputError, QhybridError

DEFAULT_CIRCUITS_PER_JOB = 64
DEFAULT_MAX_ATTEMPTS = 6
DEFAULT_JOB_TIMEOUT_S = 3600.0
EventSink = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, kw_only=True)
class GatewaySettings:
    """Where the qpu backend finds the QPU gateway, and how hard it tries.

    Only the token file's path is held, never the token, so settings can be
    logged, compared and handed to worker processes as JSON.
    """

    url: str | None = None
    token_file: Path | None = None
    backend: str | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    job_timeout_s: float = DEFAULT_JOB_TIMEOUT_S
    failover: str = DEFAULT_FAILOVER

    def __post_init__(self) -> None:
        """Reject settings no client could use."""
        check_failover(self.failover)
        if self.max_attempts < 1:
            raise InputError("--gateway-max-attempts", f"must be at least 1, got {self.max_attempts}")
        if self.job_timeout_s <= 0:
            raise InputError("--gateway-job-timeout", f"must be positive, got {self.job_timeout_s}")

    def to_json(self) -> dict[str, Any]:
        """Return the settings as JSON data (the token file as an absolute path)."""
        return {
            "url": self.url,
            "token_file": None if self.token_file is None else str(self.token_file.resolve()),
            "backend": self.backend,
            "max_attempts": self.max_attempts,
            "job_timeout_s": self.job_timeout_s,
            "failover": self.failover,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GatewaySettings:
        """Rebuild settings written by :meth:`to_json`."""
        token_file = data.get("token_file")
        return cls(
            url=data.get("url"),
            token_file=None if token_file is None else Path(token_file),
            backend=data.get("backend"),
            max_attempts=int(data.get("max_attempts", DEFAULT_MAX_ATTEMPTS)),
            job_timeout_s=float(data.get("job_timeout_s", DEFAULT_JOB_TIMEOUT_S)),
            failover=str(data.get("failover", DEFAULT_FAILOVER)),
        )

    def allows_failover(self, transient: bool) -> bool:
        """Return whether a subexperiment that failed (for a transient reason or not) may move."""
        return self.failover == "always" or (self.failover == "transient" and transient)


class QpuFailures(QhybridError):
    """Some circuits could not be run through the gateway; the others' results are kept."""

    def __init__(
        self,
        results: list[OutcomeDistribution | None],
        reasons: dict[int, str],
        transient: frozenset[int] = frozenset(),
    ) -> None:
        """Record partial results and, per failed position, why it failed (and which may pass)."""
        first = next(iter(reasons.values()))
        super().__init__(f"qpu backend: {len(reasons)} of {len(results)} subexperiments failed: {first}")
        self.results = results
        self.reasons = reasons
        self.transient = transient


def to_distribution(circuit: QuantumCircuit, counts: dict[str, int], shots: int) -> OutcomeDistribution:
    """Reduce counts over ``circuit``'s classical bits to (observable bits | QPD parity << n_obs)."""
    registers = {creg.name: creg for creg in circuit.cregs}
    if OBSERVABLE_REGISTER not in registers:
        raise ValueError(f"subexperiment has no {OBSERVABLE_REGISTER!r} register")
    observable = [circuit.find_bit(bit).index for bit in registers[OBSERVABLE_REGISTER]]
    qpd = (
        [circuit.find_bit(bit).index for bit in registers[QPD_REGISTER]] if QPD_REGISTER in registers else []
    )
    keys = np.asarray([int(key, 16) for key in counts], dtype=np.uint64)
    weights = np.asarray(list(counts.values()), dtype=np.float64)
    if int(weights.sum()) != shots:
        raise ValueError(f"counts sum to {int(weights.sum())}, not {shots} shots")
    outcome = np.zeros_like(keys)
    for k, position in enumerate(observable):
        outcome |= ((keys >> np.uint64(position)) & np.uint64(1)) << np.uint64(k)
    parity = np.zeros_like(keys)
    for position in qpd:
        parity ^= (keys >> np.uint64(position)) & np.uint64(1)
    outcome |= parity << np.uint64(len(observable))
    unique, inverse = np.unique(outcome, return_inverse=True)
    summed = np.bincount(inverse, weights=weights, minlength=len(unique))
    keep = summed > 0
    return OutcomeDistribution(unique[keep].astype(np.uint64), summed[keep], len(observable), shots)


def job_key(backend: str | None, shots: int, seeds: Sequence[int], circuits: Sequence[QuantumCircuit]) -> str:
    """Return a job key that depends only on what is run, so a retry maps to the same gateway job."""
    material = json.dumps(
        {
            "v": "qhybrid-qpu-v1",
            "backend": backend,
            "shots": shots,
            "seeds": list(seeds),
            "circuits": [circuit_fingerprint(c) for c in circuits],
        }
    )
    return "qhybrid-" + hashlib.sha256(material.encode()).hexdigest()[:40]


class QpuBackend:
    """Runs subexperiments through the QPU gateway."""

    name = "qpu"

    def __init__(self, url: str, token_file: Path, settings: GatewaySettings) -> None:
        """Create the gateway client; the gateway is first contacted on :meth:`run`."""
        from qhybrid.gateway.client import GatewayClient

        self.url = url
        self.gateway_backend = settings.backend
        self.client = GatewayClient(
            url,
            token_file,
            max_attempts=settings.max_attempts,
            job_timeout=settings.job_timeout_s,
        )
        self._device: dict[str, Any] | None = None
        self._offered: list[str] = []
        self._circuits_per_job = DEFAULT_CIRCUITS_PER_JOB
        self.last_jobs: list[dict[str, str] | None] = []

    def _learn_device(self) -> None:
        """Ask the gateway which device serves us and its per-job limit (once)."""
        if self._device is not None:
            return
        listing = self.client.backends()
        self._circuits_per_job = min(DEFAULT_CIRCUITS_PER_JOB, listing["limits"]["max_circuits_per_job"])
        wanted = self.gateway_backend
        for entry in listing["backends"]:
            if entry["name"] == wanted or (wanted is None and entry.get("default")):
                self._device = entry
                return
        self._offered = [str(entry["name"]) for entry in listing["backends"]] or ["(none)"]
        self._device = {"name": wanted, "available": False}

    def check(self) -> None:
        """Fail fast, before any subexperiment runs, on what no retry or failover can mend.

        One ``GET /v1/backends`` with the token: an unreadable token file, a gateway that
        cannot be reached, a refused token (401/403) or a backend the gateway does not
        offer is a configuration error (exit 2), with the gateway's own reason. A gateway
        that answers 429/5xx is only busy: the run goes on and its policy decides.
        """
        from qhybrid.gateway.client import GatewayError

        try:
            self._learn_device()
        except GatewayError as error:
            if error.kind == "overloaded":
                return
            token_problem = error.kind == "token" or error.status in (401, 403)
            flag = "--gateway-token-file" if token_problem else "--gateway-url"
            raise InputError(flag, " ".join(str(error).split())) from None
        if self._offered:  # set only when the gateway lists no backend by the wanted name
            raise InputError(
                "--gateway-backend",
                f"the gateway at {self.url} has no backend {self.gateway_backend!r}; "
                f"it offers {self._offered}",
            )
        device = self._device or {}
        if device.get("allowed") is False:
            raise InputError(
                "--gateway-backend",
                f"the gateway at {self.url} answers 403 forbidden for backend {device.get('name')!r}: "
                "this client's token may not use it (the gateway config's clients[].backends)",
            )

    def description(self) -> dict[str, str]:
        """Return the gateway and the device behind it."""
        device = self._device or {}
        return {
            "service": "qhybrid QPU gateway",
            "gateway": self.url,
            "gateway_backend": str(device.get("name", self.gateway_backend or "gateway default")),
            "device": str(device.get("device", device.get("name", "unknown"))),
            "kind": str(device.get("kind", "unknown")),
            "calibration_time": str(device.get("calibration_time")),
        }

    def run(
        self,
        circuits: Sequence[QuantumCircuit],
        *,
        shots: int | None,
        seeds: Sequence[int],
        events: EventSink | None = None,
    ) -> list[OutcomeDistribution]:
        """Run circuits in gateway jobs; raise :class:`QpuFailures` listing those that failed.

        ``events`` hears ``{"event": "gateway_job", "job": ID, "state": ..., "circuits": N}``
        as each job is submitted and polled. Afterwards :attr:`last_jobs` names, per
        circuit, the gateway job and backend that ran it (None where none did).
        """
        from qhybrid.gateway.client import GatewayError
        from qhybrid.gateway.payload import encode_qpy

        if shots is None:
            raise BackendUnavailable("qpu backend: hardware samples; exact mode needs a simulator")
        if len(seeds) != len(circuits):
            raise ValueError(f"{len(circuits)} circuits but {len(seeds)} seeds")
        results: list[OutcomeDistribution | None] = [None] * len(circuits)
        self.last_jobs = [None] * len(circuits)
        reasons: dict[int, str] = {}
        transient: set[int] = set()
        try:
            self._learn_device()
        except GatewayError as error:
            every = dict.fromkeys(range(len(circuits)), str(error))
            raise QpuFailures(results, every, frozenset(every) if error.transient else frozenset()) from None
        for start in range(0, len(circuits), self._circuits_per_job):
            chunk = list(circuits[start : start + self._circuits_per_job])
            chunk_seeds = [int(s) for s in seeds[start : start + self._circuits_per_job]]
            try:
                job = self.client.submit(
                    encode_qpy(chunk),
                    shots=shots,
                    seeds=chunk_seeds,
                    backend=self.gateway_backend,
                    job_key=job_key(self.gateway_backend, shots, chunk_seeds, chunk),
                )
                _tell(events, job["id"], job["state"], circuits=len(chunk))
                final = self.client.wait(
                    job["id"],
                    poll_seconds=2.0 if events else 20.0,
                    on_state=functools.partial(_tell, events, job["id"], circuits=len(chunk)),
                )
                if final["state"] != "succeeded":
                    raise GatewayError(
                        f"gateway job {job['id']} {final['state']}: {final.get('error')}", kind="failed"
                    )
                for offset, (circuit, item) in enumerate(zip(chunk, final["result"]["results"], strict=True)):
                    results[start + offset] = to_distribution(circuit, item["counts"], shots)
                    self.last_jobs[start + offset] = {"job_id": job["id"], "backend": final["backend"]}
            except (GatewayError, ValueError, KeyError) as error:
                for offset in range(len(chunk)):
                    reasons[start + offset] = " ".join(str(error).split())
                    if isinstance(error, GatewayError) and error.transient:
                        transient.add(start + offset)
        if reasons:
            raise QpuFailures(results, reasons, frozenset(transient))
        return [r for r in results if r is not None]


def _tell(events: EventSink | None, job_id: str, state: str = "queued", *, circuits: int) -> None:
    if events is not None:
        events({"event": "gateway_job", "job": job_id, "state": state, "circuits": circuits})


def qpu_backend(settings: GatewaySettings) -> QpuBackend:
    """Return a QPU backend for the given gateway, or fail naming the flag that is missing or wrong."""
    if settings.url is None:
        raise InputError(
            "--gateway-url",
            "the qpu backend needs a QPU gateway; pass --gateway-url and --gateway-token-file, "
            "or use --policy cpu (or gpu) to run every subexperiment on a simulator",
        )
    if settings.token_file is None:
        raise InputError("--gateway-token-file", "the QPU gateway needs a bearer token file")
    if not settings.token_file.is_file():
        raise InputError("--gateway-token-file", f"{settings.token_file}: cannot read (No such file)")
    return QpuBackend(settings.url, settings.token_file, settings)
