"""The gateway's HTTP API (FastAPI, served by uvicorn).

Endpoints (all under ``/v1`` need ``Authorization: Bearer <client token>``)::

    POST   /v1/jobs                  submit; 202 accepted (200: this job key was seen, same job)
    GET    /v1/jobs/{id}             status
    GET    /v1/jobs/{id}/result      result; ?wait=S long-polls up to S seconds (202 while not done)
    DELETE /v1/jobs/{id}             cancel a queued job
    GET    /v1/backends              backends: qubits, basis gates, calibration age, queue depth
    GET    /v1/budget                the caller's shot budget and use
    GET    /healthz  /readyz  /metrics

Errors are ``{"error": CODE, "detail": MESSAGE}``. Authentication and the body
size limit are checked by an ASGI middleware before the body is read, so a bad
token costs one dictionary lookup.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from qiskit import QuantumCircuit
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from qhybrid.cutting.fingerprint import circuit_fingerprint, derive_seed
from qhybrid.cutting.qasm_guard import DEFAULT_MAX_QUBITS
from qhybrid.gateway.api_schema import HTTP_ERROR_CODES, JobRequest, openapi_document
from qhybrid.gateway.auth import Authenticator, AuthFailure
from qhybrid.gateway.config import ClientConfig, GatewayConfig
from qhybrid.gateway.credentials import CredentialStore
from qhybrid.gateway.executor import Executor
from qhybrid.gateway.kubernetes_auth import reviewer_for
from qhybrid.gateway.metrics import GatewayMetrics
from qhybrid.gateway.payload import PayloadError, check_circuits, decode_circuits
from qhybrid.gateway.providers import GatewayBackend, build_backend, widest
from qhybrid.gateway.store import TERMINAL, BudgetExceeded, JobStore, KeyConflict, NewJob, QueueFull

log = logging.getLogger("qhybrid.gateway")
CLIENT_SCOPE_KEY = "qhybrid.client"
MAX_WAIT_SECONDS = 60.0


class ApiError(Exception):
    """An error answer."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        """Record the status, code, message and extra headers."""
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers or {}


def _error(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def _route(path: str) -> str:
    """Return a bounded route label for a request path."""
    if path.startswith("/v1/jobs/"):
        return "/v1/jobs/{id}/result" if path.endswith("/result") else "/v1/jobs/{id}"
    if path in ("/v1/jobs", "/v1/backends", "/v1/budget", "/healthz", "/readyz", "/metrics"):
        return path
    return "other"


class GuardMiddleware:
    """Time every request; authenticate /v1 requests and cap their bodies before reading them."""

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        """Wrap ``app``."""
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse early or pass on."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path: str = scope["path"]
        try:
            if path.startswith("/v1/"):
                headers = dict(scope["headers"])
                try:
                    scope[CLIENT_SCOPE_KEY] = await self.gateway.auth.authenticate_request(
                        headers.get(b"authorization", b"").decode("latin-1") or None
                    )
                except AuthFailure as failure:
                    if failure.status == 401:  # a 503 (TokenReview down) is counted by the reviewer
                        self.gateway.metrics.auth_failures.labels(failure.reason).inc()
                        extra = {"WWW-Authenticate": 'Bearer realm="qhybrid-gateway"'}
                    else:
                        extra = {"Retry-After": str(failure.retry_after)}
                    response = _error(failure.status, failure.reason, failure.message, extra)
                    await response(scope, receive, send)
                    return
                length = headers.get(b"content-length")
                limit = self.gateway.config.limits.max_request_bytes
                if length is not None and length.isdigit() and int(length) > limit:
                    self.gateway.metrics.rejections.labels("too_large").inc()
                    response = _error(
                        413, "payload_too_large", f"request body of {int(length)} bytes exceeds {limit} bytes"
                    )
                    await response(scope, receive, send)
                    return
            await self.app(scope, receive, send)
        finally:
            self.gateway.metrics.requests.labels(_route(path), scope["method"]).observe(
                time.perf_counter() - started
            )


@dataclass
class Gateway:
    """Everything one gateway process holds."""

    config: GatewayConfig
    store: JobStore
    credentials: CredentialStore
    backends: dict[str, GatewayBackend]
    metrics: GatewayMetrics
    auth: Authenticator
    executor: Executor = field(init=False)
    loop: asyncio.AbstractEventLoop | None = None
    waiters: dict[str, list[asyncio.Future[None]]] = field(default_factory=dict)
    count_reloads: Callable[[], None] = lambda: None  # set by build_gateway
    max_qubits: int = DEFAULT_MAX_QUBITS  # the widest backend's, set by build_gateway

    def notify(self, job_id: str) -> None:
        """Wake long-polls on ``job_id`` (called from worker threads)."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._wake, job_id)
            except RuntimeError:
                pass  # the loop closed meanwhile: nobody is waiting

    def _wake(self, job_id: str) -> None:
        for future in self.waiters.pop(job_id, []):
            if not future.done():
                future.set_result(None)

    def client_may_use(self, client: ClientConfig, backend: str) -> bool:
        """Return whether ``client`` may submit to ``backend``."""
        return client.backends is None or backend in client.backends


