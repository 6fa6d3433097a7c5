"""The gateway's outermost ASGI layer: timing, authentication and the body cap, before any body is read."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

from qhybrid.gateway.api_schema import error_response
from qhybrid.gateway.auth import AuthFailure

if TYPE_CHECKING:
    from qhybrid.gateway.service import Gateway

CLIENT_SCOPE_KEY = "qhybrid.client"


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
                    response = error_response(failure.status, failure.reason, failure.message, extra)
                    await response(scope, receive, send)
                    return
                length = headers.get(b"content-length")
                limit = self.gateway.config.limits.max_request_bytes
                if length is not None and length.isdigit() and int(length) > limit:
                    self.gateway.metrics.rejections.labels("too_large").inc()
                    response = error_response(
                        413, "payload_too_large", f"request body of {int(length)} bytes exceeds {limit} bytes"
                    )
                    await response(scope, receive, send)
                    return
            await self.app(scope, receive, send)
        finally:
            self.gateway.metrics.requests.labels(_route(path), scope["method"]).observe(
                time.perf_counter() - started
            )
