"""The gateway's outermost ASGI layer: timing, authentication and the body cap, before any body is read."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qhybrid.gateway.api_schema import error_response
from qhybrid.gateway.auth import AuthFailure
from qhybrid.gateway.timing import RECEIVED_AT

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
    """Time every request from its entry; authenticate /v1, shed excess submits and cap bodies unread.

    The timer starts when uvicorn read the request's bytes (``timing``), or else when
    the request enters the app, before authentication, so
    ``qhybrid_gateway_request_duration_seconds`` counts what the client waits for once
    the loop has read the request, refusals included, by route, method and status.
    """

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        """Wrap ``app``."""
        self.app = app
        self.gateway = gateway
        self.admitting = 0  # submits past the shedding check, not yet answered (event-loop only)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse early or pass on."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = scope.get(RECEIVED_AT) or time.perf_counter()
        path: str = scope["path"]
        status = 500  # what an exception that escapes every handler becomes

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            refusal = await self._refusal(scope, path) if path.startswith("/v1/") else None
            if refusal is not None:
                await refusal(scope, receive, send_noting_status)
            elif path == "/v1/jobs" and scope["method"] == "POST":
                self.admitting += 1
                try:
                    await self.app(scope, receive, send_noting_status)
                finally:
                    self.admitting -= 1
            else:
                await self.app(scope, receive, send_noting_status)
        finally:
            self.gateway.metrics.requests.labels(_route(path), scope["method"], str(status)).observe(
                time.perf_counter() - started
            )

    async def _refusal(self, scope: Scope, path: str) -> Response | None:
        """Return the answer for a /v1 request refused before its body is read, or None."""
        gateway = self.gateway
        headers = dict(scope["headers"])
        try:
            scope[CLIENT_SCOPE_KEY] = await gateway.auth.authenticate_request(
                headers.get(b"authorization", b"").decode("latin-1") or None
            )
        except AuthFailure as failure:
            if failure.status == 401:  # a 503 (TokenReview down) is counted by the reviewer
                gateway.metrics.auth_failures.labels(failure.reason).inc()
                extra = {"WWW-Authenticate": 'Bearer realm="qhybrid-gateway"'}
            else:
                extra = {"Retry-After": str(failure.retry_after)}
            return error_response(failure.status, failure.reason, failure.message, extra)
        if path == "/v1/jobs" and scope["method"] == "POST":
            bound, lag = gateway.config.max_admissions_in_flight, gateway.loop_lag.recent
            reason = None
            if self.admitting >= bound:
                reason = f"{bound} submissions are being admitted (max_admissions_in_flight)"
            elif self.admitting and lag * 1000 > gateway.config.max_event_loop_lag_ms:
                # Only with other submits in hand: a lone submit is accepted even while a
                # simulator in this process slows the loop (that is not overload).
                reason = (
                    f"the gateway is {lag * 1000:.0f} ms behind (max_event_loop_lag_ms "
                    f"{gateway.config.max_event_loop_lag_ms})"
                )
            if reason is not None:
                gateway.metrics.rejections.labels("overloaded").inc()
                return error_response(429, "overloaded", f"{reason}; retry shortly", {"Retry-After": "1"})
        length = headers.get(b"content-length")
        limit = gateway.config.limits.max_request_bytes
        if length is not None and length.isdigit() and int(length) > limit:
            gateway.metrics.rejections.labels("too_large").inc()
            return error_response(
                413, "payload_too_large", f"request body of {int(length)} bytes exceeds {limit} bytes"
            )
        return None
