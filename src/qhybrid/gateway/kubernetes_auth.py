"""Service-account clients: projected tokens checked with the Kubernetes TokenReview API.

In the cluster no worker pod holds a Secret: each QPU-branch pod gets a
projected service-account token for the audience ``qpu-gateway`` (10 minutes,
rotated by the kubelet) and sends it as its bearer token. A token that matches
no hashed client token is sent to ``POST /apis/authentication.k8s.io/v1/tokenreviews``
with ``spec.audiences: [qpu-gateway]``, authenticated with the gateway pod's own
service-account token (its ServiceAccount is bound to ``system:auth-delegator``).
An authenticated, audience-matched ``system:serviceaccount:<ns>:<name>`` maps to
the client whose ``kubernetes_service_account`` is ``<ns>/<name>``.

- Accepted tokens are cached by their SHA-256 for ``cache_seconds`` (at most 60),
  never past the token's own ``exp``; refused ones for ``negative_cache_seconds``.
  Concurrent requests with one token share one review, and at most
  ``MAX_CONCURRENT_REVIEWS`` run at once.
- Something that is not a JWT, or whose (unverified) claims name another audience
  or an expiry in the past, is refused without a call: those claims can only make
  us refuse, never accept.
- The API not answering (connection error, timeout, 5xx, or 401/403 to the
  gateway's own token) is a 503 with Retry-After, not a 401: the worker's token may
  be fine, and the client retries 503. For ``ERROR_HOLD_SECONDS`` after a failure,
  uncached tokens get 503 without another call, so a down API gets no storm.
- The token is never logged, echoed or kept: caches hold its digest only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from qhybrid.errors import InputError
from qhybrid.gateway.config import ClientConfig, GatewayConfig, KubernetesConfig

log = logging.getLogger("qhybrid.gateway.auth")

TOKEN_REVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
MAX_CACHED_TOKENS = 4096
MAX_CONCURRENT_REVIEWS = 8
ERROR_HOLD_SECONDS = 1.0


class ReviewRejected(Exception):
    """The token is not a configured client's: answer 401."""


class ReviewUnavailable(Exception):
    """The TokenReview API could not say: answer 503 with Retry-After."""


@dataclass(frozen=True)
class _Cached:
    until: float  # monotonic
    client: ClientConfig | None
    problem: str  # why it was refused (client is None)


def resolve_api_url(settings: KubernetesConfig, environ: dict[str, str] | None = None) -> str:
    """Return the API server URL: configured, or the in-cluster one from the pod's environment."""
    if settings.api_url is not None:
        return settings.api_url
    env = os.environ if environ is None else environ
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise InputError(
            "kubernetes.api_url",
            "kubernetes_service_account clients need the Kubernetes API: not in a pod "
            "(KUBERNETES_SERVICE_HOST is unset) and kubernetes.api_url is not configured",
        )
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return f"https://{host}:{port}"


def reviewer_for(config: GatewayConfig, counter: Any) -> TokenReviewer | None:
    """Return the reviewer for ``config``'s service-account clients (None when it has none).

    ``counter`` is the ``token_reviews`` Prometheus counter, labelled by result.
    """
    if not any(c.kubernetes_service_account for c in config.clients):
        return None
    return TokenReviewer(
        config.kubernetes,
        config.clients,
        count=lambda result: counter.labels(result).inc(),
        retry_after_seconds=config.retry_after_seconds,
    )


def unverified_claims(token: str) -> dict[str, Any] | None:
    """Return a JWT's payload without checking its signature (None when it is no JWT).

    Only ever used to refuse early; acceptance always comes from the API server.
    """
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    return payload if isinstance(payload, dict) else None


