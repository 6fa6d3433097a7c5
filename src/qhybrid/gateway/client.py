"""A small synchronous client for the gateway, used by the engine's ``qpu`` backend and by tests.

Transient failures (connection errors, 429, 5xx, 507 for a full state volume) are retried with exponential
backoff and full jitter, honouring ``Retry-After``; anything else (400, 401,
403, 404, 409, 413) is final at once, so a bad token never becomes a retry
storm. The bearer token is read from a file (a mounted Secret), re-read when
the file changes, and never appears in an exception or a log line.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504, 507})


class GatewayError(Exception):
    """A gateway call failed for good; the message says why and never holds the token.

    ``kind`` sorts the cause: ``unreachable`` (no connection after every attempt),
    ``overloaded`` (429/5xx/507 after every attempt), ``timeout`` (a job did not end in
    time), ``refused`` (a 4xx answer: token, budget, request), ``failed`` (the job ended
    failed or cancelled) and ``token`` (the token file cannot be read). The first three
    are transient: the same call may succeed later.
    """

    TRANSIENT_KINDS = frozenset({"unreachable", "overloaded", "timeout"})

    def __init__(
        self, message: str, *, status: int | None = None, code: str | None = None, kind: str = "refused"
    ) -> None:
        """Record the message, HTTP status and error code (when the gateway answered), and the kind."""
        super().__init__(message)
        self.status = status
        self.code = code
        self.kind = kind

    @property
    def transient(self) -> bool:
        """Return whether the same call may succeed later (a failover may take it meanwhile)."""
        return self.kind in self.TRANSIENT_KINDS


class GatewayClient:
    """Talks to one gateway with one client token."""

    def __init__(
        self,
        url: str,
        token_file: Path,
        *,
        max_attempts: int = 6,
        backoff_base: float = 0.25,
        backoff_cap: float = 8.0,
        request_timeout: float = 30.0,
        job_timeout: float = 3600.0,
        jitter_seed: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """Configure the client; nothing is sent yet."""
        self.url = url.rstrip("/")
        self.token_file = token_file
        self.max_attempts = max(1, max_attempts)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.job_timeout = job_timeout
        # Jitter only spreads retries in time; it never touches results.
        self._random = random.Random(jitter_seed)
        self._sleep = sleep
        self._token: tuple[tuple[int, int], str] | None = None
        self._http = httpx.Client(base_url=self.url, timeout=request_timeout, transport=transport)
        self.retries = 0  # transient failures retried so far (for tests and reports)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _bearer(self) -> str:
        try:
            info = os.stat(self.token_file)
        except OSError as error:
            raise GatewayError(
                f"gateway token file {self.token_file}: cannot read ({error.strerror})", kind="token"
            ) from None
        stamp = (info.st_ino, info.st_mtime_ns)
        if self._token is None or self._token[0] != stamp:
            try:
                token = self.token_file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as error:
                reason = getattr(error, "strerror", None) or "not UTF-8 text"
                raise GatewayError(
                    f"gateway token file {self.token_file}: cannot read ({reason})", kind="token"
                ) from None
            if not token:
                raise GatewayError(f"gateway token file {self.token_file}: empty", kind="token")
            self._token = (stamp, token)
        return f"Bearer {self._token[1]}"

    def backoff(self, attempt: int, retry_after: str | None) -> float:
        """Return the pause before retry ``attempt`` (0-based): full jitter, at least Retry-After."""
        delay = self._random.uniform(0, min(self.backoff_cap, self.backoff_base * 2**attempt))
        if retry_after is not None:
            try:
                delay = max(delay, min(float(retry_after), 60.0))
            except ValueError:
                pass  # an HTTP date: fall back to our own backoff
        return delay

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request, retrying transient failures; return the final non-retryable response."""
        problem, kind = "", "unreachable"
        for attempt in range(self.max_attempts):
            retry_after = None
            try:
                response = self._http.request(
                    method, path, headers={"Authorization": self._bearer()}, **kwargs
                )
            except httpx.TransportError as error:
                problem = f"cannot reach the gateway at {self.url} ({type(error).__name__})"
                kind = "unreachable"
            else:
                if response.status_code not in RETRYABLE_STATUS:
                    if response.status_code >= 400:
                        raise _error_from(method, path, response)
                    return response
                retry_after = response.headers.get("Retry-After")
                problem = f"gateway answered {response.status_code} ({_detail(response)})"
                kind = "overloaded"
            if attempt + 1 < self.max_attempts:
                self.retries += 1
                self._sleep(self.backoff(attempt, retry_after))
        raise GatewayError(
            f"{method} {path}: gave up after {self.max_attempts} attempts: {problem}", kind=kind
        )

    def backends(self) -> dict[str, Any]:
        """Return the gateway's backends and limits."""
        return self.request("GET", "/v1/backends").json()

    def submit(
        self,
        circuits_qpy: str,
        *,
        shots: int,
        job_key: str,
        seeds: list[int] | None = None,
        seed: int = 0,
        backend: str | None = None,
    ) -> dict[str, Any]:
        """Submit a job (base64 QPY); resubmitting ``job_key`` returns the same job."""
        body: dict[str, Any] = {"job_key": job_key, "shots": shots, "circuits": circuits_qpy, "seed": seed}
        if seeds is not None:
            body["seeds"] = seeds
        if backend is not None:
            body["backend"] = backend
        return self.request("POST", "/v1/jobs", json=body).json()

    def wait(
        self,
        job_id: str,
        *,
        poll_seconds: float = 20.0,
        on_state: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """Long-poll until the job ends; return its final record (state succeeded, failed or cancelled).

        ``on_state`` hears the job's state after every poll (for progress displays).
        """
        deadline = time.monotonic() + self.job_timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise GatewayError(
                    f"job {job_id}: not finished after {self.job_timeout:.0f} s", kind="timeout"
                )
            response = self.request(
                "GET",
                f"/v1/jobs/{job_id}/result",
                params={"wait": min(poll_seconds, left)},
                timeout=min(poll_seconds, left) + 30,
            )
            record = response.json()
            if on_state is not None:
                on_state(str(record.get("state")))
            if response.status_code == 200:
                return dict(record)

    def jobs(self, *, state: str | None = None, limit: int = 50, after: str | None = None) -> dict[str, Any]:
        """Return one page of this client's own jobs, newest first: ``{"jobs": [...], "next": ...}``."""
        params: dict[str, Any] = {"limit": limit}
        if state is not None:
            params["state"] = state
        if after is not None:
            params["after"] = after
        return dict(self.request("GET", "/v1/jobs", params=params).json())

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued job of this client; return its record."""
        return dict(self.request("DELETE", f"/v1/jobs/{job_id}").json())


def _detail(response: httpx.Response) -> str:
    try:
        data = response.json()
        return f"{data.get('error')}: {data.get('detail')}"
    except ValueError:
        return response.text[:200]


def _error_from(method: str, path: str, response: httpx.Response) -> GatewayError:
    code = None
    try:
        code = response.json().get("error")
    except ValueError:
        pass
    return GatewayError(
        f"{method} {path}: gateway refused with {response.status_code} ({_detail(response)})",
        status=response.status_code,
        code=code,
        kind="refused",
    )
