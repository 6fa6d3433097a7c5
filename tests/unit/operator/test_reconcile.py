"""The operator's decisions, a pure function of (spec, status, observed Workflow): every case, no cluster."""

from __future__ import annotations

import copy
import json

import pytest

from qhybrid.cli import run_in_process
from qhybrid.operator.reconcile import (
    JOB_NAME_ANNOTATION,
    JOB_UID_LABEL,
    Observed,
    reconcile,
    workflow_name,
)
from qhybrid.operator.render import request_of
from qhybrid.pipeline.runner import run_local
from qhybrid.workflow.build import KUEUE_PRIORITY_LABEL, RunOptions, workflow_object
from qhybrid.workflow.replay import replay
from tests.unit.operator.conftest import (
    CREATED_EPOCH,
    NAMESPACE,
    UID,
    make_job,
    pod_node,
    succeeded,
    with_status,
)

NOW = "2026-11-30T08:05:00Z"
LATER = "2026-11-30T08:09:00Z"
NO_CACHE = RunOptions(cache=False)


def decide(config, job, workflow=None, *, now=NOW, **observed):
    return reconcile(Observed(job, workflow, **observed), config, now=now, now_epoch=CREATED_EPOCH + 300)


def started(config, job):
    """The job after its first reconcile, and the Workflow that reconcile created."""
    first = decide(config, job)
    assert first.workflow is not None
    return {**job, "status": first.status}, first.workflow


def test_a_new_job_gets_the_workflow_that_workflow_render_builds_owned_by_it(config):
    job = make_job()
    decision = decide(config, job)
    workflow = decision.workflow
    name = workflow_name(job)
    assert name == f"cutting-{UID[:8]}"
    # One code path: the same Workflow as `qhybrid workflow render` for this spec, plus ownership.
    request = request_of(job["spec"])
    rendered = workflow_object(config, request.spec, name=name, options=request.options)
    assert workflow["spec"] == rendered["spec"]
    meta = workflow["metadata"]
    assert meta["name"] == name and meta["namespace"] == NAMESPACE
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "qhybrid.io/v1alpha1",
            "kind": "QuantumJob",
            "name": "cutting",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert meta["labels"][JOB_UID_LABEL] == UID
    assert meta["annotations"][JOB_NAME_ANNOTATION] == "cutting"
    status = decision.status
    assert status["phase"] == "Pending"
    assert status["workflowName"] == name
    assert status["specHash"] == request.spec.spec_hash()
    assert status["observedGeneration"] == 1
    assert status["reportPath"] == f"pvc://qhybrid-artifacts/{name}/report.json"
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Accepted"]["status"] == "True"
    assert conditions["WorkflowCreated"]["status"] == "True"
    assert all(c["lastTransitionTime"] == NOW for c in status["conditions"])
    assert decision.transition is not None and (decision.transition.old, decision.transition.new) == (
        None,
        "Pending",
    )


def test_the_job_options_reach_the_workflow_pods(config):
    options = RunOptions(failover="never", cache=False, priority_class="research-high", shot_budget=10_000)
    job = make_job({"policy": "qpu", "mode": "sampled", "shots": 1000}, options=options)
    workflow = decide(config, job).workflow
    templates = {t["name"]: t for t in workflow["spec"]["templates"] if "container" in t}
    for template in templates.values():
        assert template["metadata"]["labels"][KUEUE_PRIORITY_LABEL] == "research-high"
        assert "--cache" not in template["container"]["args"]
    assert templates["execute-qpu"]["container"]["args"][-2:] == ["--failover", "never"]
    generate = templates["generate"]["container"]["args"]
    assert generate[generate.index("--shot-budget") + 1] == "10000"


def test_a_restarted_operator_adopts_the_workflow_it_created_and_creates_no_second(config):
    job = make_job()
    _, workflow = started(config, job)
    # The operator created the Workflow, then stopped before it wrote the status.
    again = decide(config, job, with_status(workflow, "Running", [pod_node("g", "generate", "Running")]))
    assert again.workflow is None
    assert again.status["workflowName"] == workflow["metadata"]["name"]
    assert again.status["phase"] == "Running"
    # And once the status is written, every later reconcile creates nothing either.
    for phase in ("", "Pending", "Running"):
        later = decide(config, {**job, "status": again.status}, with_status(workflow, phase))
        assert later.workflow is None


