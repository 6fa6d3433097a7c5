"""Run probes and actions: accounting of lost/duplicated results, the steady-state probe, worker kills."""

from __future__ import annotations

import shutil
import signal
import sys
import time

import pytest
from chaoslib.exceptions import ActivityFailed
from qhybrid_chaos import runs
from qhybrid_chaos import workspace as ws

from qhybrid import atomic
from tests.chaos.conftest import SMALL


def test_every_listed_function_exists_and_has_a_docstring():
    import importlib

    for name in ("cleanup", "credentials", "disk", "fake_provider", "gateway", "proxy", "runs", "workspace"):
        module = importlib.import_module(f"qhybrid_chaos.{name}")
        for func in module.__all__:
            assert callable(getattr(module, func)) or isinstance(getattr(module, func), str), (name, func)
            if callable(getattr(module, func)):
                assert getattr(module, func).__doc__, (name, func)


def test_ledger_records_events_in_order(workspace):
    ws.record_event(workspace, "fault", "one", run="x")
    ws.record_event(workspace, "recovery", "two")
    assert [(e["kind"], e["what"]) for e in ws.events(workspace)] == [("fault", "one"), ("recovery", "two")]
    assert ws.events(workspace)[0]["run"] == "x"


def _sleeper_tree(workspace, children=2):
    # A stand-in runner: a process with `children` child processes, as the local runner has workers.
    code = (
        "import subprocess, sys, time\n"
        "sleeper = [sys.executable, '-c', 'import time; time.sleep(60)']\n"
        f"kids = [subprocess.Popen(sleeper) for _ in range({children})]\n"
        "time.sleep(60)\n"
    )
    return ws.spawn([sys.executable, "-c", code], ws.root(workspace) / "tree.log")


def test_children_of_and_kill_worker_target_only_the_runs_own_children(workspace):
    process = _sleeper_tree(workspace)
    deadline = time.monotonic() + 20
    while len(ws.children_of(process.pid)) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    before = ws.children_of(process.pid)
    registry = {"victim": {"pid": process.pid, "dir": str(ws.root(workspace) / "none"), "log": "-"}}
    ws.write_record(workspace, "runs", registry)
    reply = runs.kill_worker(workspace, "victim")
    assert reply["killed"] == before[0] and reply["workers"] == before
    deadline = time.monotonic() + 10
    while reply["killed"] in ws.children_of(process.pid):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert ws.children_of(process.pid) == before[1:]  # the other worker and the runner live on
    assert ws.alive(process.pid)
    assert [e["what"] for e in ws.events(workspace)] == ["kill-worker"]
    for pid in before[1:]:
        ws.kill(pid)
    process.send_signal(signal.SIGKILL)
    assert ws.wait_exit(process.pid, 10) == -signal.SIGKILL
    assert not ws.alive(process.pid)


def test_kill_worker_fails_without_a_worker(workspace):
    process = ws.spawn([sys.executable, "-c", "import time; time.sleep(0.2)"], ws.root(workspace) / "x.log")
    ws.write_record(workspace, "runs", {"lonely": {"pid": process.pid, "dir": "-", "log": "-"}})
    with pytest.raises(ActivityFailed, match="no worker process"):
        runs.kill_worker(workspace, "lonely")


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    workspace = str(tmp_path_factory.mktemp("ws"))
    runs.run_cutting(workspace, "small", [*SMALL, "--batch-size", "4"], reference="small")
    return workspace, ws.read_record(workspace, "runs")["small"]["dir"]


def test_accounting_counts_lost_duplicated_and_partial(small_run, tmp_path):
    _, directory = small_run
    copy = tmp_path / "copy"
    shutil.copytree(directory, copy)
    assert runs.run_accounting(str(copy)) == {
        "unique": 10,
        "result_files": 3,
        "lost": 0,
        "duplicated": 0,
        "partial_files": 0,
    }
    results = sorted((copy / "results").iterdir())
    # The same ids under another (valid) name: counted twice, by the ids inside, not the name.
    data = atomic.read_npz(results[0])
    atomic.write_npz(copy / "results" / "range-000000-000004-cpu.npz", data)
    (copy / "results" / ".range-000004-000008.npz.123.tmp").write_bytes(b"partial")
    results[1].unlink()
    counts = runs.run_accounting(str(copy))
    assert (counts["duplicated"], counts["lost"], counts["partial_files"]) == (4, 4, 1)
    results[2].write_bytes(results[2].read_bytes()[:100])  # truncated: a corrupt result
    with pytest.raises(ActivityFailed, match="unreadable result file"):
        runs.run_accounting(str(copy))


def test_runs_consistent_accepts_equal_runs_and_refuses_a_different_estimate(small_run):
    workspace, directory = small_run
    assert runs.runs_consistent(workspace, [{"name": "ref", "args": [*SMALL, "--batch-size", "2"]}])
    assert ws.read_record(workspace, "accounting")["baseline-ref"]["lost"] == 0
    # Another seed gives another estimate: registered against the same reference, it must fail.
    runs.run_cutting(workspace, "other", ["--qubits", "4", "--reps", "1", "--seed", "4"], reference="ref")
    with pytest.raises(ActivityFailed, match="estimate .* != reference ref"):
        runs.runs_consistent(workspace, [])
    registry = ws.read_record(workspace, "runs")
    del registry["other"]
    ws.write_record(workspace, "runs", registry)
    # A kept result file rewritten by a resume counts as redone.
    registry["small"]["kept"] = {p.name: [0, 0] for p in (ws.Path(directory) / "results").iterdir()}
    ws.write_record(workspace, "runs", registry)
    with pytest.raises(ActivityFailed, match="3 redone"):
        runs.runs_consistent(workspace, [])
    del registry["small"]["kept"]
    ws.write_record(workspace, "runs", registry)
    assert runs.runs_consistent(workspace, [])


def test_wait_for_results_fails_when_the_run_ends_first(workspace):
    runs.start_run(workspace, "tiny", SMALL, reference="tiny")
    with pytest.raises(ActivityFailed, match="before 100 existed"):
        runs.wait_for_results(workspace, "tiny", minimum=100)
    assert runs.wait_for_run(workspace, "tiny", expect="success") == 0
    with pytest.raises(ActivityFailed, match="succeeded although"):
        runs.wait_for_run(workspace, "tiny", expect="failure")


def test_a_failed_run_is_reported_and_resumed(workspace):
    runs.start_run(workspace, "bad", [*SMALL, "--shots", "0", "--mode", "sampled"], reference="bad")
    assert runs.wait_for_run(workspace, "bad", expect="failure") == 2
    with pytest.raises(ActivityFailed, match="did not complete"):
        runs.runs_consistent(workspace, [])
