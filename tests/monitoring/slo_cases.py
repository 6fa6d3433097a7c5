"""promtool unit-test cases for the SLO rules, one set per SLO, built from its event streams.

Each SLO's SLI reads different series; ``EVENTS`` says, per SLO, which input series
carry its good and bad events as a function of the events per minute. Every SLO then
gets the same three cases, with expectations worked out here from the objective:

- an outage: 150 minutes in which every event is bad, then healthy again. At 140m both
  the fast-burn (page) and slow-burn (ticket) alerts fire, every window's error ratio
  is 1 (so the value the descriptions quote does not depend on which evaluation the
  alert read), and 90 minutes after the outage both have cleared.
- a steady burn at 3x the budget rate (half the slow-burn threshold) for 8 hours:
  neither alert fires at any point, and the budget remaining is 1 - 3 = -2.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qhybrid.blueprint.monitoring import alerts
from qhybrid.blueprint.monitoring import metric_names as m
from qhybrid.blueprint.monitoring.slos import (
    BUDGET_REMAINING,
    ERROR_RATIO,
    OBJECTIVE,
    QPU_TIME_TO_RESULT_THRESHOLD_SECONDS,
    SLOS,
    SUBMIT_LATENCY_THRESHOLD_SECONDS,
    Slo,
)

PER_MINUTE = 1000  # events per minute in every case
OUTAGE = (0, 150)  # minutes in which every event is bad
END = 480  # minutes of input

Series = list[dict[str, str]]


def counter(series: str, per_minute: Callable[[int], int]) -> dict[str, str]:
    """A counter that grows by ``per_minute(minute)`` each minute, as promtool's expanded values."""
    total, values = 0, ["0"]
    for minute in range(1, END + 1):
        total += per_minute(minute)
        values.append(str(total))
    return {"series": series, "values": " ".join(values)}


def _outcome_series(good: str, bad: str) -> Callable[[Callable[[int], int]], Series]:
    """Events split over a good-outcome counter and a bad-outcome counter."""

    def build(bad_per_minute: Callable[[int], int]) -> Series:
        return [
            counter(good, lambda minute: PER_MINUTE - bad_per_minute(minute)),
            counter(bad, bad_per_minute),
        ]

    return build


def _total_series(total: str, bad: str) -> Callable[[Callable[[int], int]], Series]:
    """All events on one counter, the bad ones also on another (failovers of subexperiments)."""

    def build(bad_per_minute: Callable[[int], int]) -> Series:
        return [counter(total, lambda _minute: PER_MINUTE), counter(bad, bad_per_minute)]

    return build


def _histogram_series(metric: str, labels: str, threshold: str) -> Callable[[Callable[[int], int]], Series]:
    """A histogram's count and its bucket at the threshold: slow (bad) events are not in the bucket."""
    sep = ", " if labels else ""

    def build(bad_per_minute: Callable[[int], int]) -> Series:
        return [
            counter(f"{metric}_count{{{labels}}}", lambda _minute: PER_MINUTE),
            counter(
                f'{metric}_bucket{{{labels}{sep}le="{threshold}"}}',
                lambda minute: PER_MINUTE - bad_per_minute(minute),
            ),
        ]

    return build


_GATEWAY = 'job="qpu-gateway", namespace="qhybrid-qpu"'
_SUBMIT = f'{_GATEWAY}, route="/v1/jobs", method="POST", status="202"'
EVENTS: dict[str, Callable[[Callable[[int], int]], Series]] = {
    "workflow-success": _outcome_series(
        f'{m.ARGO_WORKFLOWS_TOTAL}{{namespace="qhybrid-workflows", phase="Succeeded"}}',
        f'{m.ARGO_WORKFLOWS_TOTAL}{{namespace="qhybrid-workflows", phase="Error"}}',
    ),
    "quantumjob-success": _outcome_series(
        f'{m.QUANTUMJOB_TIME_TO_RESULT_SECONDS}_count{{phase="Succeeded"}}',
        f'{m.QUANTUMJOB_TIME_TO_RESULT_SECONDS}_count{{phase="Failed"}}',
    ),
    "gateway-availability": _outcome_series(
        f"{m.GATEWAY_REQUEST_DURATION_SECONDS}_count{{{_SUBMIT}}}",
        f'{m.GATEWAY_REQUEST_DURATION_SECONDS}_count{{{_GATEWAY}, route="/v1/jobs", method="POST", '
        'status="503"}',
    ),
    "gateway-submit-latency": _histogram_series(
        m.GATEWAY_REQUEST_DURATION_SECONDS, _SUBMIT, f"{SUBMIT_LATENCY_THRESHOLD_SECONDS}"
    ),
    "qpu-time-to-result": _histogram_series(
        m.GATEWAY_JOB_LATENCY_SECONDS,
        f'{_GATEWAY}, backend="ibm"',
        f"{QPU_TIME_TO_RESULT_THRESHOLD_SECONDS:.1f}",
    ),
    "intended-backend": _total_series(
        f'{m.QUANTUMJOB_SUBEXPERIMENTS_TOTAL}{{namespace="qhybrid-workflows"}}',
        f'{m.QUANTUMJOB_FAILOVERS_TOTAL}{{namespace="qhybrid-workflows"}}',
    ),
}