@pytest.mark.parametrize(
    ("argo_phase", "phase"), [("", "Pending"), ("Pending", "Pending"), ("Running", "Running")]
)
def test_the_job_follows_the_workflow_phase(config, argo_phase, phase):
    job, workflow = started(config, make_job())
    decision = decide(
        config, job, with_status(workflow, argo_phase, [pod_node("g", "generate", "Succeeded")])
    )
    assert decision.workflow is None
    assert decision.status["phase"] == phase
    assert decision.time_to_result is None


def test_reconciling_the_same_observation_twice_changes_nothing(config):
    job, workflow = started(config, make_job())
    running = with_status(workflow, "Running")
    first = decide(config, job, running)
    second = decide(config, {**job, "status": first.status}, running, now=LATER)
    assert second.status == first.status  # no write, and conditions keep their transition times
    assert second.transition is None


@pytest.mark.parametrize("argo_phase", ["Failed", "Error"])
def test_a_failed_workflow_fails_the_job_naming_the_step_and_its_message(config, argo_phase):
    job, workflow = started(config, make_job())
    nodes = [
        pod_node("g", "generate", "Succeeded", finishedAt="2026-11-30T08:01:00Z"),
        pod_node(
            "e1", "execute-cpu(0:0)", "Failed", finishedAt="2026-11-30T08:02:00Z", message="exit code 1"
        ),
        pod_node("e2", "execute-cpu(1:1)", "Failed", finishedAt="2026-11-30T08:03:00Z", message="later"),
    ]
    decision = decide(config, job, with_status(workflow, argo_phase, nodes))
    assert decision.status["phase"] == "Failed"
    assert decision.status["failedStep"] == "execute-cpu(0:0)"
    assert decision.status["message"] == "exit code 1"
    complete = {c["type"]: c for c in decision.status["conditions"]}["Complete"]
    assert (complete["status"], complete["reason"]) == ("False", "StepFailed")
    assert decision.time_to_result == pytest.approx(300.0)


def test_a_succeeded_workflow_without_a_report_output_fails_the_job(config):
    job, workflow = started(config, make_job())
    decision = decide(config, job, with_status(workflow, "Succeeded", [pod_node("r", "report", "Succeeded")]))
    assert decision.status["phase"] == "Failed"
    assert "report" in decision.status["message"]


def test_a_workflow_deleted_before_it_finished_fails_the_job_and_is_not_recreated(config):
    job, workflow = started(config, make_job())
    running = decide(config, job, with_status(workflow, "Running"))
    gone = decide(config, {**job, "status": running.status}, None)
    assert gone.workflow is None
    assert gone.status["phase"] == "Failed"
    assert "was deleted before it finished" in gone.status["message"]


def test_a_final_job_stays_final_when_argo_removes_its_workflow(config, succeeded_job):
    job, _ = succeeded_job
    decision = decide(config, job, None, now=LATER)
    assert decision.workflow is None
    assert decision.status == job["status"]
    assert decision.transition is None


@pytest.mark.parametrize(
    ("spec_change", "field"),
    [
        ({"partition": "AB"}, "spec.partition"),
        ({"observable": "ZZ"}, "spec.observable"),
        ({"mode": "sampled"}, "spec.shots"),
        ({"circuit": {"qasm": "not qasm"}, "observable": "ZZ", "partition": "AB"}, "spec.circuit"),
        ({"failover": "sometimes"}, "spec.failover"),
        ({"unknownField": 1}, "spec.unknownField"),
    ],
)
def test_an_invalid_spec_that_slipped_past_cel_fails_with_the_field_in_the_status(config, spec_change, field):
    job = make_job()
    job["spec"].update(spec_change)
    decision = decide(config, job)
    assert decision.workflow is None
    assert decision.status["phase"] == "Failed"
    assert decision.status["message"].startswith(f"{field}: ")
    accepted = {c["type"]: c for c in decision.status["conditions"]}["Complete"]
    assert accepted["reason"] == "InvalidSpec"


def test_a_job_refused_for_its_spec_runs_once_the_spec_is_fixed(config):
    job = make_job()
    job["spec"]["partition"] = "AB"
    refused = decide(config, job)
    assert refused.status["phase"] == "Failed"
    assert decide(config, {**job, "status": refused.status}).status == refused.status  # final while unchanged
    fixed = copy.deepcopy(job)
    fixed["spec"]["partition"] = "AAAAABBBBB"
    fixed["metadata"]["generation"] = 2
    decision = decide(config, {**fixed, "status": refused.status}, now=LATER)
    assert decision.workflow is not None
    assert decision.status["phase"] == "Pending" and decision.status["observedGeneration"] == 2
    accepted = {c["type"]: c for c in decision.status["conditions"]}["Accepted"]
    assert (accepted["status"], accepted["lastTransitionTime"]) == ("True", LATER)
    complete = {c["type"]: c for c in decision.status["conditions"]}["Complete"]
    assert (complete["status"], complete["reason"]) == ("False", "InProgress")


