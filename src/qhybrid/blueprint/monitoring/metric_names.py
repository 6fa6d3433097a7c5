"""Metric names the monitoring reads: the QPU gateway's contract, and what Argo and Kueue export.

The QPU gateway (a later part) MUST export the metrics in ``GATEWAY_METRICS`` on
its ``http`` port at ``/metrics``, with exactly these names, types and labels:

``qhybrid_gateway_jobs_total{backend, state}`` (counter)
    Jobs that reached a terminal state; ``state`` is one of ``GATEWAY_TERMINAL_STATES``.
``qhybrid_gateway_jobs_active{state}`` (gauge)
    Jobs the gateway holds now; ``state`` is ``queued`` (waiting for a provider
    slot: the gateway's queue depth) or ``running`` (submitted to the provider).
``qhybrid_gateway_job_latency_seconds{backend}`` (histogram)
    Time from a job's submission to the gateway until its result is back.
``qhybrid_gateway_shots_total{client, backend}`` (counter)
    Shots executed on hardware; ``client`` is the calling workflow's service account.
``qhybrid_gateway_auth_failures_total{reason}`` (counter)
    Requests from clients that the gateway refused; ``reason`` is one of ``GATEWAY_AUTH_FAILURE_REASONS``.
``qhybrid_gateway_provider_auth_failures_total`` (counter)
    Calls the QPU provider rejected because the gateway's own credentials were refused.
``qhybrid_gateway_backend_calibration_age_seconds{backend}`` (gauge)
    Seconds since the backend's last calibration, as reported by the provider.

Counters must exist from process start: unlabelled ones at 0, labelled ones at 0
for every known label value (states, reasons, configured backends). Alerts use
``increase()``, which needs two samples, so a counter born at 1 would hide the
first failure. Names follow Prometheus conventions: ``qhybrid_`` namespace, base
units (seconds), counters end in ``_total`` and nothing else does.

Argo Workflows 3.6 (chart ``argo-workflows`` 0.45) exports its controller metrics
through OpenTelemetry's Prometheus exporter with the ``argo_workflows_`` prefix
and no extra ``_total`` suffix; Kueue exports ``kueue_*`` from controller-runtime.
The names below are the ones the rules and dashboards query.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Scrape job names: the ServiceMonitors/PodMonitors set ``job`` to these, so the
# target-down alerts select a fixed name rather than a chart-generated Service name.
JOB_ARGO_CONTROLLER = "argo-workflows-controller"
JOB_KUEUE_CONTROLLER = "kueue-controller"
JOB_QPU_GATEWAY = "qpu-gateway"
JOB_RESULT_CACHE = "result-cache"
JOB_QUANTUMJOB_OPERATOR = "quantumjob-operator"
JOB_OBJECT_STORE = "object-store"
JOB_TRACKING = "mlflow"

# --- QPU gateway (the contract) ---
# The result cache's server, from redis_exporter (the names its v1.6x releases export).
REDIS_KEYSPACE_HITS_TOTAL = "redis_keyspace_hits_total"
REDIS_KEYSPACE_MISSES_TOTAL = "redis_keyspace_misses_total"
REDIS_MEMORY_USED_BYTES = "redis_memory_used_bytes"
REDIS_MEMORY_MAX_BYTES = "redis_memory_max_bytes"
REDIS_EVICTED_KEYS_TOTAL = "redis_evicted_keys_total"
REDIS_UP = "redis_up"
# What a run's own processes count (prometheus_client, qhybrid.cache.session), by store.
CACHE_LOOKUPS_TOTAL = "qhybrid_cache_lookups_total"
CACHE_BYTES_TOTAL = "qhybrid_cache_bytes_total"
CACHE_ERRORS_TOTAL = "qhybrid_cache_errors_total"
# The QuantumJob operator (qhybrid.operator.kube): jobs it knows by namespace and phase,
# reconciles that failed by reason, and seconds from a job's creation to its final phase.
QUANTUMJOBS = "qhybrid_quantumjobs"
QUANTUMJOB_RECONCILE_ERRORS_TOTAL = "qhybrid_quantumjob_reconcile_errors_total"
QUANTUMJOB_TIME_TO_RESULT_SECONDS = "qhybrid_quantumjob_time_to_result_seconds"

GATEWAY_JOBS_TOTAL = "qhybrid_gateway_jobs_total"
GATEWAY_JOBS_ACTIVE = "qhybrid_gateway_jobs_active"
GATEWAY_JOB_LATENCY_SECONDS = "qhybrid_gateway_job_latency_seconds"
GATEWAY_SHOTS_TOTAL = "qhybrid_gateway_shots_total"
GATEWAY_AUTH_FAILURES_TOTAL = "qhybrid_gateway_auth_failures_total"
GATEWAY_PROVIDER_AUTH_FAILURES_TOTAL = "qhybrid_gateway_provider_auth_failures_total"
GATEWAY_CALIBRATION_AGE_SECONDS = "qhybrid_gateway_backend_calibration_age_seconds"

GATEWAY_TERMINAL_STATES = ("succeeded", "failed", "cancelled")
GATEWAY_ACTIVE_STATES = ("queued", "running")
GATEWAY_AUTH_FAILURE_REASONS = ("missing_token", "invalid_token", "forbidden")

# --- Argo Workflows controller (3.6) ---
ARGO_WORKFLOWS_TOTAL = "argo_workflows_total_count"  # counter {phase, namespace}: workflows entering a phase
ARGO_WORKFLOWS_GAUGE = "argo_workflows_gauge"  # gauge {status}: workflows in each phase now
ARGO_PODS_GAUGE = "argo_workflows_pods_gauge"  # gauge {phase}: workflow pods (tasks) in each phase now
ARGO_COMPLETED_PHASES = ("Succeeded", "Failed", "Error")
ARGO_TASK_PHASES = ("Pending", "Running", "Succeeded", "Failed")

# A custom metric every workflow step template declares (qhybrid.workflow.build): histogram
# {step, queue, status}. Argo's Prometheus exporter may prefix custom metrics with
# argo_workflows_, so queries match either name.
WORKFLOW_STEP_DURATION_SECONDS = "qhybrid_step_duration_seconds"

# --- Kueue (0.13) ---
KUEUE_PENDING_WORKLOADS = "kueue_pending_workloads"  # gauge {cluster_queue, status=active|inadmissible}
KUEUE_ADMITTED_ACTIVE_WORKLOADS = "kueue_admitted_active_workloads"  # gauge {cluster_queue}
KUEUE_ADMITTED_WORKLOADS_TOTAL = "kueue_admitted_workloads_total"  # counter {cluster_queue}
KUEUE_ADMISSION_WAIT_SECONDS = "kueue_admission_wait_time_seconds"  # histogram {cluster_queue}
KUEUE_CLUSTER_QUEUE_STATUS = "kueue_cluster_queue_status"  # gauge {cluster_queue, status}: 1 for the current

# --- kube-state-metrics, cAdvisor (via kube-prometheus-stack's recording rules) ---
KSM_NODE_LABELS = "kube_node_labels"
KSM_NODE_ALLOCATABLE = "kube_node_status_allocatable"
KSM_POD_REQUESTS = "kube_pod_container_resource_requests"
NODE_CPU_USAGE_RULE = "node_namespace_pod_container:container_cpu_usage_seconds_total:sum_irate"


@dataclass(frozen=True)
class Metric:
    """One metric of the gateway's contract."""

    name: str
    type: str  # counter | gauge | histogram
    labels: tuple[str, ...]
    help: str