def _rule(name: str) -> dict[str, Any]:
    return next(r for g in alerts.rule_groups() for r in g["rules"] if r.get("alert") == name)


def _firing(name: str) -> list[dict[str, Any]]:
    """What promtool should see for a firing alert: the rule's labels, its annotations rendered."""
    rule = _rule(name)
    annotations = dict(rule["annotations"])
    # The value quoted is the long window's error ratio: every event in it was bad.
    annotations["description"] = annotations["description"].replace(
        "{{ $value | humanizePercentage }}", "100%"
    )
    return [{"exp_labels": dict(rule["labels"]), "exp_annotations": annotations}]


def slo_cases(slo: Slo) -> list[dict[str, Any]]:
    """The outage case and the steady-burn case of one SLO."""
    build = EVENTS[slo.name]
    fast, slow = f"{slo.alert_prefix}FastBurn", f"{slo.alert_prefix}SlowBurn"
    labels = f'{{component="{slo.component}", slo="{slo.name}"}}'
    steady_bad = round(PER_MINUTE * 3 * slo.budget)
    return [
        {
            "name": f"{slo.name}: a 150-minute outage pages and tickets, and both clear after it",
            "interval": "1m",
            "input_series": build(lambda minute: PER_MINUTE if OUTAGE[0] < minute <= OUTAGE[1] else 0),
            "promql_expr_test": [
                {
                    "expr": f'{ERROR_RATIO.format(window=window)}{{slo="{slo.name}"}}',
                    "eval_time": "140m",
                    "exp_samples": [{"labels": ERROR_RATIO.format(window=window) + labels, "value": 1}],
                }
                for window in ("5m", "30m", "1h", "6h", "30d")  # every window recorded: all bad
            ],
            "alert_rule_test": [
                {"eval_time": "140m", "alertname": fast, "exp_alerts": _firing(fast)},
                {"eval_time": "140m", "alertname": slow, "exp_alerts": _firing(slow)},
                {"eval_time": "240m", "alertname": fast, "exp_alerts": []},
                {"eval_time": "240m", "alertname": slow, "exp_alerts": []},
            ],
        },
        {
            "name": f"{slo.name}: a steady burn at 3x the budget rate stays quiet and overspends the budget",
            "interval": "1m",
            "input_series": build(lambda _minute: steady_bad),
            "promql_expr_test": [
                {
                    "expr": f'{OBJECTIVE}{{slo="{slo.name}"}}',
                    "eval_time": "10m",
                    "exp_samples": [{"labels": OBJECTIVE + labels, "value": slo.objective}],
                },
                {
                    # rounded: the ratio of two rates is 0.003 only to within a few ulps
                    "expr": f'round({BUDGET_REMAINING}{{slo="{slo.name}"}}, 0.0001)',
                    "eval_time": f"{END}m",
                    "exp_samples": [{"labels": labels, "value": 1 - 3}],
                },
            ],
            "alert_rule_test": [
                {"eval_time": f"{t}m", "alertname": name, "exp_alerts": []}
                for t in (10, 120, 360, END)
                for name in (fast, slow)
            ],
        },
    ]


def all_slo_cases() -> list[dict[str, Any]]:
    """Every SLO's cases; a new SLO without an entry in EVENTS fails here by name."""
    missing = [slo.name for slo in SLOS if slo.name not in EVENTS]
    assert not missing, f"SLOs without event series for their promtool cases: {missing}"
    return [case for slo in SLOS for case in slo_cases(slo)]
