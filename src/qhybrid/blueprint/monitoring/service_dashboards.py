"""The three views of the platform as a service: executive, on-call, debugging.

- **Executive**: is each SLO met, how much error budget is left, how much work ran.
- **On-call**: how fast each budget burns (against the page and ticket factors),
  what is firing, the gateway's health, and where work queues.
- **Debugging**: where time goes (queue admission, QPU latency per backend,
  reconcile errors), the result cache's hit rate, and failovers.

Built with grafana-foundation-sdk like the component dashboards; every query reads a
recording rule of :mod:`.slos` / :mod:`.alerts` or a metric of :mod:`.metric_names`.
"""

from __future__ import annotations

import itertools
from typing import Any

from qhybrid.blueprint.config import StackConfig
from qhybrid.blueprint.monitoring import alerts, cost, slos
from qhybrid.blueprint.monitoring import metric_names as m
from qhybrid.blueprint.monitoring.panels import dashboard as _dashboard
from qhybrid.blueprint.monitoring.panels import gateway_replicas_up
from qhybrid.blueprint.monitoring.panels import row as _row
from qhybrid.blueprint.monitoring.panels import stat_panel as _stat
from qhybrid.blueprint.monitoring.panels import thresholds as _thresholds
from qhybrid.blueprint.monitoring.panels import timeseries_panel as _timeseries
from qhybrid.blueprint.monitoring.panels import to_dict as _to_dict

UIDS = {"executive": "qhybrid-executive", "on-call": "qhybrid-on-call", "debug": "qhybrid-debug"}
_FINISHED = "|".join(m.ARGO_COMPLETED_PHASES)
_CACHE_JOB = f'job="{m.JOB_RESULT_CACHE}"'
_hits = f"sum(rate({m.REDIS_KEYSPACE_HITS_TOTAL}{{{_CACHE_JOB}}}[$__rate_interval]))"
_misses = f"sum(rate({m.REDIS_KEYSPACE_MISSES_TOTAL}{{{_CACHE_JOB}}}[$__rate_interval]))"


def _burn_rate(window: str) -> str:
    """Each SLO's burn rate over ``window``: its error ratio over the budget rate (1 = exactly on budget)."""
    return f"{slos.ERROR_RATIO.format(window=window)} / (1 - {slos.OBJECTIVE})"


# Grafana's currency units; another currency is shown as a plain number.
_CURRENCY_UNITS = {"USD": "currencyUSD", "EUR": "currencyEUR", "GBP": "currencyGBP", "CHF": "currencyCHF"}