GATEWAY_METRICS: tuple[Metric, ...] = (
    Metric(GATEWAY_JOBS_TOTAL, "counter", ("backend", "state"), "Jobs that reached a terminal state."),
    Metric(GATEWAY_JOBS_ACTIVE, "gauge", ("state",), "Jobs queued at or running through the gateway."),
    Metric(GATEWAY_JOB_LATENCY_SECONDS, "histogram", ("backend",), "Seconds from job submission to result."),
    Metric(GATEWAY_SHOTS_TOTAL, "counter", ("client", "backend"), "Shots executed on QPU backends."),
    Metric(GATEWAY_AUTH_FAILURES_TOTAL, "counter", ("reason",), "Client requests refused by the gateway."),
    Metric(
        GATEWAY_PROVIDER_AUTH_FAILURES_TOTAL, "counter", (), "Provider calls rejected for bad credentials."
    ),
    Metric(
        GATEWAY_CALIBRATION_AGE_SECONDS, "gauge", ("backend",), "Seconds since the backend's calibration."
    ),
)

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_UNITS = ("_seconds", "_bytes", "_ratio")


def naming_problems(metric: Metric) -> list[str]:
    """Return how ``metric`` breaks Prometheus naming conventions (empty when it follows them)."""
    problems = []
    if not _NAME.match(metric.name) or ":" in metric.name:
        problems.append(f"{metric.name}: not a valid metric name (colons are for recording rules)")
    if not metric.name.startswith("qhybrid_"):
        problems.append(f"{metric.name}: missing the qhybrid_ namespace prefix")
    if metric.type not in ("counter", "gauge", "histogram"):
        problems.append(f"{metric.name}: unknown type {metric.type!r}")
    if (metric.type == "counter") != metric.name.endswith("_total"):
        problems.append(f"{metric.name}: only counters end in _total, and every counter does")
    if metric.type == "histogram" and not metric.name.endswith(_UNITS):
        problems.append(f"{metric.name}: a histogram names its base unit, e.g. _seconds")
    for label in metric.labels:
        if not _LABEL.match(label) or label.startswith("__") or label in ("le", "quantile"):
            problems.append(f"{metric.name}: label {label!r} is invalid or reserved")
    return problems


