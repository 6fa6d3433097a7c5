"""Rows of the workflows dashboard for what runs around the workflows: QuantumJobs and the result cache."""

from __future__ import annotations

from collections.abc import Iterator

from grafana_foundation_sdk.builders import dashboard as db

from qhybrid.blueprint.monitoring import metric_names as m
from qhybrid.blueprint.monitoring.panels import row, stat_panel, timeseries_panel


def quantumjob_panels(board: db.Dashboard, ids: Iterator[int]) -> None:
    """QuantumJobs (from the operator): jobs by phase, time to result, reconcile errors."""
    job = f'job="{m.JOB_QUANTUMJOB_OPERATOR}"'
    board.with_row(row(ids, "QuantumJobs"))
    board.with_panel(
        timeseries_panel(
            ids,
            "QuantumJobs by phase",
            "QuantumJobs the operator knows, by phase (kubectl get quantumjobs shows each one).",
            [(f"sum by (phase) ({m.QUANTUMJOBS}{{{job}}})", "{{phase}}")],
            "short",
            width=8,
        )
    )
    buckets = (
        f'sum by (le) (rate({m.QUANTUMJOB_TIME_TO_RESULT_SECONDS}_bucket{{{job}, phase="Succeeded"}}[1h]))'
    )
    board.with_panel(
        timeseries_panel(
            ids,
            "Time to result",
            "Seconds from a QuantumJob's creation to Succeeded (median and p95 over the last hour).",
            [
                (f"histogram_quantile(0.5, {buckets})", "p50"),
                (f"histogram_quantile(0.95, {buckets})", "p95"),
            ],
            "s",
            width=8,
        )
    )
    board.with_panel(
        stat_panel(
            ids,
            "Reconcile errors (last hour)",
            "Operator reconciles that failed and were retried with backoff (API errors, conflicts).",
            f"sum(increase({m.QUANTUMJOB_RECONCILE_ERRORS_TOTAL}{{{job}}}[1h])) or vector(0)",
            "short",
        )
    )


def result_cache_panels(board: db.Dashboard, ids: Iterator[int]) -> None:
    """The shared result cache (Valkey, through redis_exporter): hit ratio, memory, evictions."""
    job = f'job="{m.JOB_RESULT_CACHE}"'
    hits = f"sum(rate({m.REDIS_KEYSPACE_HITS_TOTAL}{{{job}}}[$__rate_interval]))"
    misses = f"sum(rate({m.REDIS_KEYSPACE_MISSES_TOTAL}{{{job}}}[$__rate_interval]))"
    board.with_row(row(ids, "Result cache"))
    board.with_panel(
        timeseries_panel(
            ids,
            "Cache hit ratio",
            "Lookups the shared result cache answered / all lookups (plans, references and results). "
            "Per-run hits by kind (exact, canonical, relabelled) are in each report.json.",
            [(f"{hits} / ({hits} + {misses})", "hit ratio")],
            "percentunit",
            width=8,
        )
    )
    board.with_panel(
        timeseries_panel(
            ids,
            "Cache memory",
            "Memory used against the maxmemory bound (cacheMaxMemoryMib); past it, LRU eviction.",
            [
                (f"sum({m.REDIS_MEMORY_USED_BYTES}{{{job}}})", "used"),
                (f"sum({m.REDIS_MEMORY_MAX_BYTES}{{{job}}})", "bound"),
            ],
            "bytes",
            width=8,
        )
    )
    board.with_panel(
        timeseries_panel(
            ids,
            "Cache evictions and availability",
            "Entries evicted per second (LRU), and whether the exporter reaches the server (1 = up).",
            [
                (f"sum(rate({m.REDIS_EVICTED_KEYS_TOTAL}{{{job}}}[$__rate_interval]))", "evicted/s"),
                (f"min({m.REDIS_UP}{{{job}}})", "up"),
            ],
            "short",
            width=8,
        )
    )