def executive_dashboard(config: StackConfig) -> dict[str, Any]:
    """Return the executive view: SLO status and budgets, cost, and work done per day."""
    ids = itertools.count(1)
    board = _dashboard(
        UIDS["executive"],
        "qhybrid / Service levels",
        "Is each service-level objective met over its 30-day window, and how much work ran.",
    )
    board.with_row(_row(ids, "Error budget left (30 days)"))
    for slo in slos.SLOS:
        board.with_panel(
            _stat(
                ids,
                slo.name,
                f"Share of the 30-day error budget left (1 = untouched, below 0 = overspent). Good "
                f"means {slo.sli}; objective {slo.objective:.1%}.",
                f'{slos.BUDGET_REMAINING}{{slo="{slo.name}"}}',
                "percentunit",
                thresholds=_thresholds((None, "red"), (0, "orange"), (0.25, "green")),
            )
        )
    board.with_row(_row(ids, "Objectives"))
    board.with_panel(
        _timeseries(
            ids,
            "Good share over 30 days, by SLO",
            "1 minus each SLO's error ratio over its 30-day window; its objective is drawn as a "
            "dashed series of the same name.",
            [
                (f"1 - {slos.ERROR_RATIO.format(window='30d')}", "{{slo}}"),
                (slos.OBJECTIVE, "{{slo}} objective"),
            ],
            "percentunit",
            width=24,
        )
    )
    currency = config.prices.currency
    unit = _CURRENCY_UNITS.get(currency, "short")
    board.with_row(_row(ids, f"Cost, last 24 hours ({currency}, the stack's price table)"))
    board.with_panel(
        _stat(
            ids,
            "Workflows: CPU and GPU",
            "CPU time of workflow pods priced per core-hour, plus GPUs allocated priced per GPU-hour, "
            "for workflows that ran in the last 24 hours.",
            f"sum({cost.WORKFLOW_COST}) or vector(0)",
            unit,
        )
    )
    board.with_panel(
        _stat(
            ids,
            "QPU shots",
            "Shots on each QPU backend in the last 24 hours, priced per shot.",
            f"sum({cost.CLIENT_QPU_COST}) or vector(0)",
            unit,
        )
    )
    board.with_panel(
        _timeseries(
            ids,
            "QPU cost per team",
            "The last 24 hours' QPU shots of each gateway client (team), priced per shot.",
            [(cost.CLIENT_QPU_COST, "{{client}}")],
            unit,
        )
    )
    board.with_panel(
        _timeseries(
            ids,
            "Most expensive workflows",
            "The ten workflows of the last 24 hours with the highest CPU and GPU cost. Each run's "
            "own estimate is in its report (provenance.cost).",
            [(f"topk(10, {cost.WORKFLOW_COST})", "{{workflow}}")],
            unit,
        )
    )
    board.with_row(_row(ids, "Work per day"))
    board.with_panel(
        _timeseries(
            ids,
            "Workflows finished per day",
            "Argo workflows reaching a final phase in the previous 24 hours, by phase.",
            [
                (
                    f'sum by (phase) (increase({m.ARGO_WORKFLOWS_TOTAL}{{phase=~"{_FINISHED}"}}[1d]))',
                    "{{phase}}",
                )
            ],
            "short",
            width=8,
        )
    )
    board.with_panel(
        _timeseries(
            ids,
            "QuantumJobs finished per day",
            "QuantumJobs reaching a final phase in the previous 24 hours, by phase.",
            [
                (
                    f"sum by (phase) (increase({m.QUANTUMJOB_TIME_TO_RESULT_SECONDS}_count[1d]))",
                    "{{phase}}",
                )
            ],
            "short",
            width=8,
        )
    )
    board.with_panel(
        _timeseries(
            ids,
            "QPU shots per day, by client",
            "Shots executed on QPU backends in the previous 24 hours, by gateway client (team).",
            [(f"sum by (client) (increase({m.GATEWAY_SHOTS_TOTAL}[1d]))", "{{client}}")],
            "short",
            width=8,
        )
    )
    return _to_dict(board)


def on_call_dashboard() -> dict[str, Any]:
    """Return the on-call view: burn rates, firing alerts, gateway health, queue depth."""
    ids = itertools.count(1)
    burns = slos.BurnWindows()
    board = _dashboard(
        UIDS["on-call"],
        "qhybrid / On call",
        "What burns, what fires, and where work waits. Every alert links its runbook.",
    )
    board.with_row(_row(ids, "Burn rates"))
    for burn in (burns.fast, burns.slow):
        board.with_panel(
            _timeseries(
                ids,
                f"Burn rate, {burn.long} and {burn.short} ({burn.speed.lower()}: "
                f"{'pages' if burn.severity == 'critical' else 'tickets'} above {burn.factor:g}x)",
                "Each SLO's error ratio over its budget rate: 1 spends the budget exactly over 30 days. "
                f"The alert needs both windows above {burn.factor:g}.",
                [
                    (_burn_rate(burn.long), f"{{{{slo}}}} {burn.long}"),
                    (_burn_rate(burn.short), "{{slo}} " + burn.short),
                ],
                "short",
                thresholds=_thresholds((None, "green"), (burn.factor, "red")),
            )
        )
    board.with_row(_row(ids, "Alerts"))
    board.with_panel(
        _timeseries(
            ids,
            "Firing alerts",
            "qhybrid's alerts now firing, by name and severity (critical pages, warning tickets).",
            [
                (
                    'sum by (alertname, severity) (ALERTS{alertstate="firing", alertname=~"Qhybrid.*"})',
                    "{{alertname}} ({{severity}})",
                )
            ],
            "short",
            width=24,
        )
    )
    board.with_row(_row(ids, "QPU gateway"))
    board.with_panel(gateway_replicas_up(ids))
    board.with_panel(
        _timeseries(
            ids,
            "Gateway answers by status",
            "API requests per second by HTTP status (probes and /metrics aside): 5xx burn the "
            "availability SLO.",
            [
                (
                    f"sum by (status) (rate({m.GATEWAY_REQUEST_DURATION_SECONDS}_count"
                    '{route!~"/healthz|/readyz|/metrics"}[$__rate_interval]))',
                    "{{status}}",
                )
            ],
            "reqps",
            width=18,
        )
    )
    board.with_row(_row(ids, "Queues"))
    board.with_panel(
        _timeseries(
            ids,
            "Jobs queued at the gateway, by backend",
            "Jobs waiting for a provider slot.",
            [(f"sum by (backend) ({m.GATEWAY_QUEUE_DEPTH})", "{{backend}}")],
            "short",
        )
    )
    board.with_panel(
        _timeseries(
            ids,
            "Pending workloads by ClusterQueue",
            "Kueue workloads waiting for admission, by ClusterQueue and status (inadmissible: "
            "no flavor fits).",
            [
                (
                    f"sum by (cluster_queue, status) ({m.KUEUE_PENDING_WORKLOADS})",
                    "{{cluster_queue}} {{status}}",
                )
            ],
            "short",
        )
    )
    return _to_dict(board)


