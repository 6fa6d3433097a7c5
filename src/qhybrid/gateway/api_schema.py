"""The gateway's API contract: the job request, the one error body, and the served OpenAPI document."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field


class JobRequest(BaseModel):
    """A job submission."""

    model_config = ConfigDict(extra="forbid")

    job_key: str = Field(min_length=1, max_length=200, description="client-chosen idempotency key")
    shots: int = Field(gt=0)
    circuits: str | list[str] = Field(
        description="base64 QPY (format qpy) or OpenQASM 3 texts (format qasm3)"
    )
    format: Literal["qpy", "qasm3"] = "qpy"
    backend: str | None = None
    seed: int = Field(default=0, ge=0, lt=2**63)
    seeds: list[int] | None = Field(
        default=None, description="one seed per circuit; default derived from seed"
    )


HTTP_ERROR_CODES = {404: "not_found", 405: "method_not_allowed", 400: "invalid_request"}


class ErrorBody(BaseModel):
    """Every error answer's body."""

    error: str = Field(description="a stable code, e.g. invalid_token, not_found, payload_too_large")
    detail: str = Field(description="what is wrong, in words")


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """Return the served OpenAPI document: the job body, bearer auth and the error format declared.

    The submit handler reads its body as a stream (to cap its size before parsing), so
    FastAPI cannot see it: the request body is declared here, as are the bearer scheme
    every /v1 route needs and the error body of every 4xx/5xx answer.
    """
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    document = get_openapi(title=app.title, version=app.version, routes=app.routes)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["JobRequest"] = JobRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas["ErrorBody"] = ErrorBody.model_json_schema()
    document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    error = {
        "description": "error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)  # validation errors answer 400 in ErrorBody form
            for status in ("400", "404", "413", "429", "503", "507"):
                responses.setdefault(status, error)
            if path.startswith("/v1/"):
                operation["security"] = [{"bearer": []}]
                responses.setdefault("401", error)
            if path == "/v1/jobs" and method == "post":
                operation["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobRequest"}}},
                }
                responses.setdefault("409", error)
    app.openapi_schema = document
    return document


class ApiError(Exception):
    """An error answer."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        """Record the status, code, message and extra headers."""
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers or {}


def error_response(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """Return the one error body every refusal uses."""
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)
