"""The gateway's configuration file: backends, clients, admission limits.

YAML (or JSON, which is YAML) with this shape; every key is optional::

    default_backend: fake_manila          # used when a job names no backend
    queue:
      max_queued_jobs: 1000               # admission bound; beyond it -> 429 + Retry-After
      retry_after_seconds: 2
      max_admissions_in_flight: 16        # submissions being admitted at once; beyond -> 429 at once
      max_event_loop_lag_ms: 50           # while the event loop runs this late, submits -> 429 at once
    limits:
      max_request_bytes: 8388608          # whole request body; beyond it -> 413
      max_circuits_per_job: 300           # -> 413
      max_operations_per_circuit: 20000   # -> 413
      max_shots: 100000                   # per circuit; -> 400
      parse_workers: 2                    # processes parsing OpenQASM 3 off the gateway's own
      parse_seconds: 5                    # per parse; beyond it the worker is killed -> 413
      parse_memory_mib: 512               # per worker, enforced with RLIMIT_AS -> 413
    store:
      synchronous: NORMAL                 # SQLite; NORMAL survives a killed process, FULL a lost node
    credentials:
      reload_interval_seconds: 2
    backends:                             # strings or mappings
      - aer                               # noiseless qiskit-aer
      - emulator:fake_manila              # qiskit-aer with FakeManilaV2's noise model and coupling map
      - {name: ibm_local, kind: ibm, device: ibm_brisbane, local: fake_manila}
    clients:
      - name: qhybrid-workflow            # shows up as the ``client`` label of metrics
        token_sha256: <64 hex digits>     # from ``qhybrid gateway hash-token``
        expires_at: 2030-01-01T00:00:00Z  # optional
        shot_budget: 100000000            # optional; total shots this client may use
        backends: [fake_manila]           # optional; default every backend
      - name: cluster-workflow            # in a cluster: no shared secret at all, instead
        kubernetes_service_account: qhybrid-workflows/qhybrid-workflow  # <namespace>/<name>
    kubernetes:                           # how kubernetes_service_account clients are checked
      api_url: https://10.96.0.1:443      # default: in-cluster (KUBERNETES_SERVICE_HOST/PORT)
      ca_file: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt      # default
      token_file: /var/run/secrets/kubernetes.io/serviceaccount/token    # default: the pod's own
      audience: qpu-gateway               # the audience worker tokens are projected for
      cache_seconds: 30                   # accepted tokens, at most 60 and never past their expiry
      negative_cache_seconds: 10          # refused tokens
      timeout_seconds: 5                  # per TokenReview call

A client has either ``token_sha256`` (a bearer token the gateway compares by
digest) or ``kubernetes_service_account`` (a projected service-account token the
gateway checks with the Kubernetes TokenReview API; see ``kubernetes_auth``).

Errors name the key at fault, e.g. ``clients[0].token_sha256: must be 64 hex digits``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qhybrid.blueprint.names import GATEWAY_TOKEN_AUDIENCE
from qhybrid.errors import InputError

BACKEND_KINDS = ("aer", "emulator", "ibm", "trivial")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
MAX_CACHE_SECONDS = 60.0


@dataclass(frozen=True, kw_only=True)
class BackendConfig:
    """One backend the gateway offers."""

    name: str
    kind: str
    device: str | None = None  # fake device (emulator), IBM backend name (ibm)
    local: str | None = None  # ibm only: run in qiskit-ibm-runtime's local testing mode on this fake device
    channel: str = "ibm_quantum_platform"  # ibm only
    concurrency: int = 1  # jobs run at once on this backend
    seconds_per_job: float = 0.0  # trivial only: emulated device time per job


@dataclass(frozen=True, kw_only=True)
class ClientConfig:
    """One client (a workflow's service account) and what it may use."""

    name: str
    token_sha256: str | None = None  # a hashed bearer token, or
    kubernetes_service_account: str | None = None  # "<namespace>/<name>", checked by TokenReview
    expires_at: dt.datetime | None = None
    shot_budget: int | None = None
    backends: tuple[str, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class KubernetesConfig:
    """Where and how the gateway checks service-account tokens (TokenReview)."""

    api_url: str | None = None  # None: in cluster, from KUBERNETES_SERVICE_HOST/PORT
    ca_file: Path = SERVICE_ACCOUNT_DIR / "ca.crt"
    token_file: Path = SERVICE_ACCOUNT_DIR / "token"
    audience: str = GATEWAY_TOKEN_AUDIENCE
    cache_seconds: float = 30.0
    negative_cache_seconds: float = 10.0
    timeout_seconds: float = 5.0


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Admission limits."""

    max_request_bytes: int = 8 * 1024 * 1024
    max_circuits_per_job: int = 300
    max_operations_per_circuit: int = 20_000
    max_shots: int = 100_000
    parse_workers: int = 2
    parse_seconds: int = 5
    parse_memory_mib: int = 512


@dataclass(frozen=True, kw_only=True)
class GatewayConfig:
    """The whole configuration."""

    backends: tuple[BackendConfig, ...]
    clients: tuple[ClientConfig, ...] = ()
    kubernetes: KubernetesConfig = field(default_factory=KubernetesConfig)
    default_backend: str | None = None
    max_queued_jobs: int = 1000
    retry_after_seconds: int = 2
    # Submissions being parsed and recorded at once. Beyond it a submit is refused (429)
    # before its body is read: queueing behind the admission threads would be invisible
    # to the request timer and cost the client seconds (issue 12, F4).
    max_admissions_in_flight: int = 16
    # While the event loop runs this late, requests queue where no timer sees them: new
    # submits are refused (429) so the work in hand finishes and the lag stays bounded.
    max_event_loop_lag_ms: int = 50
    limits: Limits = field(default_factory=Limits)
    synchronous: str = "NORMAL"
    reload_interval_seconds: float = 2.0

    def backend(self, name: str) -> BackendConfig | None:
        """Return the backend called ``name``, if any."""
        return next((b for b in self.backends if b.name == name), None)

    def with_clients(self, clients: tuple[ClientConfig, ...]) -> GatewayConfig:
        """Return a copy with ``clients`` added."""
        from dataclasses import replace

        return replace(self, clients=self.clients + clients)


def default_config() -> GatewayConfig:
    """Return the built-in configuration for local use: a noiseless and an emulated device."""
    return parse_config({"default_backend": "fake_manila", "backends": ["aer", "emulator:fake_manila"]})


def load_config(path: Path) -> GatewayConfig:
    """Read and validate a configuration file (YAML or JSON)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InputError("--config", f"{path}: cannot read ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise InputError("--config", f"{path}: not valid YAML ({error})") from None
    return parse_config(data or {}, source=str(path))


def _int(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(where, f"must be an integer >= {minimum}, got {value!r}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise InputError(where, f"must be a number >= 0, got {value!r}")
    return float(value)


def _mapping(value: Any, where: str, known: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(where, f"must be a mapping, got {type(value).__name__}")
    unknown = sorted(set(value) - known)
    if unknown:
        raise InputError(where, f"unknown keys {unknown}; known: {sorted(known)}")
    return value


def _backend(entry: Any, where: str) -> BackendConfig:
    if isinstance(entry, str):
        short_kind, _, short_device = entry.partition(":")
        if short_kind == "emulator" and short_device:
            # Two jobs at once: Aer releases the GIL, and much of a noisy run is noise-model setup.
            return BackendConfig(name=short_device, kind="emulator", device=short_device, concurrency=2)
        if short_kind in ("aer", "trivial") and not short_device:
            return BackendConfig(
                name=short_kind, kind=short_kind, concurrency=2 if short_kind == "aer" else 1
            )
        raise InputError(where, f"{entry!r}: use 'aer', 'trivial', 'emulator:<fake device>' or a mapping")
    data = _mapping(
        entry, where, {"name", "kind", "device", "local", "channel", "concurrency", "seconds_per_job"}
    )
    name = data.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise InputError(f"{where}.name", f"must be a name of letters, digits, '_', '.', '-', got {name!r}")
    kind = data.get("kind")
    if kind not in BACKEND_KINDS:
        raise InputError(f"{where}.kind", f"must be one of {list(BACKEND_KINDS)}, got {kind!r}")
    device, local = data.get("device"), data.get("local")
    if kind == "emulator" and not device:
        raise InputError(f"{where}.device", "an emulator needs a fake device, e.g. fake_manila")
    if kind == "ibm" and not (device or local):
        raise InputError(f"{where}.device", "the IBM adapter needs a device name (or local: <fake device>)")
    if local is not None and kind != "ibm":
        raise InputError(f"{where}.local", "only the ibm kind has a local testing mode")
    seconds = _number(data.get("seconds_per_job", 0.0), f"{where}.seconds_per_job")
    if seconds and kind != "trivial":
        raise InputError(f"{where}.seconds_per_job", "only the trivial backend emulates device time")
    return BackendConfig(
        name=name,
        kind=kind,
        device=device,
        local=local,
        channel=str(data.get("channel", "ibm_quantum_platform")),
        concurrency=_int(data.get("concurrency", 1), f"{where}.concurrency", 1),
        seconds_per_job=seconds,
    )


def _timestamp(value: Any, where: str) -> dt.datetime:
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InputError(where, f"not an ISO 8601 time: {value!r}") from None
    if not isinstance(value, dt.datetime):
        raise InputError(where, f"must be an ISO 8601 time, got {value!r}")
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _service_account(value: Any, where: str) -> str:
    namespace, _, name = value.partition("/") if isinstance(value, str) else ("", "", "")
    if not (_DNS_LABEL.match(namespace) and _DNS_SUBDOMAIN.match(name) and "/" not in name):
        raise InputError(where, f"must be <namespace>/<service account name>, got {value!r}")
    return value


def _client(entry: Any, where: str, backend_names: set[str]) -> ClientConfig:
    data = _mapping(
        entry,
        where,
        {"name", "token_sha256", "kubernetes_service_account", "expires_at", "shot_budget", "backends"},
    )
    name = data.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise InputError(f"{where}.name", f"must be a name of letters, digits, '_', '.', '-', got {name!r}")
    digest = data.get("token_sha256")
    account = data.get("kubernetes_service_account")
    if (digest is None) == (account is None):
        raise InputError(where, "needs exactly one of token_sha256 and kubernetes_service_account")
    if account is not None:
        account = _service_account(account, f"{where}.kubernetes_service_account")
        if data.get("expires_at") is not None:
            raise InputError(f"{where}.expires_at", "service-account tokens carry their own expiry")
    elif not isinstance(digest, str) or not _HEX64.match(digest.removeprefix("sha256:")):
        # Never echo the value: someone may have pasted a raw token here.
        raise InputError(
            f"{where}.token_sha256", "must be 64 lowercase hex digits (qhybrid gateway hash-token)"
        )
    backends = data.get("backends")
    if backends is not None:
        if not isinstance(backends, list) or not all(isinstance(b, str) for b in backends):
            raise InputError(f"{where}.backends", "must be a list of backend names")
        unknown = sorted(set(backends) - backend_names)
        if unknown:
            raise InputError(
                f"{where}.backends", f"unknown backends {unknown}; configured: {sorted(backend_names)}"
            )
    budget = data.get("shot_budget")
    return ClientConfig(
        name=name,
        token_sha256=None if digest is None else digest.removeprefix("sha256:"),
        kubernetes_service_account=account,
        expires_at=None
        if data.get("expires_at") is None
        else _timestamp(data["expires_at"], f"{where}.expires_at"),
        shot_budget=None if budget is None else _int(budget, f"{where}.shot_budget", 0),
        backends=None if backends is None else tuple(backends),
    )


def _kubernetes(value: Any, where: str) -> KubernetesConfig:
    known = {
        "api_url",
        "ca_file",
        "token_file",
        "audience",
        "cache_seconds",
        "negative_cache_seconds",
        "timeout_seconds",
    }
    data = _mapping(value, where, known)
    strings: dict[str, str | None] = {}
    for key in ("api_url", "ca_file", "token_file", "audience"):
        if key in data and (not isinstance(data[key], str) or not data[key]):
            raise InputError(f"{where}.{key}", f"must be a non-empty string, got {data[key]!r}")
        strings[key] = data.get(key)
    api_url = strings["api_url"]
    if api_url is not None and not re.match(r"^https?://[^/\s]+/?$", api_url):
        raise InputError(f"{where}.api_url", f"must be http(s)://host[:port], got {api_url!r}")
    numbers = {
        key: _number(data[key], f"{where}.{key}")
        for key in ("cache_seconds", "negative_cache_seconds", "timeout_seconds")
        if key in data
    }
    if numbers.get("cache_seconds", 0.0) > MAX_CACHE_SECONDS:
        # A deleted pod's token stays accepted for as long as it is cached.
        raise InputError(f"{where}.cache_seconds", f"must be at most {MAX_CACHE_SECONDS:.0f}")
    if numbers.get("timeout_seconds", 1.0) <= 0:
        raise InputError(f"{where}.timeout_seconds", "must be more than 0")
    defaults = KubernetesConfig()
    return KubernetesConfig(
        api_url=None if api_url is None else api_url.rstrip("/"),
        ca_file=Path(strings["ca_file"] or defaults.ca_file),
        token_file=Path(strings["token_file"] or defaults.token_file),
        audience=strings["audience"] or defaults.audience,
        cache_seconds=numbers.get("cache_seconds", defaults.cache_seconds),
        negative_cache_seconds=numbers.get("negative_cache_seconds", defaults.negative_cache_seconds),
        timeout_seconds=numbers.get("timeout_seconds", defaults.timeout_seconds),
    )


def parse_config(data: Any, source: str = "config") -> GatewayConfig:
    """Validate plain data (a parsed file) into a :class:`GatewayConfig`."""
    top = _mapping(
        data,
        source,
        {"default_backend", "queue", "limits", "store", "credentials", "backends", "clients", "kubernetes"},
    )
    raw_backends = top.get("backends", ["aer", "emulator:fake_manila"])
    if not isinstance(raw_backends, list) or not raw_backends:
        raise InputError(f"{source}: backends", "must be a non-empty list")
    backends = tuple(_backend(entry, f"{source}: backends[{i}]") for i, entry in enumerate(raw_backends))
    names = [b.name for b in backends]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"{source}: backends", f"duplicate names {duplicates}")
    raw_clients = top.get("clients", [])
    if not isinstance(raw_clients, list):
        raise InputError(f"{source}: clients", "must be a list")
    clients = tuple(
        _client(entry, f"{source}: clients[{i}]", set(names)) for i, entry in enumerate(raw_clients)
    )
    client_names = [c.name for c in clients]
    if len(set(client_names)) != len(client_names):
        raise InputError(f"{source}: clients", "client names must be unique")
    digests = [c.token_sha256 for c in clients if c.token_sha256 is not None]
    if len(set(digests)) != len(digests):
        raise InputError(f"{source}: clients", "two clients share a token")
    accounts = [c.kubernetes_service_account for c in clients if c.kubernetes_service_account is not None]
    if len(set(accounts)) != len(accounts):
        raise InputError(f"{source}: clients", "two clients share a kubernetes_service_account")
    default = top.get("default_backend", names[0])
    if default not in names:
        raise InputError(f"{source}: default_backend", f"{default!r} is not a configured backend {names}")
    queue = _mapping(
        top.get("queue", {}),
        f"{source}: queue",
        {"max_queued_jobs", "retry_after_seconds", "max_admissions_in_flight", "max_event_loop_lag_ms"},
    )
    limits = _mapping(
        top.get("limits", {}),
        f"{source}: limits",
        {
            "max_request_bytes",
            "max_circuits_per_job",
            "max_operations_per_circuit",
            "max_shots",
            "parse_workers",
            "parse_seconds",
            "parse_memory_mib",
        },
    )
    store = _mapping(top.get("store", {}), f"{source}: store", {"synchronous"})
    credentials = _mapping(top.get("credentials", {}), f"{source}: credentials", {"reload_interval_seconds"})
    synchronous = str(store.get("synchronous", "NORMAL")).upper()
    if synchronous not in ("NORMAL", "FULL"):
        raise InputError(f"{source}: store.synchronous", f"must be NORMAL or FULL, got {synchronous!r}")
    return GatewayConfig(
        backends=backends,
        clients=clients,
        kubernetes=_kubernetes(top.get("kubernetes", {}), f"{source}: kubernetes"),
        default_backend=default,
        max_queued_jobs=_int(queue.get("max_queued_jobs", 1000), f"{source}: queue.max_queued_jobs", 1),
        retry_after_seconds=_int(
            queue.get("retry_after_seconds", 2), f"{source}: queue.retry_after_seconds", 1
        ),
        max_admissions_in_flight=_int(
            queue.get("max_admissions_in_flight", 16), f"{source}: queue.max_admissions_in_flight", 1
        ),
        max_event_loop_lag_ms=_int(
            queue.get("max_event_loop_lag_ms", 50), f"{source}: queue.max_event_loop_lag_ms", 1
        ),
        limits=Limits(**{key: _int(value, f"{source}: limits.{key}", 1) for key, value in limits.items()}),
        synchronous=synchronous,
        reload_interval_seconds=_number(
            credentials.get("reload_interval_seconds", 2.0), f"{source}: credentials.reload_interval_seconds"
        ),
    )