def debug_dashboard() -> dict[str, Any]:
    """Return the debugging view: admission waits, QPU latency, reconciles, cache, failovers."""
    ids = itertools.count(1)
    board = _dashboard(
        UIDS["debug"],
        "qhybrid / Debugging",
        "Where a slow or failing run spends its time. A run's own timings, failover reasons "
        "and cache hits are in its report.json (`qhybrid job get NAME`).",
    )
    board.with_row(_row(ids, "Time per stage"))
    steps = f'{{__name__=~"(argo_workflows_)?{m.WORKFLOW_STEP_DURATION_SECONDS}_bucket"}}'
    board.with_panel(
        _timeseries(
            ids,
            "Workflow step duration p95, by step",
            "How long each step of the cutting workflows takes (p95), from the custom metric every "
            "step template declares; a run's own per-step timings are in its report.",
            [(f"histogram_quantile(0.95, sum by (step, le) (rate({steps}[$__rate_interval])))", "{{step}}")],
            "s",
            width=24,
        )
    )
    board.with_panel(
        _timeseries(
            ids,
            "Admission wait p95, by ClusterQueue",
            "How long workflow steps wait for Kueue to admit them (p95 over 15 minutes).",
            [(alerts.ADMISSION_WAIT_P95, "{{cluster_queue}}")],
            "s",
        )
    )
    board.with_panel(
        _timeseries(
            ids,
            "QPU job latency p95, by backend",
            "Submission to result at the gateway (p95 over 5 minutes), per QPU backend.",
            [(alerts.GATEWAY_LATENCY_P95, "{{backend}}")],
            "s",
        )
    )
    board.with_panel(
        _timeseries(
            ids,
            "QuantumJob time to result p95, by final phase",
            "From a QuantumJob's creation to its final phase.",
            [
                (
                    "histogram_quantile(0.95, sum by (phase, le) "
                    f"(rate({m.QUANTUMJOB_TIME_TO_RESULT_SECONDS}_bucket[$__rate_interval])))",
                    "{{phase}}",
                )
            ],
            "s",
        )
    )
    board.with_panel(
        _timeseries(
            ids,
            "Operator reconcile errors, by reason",
            "Reconciles that failed and were retried with backoff.",
            [
                (
                    f"sum by (reason) (rate({m.QUANTUMJOB_RECONCILE_ERRORS_TOTAL}[$__rate_interval]))",
                    "{{reason}}",
                )
            ],
            "ops",
        )
    )
    board.with_row(_row(ids, "Cache and failovers"))
    board.with_panel(
        _timeseries(
            ids,
            "Shared result cache hit ratio",
            "Keyspace hits over lookups on the shared cache (redis_exporter). Each run's hits by kind "
            "(exact, canonical, relabelled) are in its report.json.",
            [(f"{_hits} / ({_hits} + {_misses})", "hit ratio")],
            "percentunit",
        )
    )
    board.with_panel(
        _timeseries(
            ids,
            "Failovers, by namespace",
            "Subexperiments of succeeded QuantumJobs that ran on another backend than planned, per "
            "hour (each run's report names the reason of each).",
            [
                (
                    f"sum by (namespace) (increase({m.QUANTUMJOB_FAILOVERS_TOTAL}[1h]))",
                    "{{namespace}}",
                )
            ],
            "short",
        )
    )
    return _to_dict(board)


def service_dashboards(config: StackConfig) -> list[dict[str, Any]]:
    """Return the three service views, in a fixed order."""
    return [executive_dashboard(config), on_call_dashboard(), debug_dashboard()]
