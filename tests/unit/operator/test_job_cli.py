"""``qhybrid job render`` and ``qhybrid job get`` (the API answered from objects; no cluster)."""

from __future__ import annotations

import json

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from qhybrid.operator.render import request_of
from qhybrid.pipeline.report import summary_text
from qhybrid.spec import ProblemFlags, spec_from_flags
from tests.conftest import invoke
from tests.unit.operator.conftest import NAMESPACE, succeeded


class ObjectsApi:
    """CustomObjectsApi.get_namespaced_custom_object over a dict of (plural, name) -> object."""

    def __init__(self, objects):
        self.objects = objects
        self.asked = []

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        self.asked.append((group, namespace, plural, name))
        if (plural, name) not in self.objects:
            raise ApiException(status=404, reason="Not Found")
        return self.objects[plural, name]


@pytest.fixture
def cluster(monkeypatch):
    def install(objects):
        api = ObjectsApi(objects)
        monkeypatch.setattr("qhybrid.workflow.submit.custom_objects_api", lambda *a, **k: api)
        return api

    return install


def test_render_writes_a_job_that_reads_back_as_the_same_run(tmp_path):
    out = tmp_path / "job.yaml"
    result = invoke(
        "job", "render", "--name", "demo", "--mode", "sampled", "--shots", "500", "--out", str(out)
    )
    assert result.exit_code == 0, result.stderr
    job = yaml.safe_load(out.read_text())
    assert job["kind"] == "QuantumJob" and job["metadata"]["name"] == "demo"
    spec = spec_from_flags(ProblemFlags({"mode": "sampled", "shots": 500}))
    read_back = request_of(job["spec"]).spec
    assert read_back.mode == "sampled" and read_back.shots == 500 and read_back.seed == spec.seed
    assert invoke("job", "render", "--name", "Not_A_Name").exit_code == 2


@pytest.fixture(scope="module")
def done(config, tmp_path_factory):
    """A succeeded job, its Workflow, and its report, from a real local run of the reference spec."""
    from qhybrid.operator.reconcile import Observed, reconcile
    from qhybrid.pipeline.runner import run_local
    from tests.unit.operator.conftest import make_job

    job = make_job()
    first = reconcile(Observed(job, None), config, now="2026-11-30T08:01:00Z", now_epoch=0)
    job["status"] = first.status
    report = run_local(request_of(job["spec"]).spec, tmp_path_factory.mktemp("run"))
    workflow = succeeded(first.workflow, report)
    final = reconcile(Observed(job, workflow), config, now="2026-11-30T08:02:00Z", now_epoch=0)
    job["status"] = final.status
    return job, workflow, report


def test_get_prints_the_run_summary_from_the_workflow_report(cluster, done):
    job, workflow, report = done
    api = cluster({("quantumjobs", "cutting"): job, ("workflows", workflow["metadata"]["name"]): workflow})
    result = invoke("job", "get", "cutting")
    assert result.exit_code == 0, result.stderr
    assert f"quantumjob      {NAMESPACE}/cutting  Succeeded" in result.stdout
    assert summary_text(report) in result.stdout  # exactly what `qhybrid run` prints
    assert f"report          {job['status']['reportPath']}" in result.stdout
    assert api.asked[0] == ("qhybrid.io", NAMESPACE, "quantumjobs", "cutting")


def test_get_falls_back_to_the_status_once_argo_removed_the_workflow(cluster, done):
    job, _, report = done
    cluster({("quantumjobs", "cutting"): job})
    result = invoke("job", "get", "cutting", "--namespace", NAMESPACE)
    assert result.exit_code == 0, result.stderr
    assert f"estimate        {report['estimate']:+.12f}" in result.stdout
    assert f"exact           {report['exact']:+.12f}" in result.stdout
    assert "250 unique" in result.stdout


def test_get_json_prints_the_status(cluster, done):
    job, _, _ = done
    cluster({("quantumjobs", "cutting"): job})
    result = invoke("job", "get", "cutting", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["status"] == job["status"]


def test_get_of_a_failed_job_names_the_step_and_exits_1(cluster, done):
    job, _, _ = done
    failed = {**job, "status": {"phase": "Failed", "failedStep": "generate", "message": "exit code 2"}}
    cluster({("quantumjobs", "cutting"): failed})
    result = invoke("job", "get", "cutting")
    assert result.exit_code == 1
    assert "message         step generate: exit code 2" in result.stdout


def test_get_of_a_missing_job_is_one_line(cluster):
    cluster({})
    result = invoke("job", "get", "nothing")
    assert result.exit_code == 2
    assert "QuantumJob qhybrid-workflows/nothing not found" in result.stderr
