"""One gateway process's parts (store, backends, executor, metrics, auth), built from its config."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from qhybrid.cutting.qasm_guard import DEFAULT_MAX_QUBITS
from qhybrid.gateway.auth import Authenticator
from qhybrid.gateway.config import ClientConfig, GatewayConfig
from qhybrid.gateway.credentials import CredentialStore
from qhybrid.gateway.executor import Executor
from qhybrid.gateway.kubernetes_auth import reviewer_for
from qhybrid.gateway.metrics import GatewayMetrics
from qhybrid.gateway.parse_pool import ParsePool
from qhybrid.gateway.providers import GatewayBackend, build_backend, widest
from qhybrid.gateway.store import JobStore
from qhybrid.gateway.timing import LoopLag


@dataclass
class Gateway:
    """Everything one gateway process holds."""

    config: GatewayConfig
    store: JobStore
    credentials: CredentialStore
    backends: dict[str, GatewayBackend]
    metrics: GatewayMetrics
    auth: Authenticator
    executor: Executor = field(init=False)
    loop: asyncio.AbstractEventLoop | None = None
    waiters: dict[str, list[asyncio.Future[None]]] = field(default_factory=dict)
    count_reloads: Callable[[], None] = lambda: None  # set by build_gateway
    max_qubits: int = DEFAULT_MAX_QUBITS  # the widest backend's, set by build_gateway
    loop_lag: LoopLag = field(default_factory=LoopLag)
    parser: ParsePool = field(init=False)  # OpenQASM 3 parsing off-process, set by build_gateway

    def notify(self, job_id: str) -> None:
        """Wake long-polls on ``job_id`` (called from worker threads)."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._wake, job_id)
            except RuntimeError:
                pass  # the loop closed meanwhile: nobody is waiting

    def _wake(self, job_id: str) -> None:
        for future in self.waiters.pop(job_id, []):
            if not future.done():
                future.set_result(None)

    def client_may_use(self, client: ClientConfig, backend: str) -> bool:
        """Return whether ``client`` may submit to ``backend``."""
        return client.backends is None or backend in client.backends


def build_gateway(config: GatewayConfig, store: JobStore, credentials: CredentialStore) -> Gateway:
    """Create backends, metrics and the executor for ``config``."""
    names = [b.name for b in config.backends]
    metrics = GatewayMetrics(names, [c.name for c in config.clients])
    backends = {
        b.name: build_backend(b, credentials, metrics.provider_auth_failures.inc) for b in config.backends
    }
    auth = Authenticator(config.clients, reviewer_for(config, metrics.token_reviews))
    gateway = Gateway(config, store, credentials, backends, metrics, auth)
    gateway.executor = Executor(store, backends, metrics, credentials, gateway.notify)
    metrics.watch_store(store, names)
    metrics.watch_budgets(store, {c.name: c.shot_budget for c in config.clients if c.shot_budget is not None})
    for name, backend in backends.items():
        # Only live devices get the calibration-age gauge that the staleness alert watches:
        # an emulator's (or local mode's) calibration is a fixed snapshot, years old by
        # design, and is still listed by /v1/backends.
        if backend.config.kind == "ibm" and backend.config.local is None:
            metrics.watch_calibration(name, backend.calibration_time)
    generation = {"seen": credentials.current().generation}

    def count_reloads() -> None:
        current = credentials.current().generation
        if current != generation["seen"]:
            metrics.credential_reloads.inc(current - generation["seen"])
            generation["seen"] = current

    gateway.count_reloads = count_reloads
    gateway.max_qubits = widest(backends.values(), DEFAULT_MAX_QUBITS)
    limits = config.limits
    gateway.parser = ParsePool(
        workers=limits.parse_workers, seconds=limits.parse_seconds, memory_mib=limits.parse_memory_mib
    )
    return gateway
