"""Grafana dashboards as data, built with grafana-foundation-sdk (Grafana 11.6 schema).

Four dashboards, each with a fixed ``uid`` so links and bookmarks survive a
redeploy: workflows (throughput, success rate, task states), queues (depth and
admission wait per ClusterQueue), compute (CPU and GPU use per node pool) and the
QPU gateway (up, jobs, latency, shots, auth failures, calibration age). Every
panel reads a ``$datasource`` variable of type prometheus, so the dashboards work
with whatever the Prometheus data source is called. ``monitoring`` ships each one
as a ConfigMap that Grafana's dashboard sidecar loads.
"""

from __future__ import annotations

import itertools
from typing import Any

from grafana_foundation_sdk.builders import text

from qhybrid.blueprint.config import StackConfig
from qhybrid.blueprint.monitoring import alerts, service_dashboards
from qhybrid.blueprint.monitoring import metric_names as m
from qhybrid.blueprint.monitoring.job_panels import quantumjob_panels, result_cache_panels
from qhybrid.blueprint.monitoring.panels import dashboard as _dashboard
from qhybrid.blueprint.monitoring.panels import gateway_replicas_up
from qhybrid.blueprint.monitoring.panels import row as _row
from qhybrid.blueprint.monitoring.panels import stat_panel as _stat
from qhybrid.blueprint.monitoring.panels import thresholds as _thresholds
from qhybrid.blueprint.monitoring.panels import timeseries_panel as _timeseries
from qhybrid.blueprint.monitoring.panels import to_dict as _to_dict
from qhybrid.blueprint.monitoring.slos import WORKFLOW_SUCCESS

POOL_LABEL = "label_qhybrid_io_pool"  # kube-state-metrics' name for node label qhybrid.io/pool

UIDS = {
    "workflows": "qhybrid-workflows",
    "queues": "qhybrid-queues",
    "compute": "qhybrid-compute",
    "qpu": "qhybrid-qpu-gateway",
    **service_dashboards.UIDS,  # the executive, on-call and debugging views
}


def workflows_dashboard(config: StackConfig) -> dict[str, Any]:
    """Return the workflows dashboard: throughput, success rate, workflows and tasks by state."""
    ids = itertools.count(1)
    ns = config.workflow_namespace
    finished = "|".join(m.ARGO_COMPLETED_PHASES)
    board = _dashboard(UIDS["workflows"], "qhybrid / Workflows", f"Argo workflows in namespace {ns}.")
    board.with_row(_row(ids, "Throughput"))
    board.with_panel(
        _timeseries(
            ids,
            "Workflows finished per hour",
            "Workflows reaching a final phase, by phase (Argo's argo_workflows_total_count).",
            [
                (
                    f'sum by (phase) (rate({m.ARGO_WORKFLOWS_TOTAL}{{namespace="{ns}", phase=~"{finished}"}}'
                    "[$__rate_interval])) * 3600",
                    "{{phase}}",
                )
            ],
            "short",
        )
    )
    board.with_panel(
        _timeseries(
            ids,
            "Success rate (last hour)",
            f"Succeeded / finished workflows over the last hour; the workflow-success SLO's objective "
            f"is {WORKFLOW_SUCCESS.objective:.0%} over 30 days (its burn-rate alerts page and ticket).",
            [(f'{alerts.WORKFLOW_SUCCESS_RATIO_1H}{{namespace="{ns}"}}', "success rate")],
            "percentunit",
            thresholds=_thresholds((None, "red"), (WORKFLOW_SUCCESS.objective, "green")),
        )
    )
    board.with_row(_row(ids, "Workflows and tasks now"))
    board.with_panel(
        _timeseries(
            ids,
            "Workflows by phase",
            "Workflows the controller holds, by phase (Running may still wait for pods).",
            [(f"sum by (status) ({m.ARGO_WORKFLOWS_GAUGE})", "{{status}}")],
            "short",
        )
    )
    board.with_panel(
        _timeseries(
            ids,
            "Tasks by state",
            "Workflow pods (one per step: a subexperiment, a reconstruction) by phase.",
            [
                (
                    f'sum by (phase) ({m.ARGO_PODS_GAUGE}{{phase=~"{"|".join(m.ARGO_TASK_PHASES)}"}})',
                    "{{phase}}",
                )
            ],
            "short",
        )
    )
    for phase, label in zip(m.ARGO_TASK_PHASES, ("pending", "active", "succeeded", "failed"), strict=True):
        board.with_panel(
            _stat(
                ids,
                f"Tasks {label}",
                f"Workflow pods in phase {phase} now.",
                f'sum({m.ARGO_PODS_GAUGE}{{phase="{phase}"}}) or vector(0)',
                "short",
            )
        )
    quantumjob_panels(board, ids)
    if config.cache_enabled:
        result_cache_panels(board, ids)
    return _to_dict(board)