def build_gateway(config: GatewayConfig, store: JobStore, credentials: CredentialStore) -> Gateway:
    """Create backends, metrics and the executor for ``config``."""
    names = [b.name for b in config.backends]
    metrics = GatewayMetrics(names, [c.name for c in config.clients])
    backends = {
        b.name: build_backend(b, credentials, metrics.provider_auth_failures.inc) for b in config.backends
    }
    auth = Authenticator(config.clients, reviewer_for(config, metrics.token_reviews))
    gateway = Gateway(config, store, credentials, backends, metrics, auth)
    gateway.executor = Executor(store, backends, metrics, credentials, gateway.notify)
    metrics.watch_store(store, names)
    for name, backend in backends.items():
        # Only live devices get the calibration-age gauge that the staleness alert watches:
        # an emulator's (or local mode's) calibration is a fixed snapshot, years old by
        # design, and is still listed by /v1/backends.
        if backend.config.kind == "ibm" and backend.config.local is None:
            metrics.watch_calibration(name, backend.calibration_time)
    generation = {"seen": credentials.current().generation}

    def count_reloads() -> None:
        current = credentials.current().generation
        if current != generation["seen"]:
            metrics.credential_reloads.inc(current - generation["seen"])
            generation["seen"] = current

    gateway.count_reloads = count_reloads
    gateway.max_qubits = widest(backends.values(), DEFAULT_MAX_QUBITS)
    return gateway


