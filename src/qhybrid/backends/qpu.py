"""The QPU backend: subexperiments go to real or emulated hardware through the cluster's QPU gateway.

The gateway holds the provider credentials; this backend only knows the
gateway's URL and the path of a file holding this workflow's own bearer token
(``--gateway-url``/``QHYBRID_GATEWAY_URL``, ``--gateway-token-file``/
``QHYBRID_GATEWAY_TOKEN_FILE``; ``QHYBRID_GATEWAY_BACKEND`` picks a gateway
backend, default the gateway's own). Without a URL it refuses to start, before
any file is written.

Each batch becomes gateway jobs of at most the gateway's circuits-per-job limit,
with one seed per circuit and a job key derived from the circuits' content, so
a retried or resumed batch gets the same gateway job back instead of spending
QPU time twice. Counts come back over the circuit's classical bits and are
reduced here to (observable bits | QPD parity), the same distribution the
simulators return. Chunks whose gateway calls keep failing are reported as
:class:`QpuFailures`, carrying what did succeed, so the step can fail them over.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from qiskit import QuantumCircuit

from qhybrid.backends.base import OutcomeDistribution
from qhybrid.deferred import OBSERVABLE_REGISTER, QPD_REGISTER
from qhybrid.errors import BackendUnavailable, QhybridError
from qhybrid.fingerprint import circuit_fingerprint

URL_ENV = "QHYBRID_GATEWAY_URL"
TOKEN_FILE_ENV = "QHYBRID_GATEWAY_TOKEN_FILE"
BACKEND_ENV = "QHYBRID_GATEWAY_BACKEND"
ATTEMPTS_ENV = "QHYBRID_GATEWAY_MAX_ATTEMPTS"
JOB_TIMEOUT_ENV = "QHYBRID_GATEWAY_JOB_TIMEOUT"
DEFAULT_CIRCUITS_PER_JOB = 64


class QpuFailures(QhybridError):
    """Some circuits could not be run through the gateway; the others' results are kept."""

    def __init__(self, results: list[OutcomeDistribution | None], reasons: dict[int, str]) -> None:
        """Record partial results and, per failed position, why it failed."""
        first = next(iter(reasons.values()))
        super().__init__(f"qpu backend: {len(reasons)} of {len(results)} subexperiments failed: {first}")
        self.results = results
        self.reasons = reasons


def gateway_settings() -> dict[str, str | None]:
    """Return the gateway settings from the environment (the CLI options set these)."""
    return {
        "url": os.environ.get(URL_ENV) or None,
        "token_file": os.environ.get(TOKEN_FILE_ENV) or None,
        "backend": os.environ.get(BACKEND_ENV) or None,
    }


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

    def __init__(self, url: str, token_file: Path, gateway_backend: str | None) -> None:
        """Create the gateway client; the gateway is first contacted on :meth:`run`."""
        from qhybrid.gateway.client import GatewayClient

        self.url = url
        self.gateway_backend = gateway_backend
        self.client = GatewayClient(
            url,
            token_file,
            max_attempts=int(os.environ.get(ATTEMPTS_ENV, "6")),
            job_timeout=float(os.environ.get(JOB_TIMEOUT_ENV, "3600")),
        )
        self._device: dict[str, Any] | None = None
        self._circuits_per_job = DEFAULT_CIRCUITS_PER_JOB

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
        self._device = {"name": wanted, "available": False}

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
    ) -> list[OutcomeDistribution]:
        """Run circuits in gateway jobs; raise :class:`QpuFailures` listing those that failed."""
        from qhybrid.gateway.client import GatewayError
        from qhybrid.gateway.payload import encode_qpy

        if shots is None:
            raise BackendUnavailable("qpu backend: hardware samples; exact mode needs a simulator")
        if len(seeds) != len(circuits):
            raise ValueError(f"{len(circuits)} circuits but {len(seeds)} seeds")
        results: list[OutcomeDistribution | None] = [None] * len(circuits)
        reasons: dict[int, str] = {}
        try:
            self._learn_device()
        except GatewayError as error:
            raise QpuFailures(results, dict.fromkeys(range(len(circuits)), str(error))) from None
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
                final = self.client.wait(job["id"])
                if final["state"] != "succeeded":
                    raise GatewayError(f"gateway job {job['id']} {final['state']}: {final.get('error')}")
                for offset, (circuit, item) in enumerate(zip(chunk, final["result"]["results"], strict=True)):
                    results[start + offset] = to_distribution(circuit, item["counts"], shots)
            except (GatewayError, ValueError, KeyError) as error:
                for offset in range(len(chunk)):
                    reasons[start + offset] = " ".join(str(error).split())
        if reasons:
            raise QpuFailures(results, reasons)
        return [r for r in results if r is not None]


def qpu_backend() -> QpuBackend:
    """Return a QPU backend for the configured gateway, or fail saying what is missing."""
    settings = gateway_settings()
    if settings["url"] is None:
        raise BackendUnavailable(
            "qpu backend: no QPU gateway configured; pass --gateway-url and --gateway-token-file "
            f"(or set {URL_ENV} and {TOKEN_FILE_ENV}), or use --policy cpu (or gpu) to run every "
            "subexperiment on a simulator"
        )
    if settings["token_file"] is None:
        raise BackendUnavailable(
            "qpu backend: the gateway needs a bearer token; "
            f"pass --gateway-token-file or set {TOKEN_FILE_ENV}"
        )
    token_file = Path(settings["token_file"])
    if not token_file.is_file():
        raise BackendUnavailable(f"qpu backend: gateway token file {token_file} does not exist")
    return QpuBackend(settings["url"], token_file, settings["backend"])