class TokenReviewer:
    """Maps a service-account token to a configured client through the TokenReview API."""

    def __init__(
        self,
        settings: KubernetesConfig,
        clients: tuple[ClientConfig, ...],
        *,
        count: Callable[[str], None] = lambda result: None,
        retry_after_seconds: int = 2,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        environ: dict[str, str] | None = None,
    ) -> None:
        """Resolve the API server and its CA now, so a misconfigured gateway fails at start."""
        self.settings = settings
        self.api_url = resolve_api_url(settings, environ)
        self._by_account = {c.kubernetes_service_account: c for c in clients if c.kubernetes_service_account}
        self._count = count
        self.retry_after_seconds = retry_after_seconds
        self._clock, self._wall = clock, wall_clock
        self._verify: ssl.SSLContext | bool = True
        if self.api_url.startswith("https://"):
            try:
                self._verify = ssl.create_default_context(cafile=str(settings.ca_file))
            except (OSError, ssl.SSLError) as error:
                raise InputError(
                    "kubernetes.ca_file", f"{settings.ca_file}: cannot load the API server's CA ({error})"
                ) from None
        self._http: httpx.AsyncClient | None = None
        self._own_token: tuple[tuple[int, int], str] | None = None
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[ClientConfig]] = {}
        self._slots: asyncio.Semaphore | None = None
        self._hold_until = 0.0
        self.calls = 0  # TokenReview requests sent (tests, and the metric's cross-check)

    async def aclose(self) -> None:
        """Close the connection pool (at shutdown)."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def _cached(self, digest: str) -> _Cached | None:
        entry = self._cache.get(digest)
        if entry is not None and entry.until <= self._clock():
            del self._cache[digest]
            return None
        return entry

    def _remember(self, digest: str, client: ClientConfig | None, problem: str, seconds: float) -> None:
        if seconds <= 0:
            return
        self._cache[digest] = _Cached(self._clock() + seconds, client, problem)
        self._cache.move_to_end(digest)
        while len(self._cache) > MAX_CACHED_TOKENS:
            self._cache.popitem(last=False)

    async def review(self, token: str, digest: str) -> ClientConfig:
        """Return the token's client; raise :class:`ReviewRejected` or :class:`ReviewUnavailable`."""
        cached = self._cached(digest)
        if cached is not None:
            if cached.client is None:
                raise ReviewRejected(cached.problem)
            return cached.client
        claims = unverified_claims(token)
        if claims is None:
            raise ReviewRejected("invalid bearer token")
        audiences = claims.get("aud")
        audiences = [audiences] if isinstance(audiences, str) else audiences
        if not isinstance(audiences, list) or self.settings.audience not in audiences:
            raise ReviewRejected(f"bearer token is not for audience {self.settings.audience!r}")
        expiry = claims.get("exp")
        left = float(expiry) - self._wall() if isinstance(expiry, int | float) else None
        if left is not None and left <= 0:
            raise ReviewRejected("bearer token expired")
        pending = self._inflight.get(digest)
        if pending is not None:  # the same token is being reviewed for another request
            return await asyncio.shield(pending)
        if self._clock() < self._hold_until:
            raise ReviewUnavailable("the Kubernetes API failed a moment ago")
        future: asyncio.Future[ClientConfig] = asyncio.get_running_loop().create_future()
        self._inflight[digest] = future
        try:
            client = await self._review_once(token, digest, left)
        except BaseException as error:  # also cancellation: whoever shares this review must not hang
            shared = error if isinstance(error, ReviewRejected | ReviewUnavailable) else None
            future.set_exception(shared or ReviewUnavailable("the token review was interrupted"))
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waits
            raise
        else:
            future.set_result(client)
            return client
        finally:
            del self._inflight[digest]

    async def _review_once(self, token: str, digest: str, left: float | None) -> ClientConfig:
        if self._slots is None:
            self._slots = asyncio.Semaphore(MAX_CONCURRENT_REVIEWS)
        async with self._slots:
            if self._clock() < self._hold_until:  # it failed while this review waited for a slot
                raise ReviewUnavailable("the Kubernetes API failed a moment ago")
            try:
                status = await self._call(token)
            except ReviewUnavailable:
                self._count("error")
                self._hold_until = self._clock() + ERROR_HOLD_SECONDS
                raise
        client, problem = self._judge(status, token)
        if client is None:
            self._count("rejected")
            self._remember(digest, None, problem, self.settings.negative_cache_seconds)
            raise ReviewRejected(problem)
        self._count("authenticated")
        ttl = self.settings.cache_seconds if left is None else min(self.settings.cache_seconds, left)
        self._remember(digest, client, "", ttl)
        return client

    def _bearer(self) -> str:
        path = self.settings.token_file
        try:
            info = os.stat(path)
            stamp = (info.st_ino, info.st_mtime_ns)
            if self._own_token is None or self._own_token[0] != stamp:
                # The kubelet rotates this token too: re-read it whenever the file changes.
                self._own_token = (stamp, path.read_text(encoding="utf-8").strip())
        except OSError as error:
            log.error("cannot read the gateway's own service-account token %s (%s)", path, error.strerror)
            raise ReviewUnavailable("the gateway cannot read its service-account token") from None
        return self._own_token[1]

    async def _call(self, token: str) -> dict[str, Any]:
        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=self.api_url, verify=self._verify, timeout=self.settings.timeout_seconds
            )
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": [self.settings.audience]},
        }
        self.calls += 1
        try:
            response = await self._http.post(
                TOKEN_REVIEW_PATH, json=body, headers={"Authorization": f"Bearer {self._bearer()}"}
            )
        except httpx.HTTPError as error:
            log.warning("TokenReview call to %s failed: %s", self.api_url, type(error).__name__)
            raise ReviewUnavailable("the Kubernetes API did not answer") from None
        if response.status_code not in (200, 201):
            hint = (
                " (the gateway's service account needs the system:auth-delegator ClusterRole)"
                if response.status_code in (401, 403)
                else ""
            )
            log.warning("TokenReview answered HTTP %d%s", response.status_code, hint)
            raise ReviewUnavailable(f"the Kubernetes API answered {response.status_code}")
        try:
            status = response.json().get("status")
        except (ValueError, AttributeError):
            status = None
        if not isinstance(status, dict):
            log.warning("TokenReview answered without a status object")
            raise ReviewUnavailable("the Kubernetes API answered without a status")
        return status

    def _judge(self, status: dict[str, Any], token: str) -> tuple[ClientConfig | None, str]:
        """Return (client, "") for an accepted token, else (None, why)."""
        if status.get("authenticated") is not True:
            reason = str(status.get("error") or "not authenticated").replace(token, "<token>")
            log.info("TokenReview refused a token: %s", reason[:300])
            return None, "bearer token refused by the Kubernetes API"
        # An API server that ignores spec.audiences answers with none: such a token is
        # only valid for the API server itself, not for us.
        if self.settings.audience not in (status.get("audiences") or []):
            return None, f"bearer token is not for audience {self.settings.audience!r}"
        user = status.get("user")
        username = str(user.get("username", "")) if isinstance(user, dict) else ""
        namespace, _, name = username.removeprefix(SERVICE_ACCOUNT_PREFIX).partition(":")
        if not username.startswith(SERVICE_ACCOUNT_PREFIX) or not namespace or not name:
            return None, "bearer token does not belong to a service account"
        client = self._by_account.get(f"{namespace}/{name}")
        if client is None:
            log.info("service account %s/%s is not a client of this gateway", namespace, name)
            return None, f"service account {namespace}/{name} is not a client of this gateway"
        return client, ""