def test_a_spec_changed_after_start_is_reported_and_the_running_workflow_kept(config):
    job, workflow = started(config, make_job())
    edited = copy.deepcopy(job)
    edited["spec"]["seed"] = 7
    edited["metadata"]["generation"] = 2
    decision = decide(config, edited, with_status(workflow, "Running"))
    assert decision.workflow is None  # no second run
    assert decision.status["observedGeneration"] == 1  # the status still describes generation 1's run
    assert decision.status["phase"] == "Running"
    changed = {c["type"]: c for c in decision.status["conditions"]}["SpecChanged"]
    assert changed["status"] == "True" and "generation 2" in changed["message"]


def test_a_workflow_of_that_name_owned_by_another_job_is_a_conflict(config):
    job = make_job()
    _, workflow = started(config, job)
    foreign = copy.deepcopy(workflow)
    foreign["metadata"]["ownerReferences"][0]["uid"] = "another-uid"
    decision = decide(config, job, foreign)
    assert decision.workflow is None
    assert decision.status["phase"] == "Failed"
    assert "is not this QuantumJob's" in decision.status["message"]


def test_a_circuit_in_a_missing_configmap_waits_then_runs_when_it_appears(config):
    qasm = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[4];\nh q[0];\n' + "".join(
        f"cx q[{i}],q[{i + 1}];\n" for i in range(3)
    )
    spec = {
        "circuit": {"configMapKeyRef": {"name": "circuits", "key": "ghz.qasm"}},
        "observable": "ZZZZ",
        "partition": "AABB",
        "mode": "exact",
        "seed": 0,
        "policy": "cpu",
        "failover": "transient",
        "cache": True,
    }
    job = make_job(spec=spec)
    waiting = decide(config, job, circuit_problem="ConfigMap qhybrid-workflows/circuits not found")
    assert waiting.workflow is None
    assert waiting.status["phase"] == "Pending" and "not found" in waiting.status["message"]
    accepted = {c["type"]: c for c in waiting.status["conditions"]}["Accepted"]
    assert (accepted["status"], accepted["reason"]) == ("False", "CircuitNotFound")
    found = decide(config, {**job, "status": waiting.status}, circuit_text=qasm, now=LATER)
    assert found.workflow is not None
    accepted = {c["type"]: c for c in found.status["conditions"]}["Accepted"]
    assert (accepted["status"], accepted["lastTransitionTime"]) == ("True", LATER)
    generate = next(t for t in found.workflow["spec"]["templates"] if t["name"] == "generate")
    assert generate["inputs"]["artifacts"][0]["raw"]["data"] == qasm


@pytest.fixture(scope="module")
def succeeded_job(config, tmp_path_factory):
    """A job whose Workflow was replayed here, step by step, and whose status took its report."""
    job = make_job(options=NO_CACHE)
    job, workflow = started(config, job)
    done = replay(
        workflow, tmp_path_factory.mktemp("cluster"), runner=run_in_process, name=workflow_name(job)
    )
    report = json.loads((done.run_dir / "report.json").read_text())
    decision = decide(config, job, succeeded(workflow, report), now=LATER)
    return {**job, "status": decision.status}, (decision, report)


def test_a_succeeded_workflow_puts_its_report_in_the_status(config, succeeded_job, tmp_path):
    job, (decision, report) = succeeded_job
    status = job["status"]
    assert status["phase"] == "Succeeded"
    assert status["estimate"] == report["estimate"]
    assert status["exact"] == report["exact"] and status["error"] == report["error"]
    assert status["counts"] == {
        "subexperiments": report["counts"]["subexperiments"],
        "unique": report["counts"]["unique"],
        "cached": 0,
        "failedOver": 0,
    }
    assert status["specHash"] == report["provenance"]["spec_hash"]
    assert decision.time_to_result == pytest.approx(300.0)
    assert (decision.transition.old, decision.transition.new) == ("Pending", "Succeeded")
    # The operator's Workflow computes what `qhybrid run` computes, bitwise.
    local = run_local(request_of(job["spec"]).spec, tmp_path / "local")
    assert float.hex(local["estimate"]) == float.hex(status["estimate"])
    assert abs(status["error"]) < 1e-10
