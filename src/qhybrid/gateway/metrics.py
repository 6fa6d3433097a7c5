"""The gateway's Prometheus metrics, named by the monitoring contract (blueprint.monitoring.metric_names).

Each gateway app owns its registry (tests run several in one process). Every
labelled counter is created at 0 for each known label value at start, because
alert rules use ``increase()``, which needs a sample before the first event.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from qhybrid.blueprint.monitoring import metric_names as names
from qhybrid.gateway.store import JobStore

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
# The *_created series double the scrape for no rule or dashboard that reads them.
disable_created_metrics()

# Fine enough that a quantile interpolated from them is within a few per cent of the
# clients' own (the load suite compares the two p99s under overload).
REQUEST_BUCKETS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.065, 0.08, 0.1, 0.125, 0.15, 0.2,
    0.25, 0.3, 0.4, 0.5, 0.65, 0.8, 1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 7.5, 10, 30,
)  # fmt: skip


class GatewayMetrics:
    """All metrics of one gateway."""

    def __init__(self, backends: Iterable[str], clients: Iterable[str]) -> None:
        """Create the metrics with every known label value at zero."""
        backends, clients = list(backends), list(clients)
        self.registry = CollectorRegistry()
        r = self.registry
        self.jobs = Counter(
            names.GATEWAY_JOBS_TOTAL.removesuffix("_total"),
            "Jobs that reached a terminal state.",
            ["backend", "state"],
            registry=r,
        )
        self.active = Gauge(
            names.GATEWAY_JOBS_ACTIVE, "Jobs queued at or running through the gateway.", ["state"], registry=r
        )
        self.queue_depth = Gauge(
            names.GATEWAY_QUEUE_DEPTH, "Queued jobs per backend.", ["backend"], registry=r
        )
        self.latency = Histogram(
            names.GATEWAY_JOB_LATENCY_SECONDS,
            "Seconds from job submission to result.",
            ["backend"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.shots = Counter(
            names.GATEWAY_SHOTS_TOTAL.removesuffix("_total"),
            "Shots executed, by client and backend.",
            ["client", "backend"],
            registry=r,
        )
        self.auth_failures = Counter(
            names.GATEWAY_AUTH_FAILURES_TOTAL.removesuffix("_total"),
            "Client requests refused by the gateway.",
            ["reason"],
            registry=r,
        )
        self.provider_auth_failures = Counter(
            names.GATEWAY_PROVIDER_AUTH_FAILURES_TOTAL.removesuffix("_total"),
            "Provider calls rejected for bad credentials.",
            registry=r,
        )
        self.calibration_age = Gauge(
            names.GATEWAY_CALIBRATION_AGE_SECONDS,
            "Seconds since the backend's calibration.",
            ["backend"],
            registry=r,
        )
        self.rejections = Counter(
            names.GATEWAY_ADMISSION_REJECTIONS_TOTAL.removesuffix("_total"),
            "Job submissions refused at admission.",
            ["reason"],
            registry=r,
        )
        self.requests = Histogram(
            names.GATEWAY_REQUEST_DURATION_SECONDS,
            "Seconds to answer an HTTP request.",
            ["route", "method", "status"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.loop_lag = Histogram(
            names.GATEWAY_EVENT_LOOP_LAG_SECONDS,
            "How late the event loop ran a 10 ms timer: queueing that request timers cannot see.",
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.credential_reloads = Counter(
            names.GATEWAY_CREDENTIAL_RELOADS_TOTAL.removesuffix("_total"),
            "Times the provider credentials were reloaded from their files.",
            registry=r,
        )
        self.token_reviews = Counter(
            names.GATEWAY_TOKEN_REVIEWS_TOTAL.removesuffix("_total"),
            "Kubernetes TokenReview calls that checked a service-account token, by result.",
            ["result"],
            registry=r,
        )
        self.reruns = Counter(
            names.GATEWAY_JOB_RERUNS_TOTAL.removesuffix("_total"),
            "Jobs running when the gateway died that ran again after the restart.",
            ["backend"],
            registry=r,
        )
        self.storage_writable = Gauge(
            names.GATEWAY_STORAGE_WRITABLE,
            "1 while the job store can write; 0 after a write failed for lack of space.",
            registry=r,
        )
        for result in names.GATEWAY_TOKEN_REVIEW_RESULTS:
            self.token_reviews.labels(result)
        for backend in backends:
            for state in names.GATEWAY_TERMINAL_STATES:
                self.jobs.labels(backend, state)
            for client in clients:
                self.shots.labels(client, backend)
            self.latency.labels(backend)
            self.reruns.labels(backend)
        for reason in names.GATEWAY_AUTH_FAILURE_REASONS:
            self.auth_failures.labels(reason)
        for reason in names.GATEWAY_ADMISSION_REJECTION_REASONS:
            self.rejections.labels(reason)

    def watch_store(self, store: JobStore, backends: Iterable[str]) -> None:
        """Read queue depth and active jobs from the store's live counters at scrape time."""
        self.active.labels("queued").set_function(lambda: store.total_queued)
        self.storage_writable.set_function(lambda: 1.0 if store.writable else 0.0)
        self.registry.register(_StorageFailures(store))
        self.active.labels("running").set_function(lambda: sum(store.running.values()))
        for backend in backends:
            self.queue_depth.labels(backend).set_function(_depth(store, backend))

    def watch_budgets(self, store: JobStore, budgets: dict[str, int]) -> None:
        """Export each budgeted client's budget and what remains of it, read at scrape time."""
        self.registry.register(_ShotBudgets(store, budgets))

    def watch_calibration(self, backend: str, calibration_time: Callable[[], float | None]) -> None:
        """Export the age of a backend's calibration (only for backends that have one)."""

        def age() -> float:
            value = calibration_time()
            return float("nan") if value is None else max(0.0, time.time() - value)

        self.calibration_age.labels(backend).set_function(age)


class _StorageFailures(Collector):
    """The store's count of refused writes, read at scrape time (the store knows no metrics)."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            names.GATEWAY_STORAGE_WRITE_FAILURES_TOTAL.removesuffix("_total"),
            "Job-store writes refused for lack of space or an I/O error.",
        )
        family.add_metric([], self.store.storage_failures)
        yield family


class _ShotBudgets(Collector):
    """Each budgeted client's shot budget and remaining shots, from the job store's reservations.

    Remaining may go below zero only if a budget is lowered under what is already used.
    """

    def __init__(self, store: JobStore, budgets: dict[str, int]) -> None:
        self.store = store
        self.budgets = dict(sorted(budgets.items()))

    def collect(self) -> Iterable[Metric]:
        budget = GaugeMetricFamily(names.GATEWAY_SHOT_BUDGET, "Shots each client may use.", labels=["client"])
        remaining = GaugeMetricFamily(
            names.GATEWAY_SHOT_BUDGET_REMAINING,
            "Shots each client has left: its budget less what it used or holds in active jobs.",
            labels=["client"],
        )
        for client, shots in self.budgets.items():
            budget.add_metric([client], shots)
            remaining.add_metric([client], shots - self.store.shots_reserved(client))
        yield budget
        yield remaining


def _depth(store: JobStore, backend: str) -> Callable[[], float]:
    return lambda: store.queued[backend]
