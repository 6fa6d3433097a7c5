"""The cutting workflow on the kind stack: submitted through the API, admitted by Kueue, same estimate.

Runs against the cluster the session fixture ``kind_stack`` brought up (see
conftest.py). Run with ``pytest -m cluster tests/integration``; here (no docker,
kind or pulumi) it skips with the fixture's one-line reason.
"""

from __future__ import annotations

import subprocess
import threading
import time

import pytest
import yaml

from qhybrid.blueprint.pools import KUEUE_QUEUE_LABEL
from qhybrid.blueprint.quantumjob_crd import GROUP, PLURAL, VERSION
from qhybrid.operator.reconcile import FINAL_PHASES
from qhybrid.operator.render import job_from_spec, request_of
from qhybrid.pipeline.runner import run_local
from qhybrid.spec import RunSpec
from qhybrid.workflow.build import STEP_LABEL, workflow_object
from qhybrid.workflow.checks import check_workflow
from qhybrid.workflow.submit import create, follow, report_of, snapshot
from tests.integration.conftest import KindStack, KubeClients

pytestmark = pytest.mark.cluster

WORKFLOW_TIMEOUT_S = 20 * 60


def _submit(kind_stack: KindStack, kube: KubeClients, spec: RunSpec) -> tuple[str, dict]:
    workflow = workflow_object(kind_stack.config, spec)
    assert check_workflow(workflow, kind_stack.config) == []
    return create(kube.custom, workflow), workflow


def test_default_workflow_reproduces_the_local_estimate(kind_stack: KindStack, kube: KubeClients, tmp_path):
    spec = RunSpec(scenario="cutting")
    name, workflow = _submit(kind_stack, kube, spec)
    namespace = workflow["metadata"]["namespace"]
    final = follow(kube.custom, namespace, name, timeout_s=WORKFLOW_TIMEOUT_S)
    assert snapshot(final).phase == "Succeeded", snapshot(final).message
    report = report_of(final)
    local = run_local(spec, tmp_path / "local")
    assert report["estimate"].hex() == local["estimate"].hex()
    # Kueue admitted every step pod: each has a Workload in the namespace.
    workloads = kube.custom.list_namespaced_custom_object("kueue.x-k8s.io", "v1beta2", namespace, "workloads")
    queues = {w["spec"].get("queueName") for w in workloads["items"]}
    assert queues == {"queue-cpu"}, queues
    pods = [n for n in final["status"]["nodes"].values() if n.get("type") == "Pod"]
    assert len([p for p in pods if p["templateName"] == "execute-cpu"]) == 4


def test_a_deleted_batch_pod_is_retried_and_the_workflow_succeeds(kind_stack: KindStack, kube: KubeClients):
    # What Kueue does to a preempted pod (and the node lifecycle controller to a lost node's pods).
    spec = RunSpec(scenario="cutting", qubits=24, reps=4)  # long enough batches to catch one running
    name, workflow = _submit(kind_stack, kube, spec)
    namespace = workflow["metadata"]["namespace"]
    deleted: list[str] = []

    def delete_one_running_batch() -> None:
        deadline = time.monotonic() + WORKFLOW_TIMEOUT_S
        selector = f"workflows.argoproj.io/workflow={name},{STEP_LABEL}=execute"
        while time.monotonic() < deadline and not deleted:
            for pod in kube.core.list_namespaced_pod(namespace, label_selector=selector).items:
                assert pod.metadata.labels[KUEUE_QUEUE_LABEL] == "queue-cpu"
                if pod.status.phase == "Running":
                    kube.core.delete_namespaced_pod(pod.metadata.name, namespace)
                    deleted.append(pod.metadata.name)
                    return
            time.sleep(1)

    killer = threading.Thread(target=delete_one_running_batch, daemon=True)
    killer.start()
    final = follow(kube.custom, namespace, name, timeout_s=WORKFLOW_TIMEOUT_S)
    killer.join(5)
    assert deleted, "no execute pod was seen running"
    assert snapshot(final).phase == "Succeeded", snapshot(final).message
    nodes = final["status"]["nodes"].values()
    retries = [n for n in nodes if n.get("type") == "Retry" and n.get("templateName") == "execute-cpu"]
    retried = [n for n in retries if len(n.get("children", [])) > 1]
    assert retried, "the deleted pod's batch shows no retry"


def test_a_quantumjob_applied_with_kubectl_succeeds_with_the_local_estimate(
    kind_stack: KindStack, kube: KubeClients, tmp_path
):
    # The README's flow: `qhybrid job render` writes it, `kubectl apply -f` submits it, the operator runs it.
    namespace = kind_stack.config.workflow_namespace
    job = job_from_spec(RunSpec(scenario="cutting"), "nightly-default", namespace=namespace)
    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump(job))
    kubectl = ["kubectl", "--kubeconfig", str(kind_stack.kubeconfig_path)]
    subprocess.run([*kubectl, "apply", "-f", str(manifest)], check=True, timeout=60)
    deadline = time.monotonic() + WORKFLOW_TIMEOUT_S
    status: dict = {}
    while time.monotonic() < deadline:
        current = kube.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "nightly-default"
        )
        status = current.get("status") or {}
        if status.get("phase") in FINAL_PHASES:
            break
        time.sleep(5)
    assert status.get("phase") == "Succeeded", status
    local = run_local(request_of(job["spec"]).spec, tmp_path / "local")
    assert status["estimate"].hex() == local["estimate"].hex()
    listed = subprocess.run(
        [*kubectl, "get", "quantumjobs", "-n", namespace],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "nightly-default" in listed and "Succeeded" in listed, listed