def _validation_message(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def _public(status: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in status.items() if key not in ("request_sha256", "client")}


def create_app(gateway: Gateway) -> FastAPI:
    """Return the ASGI app serving ``gateway``."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        gateway.loop = asyncio.get_running_loop()
        gateway.credentials.start()
        await run_in_threadpool(gateway.executor.start)
        log.info(
            "gateway ready: backends %s, %d clients", sorted(gateway.backends), len(gateway.config.clients)
        )
        try:
            yield
        finally:
            await run_in_threadpool(gateway.executor.stop)
            await gateway.auth.aclose()
            gateway.credentials.stop()

    app = FastAPI(title="qhybrid QPU gateway", version="1", lifespan=lifespan)
    app.add_middleware(GuardMiddleware, gateway=gateway)
    app.state.gateway = gateway

    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return _error(error.status, error.code, error.detail, error.headers)

    # One error format for every answer: FastAPI's own 404, 405 and validation bodies too.
    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        code = HTTP_ERROR_CODES.get(error.status_code, "http_error")
        return _error(error.status_code, code, str(error.detail), dict(error.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        parts = [
            f"{'.'.join(str(p) for p in item['loc']) or 'request'}: {item['msg']}"
            for item in error.errors()[:5]
        ]
        return _error(400, "invalid_request", "; ".join(parts))

    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]

    def client_of(request: Request) -> ClientConfig:
        return request.scope[CLIENT_SCOPE_KEY]

    def own_job(request: Request, job_id: str, status: dict[str, Any] | None) -> dict[str, Any]:
        # Another client's job is reported as missing: ids are not secrets, but results are.
        if status is None or status["client"] != client_of(request).name:
            raise ApiError(404, "not_found", f"no job {job_id!r}")
        return status

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        problems = []
        if not gateway.executor.alive():
            problems.append("executor not running")
        try:
            gateway.store.counts()
        except Exception as error:  # noqa: BLE001 - report, do not crash the probe
            problems.append(f"job store: {type(error).__name__}")
        if problems:
            return JSONResponse({"ready": False, "problems": problems}, status_code=503)
        return JSONResponse(
            {"ready": True, "credentials_generation": gateway.credentials.current().generation}
        )

    @app.get("/metrics")
    async def metrics() -> Response:
        gateway.count_reloads()
        data = await run_in_threadpool(generate_latest, gateway.metrics.registry)
        return Response(data, media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/backends")
    async def backends(request: Request) -> dict[str, Any]:
        client = client_of(request)

        def describe() -> list[dict[str, Any]]:
            now = time.time()
            out = []
            for name, backend in gateway.backends.items():
                calibrated = backend.calibration_time()
                out.append(
                    {
                        "name": name,
                        "kind": backend.config.kind,
                        **backend.properties(),
                        "calibration_time": calibrated,
                        "calibration_age_seconds": None if calibrated is None else max(0.0, now - calibrated),
                        "queue_depth": gateway.store.queued[name],
                        "running": gateway.store.running[name],
                        "concurrency": backend.config.concurrency,
                        "allowed": gateway.client_may_use(client, name),
                        "default": name == gateway.config.default_backend,
                    }
                )
            return out

        return {
            "backends": await run_in_threadpool(describe),
            "limits": {
                "max_request_bytes": gateway.config.limits.max_request_bytes,
                "max_circuits_per_job": gateway.config.limits.max_circuits_per_job,
                "max_operations_per_circuit": gateway.config.limits.max_operations_per_circuit,
                "max_shots": gateway.config.limits.max_shots,
                "max_queued_jobs": gateway.config.max_queued_jobs,
            },
        }

    @app.get("/v1/budget")
    async def budget(request: Request) -> dict[str, Any]:
        client = client_of(request)
        used = await run_in_threadpool(gateway.store.shots_reserved, client.name)
        return {"client": client.name, "shot_budget": client.shot_budget, "shots_used": used}

    @app.post("/v1/jobs")
    async def submit(request: Request) -> JSONResponse:
        client = client_of(request)
        limit = gateway.config.limits.max_request_bytes
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                gateway.metrics.rejections.labels("too_large").inc()
                raise ApiError(413, "payload_too_large", f"request body exceeds {limit} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
        status, created = await run_in_threadpool(admit, gateway, client, body)
        if created:
            return JSONResponse(
                _public(status), status_code=202, headers={"Location": f"/v1/jobs/{status['id']}"}
            )
        return JSONResponse(_public(status), status_code=200)

    @app.get("/v1/jobs/{job_id}")
    async def job_status(request: Request, job_id: str) -> dict[str, Any]:
        return _public(own_job(request, job_id, gateway.store.status(job_id)))

    @app.get("/v1/jobs/{job_id}/result")
    async def job_result(request: Request, job_id: str, wait: float = 0.0) -> JSONResponse:
        data = own_job(request, job_id, gateway.store.result(job_id))
        wait = min(max(wait, 0.0), MAX_WAIT_SECONDS)
        if data["state"] not in TERMINAL and wait > 0:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            gateway.waiters.setdefault(job_id, []).append(future)
            try:
                data = own_job(request, job_id, gateway.store.result(job_id))  # it may have ended meanwhile
                if data["state"] not in TERMINAL:
                    await asyncio.wait_for(future, timeout=wait)
            except TimeoutError:
                pass
            finally:
                pending = gateway.waiters.get(job_id)
                if pending and future in pending:
                    pending.remove(future)
                    if not pending:
                        gateway.waiters.pop(job_id, None)
            data = own_job(request, job_id, gateway.store.result(job_id))
        if data["state"] not in TERMINAL:
            return JSONResponse(_public(data), status_code=202, headers={"Retry-After": "1"})
        return JSONResponse(_public(data))

    @app.delete("/v1/jobs/{job_id}")
    async def cancel(request: Request, job_id: str) -> dict[str, Any]:
        status = own_job(request, job_id, gateway.store.status(job_id))
        if not await run_in_threadpool(gateway.store.cancel, job_id):
            raise ApiError(
                409,
                "not_cancellable",
                f"job {job_id} is {status['state']}; only queued jobs can be cancelled",
            )
        gateway.metrics.jobs.labels(status["backend"], "cancelled").inc()
        gateway.notify(job_id)
        return _public(own_job(request, job_id, gateway.store.status(job_id)))

    return app


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
            request.format, request.circuits, max_qubits=gateway.max_qubits, max_operations=limit
        )
        check_circuits(circuits, gateway.config.limits, None)
        backend.check(circuits)
    except PayloadError as error:
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