def queues_dashboard() -> dict[str, Any]:
    """Return the queues dashboard: depth, admitted work and admission wait per ClusterQueue."""
    ids = itertools.count(1)
    board = _dashboard(UIDS["queues"], "qhybrid / Queues", "Kueue ClusterQueues: one per resource class.")
    board.with_panel(
        _timeseries(
            ids,
            "Queue depth",
            "Pending workloads per ClusterQueue: active (waiting for quota) and inadmissible.",
            [
                (
                    f"sum by (cluster_queue, status) ({m.KUEUE_PENDING_WORKLOADS})",
                    "{{cluster_queue}} {{status}}",
                )
            ],
            "short",
        )
    )
    board.with_panel(
        _timeseries(
            ids,
            "Admitted workloads running",
            "Admitted workloads that are active (not finished) per ClusterQueue.",
            [(f"sum by (cluster_queue) ({m.KUEUE_ADMITTED_ACTIVE_WORKLOADS})", "{{cluster_queue}}")],
            "short",
        )
    )
    board.with_panel(
        _timeseries(
            ids,
            "Admission wait",
            "Time from a workload's creation (or requeue) to its admission, per ClusterQueue.",
            [
                (alerts.ADMISSION_WAIT_P95, "{{cluster_queue}} p95"),
                (
                    "histogram_quantile(0.5, sum by (cluster_queue, le) "
                    f"(rate({m.KUEUE_ADMISSION_WAIT_SECONDS}_bucket[$__rate_interval])))",
                    "{{cluster_queue}} p50",
                ),
            ],
            "s",
            thresholds=_thresholds((None, "green"), (alerts.ADMISSION_WAIT_P95_SECONDS, "red")),
        )
    )
    board.with_panel(
        _timeseries(
            ids,
            "Admissions per minute",
            "Workloads admitted per minute, per ClusterQueue.",
            [
                (
                    "sum by (cluster_queue) "
                    f"(rate({m.KUEUE_ADMITTED_WORKLOADS_TOTAL}[$__rate_interval])) * 60",
                    "{{cluster_queue}}",
                )
            ],
            "short",
        )
    )
    board.with_panel(
        _stat(
            ids,
            "Inactive ClusterQueues",
            "ClusterQueues in status pending (a flavor or admission check is missing, or stopped).",
            f'count({m.KUEUE_CLUSTER_QUEUE_STATUS}{{status="pending"}} == 1) or vector(0)',
            "short",
            thresholds=_thresholds((None, "green"), (1, "red")),
        )
    )
    return _to_dict(board)


def _by_pool(expr: str) -> str:
    # Attach each node's pool (kube-state-metrics exports node label qhybrid.io/pool, see
    # monitoring.helm_values) and sum per pool.
    return f"sum by ({POOL_LABEL}) ({expr} * on (node) group_left ({POOL_LABEL}) {m.KSM_NODE_LABELS})"


def compute_dashboard(config: StackConfig) -> dict[str, Any]:
    """Return the compute dashboard: CPU use and requests per pool, GPU allocation (when GPUs exist)."""
    ids = itertools.count(1)
    board = _dashboard(UIDS["compute"], "qhybrid / Compute", "CPU and GPU utilisation per node pool.")
    cpu_allocatable = _by_pool(f'{m.KSM_NODE_ALLOCATABLE}{{resource="cpu"}}')
    cpu_requested = _by_pool(f'{m.KSM_POD_REQUESTS}{{resource="cpu"}}')
    board.with_panel(
        _timeseries(
            ids,
            "CPU utilisation by pool",
            "CPU used by containers / allocatable CPU, per node pool.",
            [(f"{_by_pool(m.NODE_CPU_USAGE_RULE)} / {cpu_allocatable}", "{{" + POOL_LABEL + "}}")],
            "percentunit",
        )
    )
    board.with_panel(
        _timeseries(
            ids,
            "CPU requested by pool",
            "CPU requested by pods / allocatable CPU, per node pool (what Kueue quota hands out).",
            [(f"{cpu_requested} / {cpu_allocatable}", "{{" + POOL_LABEL + "}}")],
            "percentunit",
        )
    )
    if config.gpu_resource is None:
        board.with_panel(
            text.Panel()
            .id(next(ids))
            .title("GPU utilisation")
            .content(
                f"This stack's GPU pool has no accelerators (gpuVendor={config.gpu_vendor}): its workers "
                "simulate on CPU, shown under the gpu pool above."
            )
            .span(24)
            .height(4)
        )
    else:
        # kube-state-metrics writes extended resources with '.' and '/' turned into '_'.
        resource = config.gpu_resource.replace(".", "_").replace("/", "_")
        queries = [
            (
                f'sum({m.KSM_POD_REQUESTS}{{resource="{resource}"}}) / '
                f'sum({m.KSM_NODE_ALLOCATABLE}{{resource="{resource}"}})',
                "GPUs allocated",
            )
        ]
        if config.gpu_vendor == "nvidia":
            # Device utilisation needs NVIDIA's DCGM exporter, which the blueprint does not install.
            queries.append(("avg(DCGM_FI_DEV_GPU_UTIL) / 100", "device utilisation (DCGM exporter)"))
        board.with_panel(
            _timeseries(
                ids,
                "GPU utilisation",
                f"{config.gpu_resource} requested by pods / allocatable, and device utilisation when "
                "the DCGM exporter runs.",
                queries,
                "percentunit",
                width=24,
            )
        )
    return _to_dict(board)


