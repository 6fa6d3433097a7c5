"""The operator's I/O around :func:`qhybrid.operator.reconcile.reconcile`: read, decide, write, count.

:class:`JobApi` names the five API calls the operator makes (read a QuantumJob, read a
Workflow, read a ConfigMap key, create a Workflow, write a status) over
:class:`qhybrid.ops.kubeapi.KubeApi`. :class:`Reconciler` runs one reconcile of one
job: it observes, calls the pure function, creates the Workflow if asked (a 409 means
an earlier operator or a concurrent handler created it: it observes again and
adopts it), writes the status when it changed, logs one JSON line per phase
transition and keeps the Prometheus metrics. API failures propagate, counted, so
the kopf handler retries them with backoff.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from qhybrid.blueprint.config import StackConfig
from qhybrid.blueprint.monitoring import metric_names as names
from qhybrid.blueprint.quantumjob_crd import GROUP, PHASES, PLURAL, VERSION
from qhybrid.errors import QhybridError
from qhybrid.operator.reconcile import Decision, Observed, reconcile, workflow_name
from qhybrid.operator.render import circuit_source
from qhybrid.ops.kubeapi import ApiFailure, KubeApi, resource_path

LOG = logging.getLogger("qhybrid.operator")
WORKFLOWS = ("argoproj.io/v1alpha1", "workflows")
# From seconds (a cached job) to hours (a queued QPU branch).
TIME_TO_RESULT_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200, 86400)
ERROR_REASONS = ("api", "conflict", "unreachable", "internal")
# The *_created series double the scrape for no rule or dashboard that reads them.
disable_created_metrics()


class JobApi:
    """The API calls of the operator, on one API server."""

    def __init__(self, kube: KubeApi) -> None:
        """Use ``kube`` for every call."""
        self.kube = kube

    def _read(self, path: str) -> dict[str, Any] | None:
        try:
            return self.kube.get(path)
        except ApiFailure as failure:
            if failure.status == 404:
                return None
            raise

    def job(self, namespace: str, name: str) -> dict[str, Any] | None:
        """Return the QuantumJob, or None when it is gone."""
        return self._read(resource_path(f"{GROUP}/{VERSION}", PLURAL, namespace, name))

    def workflow(self, namespace: str, name: str) -> dict[str, Any] | None:
        """Return the Workflow, or None when there is none."""
        return self._read(resource_path(*WORKFLOWS, namespace, name))

    def config_map_key(self, namespace: str, name: str, key: str) -> tuple[str | None, str | None]:
        """Return (text, None), or (None, why not) when the ConfigMap or its key is missing."""
        config_map = self._read(resource_path("v1", "configmaps", namespace, name))
        if config_map is None:
            return None, f"ConfigMap {namespace}/{name} not found; the job waits for it"
        data = config_map.get("data") or {}
        if key not in data:
            return None, f"ConfigMap {namespace}/{name} has no key {key!r}; keys: {sorted(data)}"
        return str(data[key]), None

    def create_workflow(self, namespace: str, workflow: dict[str, Any]) -> bool:
        """Create the Workflow; False when one of that name exists already."""
        try:
            self.kube.create(resource_path(*WORKFLOWS, namespace), workflow)
        except ApiFailure as failure:
            if failure.status == 409:
                return False
            raise
        return True

    def write_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Write the job's status through its status subresource."""
        path = resource_path(f"{GROUP}/{VERSION}", PLURAL, namespace, name) + "/status"
        self.kube.merge_patch(path, {"status": status})


class _JobsByPhase(Collector):
    """``qhybrid_quantumjobs{namespace, phase}``: what the operator last saw of each job."""

    def __init__(self, phases: dict[tuple[str, str], str], lock: threading.Lock) -> None:
        self.phases = phases
        self.lock = lock

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            names.QUANTUMJOBS, "QuantumJobs by namespace and phase.", labels=["namespace", "phase"]
        )
        with self.lock:
            counted: dict[tuple[str, str], int] = {}
            for (namespace, _), phase in self.phases.items():
                counted[namespace, phase] = counted.get((namespace, phase), 0) + 1
            namespaces = sorted({namespace for namespace, _ in self.phases})
        for namespace in namespaces:
            for phase in PHASES:
                family.add_metric([namespace, phase], counted.get((namespace, phase), 0))
        yield family


