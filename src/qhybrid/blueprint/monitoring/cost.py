"""Cost recording rules: the stack's price table applied to what the cluster measures.

The same table prices each run's usage in its report (:mod:`qhybrid.cost`); here it
becomes constant series (``qhybrid:cpu_core_hour_price:value`` and so on) that the rules
join with what the cluster measures:

- **per workflow**, CPU: the CPU seconds of each workflow pod's ``main`` container
  (cAdvisor's ``container_cpu_usage_seconds_total``; Argo's ``wait`` and ``init``
  containers are not the run's work), matched to its workflow by the pod's
  ``workflows.argoproj.io/workflow`` label (kube-state-metrics exports it: see
  ``helm_values``). A finished pod's counter stops, so its largest value over the last
  day is its total. Cost = seconds / 3600 * price, as in the report.
- **per workflow**, GPU (stacks with GPUs): GPUs a pod requests times its running time
  (start to completion, or to now), priced per GPU-hour. This bills allocation; the
  report counts time inside the GPU backend, so this figure is the larger.
- **per team** (gateway client), QPU: shots over the last day from the gateway's
  ``qhybrid_gateway_shots_total{client, backend}``, times the backend's price per shot.
"""

from __future__ import annotations

from typing import Any

from qhybrid.blueprint.config import StackConfig
from qhybrid.blueprint.monitoring import metric_names as m

PRICE_CPU = "qhybrid:cpu_core_hour_price:value"
PRICE_GPU = "qhybrid:gpu_hour_price:value"
PRICE_QPU_SHOT = "backend:qhybrid_qpu_shot_price:value"
POD_WORKFLOW = "pod:qhybrid_workflow:info"
WORKFLOW_POD_CPU_SECONDS = "workflow_pod:qhybrid_cpu_seconds:total"
WORKFLOW_POD_GPU_SECONDS = "workflow_pod:qhybrid_gpu_seconds:total"
WORKFLOW_CPU_COST = "workflow:qhybrid_cpu_cost:max1d"
WORKFLOW_GPU_COST = "workflow:qhybrid_gpu_cost:max1d"
WORKFLOW_COST = "workflow:qhybrid_cost:max1d"
CLIENT_QPU_COST = "client:qhybrid_qpu_cost:increase1d"

ARGO_WORKFLOW_POD_LABEL = "workflows.argoproj.io/workflow"  # Argo puts it on every pod of a workflow
WORKFLOW_LABEL = "label_workflows_argoproj_io_workflow"  # kube-state-metrics' name for it
MAIN_CONTAINER = "main"  # Argo runs a step's command in the container named main
CADVISOR_CPU = "container_cpu_usage_seconds_total"
KSM_POD_START = "kube_pod_start_time"
KSM_POD_COMPLETION = "kube_pod_completion_time"
KSM_POD_LABELS = "kube_pod_labels"


def _number(value: float) -> str:
    return repr(float(value))  # exact: the rules and the report must multiply by the same number


def price_rules(config: StackConfig) -> list[dict[str, Any]]:
    """The price table as constant series, one per price (QPU shots by backend; GPU-hours with GPUs)."""
    prices = config.prices
    currency = {"currency": prices.currency}
    rules = [
        {"record": PRICE_CPU, "expr": f"vector({_number(prices.cpu_core_hour)})", "labels": dict(currency)}
    ]
    if config.gpu_resource is not None:  # a stack without GPUs has no GPU cost rules to read it
        rules.append(
            {"record": PRICE_GPU, "expr": f"vector({_number(prices.gpu_hour)})", "labels": dict(currency)}
        )
    for backend, price in prices.qpu_shot.items():
        rules.append(
            {
                "record": PRICE_QPU_SHOT,
                "expr": f"vector({_number(price)})",
                "labels": {**currency, "backend": backend},
            }
        )
    return rules


def cost_rules(config: StackConfig) -> dict[str, Any]:
    """Return the cost group: prices, per-workflow CPU (and GPU) cost, per-team QPU cost."""
    ns = f'namespace="{config.workflow_namespace}"'
    pod_workflow = (
        f'max by (namespace, pod, workflow) (label_replace({KSM_POD_LABELS}{{{ns}, {WORKFLOW_LABEL}!=""}}, '
        f'"workflow", "$1", "{WORKFLOW_LABEL}", "(.+)"))'
    )
    rules: list[dict[str, Any]] = [
        *price_rules(config),
        {"record": POD_WORKFLOW, "expr": pod_workflow},
        {
            "record": WORKFLOW_POD_CPU_SECONDS,
            "expr": (
                f'sum by (namespace, pod, workflow) ({CADVISOR_CPU}{{{ns}, container="{MAIN_CONTAINER}"}} '
                f"* on (namespace, pod) group_left (workflow) {POD_WORKFLOW})"
            ),
        },
        {
            "record": WORKFLOW_CPU_COST,
            "expr": (
                f"sum by (workflow) (max_over_time({WORKFLOW_POD_CPU_SECONDS}[1d])) / 3600 "
                f"* scalar({PRICE_CPU})"
            ),
        },
    ]
    total = f"sum by (workflow) ({WORKFLOW_CPU_COST})"
    if config.gpu_resource is not None:
        resource = config.gpu_resource.replace(".", "_").replace("/", "_")  # kube-state-metrics' form
        started = f"max by (namespace, pod) ({KSM_POD_START}{{{ns}}})"
        ended = f"(max by (namespace, pod) ({KSM_POD_COMPLETION}{{{ns}}}) or (0 * {started} + time()))"
        rules += [
            {
                "record": WORKFLOW_POD_GPU_SECONDS,
                "expr": (
                    f'sum by (namespace, pod, workflow) ({m.KSM_POD_REQUESTS}{{{ns}, resource="{resource}"}} '
                    f"* on (namespace, pod) group_left (workflow) {POD_WORKFLOW}) "
                    f"* on (namespace, pod) group_left () ({ended} - {started})"
                ),
            },
            {
                "record": WORKFLOW_GPU_COST,
                "expr": (
                    f"sum by (workflow) (max_over_time({WORKFLOW_POD_GPU_SECONDS}[1d])) / 3600 "
                    f"* scalar({PRICE_GPU})"
                ),
            },
        ]
        # A workflow without GPU pods has no GPU cost series: it counts as 0.
        total = f"{total} + (sum by (workflow) ({WORKFLOW_GPU_COST}) or 0 * {total})"
    rules += [
        {"record": WORKFLOW_COST, "expr": total},
        {
            "record": CLIENT_QPU_COST,
            "expr": (
                f"sum by (client) (increase({m.GATEWAY_SHOTS_TOTAL}[1d]) "
                f"* on (backend) group_left () {PRICE_QPU_SHOT})"
            ),
        },
    ]
    return {"name": "qhybrid.cost", "rules": rules}
