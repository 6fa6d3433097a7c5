"""The operator's I/O loop over an in-memory API: idempotent creation, restarts, retries, metrics, logs.

``MemoryCluster`` answers the five calls of :class:`qhybrid.operator.kube.JobApi` from
dicts, the way the API server would (404 as None, 409 on a second create), and can be
told to fail a call once. The real server is the ``apiserver`` tier's business.
"""

from __future__ import annotations

import copy
import json
import logging

import pytest
from prometheus_client import generate_latest

from qhybrid.blueprint.monitoring import metric_names as names
from qhybrid.operator.kube import JobApi, OperatorMetrics, Reconciler
from qhybrid.operator.reconcile import workflow_name
from qhybrid.ops.kubeapi import ApiFailure
from tests.unit.operator.conftest import (
    CREATED_EPOCH,
    NAMESPACE,
    make_job,
    pod_node,
    succeeded,
    with_status,
)


class MemoryCluster:
    """The QuantumJobs, Workflows and ConfigMaps of one namespace, and the calls made."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict] = {}
        self.workflows: dict[str, dict] = {}
        self.config_maps: dict[str, dict] = {}
        self.creates: list[str] = []
        self.status_writes = 0
        self.fail_next: dict[str, Exception] = {}
        self.stale_workflow_reads = 0  # answer None this many times (a read older than a create)

    def _maybe_fail(self, call: str) -> None:
        error = self.fail_next.pop(call, None)
        if error is not None:
            raise error

    def job(self, namespace, name):
        self._maybe_fail("job")
        return copy.deepcopy(self.jobs.get(name))

    def workflow(self, namespace, name):
        self._maybe_fail("workflow")
        if self.stale_workflow_reads:
            self.stale_workflow_reads -= 1
            return None
        return copy.deepcopy(self.workflows.get(name))

    def config_map_key(self, namespace, name, key):
        data = (self.config_maps.get(name) or {}).get("data") or {}
        if key in data:
            return data[key], None
        return None, f"ConfigMap {namespace}/{name} not found"

    def create_workflow(self, namespace, workflow):
        self._maybe_fail("create")
        name = workflow["metadata"]["name"]
        self.creates.append(name)
        if name in self.workflows:
            return False
        self.workflows[name] = copy.deepcopy(workflow)
        return True

    def write_status(self, namespace, name, status):
        self._maybe_fail("status")
        self.status_writes += 1
        self.jobs[name]["status"] = copy.deepcopy(status)


@pytest.fixture
def cluster():
    return MemoryCluster()


def reconciler(cluster, config, metrics=None):
    return Reconciler(cluster, config, metrics or OperatorMetrics(), clock=lambda: CREATED_EPOCH + 60)


def test_a_job_is_reconciled_into_one_workflow_and_followed_to_the_end(cluster, config):
    cluster.jobs["cutting"] = make_job()
    operator = reconciler(cluster, config)
    operator.reconcile(NAMESPACE, "cutting")
    name = workflow_name(cluster.jobs["cutting"])
    assert cluster.creates == [name]
    assert cluster.jobs["cutting"]["status"]["phase"] == "Pending"
    cluster.workflows[name] = with_status(
        cluster.workflows[name], "Running", [pod_node("g", "generate", "Running")]
    )
    operator.reconcile(NAMESPACE, "cutting")
    assert cluster.jobs["cutting"]["status"]["phase"] == "Running"
    writes = cluster.status_writes
    operator.reconcile(NAMESPACE, "cutting")  # nothing changed: no write
    assert cluster.status_writes == writes
    assert cluster.creates == [name]


def test_a_restarted_operator_creates_no_second_workflow(cluster, config):
    cluster.jobs["cutting"] = make_job()
    cluster.fail_next["status"] = ApiFailure(500, "InternalError", "etcd timeout")
    first = reconciler(cluster, config)
    with pytest.raises(ApiFailure):
        first.reconcile(NAMESPACE, "cutting")  # created the Workflow, then failed to write the status
    assert len(cluster.workflows) == 1 and "status" not in cluster.jobs["cutting"]
    second = reconciler(cluster, config)  # a new process: nothing in memory
    second.reconcile(NAMESPACE, "cutting")
    assert len(cluster.workflows) == 1
    assert cluster.creates == [workflow_name(cluster.jobs["cutting"])]  # it looked first: no second create
    assert cluster.jobs["cutting"]["status"]["workflowName"] in cluster.workflows


def test_a_create_answered_409_adopts_the_workflow_that_is_there(cluster, config):
    cluster.jobs["cutting"] = make_job()
    reconciler(cluster, config).reconcile(NAMESPACE, "cutting")
    name = workflow_name(cluster.jobs["cutting"])
    del cluster.jobs["cutting"]["status"]  # as if that operator never wrote it
    cluster.stale_workflow_reads = 1  # and this one's first read is older than the Workflow
    reconciler(cluster, config).reconcile(NAMESPACE, "cutting")
    assert cluster.creates == [name, name]  # the second create was answered 409 ...
    assert len(cluster.workflows) == 1  # ... and nothing was created twice
    assert cluster.jobs["cutting"]["status"]["workflowName"] == name


def test_api_failures_propagate_counted_so_the_handler_retries(cluster, config):
    cluster.jobs["cutting"] = make_job()
    metrics = OperatorMetrics()
    operator = reconciler(cluster, config, metrics)
    cluster.fail_next["create"] = ApiFailure(403, "Forbidden", "cannot create workflows")
    with pytest.raises(ApiFailure):
        operator.reconcile(NAMESPACE, "cutting")
    assert "status" not in cluster.jobs["cutting"]
    operator.reconcile(NAMESPACE, "cutting")  # the retry
    assert cluster.jobs["cutting"]["status"]["phase"] == "Pending"
    text = generate_latest(metrics.registry).decode()
    assert f'{names.QUANTUMJOB_RECONCILE_ERRORS_TOTAL}{{reason="api"}} 1.0' in text
    assert f'{names.QUANTUMJOB_RECONCILE_ERRORS_TOTAL}{{reason="conflict"}} 0.0' in text


def test_metrics_count_jobs_by_phase_and_time_to_result(cluster, config):
    metrics = OperatorMetrics()
    operator = reconciler(cluster, config, metrics)
    for name in ("a", "b"):
        cluster.jobs[name] = make_job(name=name)
        operator.reconcile(NAMESPACE, name)
    workflow = cluster.workflows[workflow_name(cluster.jobs["b"])]
    cluster.workflows[workflow["metadata"]["name"]] = with_status(
        workflow, "Failed", [pod_node("g", "generate", "Failed")]
    )
    operator.reconcile(NAMESPACE, "b")
    text = generate_latest(metrics.registry).decode()
    assert f'{names.QUANTUMJOBS}{{namespace="{NAMESPACE}",phase="Pending"}} 1.0' in text
    assert f'{names.QUANTUMJOBS}{{namespace="{NAMESPACE}",phase="Failed"}} 1.0' in text
    assert f'{names.QUANTUMJOBS}{{namespace="{NAMESPACE}",phase="Running"}} 0.0' in text
    assert f'{names.QUANTUMJOB_TIME_TO_RESULT_SECONDS}_count{{phase="Failed"}} 1.0' in text
    assert f'{names.QUANTUMJOB_TIME_TO_RESULT_SECONDS}_sum{{phase="Failed"}} 60.0' in text
    del cluster.jobs["b"]
    operator.reconcile(NAMESPACE, "b")  # gone: forgotten
    text = generate_latest(metrics.registry).decode()
    assert f'{names.QUANTUMJOBS}{{namespace="{NAMESPACE}",phase="Failed"}} 0.0' in text


def minimal_report(subexperiments: int, failovers: int) -> dict:
    """The report fields the operator copies into a job's status."""
    return {
        "estimate": 0.5,
        "standard_error": 0.0,
        "exact": 0.5,
        "error": 0.0,
        "counts": {"subexperiments": subexperiments, "unique": subexperiments},
        "provenance": {"failovers": [{"reason": "qpu-unavailable"}] * failovers, "spec_hash": "0" * 64},
    }


