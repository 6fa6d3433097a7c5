"""Client authentication: bearer tokens checked against SHA-256 digests from the config.

Client tokens are random 256-bit strings minted by ``qhybrid gateway new-token``,
so one SHA-256 is enough to store them safely (a slow password hash protects
guessable secrets and would make every request, and every 401, slow). A missing,
unknown or expired token is refused at once: no sleep, no retry, no body read.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from qhybrid.gateway.config import ClientConfig

TOKEN_BYTES = 32


def new_token() -> str:
    """Return a fresh random client token (URL-safe, 256 bits)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """Return the hex SHA-256 of a token, as the config's ``token_sha256`` stores it."""
    return hashlib.sha256(token.strip().encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AuthFailure(Exception):
    """Why a request was refused; ``reason`` is a metric label value."""

    reason: str  # missing_token | invalid_token | forbidden
    message: str


class Authenticator:
    """Map a request's ``Authorization`` header to a configured client."""

    def __init__(self, clients: tuple[ClientConfig, ...]) -> None:
        """Index clients by token digest."""
        self._by_digest = {client.token_sha256: client for client in clients}

    def authenticate(self, header: str | None, *, now: dt.datetime | None = None) -> ClientConfig:
        """Return the client, or raise :class:`AuthFailure` (the message never echoes the token)."""
        if not header:
            raise AuthFailure("missing_token", "missing bearer token (Authorization: Bearer <token>)")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthFailure("missing_token", "the Authorization header must be 'Bearer <token>'")
        digest = hash_token(token)
        client = self._by_digest.get(digest)
        # The dict lookup is on a digest, not on the secret; compare_digest keeps the
        # final equality check constant-time all the same.
        if client is None or not hmac.compare_digest(client.token_sha256, digest):
            raise AuthFailure("invalid_token", "invalid bearer token")
        if client.expires_at is not None and (now or dt.datetime.now(dt.UTC)) >= client.expires_at:
            raise AuthFailure("invalid_token", "bearer token expired")
        return client
