"""A short locust run against a loopback gateway: overload is answered with 429, nothing else fails."""

from __future__ import annotations

import pytest

from tests.load.run_load import run

pytestmark = pytest.mark.load


def test_spike_overload_gets_429_not_errors_or_timeouts(tmp_path):
    # Capacity 20 jobs/s (one job at a time, 50 ms each) and room for 20 queued jobs;
    # the spike offers several times that, so admission must refuse some.
    summary = run(
        tmp_path,
        shape="spike",
        duration=10,
        users=30,
        rate=5,
        max_queued=20,
        seconds_per_job=0.05,
    )
    assert summary["unexpected_failures"] == 0, summary["failures_by_kind"]
    assert summary["overload_429"] > 0
    assert summary["submitted_ok"] > 50
    for name, endpoint in summary["endpoints"].items():
        assert endpoint["failures"] == 0, name
    rejections = [line for line in summary["gateway_metrics"] if 'reason="queue_full"' in line]
    assert rejections and float(rejections[0].split()[-1]) == summary["overload_429"]
    assert (tmp_path / "summary.json").is_file() and (tmp_path / "load.png").stat().st_size > 10_000