def test_succeeded_jobs_count_their_subexperiments_and_failovers_once(cluster, config):
    metrics = OperatorMetrics()
    operator = reconciler(cluster, config, metrics)
    cluster.jobs["a"] = make_job(name="a")
    operator.reconcile(NAMESPACE, "a")
    text = generate_latest(metrics.registry).decode()
    # At 0 once a job is known in the namespace, before anything finished.
    assert f'{names.QUANTUMJOB_SUBEXPERIMENTS_TOTAL}{{namespace="{NAMESPACE}"}} 0.0' in text
    assert f'{names.QUANTUMJOB_FAILOVERS_TOTAL}{{namespace="{NAMESPACE}"}} 0.0' in text
    name = workflow_name(cluster.jobs["a"])
    cluster.workflows[name] = succeeded(cluster.workflows[name], minimal_report(250, 7))
    operator.reconcile(NAMESPACE, "a")
    operator.reconcile(NAMESPACE, "a")  # already final: counted once
    text = generate_latest(metrics.registry).decode()
    assert f'{names.QUANTUMJOB_SUBEXPERIMENTS_TOTAL}{{namespace="{NAMESPACE}"}} 250.0' in text
    assert f'{names.QUANTUMJOB_FAILOVERS_TOTAL}{{namespace="{NAMESPACE}"}} 7.0' in text


