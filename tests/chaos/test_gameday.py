"""``qhybrid gameday``: every local experiment, end to end (marker chaos), and its report."""

from __future__ import annotations

import json

import pytest

from qhybrid.ops.gameday import local_experiments, passed, run_gameday, summary_table
from tests.conftest import run_cli

EXPECTED = {  # experiment -> (faults it injects, recovery steps it takes)
    "artifact-dir": (2, 4),
    "credential-rotation": (2, 1),
    "gateway-disk-full": (1, 1),
    "gateway-kill": (1, 1),
    "qpu-failover": (2, 1),
    "worker-kill": (1, 1),
}


def test_the_local_experiments_are_chaos_toolkit_files_naming_listed_functions():
    import importlib

    paths = local_experiments()
    assert {p.stem for p in paths} == set(EXPECTED)
    for path in paths:
        experiment = json.loads(path.read_text())
        assert {"title", "description", "steady-state-hypothesis", "method"} <= set(experiment)
        assert experiment["steady-state-hypothesis"]["probes"]
        activities = [
            *experiment["steady-state-hypothesis"]["probes"],
            *experiment["method"],
            *experiment.get("rollbacks", []),
        ]
        for activity in activities:
            provider = activity["provider"]
            assert provider["type"] == "python"
            module = importlib.import_module(provider["module"])
            assert provider["func"] in module.__all__, (path.name, provider["func"])
        for probe in experiment["steady-state-hypothesis"]["probes"]:
            assert probe["tolerance"] is True


def test_gameday_refuses_unknown_experiments_in_one_line(tmp_path):
    unknown = run_cli("gameday", "--only", "nope", "--out", str(tmp_path / "a"))
    assert unknown.returncode == 2
    assert unknown.stderr.splitlines() == [
        "qhybrid: error: --only: unknown experiments ['nope']; have "
        "['artifact-dir', 'credential-rotation', 'gateway-disk-full', 'gateway-kill', "
        "'qpu-failover', 'worker-kill']"
    ]
    assert not (tmp_path / "a").exists()  # nothing written


def test_a_failing_hypothesis_fails_the_gameday(tmp_path, monkeypatch):
    monkeypatch.setenv("QHYBRID_CHAOS_WORKSPACE", "")  # restored afterwards; the game day sets it
    # An experiment whose steady state cannot hold (its baseline run is refused as bad input).
    directory = tmp_path / "experiments"
    directory.mkdir()
    experiment = {
        "title": "broken on purpose",
        "description": "the baseline run has zero shots",
        "configuration": {"workspace": {"type": "env", "key": "QHYBRID_CHAOS_WORKSPACE"}},
        "steady-state-hypothesis": {
            "title": "runs complete",
            "probes": [
                {
                    "type": "probe",
                    "name": "runs-complete",
                    "tolerance": True,
                    "provider": {
                        "type": "python",
                        "module": "qhybrid_chaos.runs",
                        "func": "runs_consistent",
                        "arguments": {
                            "workspace": "${workspace}",
                            "baselines": [{"name": "x", "args": ["--mode", "sampled", "--shots", "0"]}],
                        },
                    },
                }
            ],
        },
        "method": [],
    }
    (directory / "broken.json").write_text(json.dumps(experiment))
    rows = run_gameday(tmp_path / "out", directory=directory)
    assert len(rows) == 1 and not passed(rows[0])
    assert rows[0]["hypothesis_before"] is False and rows[0]["status"] == "failed"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["passed"] is False
    assert "FAIL" in (tmp_path / "out" / "summary.txt").read_text()
    assert (tmp_path / "out" / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_table_totals():
    row = {
        "experiment": "x",
        "status": "completed",
        "deviated": False,
        "activities_failed": [],
        "hypothesis_before": True,
        "hypothesis_after": True,
        "faults_injected": 2,
        "recoveries": 1,
        "results_lost": 0,
        "results_duplicated": 0,
        "seconds": 1.5,
    }
    table = summary_table([row, {**row, "experiment": "y", "results_duplicated": 3}])
    assert passed(row) and not passed({**row, "results_duplicated": 3})
    assert not passed({**row, "activities_failed": ["submits-get-507-and-liveness-holds"]})
    assert table.splitlines()[-1].split() == ["total", "1/2", "pass", "4", "2", "0", "3", "3.0"]


@pytest.mark.chaos
def test_local_gameday_passes_every_hypothesis_and_loses_nothing(tmp_path):
    out = tmp_path / "gameday"
    result = run_cli("gameday", "--out", str(out))
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] is True
    rows = {row["experiment"]: row for row in summary["experiments"]}
    assert set(rows) == set(EXPECTED)
    for name, (faults, recoveries) in EXPECTED.items():
        row = rows[name]
        assert row["status"] == "completed" and row["hypothesis_before"] and row["hypothesis_after"], row
        assert (row["faults_injected"], row["recoveries"]) == (faults, recoveries), name
        assert row["results_lost"] == 0 and row["results_duplicated"] == 0 and row["runs_checked"] >= 2
        journal = json.loads((out / name / "journal.json").read_text())
        assert journal["status"] == "completed" and not journal["deviated"]
    gateway_jobs = rows["gateway-kill"]["gateway_jobs"]
    assert gateway_jobs["jobs"] == gateway_jobs["expected"] > 0 and gateway_jobs["duplicate_keys"] == 0
    assert (out / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "6/6 pass" in (out / "summary.txt").read_text()
