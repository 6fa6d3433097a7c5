"""Alerting and recording rules as data: what the platform team is paged or ticketed for.

``rule_groups()`` returns plain Prometheus rule groups: ``monitoring.prometheus_rule``
wraps them in a PrometheusRule, and ``tests/monitoring`` writes them to a rules file
for ``promtool check rules`` / ``promtool test rules``. The SLOs' recording rules and
burn-rate alerts come from :mod:`qhybrid.blueprint.monitoring.slos`. Every alert
carries a ``severity`` (``critical`` pages, ``warning`` tickets, ``info`` is for the
dashboards and the team concerned) and a ``component`` label, and ``summary``,
``description`` and ``runbook_url`` annotations: the runbook is
``docs/runbooks/<alert>.md`` in this repository.

Thresholds are module constants so a test, a runbook and the rule quote the same
number. Every alert needs a promtool case that fires it and one that keeps it quiet
(``tests/monitoring/alerts_test.yaml``); a test refuses an alert without them.
"""

from __future__ import annotations

from typing import Any

from qhybrid.blueprint.monitoring import metric_names as m
from qhybrid.blueprint.monitoring.slos import BurnWindows, slo_rule_groups
from qhybrid.blueprint.names import GATEWAY_STATE_CLAIM

# Where docs/runbooks/ of this repository is served; a fork that serves its own sets this.
RUNBOOK_BASE_URL = "https://github.com/qhybrid/qhybrid/blob/main/docs/runbooks"

SEVERITIES = ("critical", "warning", "info")
COMPONENT_LABELS = ("workflows", "queues", "qpu-gateway")

QUEUE_STALL_WINDOW = "30m"  # pending work and not one admission in this long
ADMISSION_WAIT_P95_SECONDS = 900
CLIENT_AUTH_FAILURES_PER_SECOND = 0.1
PROVIDER_AUTH_FAILURES_15M = 3  # one rejection can be a provider blip; three is a bad credential
CALIBRATION_MAX_AGE_SECONDS = 86400
GATEWAY_VOLUME_MIN_FREE_RATIO = 0.10  # the state volume's free share below which a ticket opens
SHOT_BUDGET_WARN_USED_RATIO = 0.8  # a team is told when it has used this share of its shot budget

# Recording rules (level:metric:operations); dashboards read them too.
WORKFLOWS_FINISHED_1H = "namespace_phase:argo_workflows_finished:increase1h"
WORKFLOW_SUCCESS_RATIO_1H = "namespace:argo_workflows_success:ratio1h"
ADMISSION_WAIT_P95 = "cluster_queue:kueue_admission_wait_time_seconds:p95_15m"
GATEWAY_LATENCY_P95 = "backend:qhybrid_gateway_job_latency_seconds:p95_5m"


def _alert(
    name: str,
    expr: str,
    *,
    for_: str,
    severity: str,
    component: str,
    summary: str,
    description: str,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    if severity not in SEVERITIES or component not in COMPONENT_LABELS:
        raise ValueError(f"{name}: unknown severity {severity!r} or component {component!r}")
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity, "component": component, **(labels or {})},
        "annotations": {"summary": summary, "description": description, "runbook_url": runbook_url(name)},
    }


def runbook_url(alert: str) -> str:
    """Return the link to an alert's runbook, ``docs/runbooks/<alert>.md``."""
    return f"{RUNBOOK_BASE_URL}/{alert}.md"


def _target_down(name: str, job: str, component: str, what: str, consequence: str) -> dict[str, Any]:
    # absent(up == 1) fires both when every target is down and when none is discovered at all
    # (a Service or pod renamed away from the monitor's selector), which `up == 0` would miss.
    return _alert(
        name,
        f'absent(up{{job="{job}"}} == 1)',
        for_="5m",
        severity="critical",
        component=component,
        labels={"job": job},
        summary=f"The {what} is down",
        description=(
            f"No target of scrape job {job} (the {what}) has been up for 5 minutes: {consequence} "
            "Check its pods and whether the monitor still selects them."
        ),
    )


def recording_rules() -> dict[str, Any]:
    """Return the recording group: success ratio, admission-wait and QPU-latency quantiles."""
    finished = "|".join(m.ARGO_COMPLETED_PHASES)
    return {
        "name": "qhybrid.recording",
        "rules": [
            {
                "record": WORKFLOWS_FINISHED_1H,
                "expr": (
                    "sum by (namespace, phase) "
                    f'(increase({m.ARGO_WORKFLOWS_TOTAL}{{phase=~"{finished}"}}[1h]))'
                ),
            },
            {
                # `or 0 * ...` gives a namespace with failures but no success yet a ratio of 0, not no
                # series at all (Argo creates a phase's counter on its first workflow in that phase).
                "record": WORKFLOW_SUCCESS_RATIO_1H,
                "expr": (
                    f'(sum by (namespace) ({WORKFLOWS_FINISHED_1H}{{phase="Succeeded"}})'
                    f" or 0 * sum by (namespace) ({WORKFLOWS_FINISHED_1H}))"
                    f" / sum by (namespace) ({WORKFLOWS_FINISHED_1H})"
                ),
            },
            {
                "record": ADMISSION_WAIT_P95,
                "expr": (
                    "histogram_quantile(0.95, sum by (cluster_queue, le) "
                    f"(rate({m.KUEUE_ADMISSION_WAIT_SECONDS}_bucket[15m])))"
                ),
            },
            {
                "record": GATEWAY_LATENCY_P95,
                "expr": (
                    "histogram_quantile(0.95, sum by (backend, le) "
                    f"(rate({m.GATEWAY_JOB_LATENCY_SECONDS}_bucket[5m])))"
                ),
            },
        ],
    }


