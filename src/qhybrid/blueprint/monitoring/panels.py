"""Panel and dashboard builders shared by the dashboards (grafana-foundation-sdk, Grafana 11.6 schema).

Every panel reads a ``$datasource`` variable of type prometheus.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef, Threshold, ThresholdsMode

from qhybrid.blueprint.monitoring.metric_names import JOB_QPU_GATEWAY

DATASOURCE_VARIABLE = "datasource"
DATASOURCE = DataSourceRef(type_val="prometheus", uid=f"${{{DATASOURCE_VARIABLE}}}")
TAGS = ["qhybrid"]


def thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    """Absolute thresholds; the first step's value is None (Grafana's base colour)."""
    # The first step's value is None: Grafana's base colour (-Infinity).
    return (
        db.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=value, color=color) for value, color in steps])
    )


def targets(queries: list[tuple[str, str]]) -> list[cogbuilder.Builder[cogvariants.Dataquery]]:
    """Prometheus queries (expression, legend) with reference ids A, B, ..."""
    refs = "ABCDEFGH"
    targets: list[cogbuilder.Builder[cogvariants.Dataquery]] = [
        prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(refs[i])
        for i, (expr, legend) in enumerate(queries)
    ]
    return targets


def timeseries_panel(
    ids: Iterator[int],
    title: str,
    description: str,
    queries: list[tuple[str, str]],
    unit: str,
    *,
    width: int = 12,
    thresholds: db.ThresholdsConfig | None = None,
) -> timeseries.Panel:
    """A time series panel of ``queries`` in ``unit``, ``width`` of 24 columns wide."""
    panel = (
        timeseries.Panel()
        .id(next(ids))
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(targets(queries))
        .unit(unit)
        .span(width)
        .height(8)
    )
    return panel.thresholds(thresholds) if thresholds is not None else panel


def stat_panel(
    ids: Iterator[int],
    title: str,
    description: str,
    expr: str,
    unit: str,
    *,
    thresholds: db.ThresholdsConfig | None = None,
) -> stat.Panel:
    """A single-value panel of ``expr``, a quarter of the width."""
    panel = (
        stat.Panel()
        .id(next(ids))
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(targets([(expr, "")]))
        .unit(unit)
        .span(6)
        .height(4)
    )
    return panel.thresholds(thresholds) if thresholds is not None else panel


def gateway_replicas_up(ids: Iterator[int]) -> stat.Panel:
    """The stat both the QPU gateway's dashboard and the on-call view open with: gateway pods up."""
    job = f'job="{JOB_QPU_GATEWAY}"'
    return stat_panel(
        ids,
        "Gateway replicas up",
        "Gateway pods Prometheus scrapes successfully.",
        f"sum(up{{{job}}}) or vector(0)",
        "short",
        thresholds=thresholds((None, "red"), (1, "green")),
    )


def row(ids: Iterator[int], title: str) -> db.Row:
    """A row with the next panel id."""
    return db.Row(title).id(next(ids))


def dashboard(uid: str, title: str, description: str) -> db.Dashboard:
    """A read-only dashboard with our tags, refresh, time range and the data source variable."""
    return (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .readonly()  # provisioned from a ConfigMap: edits in the UI would be lost on restart
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .with_variable(db.DatasourceVariable(DATASOURCE_VARIABLE).label("Data source").type("prometheus"))
    )


def to_dict(dashboard: db.Dashboard) -> dict[str, Any]:
    """The dashboard as the JSON Grafana loads (keys sorted)."""
    return json.loads(json.dumps(dashboard.build(), cls=JSONEncoder, sort_keys=True))