class OperatorMetrics:
    """The operator's metrics, in their own registry (tests run several operators in one process)."""

    def __init__(self) -> None:
        """Create every metric, the labelled counters at 0 for each known reason."""
        self.registry = CollectorRegistry()
        self.phases: dict[tuple[str, str], str] = {}
        self.lock = threading.Lock()
        self.registry.register(_JobsByPhase(self.phases, self.lock))
        self.errors = Counter(
            names.QUANTUMJOB_RECONCILE_ERRORS_TOTAL.removesuffix("_total"),
            "Reconciles that failed (retried with backoff), by reason.",
            ["reason"],
            registry=self.registry,
        )
        for reason in ERROR_REASONS:
            self.errors.labels(reason)
        self.time_to_result = Histogram(
            names.QUANTUMJOB_TIME_TO_RESULT_SECONDS,
            "Seconds from a QuantumJob's creation to its final phase, by that phase.",
            ["phase"],
            buckets=TIME_TO_RESULT_BUCKETS,
            registry=self.registry,
        )
        # The intended-backend SLI: every subexperiment of a succeeded job, and those that
        # failed over to another backend. Counted once, on the job's transition to Succeeded.
        self.subexperiments = Counter(
            names.QUANTUMJOB_SUBEXPERIMENTS_TOTAL.removesuffix("_total"),
            "Subexperiments of QuantumJobs that succeeded.",
            ["namespace"],
            registry=self.registry,
        )
        self.failovers = Counter(
            names.QUANTUMJOB_FAILOVERS_TOTAL.removesuffix("_total"),
            "Subexperiments of succeeded QuantumJobs that ran on another backend than planned.",
            ["namespace"],
            registry=self.registry,
        )

    def succeeded(self, namespace: str, counts: dict[str, Any]) -> None:
        """Count a succeeded job's subexperiments and failovers."""
        self.subexperiments.labels(namespace).inc(int(counts.get("subexperiments") or 0))
        self.failovers.labels(namespace).inc(int(counts.get("failedOver") or 0))

    def seen(self, namespace: str, name: str, phase: str | None) -> None:
        """Record a job's phase (None: the job is gone)."""
        if phase is not None:
            # At 0 from the first job seen in a namespace: increase() needs a sample before the first count.
            self.subexperiments.labels(namespace)
            self.failovers.labels(namespace)
        with self.lock:
            if phase is None:
                self.phases.pop((namespace, name), None)
            else:
                self.phases[namespace, name] = phase


def _error_reason(error: Exception) -> str:
    if isinstance(error, ApiFailure):
        return "conflict" if error.status == 409 else "api"
    if isinstance(error, QhybridError):
        return "unreachable"
    return "internal"


class Reconciler:
    """Reconciles jobs one at a time each (a lock per job: kopf may call in from several handlers)."""

    def __init__(
        self,
        api: JobApi,
        config: StackConfig,
        metrics: OperatorMetrics | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Reconcile against ``api`` with the stack's ``config``."""
        self.api = api
        self.config = config
        self.metrics = metrics or OperatorMetrics()
        self.clock = clock
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def _lock(self, namespace: str, name: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault((namespace, name), threading.Lock())

    def observe(self, job: dict[str, Any]) -> Observed:
        """Read what one reconcile of ``job`` needs: its Workflow and, before start, its ConfigMap."""
        namespace = job["metadata"]["namespace"]
        workflow = self.api.workflow(namespace, workflow_name(job))
        text = problem = None
        source = circuit_source(job.get("spec") or {})
        started = bool((job.get("status") or {}).get("workflowName"))
        if source is not None and source[0] == "configmap" and workflow is None and not started:
            ref = job["spec"]["circuit"]["configMapKeyRef"]
            text, problem = self.api.config_map_key(namespace, ref["name"], ref["key"])
        return Observed(job, workflow, text, problem)

    def reconcile(self, namespace: str, name: str) -> Decision | None:
        """Bring one job one step closer to its Workflow's state; None when the job is gone."""
        try:
            with self._lock(namespace, name):
                return self._reconcile(namespace, name)
        except Exception as error:
            self.metrics.errors.labels(_error_reason(error)).inc()
            raise

    def _reconcile(self, namespace: str, name: str) -> Decision | None:
        for _ in range(2):
            job = self.api.job(namespace, name)
            if job is None:
                self.forget(namespace, name)
                return None
            now = self.clock()
            stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            decision = reconcile(self.observe(job), self.config, now=stamp, now_epoch=now)
            if decision.workflow is None or self.api.create_workflow(namespace, decision.workflow):
                break
            # Created since we looked (a previous operator, a concurrent handler): adopt it.
        else:
            raise QhybridError(f"{namespace}/{name}: its Workflow keeps appearing and vanishing")
        if decision.status != (job.get("status") or {}):
            self.api.write_status(namespace, name, decision.status)
        self.metrics.seen(namespace, name, decision.status.get("phase"))
        if decision.transition is not None:
            transition = decision.transition
            LOG.info(
                json.dumps(
                    {
                        "event": "transition",
                        "job": f"{namespace}/{name}",
                        "from": transition.old,
                        "to": transition.new,
                        "reason": transition.reason,
                        "message": transition.message,
                        "workflow": decision.status.get("workflowName"),
                        "generation": job["metadata"].get("generation"),
                    },
                    sort_keys=True,
                )
            )
            if decision.time_to_result is not None:
                self.metrics.time_to_result.labels(transition.new).observe(decision.time_to_result)
            if transition.new == "Succeeded":
                self.metrics.succeeded(namespace, decision.status.get("counts") or {})
        return decision

    def forget(self, namespace: str, name: str) -> None:
        """Drop a deleted job from the metrics (its Workflow goes with it: ownerReference)."""
        self.metrics.seen(namespace, name, None)
        with self._locks_lock:
            self._locks.pop((namespace, name), None)