def qpu_dashboard() -> dict[str, Any]:
    """Return the QPU gateway dashboard: health, jobs, latency, shots, auth failures, calibration age."""
    ids = itertools.count(1)
    board = _dashboard(
        UIDS["qpu"], "qhybrid / QPU gateway", "The gateway between workflows and QPU providers."
    )
    board.with_panel(gateway_replicas_up(ids))
    board.with_panel(
        _stat(
            ids,
            "Shots used (time range)",
            "Shots executed on QPU backends during the dashboard's time range.",
            f"sum(increase({m.GATEWAY_SHOTS_TOTAL}[$__range])) or vector(0)",
            "short",
        )
    )
    board.with_panel(
        _stat(
            ids,
            "Jobs queued at the gateway",
            "Jobs waiting for a provider slot: the gateway's queue depth.",
            f'sum({m.GATEWAY_JOBS_ACTIVE}{{state="queued"}}) or vector(0)',
            "short",
        )
    )
    board.with_panel(
        _stat(
            ids,
            "Provider credential rejections (15m)",
            "Provider calls refused for the gateway's credentials; the page fires at "
            f"{alerts.PROVIDER_AUTH_FAILURES_15M}.",
            f"sum(increase({m.GATEWAY_PROVIDER_AUTH_FAILURES_TOTAL}[15m])) or vector(0)",
            "short",
            thresholds=_thresholds((None, "green"), (alerts.PROVIDER_AUTH_FAILURES_15M, "red")),
        )
    )
    board.with_panel(
        _timeseries(
            ids,
            "QPU job latency",
            "Seconds from submission to result, per backend.",
            [
                (alerts.GATEWAY_LATENCY_P95, "{{backend}} p95"),
                (
                    "histogram_quantile(0.5, sum by (backend, le) "
                    f"(rate({m.GATEWAY_JOB_LATENCY_SECONDS}_bucket[$__rate_interval])))",
                    "{{backend}} p50",
                ),
            ],
            "s",
        )
    )
    board.with_panel(
        _timeseries(
            ids,
            "Jobs",
            "Jobs held by the gateway (queued, running) and jobs finished per minute by backend and state.",
            [
                (f"sum by (state) ({m.GATEWAY_JOBS_ACTIVE})", "{{state}}"),
                (
                    f"sum by (backend, state) (rate({m.GATEWAY_JOBS_TOTAL}[$__rate_interval])) * 60",
                    "{{backend}} {{state}} /min",
                ),
            ],
            "short",
        )
    )
    board.with_panel(
        _timeseries(
            ids,
            "Shots per minute",
            "Shots executed per minute, by client (workflow service account) and backend.",
            [
                (
                    f"sum by (client, backend) (rate({m.GATEWAY_SHOTS_TOTAL}[$__rate_interval])) * 60",
                    "{{client}} on {{backend}}",
                )
            ],
            "short",
        )
    )
    board.with_panel(
        _timeseries(
            ids,
            "Queue depth by backend",
            "Jobs waiting at the gateway for a provider slot, per backend.",
            [(f"sum by (backend) ({m.GATEWAY_QUEUE_DEPTH})", "{{backend}}")],
            "short",
        )
    )
    board.with_panel(
        _timeseries(
            ids,
            "Submissions refused at admission",
            "Job submissions the gateway refused per second, by reason (queue full, shot budget, ...).",
            [
                (
                    f"sum by (reason) (rate({m.GATEWAY_ADMISSION_REJECTIONS_TOTAL}[$__rate_interval]))",
                    "{{reason}}",
                )
            ],
            "reqps",
        )
    )
    board.with_panel(
        _timeseries(
            ids,
            "Refused client requests",
            "Client requests the gateway refused, per second, by reason.",
            [(f"sum by (reason) (rate({m.GATEWAY_AUTH_FAILURES_TOTAL}[$__rate_interval]))", "{{reason}}")],
            "reqps",
            thresholds=_thresholds((None, "green"), (alerts.CLIENT_AUTH_FAILURES_PER_SECOND, "red")),
        )
    )
    board.with_panel(
        _timeseries(
            ids,
            "Calibration age",
            "Time since each backend's last calibration; the alert fires past "
            f"{alerts.CALIBRATION_MAX_AGE_SECONDS // 3600}h.",
            [(f"max by (backend) ({m.GATEWAY_CALIBRATION_AGE_SECONDS})", "{{backend}}")],
            "s",
            width=24,
            thresholds=_thresholds((None, "green"), (alerts.CALIBRATION_MAX_AGE_SECONDS, "red")),
        )
    )
    return _to_dict(board)


def dashboards(config: StackConfig) -> list[dict[str, Any]]:
    """Return every dashboard as Grafana JSON (a dict), in a fixed order."""
    components = [workflows_dashboard(config), queues_dashboard(), compute_dashboard(config), qpu_dashboard()]
    return [*components, *service_dashboards.service_dashboards(config)]