def workflow_alerts() -> dict[str, Any]:
    """Return the Argo group: the controller's health (success is an SLO: see slos.py)."""
    return {
        "name": "qhybrid.workflows",
        "rules": [
            _target_down(
                "QhybridArgoControllerDown",
                m.JOB_ARGO_CONTROLLER,
                "workflows",
                "Argo workflow controller",
                "no workflow step is scheduled or finished while it is away.",
            ),
        ],
    }


def queue_alerts() -> dict[str, Any]:
    """Return the Kueue group: stalled queues, slow admission, inactive ClusterQueues, controller down."""
    return {
        "name": "qhybrid.queues",
        "rules": [
            _alert(
                "QhybridQueueStalled",
                f'sum by (cluster_queue) ({m.KUEUE_PENDING_WORKLOADS}{{status="active"}}) > 0'
                " unless on (cluster_queue) sum by (cluster_queue) "
                f"(increase({m.KUEUE_ADMITTED_WORKLOADS_TOTAL}[{QUEUE_STALL_WINDOW}])) > 0",
                for_="15m",
                severity="critical",
                component="queues",
                summary="ClusterQueue {{ $labels.cluster_queue }} admits nothing",
                description=(
                    "{{ $value }} workloads are pending in ClusterQueue {{ $labels.cluster_queue }} and none "
                    f"was admitted in the last {QUEUE_STALL_WINDOW}. Check its quota, flavors and "
                    "`kubectl get workloads -A`."
                ),
            ),
            _alert(
                "QhybridAdmissionWaitHigh",
                f"{ADMISSION_WAIT_P95} > {ADMISSION_WAIT_P95_SECONDS}",
                for_="15m",
                severity="warning",
                component="queues",
                summary="Slow admission in ClusterQueue {{ $labels.cluster_queue }}",
                description=(
                    "95% of workloads admitted by ClusterQueue {{ $labels.cluster_queue }} in the last "
                    "15 minutes waited up to {{ $value | humanizeDuration }} "
                    f"(threshold {ADMISSION_WAIT_P95_SECONDS // 60}m). The queue is saturated: "
                    "raise its quota or add nodes to its pool."
                ),
            ),
            _alert(
                "QhybridClusterQueueInactive",
                f'max by (cluster_queue) ({m.KUEUE_CLUSTER_QUEUE_STATUS}{{status="pending"}}) == 1',
                for_="10m",
                severity="warning",
                component="queues",
                summary="ClusterQueue {{ $labels.cluster_queue }} is not active",
                description=(
                    "ClusterQueue {{ $labels.cluster_queue }} has been pending for 10 minutes and admits "
                    "nothing: a ResourceFlavor or AdmissionCheck it names is missing, or it is stopped."
                ),
            ),
            _target_down(
                "QhybridKueueControllerDown",
                m.JOB_KUEUE_CONTROLLER,
                "queues",
                "Kueue controller",
                "no workload is admitted while it is away.",
            ),
        ],
    }