def test_one_structured_log_line_per_transition(cluster, config, caplog):
    cluster.jobs["cutting"] = make_job()
    operator = reconciler(cluster, config)
    with caplog.at_level(logging.INFO, logger="qhybrid.operator"):
        operator.reconcile(NAMESPACE, "cutting")
        operator.reconcile(NAMESPACE, "cutting")  # no transition: no line
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "qhybrid.operator"]
    assert len(lines) == 1
    line = lines[0]
    assert line["event"] == "transition" and line["job"] == f"{NAMESPACE}/cutting"
    assert (line["from"], line["to"], line["reason"]) == (None, "Pending", "Created")
    assert line["workflow"] == workflow_name(cluster.jobs["cutting"])


def test_a_configmap_circuit_is_read_only_before_start(cluster, config):
    spec = make_job()["spec"]
    spec.pop("partition")
    spec.update(
        circuit={"configMapKeyRef": {"name": "circuits", "key": "c.qasm"}}, observable="ZZ", maxWidth=1
    )
    cluster.jobs["cutting"] = make_job(spec=spec)
    operator = reconciler(cluster, config)
    operator.reconcile(NAMESPACE, "cutting")
    assert cluster.workflows == {}
    assert cluster.jobs["cutting"]["status"]["phase"] == "Pending"
    cluster.config_maps["circuits"] = {
        "data": {"c.qasm": 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\nh q[0];\ncx q[0],q[1];\n'}
    }
    operator.reconcile(NAMESPACE, "cutting")
    assert len(cluster.workflows) == 1


def test_the_real_job_api_names_the_paths_of_each_call():
    calls: list[tuple[str, ...]] = []

    class Kube:
        def get(self, path):
            calls.append(("GET", path))
            raise ApiFailure(404, "NotFound", "gone")

        def create(self, path, body):
            calls.append(("POST", path))
            raise ApiFailure(409, "AlreadyExists", "exists")

        def merge_patch(self, path, body):
            calls.append(("PATCH", path, *sorted(body)))
            return {}

    api = JobApi(Kube())
    assert api.job("ns", "j") is None
    assert api.workflow("ns", "w") is None
    assert api.config_map_key("ns", "c", "k") == (None, "ConfigMap ns/c not found; the job waits for it")
    assert api.create_workflow("ns", {"metadata": {"name": "w"}}) is False
    api.write_status("ns", "j", {"phase": "Pending"})
    assert calls == [
        ("GET", "/apis/qhybrid.io/v1alpha1/namespaces/ns/quantumjobs/j"),
        ("GET", "/apis/argoproj.io/v1alpha1/namespaces/ns/workflows/w"),
        ("GET", "/api/v1/namespaces/ns/configmaps/c"),
        ("POST", "/apis/argoproj.io/v1alpha1/namespaces/ns/workflows"),
        ("PATCH", "/apis/qhybrid.io/v1alpha1/namespaces/ns/quantumjobs/j/status", "status"),
    ]
