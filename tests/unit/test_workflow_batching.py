"""Batching (slots from quota, batches per branch), branch result files, and following a Workflow."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from rich.console import Console

from qhybrid.blueprint.config import load_stack_file
from qhybrid.errors import InputError, QhybridError
from qhybrid.pipeline.rundir import RunDir, pending_ranges
from qhybrid.workflow.batching import (
    EXECUTOR,
    MAIN_REQUESTS,
    branch_slots,
    branches_for,
    parse_slots,
    pod_requests,
    slots,
    split_batches,
)
from qhybrid.workflow.submit import follow, report_of, snapshot


def test_slots_follow_the_quota_and_the_request_table():
    kind = load_stack_file("kind")
    # kind: cpu 4 cores / 8 Gi, 1-core 2 Gi pods; gpu 2 cores / 4 Gi (no GPUs); qpu 4 pods, 2 cores, 4 Gi.
    assert {name: slots(name, kind) for name in ("cpu", "gpu", "qpu")} == {"cpu": 4, "gpu": 2, "qpu": 4}
    eks = load_stack_file("eks")
    # eks: 64 cores / 128 Gi; 2 GPUs (one per pod); 8 qpu pods.
    assert {name: slots(name, eks) for name in ("cpu", "gpu", "qpu")} == {"cpu": 64, "gpu": 2, "qpu": 8}
    assert pod_requests("cpu", kind) == MAIN_REQUESTS["cpu"] + EXECUTOR
    assert pod_requests("gpu", kind).gpus == 0 and pod_requests("gpu", eks).gpus == 1
    assert branches_for("cpu") == ("cpu",) and branches_for("width") == ("cpu", "gpu", "qpu")


def test_a_branch_its_queue_cannot_admit_is_refused():
    tiny = replace(load_stack_file("kind"), cpu_quota_cpu=0)
    with pytest.raises(InputError, match="queue-cpu admits no pod"):
        branch_slots(tiny, "cpu")


def test_batches_cover_each_branch_once_evenly_and_never_mix_backends():
    backends = ["cpu", "qpu", "cpu", "cpu", "qpu", "gpu", "cpu", "cpu", "qpu", "cpu"]
    batches = split_batches(backends, {"cpu": 3, "gpu": 2, "qpu": 4})
    assert batches["cpu"] == [
        {"start": 0, "stop": 3, "count": 2},
        {"start": 3, "stop": 7, "count": 2},
        {"start": 7, "stop": 10, "count": 2},
    ]
    assert batches["gpu"] == [{"start": 5, "stop": 6, "count": 1}]  # fewer ids than slots
    assert [b["count"] for b in batches["qpu"]] == [1, 1, 1]
    for name, items in batches.items():
        ids = [uid for b in items for uid in range(b["start"], b["stop"]) if backends[uid] == name]
        assert ids == [uid for uid, backend in enumerate(backends) if backend == name]
    assert split_batches(["cpu"] * 5, {"cpu": 4, "qpu": 2}) == {
        "cpu": [
            {"start": 0, "stop": 2, "count": 2},
            {"start": 2, "stop": 3, "count": 1},
            {"start": 3, "stop": 4, "count": 1},
            {"start": 4, "stop": 5, "count": 1},
        ],
        "qpu": [],
    }
    # Asked for the paper's plan: one pod per subexperiment.
    assert len(split_batches(["cpu"] * 216, {"cpu": 4}, per_pod=1)["cpu"]) == 216
    assert len(split_batches(["cpu"] * 216, {"cpu": 4}, per_pod=50)["cpu"]) == 5


def test_bad_batching_input_is_refused():
    with pytest.raises(
        InputError, match=r"puts subexperiments on \{'gpu': 1\} but this workflow has no branch"
    ):
        split_batches(["cpu", "gpu"], {"cpu": 2})
    with pytest.raises(InputError, match="--per-pod"):
        split_batches(["cpu"], {"cpu": 2}, per_pod=0)
    with pytest.raises(InputError, match="BRANCH=N"):
        parse_slots(["tpu=3"])
    assert parse_slots(["cpu=4", "qpu=2"]) == {"cpu": 4, "qpu": 2}


def test_branch_result_files_count_as_done_only_for_their_backend(tmp_path):
    run_dir = RunDir(tmp_path)
    run_dir.results_dir.mkdir()
    backends = ["cpu", "qpu", "cpu", "qpu", "cpu", "cpu"]
    for start, stop, backend in ((0, 4, "cpu"), (0, 2, "qpu"), (4, 6, None)):
        run_dir.result_file(start, stop, backend).write_bytes(b"")
    assert run_dir.result_files() == [(0, 2, "qpu"), (0, 4, "cpu"), (4, 6, None)]
    # id 3 (qpu, outside the qpu file's [0, 2)) is still to do.
    assert run_dir.done_ranges(backends) == [(0, 3), (4, 6)]
    assert pending_ranges(run_dir.done_ranges(backends), len(backends), 64) == [(3, 4)]


def _workflow(phase, nodes, progress="0/0"):
    return {"status": {"phase": phase, "progress": progress, "nodes": nodes}}


class FakeApi:
    """Answers get_namespaced_custom_object with a scripted series of Workflow objects."""

    def __init__(self, states):
        self.states = list(states)
        self.calls = 0

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        assert (group, version, plural) == ("argoproj.io", "v1alpha1", "workflows")
        self.calls += 1
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]


def test_follow_polls_until_done_and_the_report_comes_from_the_status():
    report = {"estimate": 0.5804123583124522}
    pod = {"type": "Pod", "templateName": "execute-cpu", "phase": "Running"}
    done_pod = {
        "type": "Pod",
        "templateName": "report",
        "phase": "Succeeded",
        "outputs": {"parameters": [{"name": "report", "value": json.dumps(report)}]},
    }
    api = FakeApi(
        [
            {},
            _workflow("Running", {"a": pod, "b": {**pod, "phase": "Pending"}}, "1/8"),
            _workflow("Succeeded", {"a": {**pod, "phase": "Succeeded"}, "r": done_pod}, "8/8"),
        ]
    )
    final = follow(api, "ns", "cutting-x", timeout_s=60, console=Console(quiet=True), sleep=lambda _s: None)
    assert api.calls == 3
    seen = snapshot(final)
    assert (seen.phase, seen.done, seen.total) == ("Succeeded", 8, 8)
    assert seen.by_step["execute-cpu"]["Succeeded"] == 1
    assert report_of(final) == report
    with pytest.raises(QhybridError, match="no succeeded report"):
        report_of(_workflow("Failed", {"a": pod}))


def test_follow_gives_up_after_its_timeout():
    api = FakeApi([_workflow("Running", {})])
    with pytest.raises(QhybridError, match="still Running"):
        follow(api, "ns", "cutting-x", timeout_s=0, console=Console(quiet=True), sleep=lambda _s: None)
