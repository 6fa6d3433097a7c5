"""Admission of a job submission: validate, parse, fingerprint and record it (runs in a worker thread)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import ValidationError
from qiskit import QuantumCircuit

from qhybrid.cutting.fingerprint import circuit_fingerprint, derive_seed
from qhybrid.gateway.api_schema import ApiError, JobRequest
from qhybrid.gateway.config import ClientConfig
from qhybrid.gateway.payload import PayloadError, check_circuits, decode_circuits
from qhybrid.gateway.service import Gateway
from qhybrid.gateway.store import BudgetExceeded, KeyConflict, NewJob, QueueFull, StorageFull


def _validation_message(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def request_digest(
    request: JobRequest, backend: str, seeds: list[int], circuits: list[QuantumCircuit]
) -> str:
    """Return what identifies a request for idempotency: same key + same digest -> same job.

    Circuits count by content (their fingerprints), not bytes: QPY embeds circuit
    names and a Qiskit version, which a client's retry from another process may change.
    """
    head = {
        "backend": backend,
        "shots": request.shots,
        "seeds": seeds,
        "circuits": [circuit_fingerprint(c) for c in circuits],
    }
    return hashlib.sha256(json.dumps(head).encode()).hexdigest()


def storage_full(gateway: Gateway, error: StorageFull) -> ApiError:
    """Return the 507 for a write the job store refused: nothing of the request was recorded."""
    gateway.metrics.rejections.labels("storage_full").inc()
    return ApiError(
        507,
        "storage_full",
        f"the gateway's state volume refused the write ({error}); nothing was recorded: retry later",
        {"Retry-After": str(gateway.config.retry_after_seconds)},
    )


def admit(gateway: Gateway, client: ClientConfig, body: bytes) -> tuple[dict[str, Any], bool]:
    """Validate and record a submission (runs in a worker thread); return (status, newly created)."""
    metrics = gateway.metrics
    try:
        request = JobRequest.model_validate_json(body)
    except ValidationError as error:
        metrics.rejections.labels("malformed").inc()
        raise ApiError(400, "invalid_request", _validation_message(error)) from None
    backend_name = request.backend or gateway.config.default_backend
    assert backend_name is not None
    backend = gateway.backends.get(backend_name)
    if backend is None:
        metrics.rejections.labels("malformed").inc()
        raise ApiError(
            400,
            "unknown_backend",
            f"backend: unknown backend {backend_name!r}; have {sorted(gateway.backends)}",
        )
    if not gateway.client_may_use(client, backend_name):
        metrics.auth_failures.labels("forbidden").inc()
        raise ApiError(403, "forbidden", f"client {client.name!r} may not use backend {backend_name!r}")
    if request.shots > gateway.config.limits.max_shots:
        metrics.rejections.labels("malformed").inc()
        raise ApiError(
            400,
            "too_many_shots",
            f"shots: {request.shots} exceeds the limit of {gateway.config.limits.max_shots}",
        )
    payload = (
        request.circuits.encode("ascii", "replace")
        if isinstance(request.circuits, str)
        else json.dumps(request.circuits).encode()
    )
    try:
        limit = gateway.config.limits.max_operations_per_circuit
        circuits = decode_circuits(
            request.format,
            request.circuits,
            max_qubits=gateway.max_qubits,
            max_operations=limit,
            qasm3_parser=gateway.parser.parse,
        )
        check_circuits(circuits, gateway.config.limits, None)
        backend.check(circuits)
    except PayloadError as error:
        if error.status == 503:
            metrics.rejections.labels("overloaded").inc()
            raise ApiError(503, error.code, error.message, {"Retry-After": "1"}) from None
        metrics.rejections.labels("too_large" if error.status == 413 else "malformed").inc()
        raise ApiError(error.status, error.code, error.message) from None
    if request.seeds is not None:
        if len(request.seeds) != len(circuits) or any(not 0 <= s < 2**63 for s in request.seeds):
            metrics.rejections.labels("malformed").inc()
            raise ApiError(400, "invalid_request", f"seeds: need {len(circuits)} integers in [0, 2**63)")
        seeds = list(request.seeds)
    else:
        seeds = [derive_seed(request.seed, f"circuit-{i}") for i in range(len(circuits))]
    try:
        digest = request_digest(request, backend_name, seeds, circuits)
    except ValueError as error:  # control flow or odd parameters the fingerprint cannot read
        metrics.rejections.labels("malformed").inc()
        raise ApiError(400, "malformed_circuits", f"circuits: {error}") from None
    job = NewJob(
        client=client.name,
        job_key=request.job_key,
        request_sha256=digest,
        backend=backend_name,
        shots=request.shots,
        seeds=seeds,
        format=request.format,
        payload=payload,
    )
    try:
        status, created = gateway.store.admit(
            job, max_queued=gateway.config.max_queued_jobs, shot_budget=client.shot_budget
        )
    except KeyConflict as conflict:
        metrics.rejections.labels("key_conflict").inc()
        raise ApiError(
            409,
            "job_key_conflict",
            f"job_key {request.job_key!r} was used for a different request (job {conflict.job_id})",
        ) from None
    except StorageFull as full:
        raise storage_full(gateway, full) from None
    except QueueFull:
        metrics.rejections.labels("queue_full").inc()
        retry = str(gateway.config.retry_after_seconds)
        raise ApiError(
            429,
            "queue_full",
            f"the gateway queue holds {gateway.config.max_queued_jobs} jobs; retry later",
            {"Retry-After": retry},
        ) from None
    except BudgetExceeded as over:
        metrics.rejections.labels("shot_budget").inc()
        raise ApiError(
            403,
            "shot_budget_exceeded",
            f"shot budget exceeded: client {over.client!r} has a budget of {over.budget} shots, "
            f"has used {over.used}, and this job needs {over.cost}",
        ) from None
    if created:
        gateway.executor.submit(status["id"], backend_name, circuits)
    return status, created