# --- QPU gateway: further metrics it exports (beyond the contract above; appended by the gateway) ---
GATEWAY_QUEUE_DEPTH = "qhybrid_gateway_queue_depth"  # gauge {backend}: queued jobs per backend
GATEWAY_ADMISSION_REJECTIONS_TOTAL = "qhybrid_gateway_admission_rejections_total"  # counter {reason}
GATEWAY_ADMISSION_REJECTION_REASONS = (
    "queue_full",
    "shot_budget",
    "too_large",
    "malformed",
    "key_conflict",
    "storage_full",
    "overloaded",
)
# histogram {route, method, status}: from the request's entry into the ASGI app to its answer
GATEWAY_REQUEST_DURATION_SECONDS = "qhybrid_gateway_request_duration_seconds"
# histogram: how late the event loop ran a 10 ms timer (the wait before a request's timer starts)
GATEWAY_EVENT_LOOP_LAG_SECONDS = "qhybrid_gateway_event_loop_lag_seconds"
# gauge: 1 while the job store can write, 0 after a write failed for lack of space (until one succeeds)
GATEWAY_STORAGE_WRITABLE = "qhybrid_gateway_storage_writable"
# counter: job-store writes refused for lack of space or an I/O error
GATEWAY_STORAGE_WRITE_FAILURES_TOTAL = "qhybrid_gateway_storage_write_failures_total"
# counter {backend}: jobs that were running when the gateway died and ran again after restart
GATEWAY_JOB_RERUNS_TOTAL = "qhybrid_gateway_job_reruns_total"
# counter: provider credentials reloaded from their files
GATEWAY_CREDENTIAL_RELOADS_TOTAL = "qhybrid_gateway_credential_reloads_total"
# counter {result}: calls to the Kubernetes TokenReview API that checked a worker's
# service-account token; result is one of GATEWAY_TOKEN_REVIEW_RESULTS (error: the API
# could not answer, and the request got 503 + Retry-After).
GATEWAY_TOKEN_REVIEWS_TOTAL = "qhybrid_gateway_token_reviews_total"
GATEWAY_TOKEN_REVIEW_RESULTS = ("authenticated", "rejected", "error")
# gauges {client}: each budgeted client's shot budget, and the shots it has used or holds
# in active jobs (read from the job store at scrape time; clients without a budget have none)
GATEWAY_SHOT_BUDGET = "qhybrid_gateway_shot_budget_shots"
GATEWAY_SHOT_BUDGET_REMAINING = "qhybrid_gateway_shot_budget_remaining_shots"
# The QuantumJob operator, from each job that succeeded: its subexperiments, and those that
# ran on another backend than the one the plan chose (failovers), by namespace.
QUANTUMJOB_SUBEXPERIMENTS_TOTAL = "qhybrid_quantumjob_subexperiments_total"
QUANTUMJOB_FAILOVERS_TOTAL = "qhybrid_quantumjob_failovers_total"