def gateway_alerts() -> dict[str, Any]:
    """Return the QPU gateway group: down, auth failures both ways, stale calibration, a full volume."""
    return {
        "name": "qhybrid.qpu-gateway",
        "rules": [
            _target_down(
                "QhybridQpuGatewayDown",
                m.JOB_QPU_GATEWAY,
                "qpu-gateway",
                "QPU gateway",
                "every QPU-branch subexperiment fails or waits.",
            ),
            _alert(
                "QhybridQpuProviderCredentialsRejected",
                f"sum(increase({m.GATEWAY_PROVIDER_AUTH_FAILURES_TOTAL}[15m]))"
                f" >= {PROVIDER_AUTH_FAILURES_15M}",
                for_="1m",
                severity="critical",
                component="qpu-gateway",
                summary="The QPU provider rejects the gateway's credentials",
                description=(
                    "The QPU provider refused the gateway's credentials at least "
                    f"{PROVIDER_AUTH_FAILURES_15M} times in 15 minutes: the token is expired or revoked. "
                    "Rotate qpuProviderToken "
                    "(`pulumi config set --secret qpuProviderToken ...`) and run `pulumi up`."
                ),
            ),
            _alert(
                "QhybridQpuClientAuthFailures",
                f"sum by (reason) (rate({m.GATEWAY_AUTH_FAILURES_TOTAL}[5m]))"
                f" > {CLIENT_AUTH_FAILURES_PER_SECOND}",
                for_="10m",
                severity="warning",
                component="qpu-gateway",
                summary="The QPU gateway refuses client requests ({{ $labels.reason }})",
                description=(
                    'The gateway refused {{ printf "%.2f" $value }} requests/s for 10 minutes with reason '
                    "{{ $labels.reason }}: a worker runs with a wrong service account or token, or "
                    "something unexpected is calling the gateway."
                ),
            ),
            _alert(
                "QhybridQpuGatewayRefusingWrites",
                f"sum by (namespace, pod) (increase({m.GATEWAY_STORAGE_WRITE_FAILURES_TOTAL}[5m])) > 0",
                for_="1m",
                severity="critical",
                component="qpu-gateway",
                summary="The QPU gateway cannot write its job store ({{ $labels.pod }})",
                description=(
                    "Gateway pod {{ $labels.pod }} had job-store writes refused for lack of space or an I/O "
                    "error in the last 5 minutes: submissions get 507 storage_full and finished results wait "
                    f"in memory. Free or grow the {GATEWAY_STATE_CLAIM} volume; the gateway recovers "
                    "by itself, with no restart."
                ),
            ),
            _alert(
                "QhybridQpuGatewayVolumeFillingUp",
                f'kubelet_volume_stats_available_bytes{{persistentvolumeclaim="{GATEWAY_STATE_CLAIM}"}}'
                f' / kubelet_volume_stats_capacity_bytes{{persistentvolumeclaim="{GATEWAY_STATE_CLAIM}"}}'
                f" < {GATEWAY_VOLUME_MIN_FREE_RATIO}",
                for_="10m",
                severity="warning",
                component="qpu-gateway",
                summary="The QPU gateway's state volume is almost full",
                description=(
                    f"Volume {GATEWAY_STATE_CLAIM} in {{{{ $labels.namespace }}}} has "
                    "{{ $value | humanizePercentage }} free (ticket below "
                    f"{GATEWAY_VOLUME_MIN_FREE_RATIO:.0%}): once it is full, submissions are refused "
                    "with 507. Grow the claim: it holds every job's circuits and results."
                ),
            ),
            _alert(
                "QhybridQpuCalibrationStale",
                f"max by (backend) ({m.GATEWAY_CALIBRATION_AGE_SECONDS}) > {CALIBRATION_MAX_AGE_SECONDS}",
                for_="30m",
                severity="warning",
                component="qpu-gateway",
                summary="QPU backend {{ $labels.backend }} has a stale calibration",
                description=(
                    "Backend {{ $labels.backend }} was last calibrated {{ $value | humanizeDuration }} ago "
                    f"(limit {CALIBRATION_MAX_AGE_SECONDS // 3600}h): results run on it carry an outdated "
                    "noise model. Route QPU work to another backend or wait for recalibration."
                ),
            ),
            *shot_budget_alerts(),
        ],
    }


def shot_budget_alerts() -> list[dict[str, Any]]:
    """Return the two shot-budget alerts: most of a team's budget used, and all of it."""
    used = (
        f"1 - min by (client) ({m.GATEWAY_SHOT_BUDGET_REMAINING}) / max by (client) ({m.GATEWAY_SHOT_BUDGET})"
    )
    share = f"{SHOT_BUDGET_WARN_USED_RATIO:.0%}"
    return [
        _alert(
            "QhybridShotBudgetNearlySpent",
            f"{used} >= {SHOT_BUDGET_WARN_USED_RATIO} < 1",
            for_="5m",
            severity="info",
            component="qpu-gateway",
            summary=f"Client {{{{ $labels.client }}}} has used {share} of its shot budget",
            description=(
                "Client {{ $labels.client }} has used {{ $value | humanizePercentage }} of its QPU shot "
                f"budget (told at {share}). Once it is all used, the gateway refuses its submissions "
                "with 403 shot_budget_exceeded. Raise shot_budget in the gateway's client config, or "
                "let the team plan its remaining runs."
            ),
        ),
        _alert(
            "QhybridShotBudgetSpent",
            f"{used} >= 1",
            for_="1m",
            severity="warning",
            component="qpu-gateway",
            summary="Client {{ $labels.client }} has used all of its shot budget",
            description=(
                "Client {{ $labels.client }} has used {{ $value | humanizePercentage }} of its QPU shot "
                "budget: the gateway refuses its submissions with 403 shot_budget_exceeded, and its "
                "QPU-branch subexperiments fail over or fail. Raise shot_budget in the gateway's client "
                "config, or cancel the client's queued jobs to give their shots back."
            ),
        ),
    ]


def rule_groups(windows: BurnWindows | None = None) -> list[dict[str, Any]]:
    """Return every rule group, recording rules first (alerts read their series).

    ``windows``: the SLOs' burn-rate windows (the SRE workbook's by default; the live
    Prometheus test passes a compressed clock).
    """
    slo_recording, slo_alerts = slo_rule_groups(windows or BurnWindows(), runbook_url)
    return [recording_rules(), slo_recording, workflow_alerts(), queue_alerts(), gateway_alerts(), slo_alerts]


def alert_names() -> list[str]:
    """Return the name of every alert, in rule order."""
    return [rule["alert"] for group in rule_groups() for rule in group["rules"] if "alert" in rule]
