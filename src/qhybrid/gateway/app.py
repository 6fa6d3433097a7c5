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
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from qhybrid.gateway.admission import admit, storage_full
from qhybrid.gateway.api_schema import HTTP_ERROR_CODES, ApiError, error_response, openapi_document
from qhybrid.gateway.config import ClientConfig
from qhybrid.gateway.middleware import CLIENT_SCOPE_KEY, GuardMiddleware
from qhybrid.gateway.service import Gateway, build_gateway
from qhybrid.gateway.store import TERMINAL, StorageFull

__all__ = ["Gateway", "build_gateway", "create_app"]

log = logging.getLogger("qhybrid.gateway")
MAX_WAIT_SECONDS = 60.0
MAX_PAGE = 200  # jobs per page of GET /v1/jobs


def _public(status: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in status.items() if key not in ("request_sha256", "client")}


def create_app(gateway: Gateway) -> FastAPI:
    """Return the ASGI app serving ``gateway``."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        gateway.loop = asyncio.get_running_loop()
        gateway.credentials.start()
        await run_in_threadpool(gateway.executor.start)
        lag_monitor = asyncio.create_task(gateway.loop_lag.run(gateway.metrics.loop_lag.observe))
        log.info(
            "gateway ready: backends %s, %d clients", sorted(gateway.backends), len(gateway.config.clients)
        )
        try:
            yield
        finally:
            lag_monitor.cancel()
            await run_in_threadpool(gateway.executor.stop)
            await gateway.auth.aclose()
            gateway.credentials.stop()
            await run_in_threadpool(gateway.parser.close)

    app = FastAPI(title="qhybrid QPU gateway", version="1", lifespan=lifespan)
    app.add_middleware(GuardMiddleware, gateway=gateway)
    app.state.gateway = gateway

    @app.exception_handler(ApiError)
    async def apierror_response(_: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.code, error.detail, error.headers)

    # One error format for every answer: FastAPI's own 404, 405 and validation bodies too.
    @app.exception_handler(StarletteHTTPException)
    async def httperror_response(_: Request, error: StarletteHTTPException) -> JSONResponse:
        code = HTTP_ERROR_CODES.get(error.status_code, "http_error")
        return error_response(error.status_code, code, str(error.detail), dict(error.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def validationerror_response(_: Request, error: RequestValidationError) -> JSONResponse:
        parts = [
            f"{'.'.join(str(p) for p in item['loc']) or 'request'}: {item['msg']}"
            for item in error.errors()[:5]
        ]
        return error_response(400, "invalid_request", "; ".join(parts))

    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]

    def client_of(request: Request) -> ClientConfig:
        return request.scope[CLIENT_SCOPE_KEY]

    def own_job(request: Request, job_id: str, status: dict[str, Any] | None) -> dict[str, Any]:
        # Another client's job is reported as missing: ids are not secrets, but results are.
        if status is None or status["client"] != client_of(request).name:
            raise ApiError(404, "not_found", f"no job {job_id!r}")
        return status

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        # Liveness: a dead or stuck worker thread fails it, so the kubelet restarts the pod.
        # A full volume does not (a restart frees no space); readiness reports that.
        problems = gateway.executor.health()
        if problems:
            return JSONResponse({"status": "unhealthy", "problems": problems}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        problems = []
        if not gateway.executor.alive():
            problems.append("executor not running")
        if not gateway.store.writable and not await run_in_threadpool(gateway.store.probe_write):
            problems.append(f"job store cannot write: {gateway.store.storage_error}")
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

    @app.get("/v1/jobs")
    async def list_jobs(
        request: Request,
        state: Literal["queued", "running", "succeeded", "failed", "cancelled"] | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        after: Annotated[str | None, Query(max_length=64)] = None,
    ) -> dict[str, Any]:
        """List the caller's own jobs, newest first; ``next`` is the ``after`` of the next page."""
        jobs = await run_in_threadpool(
            gateway.store.client_jobs, client_of(request).name, state=state, limit=limit, before=after
        )
        return {
            "jobs": [_public(job) for job in jobs],
            "next": jobs[-1]["id"] if len(jobs) == limit else None,
        }

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
        try:
            cancelled = await run_in_threadpool(gateway.store.cancel, job_id)
        except StorageFull as full:
            raise storage_full(gateway, full) from None
        if not cancelled:
            raise ApiError(
                409,
                "not_cancellable",
                f"job {job_id} is {status['state']}; only queued jobs can be cancelled",
            )
        gateway.metrics.jobs.labels(status["backend"], "cancelled").inc()
        gateway.notify(job_id)
        return _public(own_job(request, job_id, gateway.store.status(job_id)))

    return app
