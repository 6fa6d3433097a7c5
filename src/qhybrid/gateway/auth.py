"""Client authentication: bearer tokens checked against SHA-256 digests from the config.

Client tokens are random 256-bit strings minted by ``qhybrid gateway new-token``,
so one SHA-256 is enough to store them safely (a slow password hash protects
guessable secrets and would make every request, and every 401, slow). A missing,
unknown or expired token is refused at once: no sleep, no retry, no body read.

In a cluster, clients may instead be service accounts: a token that matches no
digest goes to :class:`~qhybrid.gateway.kubernetes_auth.TokenReviewer` (cached;
the Kubernetes API being unreachable is a 503, not a 401).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from qhybrid.gateway.config import ClientConfig

if TYPE_CHECKING:
    from qhybrid.gateway.kubernetes_auth import TokenReviewer

TOKEN_BYTES = 32


def new_token() -> str:
    """Return a fresh random client token (URL-safe, 256 bits)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """Return the hex SHA-256 of a token, as the config's ``token_sha256`` stores it."""
    return hashlib.sha256(token.strip().encode("utf-8")).hexdigest()


def write_token_file(path: Path, token: str) -> None:
    """Write a token to ``path`` readable by its owner only, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(token + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class AuthFailure(Exception):
    """Why a request was refused; ``reason`` is a metric label value."""

    reason: str  # missing_token | invalid_token | forbidden | auth_unavailable
    message: str
    status: int = 401  # 503: the token could not be checked now (retry after ``retry_after``)
    retry_after: int | None = None


class Authenticator:
    """Map a request's ``Authorization`` header to a configured client."""

    def __init__(self, clients: tuple[ClientConfig, ...], reviewer: TokenReviewer | None = None) -> None:
        """Index clients by token digest; service-account clients go through ``reviewer``."""
        self._by_digest = {client.token_sha256: client for client in clients if client.token_sha256}
        self.reviewer = reviewer

    @staticmethod
    def _token(header: str | None) -> str:
        if not header:
            raise AuthFailure("missing_token", "missing bearer token (Authorization: Bearer <token>)")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthFailure("missing_token", "the Authorization header must be 'Bearer <token>'")
        return token

    def _hashed(self, digest: str, now: dt.datetime | None) -> ClientConfig | None:
        client = self._by_digest.get(digest)
        # The dict lookup is on a digest, not on the secret; compare_digest keeps the
        # final equality check constant-time all the same.
        if client is None or client.token_sha256 is None:
            return None
        if not hmac.compare_digest(client.token_sha256, digest):
            return None
        if client.expires_at is not None and (now or dt.datetime.now(dt.UTC)) >= client.expires_at:
            raise AuthFailure("invalid_token", "bearer token expired")
        return client

    def authenticate(self, header: str | None, *, now: dt.datetime | None = None) -> ClientConfig:
        """Return the hashed-token client, or raise :class:`AuthFailure` (never echoing the token)."""
        client = self._hashed(hash_token(self._token(header)), now)
        if client is None:
            raise AuthFailure("invalid_token", "invalid bearer token")
        return client

    async def authenticate_request(
        self, header: str | None, *, now: dt.datetime | None = None
    ) -> ClientConfig:
        """Like :meth:`authenticate`, then ask the TokenReview API about tokens no digest matches."""
        from qhybrid.gateway.kubernetes_auth import ReviewRejected, ReviewUnavailable

        token = self._token(header)
        digest = hash_token(token)
        client = self._hashed(digest, now)
        if client is not None:
            return client
        if self.reviewer is None:
            raise AuthFailure("invalid_token", "invalid bearer token")
        try:
            return await self.reviewer.review(token, digest)
        except ReviewRejected as rejected:
            raise AuthFailure("invalid_token", str(rejected)) from None
        except ReviewUnavailable as unavailable:
            raise AuthFailure(
                "auth_unavailable",
                f"cannot check the bearer token now: {unavailable}; retry later",
                status=503,
                retry_after=self.reviewer.retry_after_seconds,
            ) from None

    async def aclose(self) -> None:
        """Release the reviewer's connections."""
        if self.reviewer is not None:
            await self.reviewer.aclose()
