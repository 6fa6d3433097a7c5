"""A small real Kubernetes API stand-in on 127.0.0.1: the TokenReview endpoint only.

It answers ``POST /apis/authentication.k8s.io/v1/tokenreviews`` as kube-apiserver
does for service-account tokens: the caller must present the gateway's own bearer
token (else 401), the body must be a TokenReview, and a token is authenticated
only when it was issued here, is not expired, and one of its audiences is in
``spec.audiences`` (the answer's ``status.audiences`` is the intersection).
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TOKEN_REVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


@dataclass
class Issued:
    username: str
    audiences: list[str]
    exp: float


@dataclass
class FakeKubernetesApi:
    """The fake API server's state; ``serve()`` starts it in a thread."""

    gateway_token: str = field(default_factory=lambda: "gateway-sa-" + secrets.token_urlsafe(24))
    issued: dict[str, Issued] = field(default_factory=dict)
    calls: int = 0
    reviewed: list[str] = field(default_factory=list)  # tokens reviewed, in order (tests only)
    fail_with: int | None = None  # answer this HTTP status instead
    ignore_audiences: bool = False  # behave like an API server that is not audience-aware
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    url: str = ""

    def issue(
        self, namespace: str, name: str, *, audiences: tuple[str, ...] = ("qpu-gateway",), ttl: float = 600
    ) -> str:
        """Mint a JWT-shaped service-account token, as the kubelet would request it."""
        exp = time.time() + ttl
        username = f"system:serviceaccount:{namespace}:{name}"
        header = _b64({"alg": "RS256", "kid": "fake"})
        payload = _b64({"aud": list(audiences), "exp": int(exp), "sub": username, "iss": "fake"})
        token = f"{header}.{payload}.{secrets.token_urlsafe(32)}"
        self.issued[token] = Issued(username, list(audiences), exp)
        return token

    def revoke(self, token: str) -> None:
        """Forget a token (its pod was deleted)."""
        self.issued.pop(token, None)

    def review(self, body: dict[str, Any]) -> dict[str, Any]:
        spec = body["spec"]
        token, wanted = spec["token"], spec.get("audiences") or ["https://kubernetes.default.svc"]
        status: dict[str, Any] = {"authenticated": False, "user": {}}
        issued = self.issued.get(token)
        if issued is None:
            status["error"] = "[invalid bearer token, square/go-jose: error in cryptographic primitive]"
        elif issued.exp <= time.time():
            status["error"] = "[invalid bearer token, service account token has expired]"
        else:
            common = [a for a in wanted if a in issued.audiences]
            if self.ignore_audiences:
                status = {"authenticated": True, "user": {"username": issued.username}}
            elif common:
                status = {
                    "authenticated": True,
                    "audiences": common,
                    "user": {
                        "username": issued.username,
                        "uid": "00000000-0000-0000-0000-000000000000",
                        "groups": ["system:serviceaccounts", "system:authenticated"],
                    },
                }
            else:
                status["error"] = (
                    "[invalid bearer token, token audiences is invalid for the target audiences]"
                )
        return {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": spec,
            "status": status,
        }

    def serve(self, certificate: tuple[Path, Path] | None = None) -> FakeKubernetesApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with api.lock:
                    api.calls += 1
                    api.reviewed.append(body.get("spec", {}).get("token", ""))
                if api.delay:
                    time.sleep(api.delay)
                if self.path != TOKEN_REVIEW_PATH:
                    self._answer(404, {"kind": "Status", "code": 404})
                elif self.headers.get("Authorization") != f"Bearer {api.gateway_token}":
                    self._answer(401, {"kind": "Status", "code": 401, "reason": "Unauthorized"})
                elif api.fail_with is not None:
                    self._answer(api.fail_with, {"kind": "Status", "code": api.fail_with})
                elif (
                    body.get("kind") != "TokenReview" or body.get("apiVersion") != "authentication.k8s.io/v1"
                ):
                    self._answer(400, {"kind": "Status", "code": 400})
                else:
                    self._answer(201, api.review(body))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if certificate is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(certificate[0]), str(certificate[1]))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """Write a certificate for 127.0.0.1 (it is its own CA) and its key; return (cert, key)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "ca.crt", directory / "apiserver.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


def write_atomically(directory: Path, files: dict[str, str]) -> None:
    """Write ``files`` into ``directory`` the way the kubelet updates a projected volume.

    Each version lives in its own timestamped directory; ``..data`` points at the
    current one and is swapped with one rename; ``<name>`` is a link to ``..data/<name>``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    version = directory / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{secrets.token_hex(4)}"
    version.mkdir()
    for name, content in files.items():
        (version / name).write_text(content)
    data = directory / "..data"
    old = data.resolve() if data.is_symlink() else None
    staging = directory / "..data_tmp"
    staging.symlink_to(version.name)
    staging.replace(data)
    for name in files:
        if not (directory / name).is_symlink():
            (directory / name).symlink_to(f"..data/{name}")
    if old is not None:
        for child in old.iterdir():
            child.unlink()
        old.rmdir()
