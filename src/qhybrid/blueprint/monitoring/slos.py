"""Service-level objectives as data, and the recording rules and burn-rate alerts made from them.

Each :class:`Slo` names its good-or-bad event stream as two PromQL rates (bad events
and all events, over a ``{window}``) and an objective over the SLO window (30 days).
From them, :func:`slo_rule_groups` generates, as in the Google SRE workbook's
"multiwindow, multi-burn-rate alerts":

- ``slo:sli_error:ratio_rate<w>{slo}``: the share of bad events over each window the
  alerts read, and over the SLO window;
- ``slo:objective:ratio{slo}`` and ``slo:error_budget:remaining_ratio{slo}`` (1 is a
  whole budget left, 0 none, below 0 overspent), for the dashboards;
- per SLO, a fast-burn alert that pages (the error ratio above 14.4 times the budget
  rate over both 1h and 5m: 2% of a 30-day budget gone in an hour) and a slow-burn
  alert that makes a ticket (6 times over 6h and 30m: 5% in six hours). The short
  window makes an alert resolve minutes after the burn stops, not an hour.

:class:`BurnWindows` holds those windows, so the live Prometheus test can render the
same rules on a compressed clock (seconds for hours) and watch an alert fire and clear.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.utils import floatToGoString

from qhybrid.blueprint.monitoring import metric_names as m

# Thresholds of the latency SLOs: each must be a bucket boundary of its histogram, so that
# the share of events under it is read exactly from one bucket (the tests check this).
SUBMIT_LATENCY_THRESHOLD_SECONDS = 0.5
QPU_TIME_TO_RESULT_THRESHOLD_SECONDS = 300

ERROR_RATIO = "slo:sli_error:ratio_rate{window}"
OBJECTIVE = "slo:objective:ratio"
BUDGET_REMAINING = "slo:error_budget:remaining_ratio"

_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
_WINDOW = re.compile(r"^[0-9]+[smhdw]$")
_PROBES = "/healthz|/readyz|/metrics"


@dataclass(frozen=True, kw_only=True)
class Slo:
    """One objective: bad events over all events, in PromQL, must stay under 1 - ``objective``.

    ``bad`` and ``total`` are rates of events with ``{window}`` where the range goes (a
    placeholder replaced as text: PromQL's own braces stay as they are); each is summed
    into one series. ``alert_prefix`` names the SLO's two alerts
    (``<prefix>FastBurn``, ``<prefix>SlowBurn``).
    """

    name: str
    alert_prefix: str
    component: str
    objective: float
    sli: str  # what a good event is, in words (the alerts and runbooks quote it)
    bad: str
    total: str

    def __post_init__(self) -> None:
        """Refuse a malformed SLO, naming the field."""
        if not _NAME.match(self.name):
            raise ValueError(f"slo.name: {self.name!r} is not lower-case kebab")
        if not 0.0 < self.objective < 1.0:
            raise ValueError(f"slo {self.name}: objective {self.objective} is not between 0 and 1")
        for field_name in ("bad", "total"):
            if "{window}" not in getattr(self, field_name):
                raise ValueError(f"slo {self.name}: {field_name} has no {{window}} to range over")

    @property
    def budget(self) -> float:
        """The error budget: the share of events that may be bad."""
        return 1.0 - self.objective


@dataclass(frozen=True, kw_only=True)
class BurnAlert:
    """One burn speed: both windows' error ratios above ``factor`` times the budget rate."""

    speed: str  # "Fast" or "Slow": the alert name's suffix is f"{speed}Burn"
    long: str
    short: str
    factor: float
    for_: str
    severity: str

    def __post_init__(self) -> None:
        """Refuse a window Prometheus would not parse."""
        for window in (self.long, self.short):
            if not _WINDOW.match(window):
                raise ValueError(f"burn alert {self.speed}: window {window!r} is not a Prometheus duration")


@dataclass(frozen=True)
class BurnWindows:
    """The SLO window and the two burn-rate alerts; the default is the SRE workbook's."""

    slo_window: str = "30d"
    fast: BurnAlert = field(
        default_factory=lambda: BurnAlert(
            speed="Fast", long="1h", short="5m", factor=14.4, for_="2m", severity="critical"
        )
    )
    slow: BurnAlert = field(
        default_factory=lambda: BurnAlert(
            speed="Slow", long="6h", short="30m", factor=6.0, for_="15m", severity="warning"
        )
    )

    def windows(self) -> list[str]:
        """Every window an error ratio is recorded over, each once."""
        found = [self.fast.short, self.fast.long, self.slow.short, self.slow.long, self.slo_window]
        return list(dict.fromkeys(found))


def _histogram_over(metric: str, selector: str, threshold: float) -> tuple[str, str]:
    """Bad (slower than ``threshold``) and total event rates of a histogram's observations."""
    # The bound as prometheus_client writes it in ``le`` (300 -> "300.0"): a label matches as text.
    le = f'le="{floatToGoString(threshold)}"'
    total = f"sum(rate({metric}_count{{{selector}}}[{{window}}]))"
    under = f"sum(rate({metric}_bucket{{{selector}{',' if selector else ''}{le}}}[{{window}}]))"
    return f"({total} - {under})", total


_SUBMIT = 'route="/v1/jobs",method="POST"'
_SUBMIT_BAD, _SUBMIT_TOTAL = _histogram_over(
    m.GATEWAY_REQUEST_DURATION_SECONDS, _SUBMIT, SUBMIT_LATENCY_THRESHOLD_SECONDS
)
_QPU_BAD, _QPU_TOTAL = _histogram_over(
    m.GATEWAY_JOB_LATENCY_SECONDS, "", QPU_TIME_TO_RESULT_THRESHOLD_SECONDS
)
_FINISHED = "|".join(m.ARGO_COMPLETED_PHASES)

SLOS: tuple[Slo, ...] = (
    Slo(
        name="workflow-success",
        alert_prefix="QhybridWorkflowSuccess",
        component="workflows",
        objective=0.95,
        sli="an Argo workflow that finished did so Succeeded (not Failed or Error)",
        bad=f'sum(rate({m.ARGO_WORKFLOWS_TOTAL}{{phase=~"Failed|Error"}}[{{window}}]))',
        total=f'sum(rate({m.ARGO_WORKFLOWS_TOTAL}{{phase=~"{_FINISHED}"}}[{{window}}]))',
    ),
    Slo(
        name="quantumjob-success",
        alert_prefix="QhybridQuantumJobSuccess",
        component="workflows",
        objective=0.95,
        sli="a QuantumJob that reached a final phase is Succeeded",
        bad=f'sum(rate({m.QUANTUMJOB_TIME_TO_RESULT_SECONDS}_count{{phase="Failed"}}[{{window}}]))',
        total=f"sum(rate({m.QUANTUMJOB_TIME_TO_RESULT_SECONDS}_count[{{window}}]))",
    ),
    Slo(
        name="gateway-availability",
        alert_prefix="QhybridQpuGatewayAvailability",
        component="qpu-gateway",
        objective=0.999,
        sli="a request to the QPU gateway's API (probes and /metrics aside) is not answered 5xx",
        bad=(
            f'sum(rate({m.GATEWAY_REQUEST_DURATION_SECONDS}_count{{route!~"{_PROBES}",status=~"5.."}}'
            "[{window}]))"
        ),
        total=f'sum(rate({m.GATEWAY_REQUEST_DURATION_SECONDS}_count{{route!~"{_PROBES}"}}[{{window}}]))',
    ),
    Slo(
        name="gateway-submit-latency",
        alert_prefix="QhybridQpuGatewaySubmitLatency",
        component="qpu-gateway",
        objective=0.99,
        sli=f"a job submission (POST /v1/jobs) is answered within {SUBMIT_LATENCY_THRESHOLD_SECONDS:g} s",
        bad=_SUBMIT_BAD,
        total=_SUBMIT_TOTAL,
    ),
    Slo(
        name="qpu-time-to-result",
        alert_prefix="QhybridQpuTimeToResult",
        component="qpu-gateway",
        objective=0.95,
        sli=(
            "a QPU job's result is back within "
            f"{QPU_TIME_TO_RESULT_THRESHOLD_SECONDS // 60} minutes of its submission to the gateway"
        ),
        bad=_QPU_BAD,
        total=_QPU_TOTAL,
    ),
    Slo(
        name="intended-backend",
        alert_prefix="QhybridIntendedBackend",
        component="workflows",
        objective=0.99,
        sli="a subexperiment of a succeeded QuantumJob ran on the backend its plan chose (no failover)",
        bad=f"sum(rate({m.QUANTUMJOB_FAILOVERS_TOTAL}[{{window}}]))",
        total=f"sum(rate({m.QUANTUMJOB_SUBEXPERIMENTS_TOTAL}[{{window}}]))",
    ),
)


def slo_named(name: str) -> Slo:
    """Return the SLO called ``name``."""
    for slo in SLOS:
        if slo.name == name:
            return slo
    raise KeyError(name)


WORKFLOW_SUCCESS = slo_named("workflow-success")


def _number(value: float) -> str:
    # Twelve significant digits: 14.4 * 0.001 prints as 0.0144, not 0.014400000000000012.
    return f"{value:.12g}"


def error_ratio(slo: Slo, window: str) -> str:
    """PromQL for the share of bad events over ``window``: no bad events is 0, no events at all is none."""
    bad, total = (rate.replace("{window}", window) for rate in (slo.bad, slo.total))
    return f"({bad} or vector(0)) / {total}"


def recording_rules(windows: BurnWindows) -> dict[str, Any]:
    """Return the SLO recording group: error ratios per window, objectives, budget remaining."""
    rules: list[dict[str, Any]] = []
    for slo in SLOS:
        labels = {"slo": slo.name, "component": slo.component}
        for window in windows.windows():
            rules.append(
                {
                    "record": ERROR_RATIO.format(window=window),
                    "expr": error_ratio(slo, window),
                    "labels": dict(labels),
                }
            )
        rules.append(
            {"record": OBJECTIVE, "expr": f"vector({_number(slo.objective)})", "labels": dict(labels)}
        )
        rules.append(
            {
                "record": BUDGET_REMAINING,
                "expr": (
                    f'1 - {ERROR_RATIO.format(window=windows.slo_window)}{{slo="{slo.name}"}}'
                    f" / {_number(slo.budget)}"
                ),
                "labels": dict(labels),
            }
        )
    return {"name": "qhybrid.slo.recording", "rules": rules}


def burn_alert(slo: Slo, burn: BurnAlert, slo_window: str, runbook_url: str) -> dict[str, Any]:
    """Return one SLO's alert for one burn speed."""
    threshold = _number(burn.factor * slo.budget)
    name = f"{slo.alert_prefix}{burn.speed}Burn"
    series = [f'{ERROR_RATIO.format(window=w)}{{slo="{slo.name}"}}' for w in (burn.long, burn.short)]
    consequence = "This pages" if burn.severity == "critical" else "This opens a ticket"
    lasts = f"{slo_window}/{burn.factor:g}"
    if slo_window.endswith("d"):
        lasts = f"about {int(slo_window[:-1]) / burn.factor:.1f} days"
    return {
        "alert": name,
        "expr": f"{series[0]} > {threshold} and {series[1]} > {threshold}",
        "for": burn.for_,
        "labels": {"severity": burn.severity, "component": slo.component, "slo": slo.name},
        "annotations": {
            "summary": (
                f"SLO {slo.name}: error budget burning {burn.factor:g}x too fast ({burn.speed.lower()})"
            ),
            "description": (
                f"Over both the last {burn.long} and {burn.short}, more than {threshold} of events were "
                f"bad (now {{{{ $value | humanizePercentage }}}} over {burn.long}); the objective is that "
                f"{_number(slo.objective * 100)}% are good, where good means {slo.sli}. {consequence}: at "
                f"this rate the error budget of {slo_window} is gone in {lasts}."
            ),
            "runbook_url": runbook_url,
        },
    }


def slo_rule_groups(windows: BurnWindows, runbook_url: Any) -> list[dict[str, Any]]:
    """Return the SLO recording group and the burn-rate alert group.

    ``runbook_url(alert_name)`` gives each alert's runbook link.
    """
    alerts = [
        burn_alert(slo, burn, windows.slo_window, runbook_url(f"{slo.alert_prefix}{burn.speed}Burn"))
        for slo in SLOS
        for burn in (windows.fast, windows.slow)
    ]
    return [recording_rules(windows), {"name": "qhybrid.slo.alerts", "rules": alerts}]
