"""QuantumJob and its operator against a real API server, with Argo's CRDs and no Argo controller.

The operator runs as its own process (``python -m qhybrid operator run``), as the
blueprint's service account with only the blueprint's Role, so the least-privilege
RBAC is exercised too. The test plays Argo: it writes the Workflow's status as the
controller would, with the report output of a real local run of the same spec.
Run with ``QHYBRID_TEST_KUBECONFIG`` (``pytest -m apiserver tests/apiserver``); unset, these skip.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from qhybrid.blueprint.config import load_stack_file
from qhybrid.blueprint.quantumjob import OPERATOR_NAME, operator_role, operator_role_binding
from qhybrid.blueprint.quantumjob_crd import (
    GROUP,
    IMMUTABLE_RULE,
    PLURAL,
    SPEC_RULES,
    VERSION,
    quantumjob_crd,
)
from qhybrid.operator.reconcile import JOB_UID_LABEL, owner_reference, workflow_name
from qhybrid.operator.render import job_from_spec, request_of
from qhybrid.ops.kubeapi import ApiFailure, KubeApi, resource_path
from qhybrid.pipeline.runner import run_local
from qhybrid.spec import ProblemFlags, spec_from_flags
from qhybrid.workflow.build import RunOptions
from tests.apiserver.conftest import CRD_API, Scratch, kubeconfig_cluster, token_for, wait_established

JOBS = f"{GROUP}/{VERSION}"
WORKFLOWS = "argoproj.io/v1alpha1"
WAIT_S = 90.0
START_S = 60.0


def wait_for(what: str, check: Callable[[], Any], timeout_s: float = WAIT_S) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(0.5)


def read(kube: KubeApi, path: str) -> dict[str, Any] | None:
    try:
        return kube.get(path)
    except ApiFailure as failure:
        if failure.status == 404:
            return None
        raise


@pytest.fixture(scope="module")
def quantumjobs(kube: KubeApi, crds: list[str]) -> str:
    """The QuantumJob CRD, installed or brought up to date; Argo's Workflow CRD must be there too."""
    if "workflows.argoproj.io" not in crds:
        pytest.skip("no Argo Workflow CRD: QHYBRID_CRDS_DIR has none and the server lacks it")
    crd = quantumjob_crd()
    name = crd["metadata"]["name"]
    kube.apply(f"{CRD_API}/{name}", crd, dry_run=False)
    wait_established(kube, name)
    return name


def namespace(scratch: Scratch, name: str) -> str:
    ns = scratch.name(name)
    scratch.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, "namespaces", False)
    return ns


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Operator:
    """One operator process and where to reach it."""

    namespace: str
    process: subprocess.Popen[bytes]
    log: Path
    metrics_port: int

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as answer:
            return str(answer.read().decode())

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class OperatorLauncher:
    """Starts operators watching one namespace, as the blueprint's service account with its Role."""

    def __init__(self, kube: KubeApi, scratch: Scratch, folder: Path) -> None:
        self.namespace = namespace(scratch, "jobs")
        home = namespace(scratch, "operator")
        scratch.create(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": OPERATOR_NAME, "namespace": home},
            },
            "serviceaccounts",
            True,
        )
        config = load_stack_file("kind")
        role = operator_role(config)
        role["metadata"]["namespace"] = self.namespace
        binding = operator_role_binding(config)
        binding["metadata"]["namespace"] = self.namespace
        binding["subjects"][0]["namespace"] = home
        scratch.create(role, "roles", True)
        scratch.create(binding, "rolebindings", True)
        server, ca = kubeconfig_cluster(folder)
        cluster: dict[str, Any] = {"server": server}
        if ca is not None:
            cluster["certificate-authority"] = str(ca)
        self.kubeconfig = folder / "operator.kubeconfig"
        self.kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "test", "cluster": cluster}],
                    "users": [
                        {"name": "operator", "user": {"token": token_for(kube, home, OPERATOR_NAME, None)}}
                    ],
                    "contexts": [{"name": "operator", "context": {"cluster": "test", "user": "operator"}}],
                    "current-context": "operator",
                }
            )
        )
        self.folder = folder
        self.started: list[Operator] = []

    def start(self) -> Operator:
        metrics, health = free_port(), free_port()
        log = self.folder / f"operator-{len(self.started)}.log"
        command = [sys.executable, "-m", "qhybrid", "operator", "run", "--stack", "kind"]
        command += ["--namespace", self.namespace, "--kubeconfig", str(self.kubeconfig)]
        command += ["--metrics-port", str(metrics), "--liveness-port", str(health)]
        with log.open("wb") as sink:
            process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=dict(os.environ))
        operator = Operator(self.namespace, process, log, metrics)
        self.started.append(operator)

        def healthy() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"the operator exited {process.returncode}:\n{log.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz", timeout=2) as answer:
                    return bool(answer.status == 200)
            except OSError:
                return False

        wait_for("the operator's /healthz", healthy, START_S)
        return operator

    def stop_all(self) -> None:
        for operator in self.started:
            operator.stop()


@pytest.fixture
def operators(
    kube: KubeApi, scratch: Scratch, quantumjobs: str, tmp_path: Path
) -> Iterator[OperatorLauncher]:
    launcher = OperatorLauncher(kube, scratch, tmp_path)
    yield launcher
    launcher.stop_all()


def apply_job(
    kube: KubeApi, namespace: str, name: str, flags: dict[str, Any] | None = None
) -> dict[str, Any]:
    job = job_from_spec(
        spec_from_flags(ProblemFlags(flags or {})), name, namespace=namespace, options=RunOptions(cache=False)
    )
    return kube.create(resource_path(JOBS, PLURAL, namespace), job)


def job_status(kube: KubeApi, job: dict[str, Any]) -> dict[str, Any]:
    path = resource_path(JOBS, PLURAL, job["metadata"]["namespace"], job["metadata"]["name"])
    return dict((read(kube, path) or {}).get("status") or {})


def workflow_path(job: dict[str, Any]) -> str:
    return resource_path(WORKFLOWS, "workflows", job["metadata"]["namespace"], workflow_name(job))


def play_argo(kube: KubeApi, job: dict[str, Any], phase: str, report: dict[str, Any] | None = None) -> None:
    """Write the Workflow's status as Argo's controller would (Argo's CRD has no status subresource)."""
    nodes: dict[str, Any] = {}
    if report is not None:
        nodes["report-node"] = {
            "id": "report-node",
            "name": f"{workflow_name(job)}.report",
            "displayName": "report",
            "templateName": "report",
            "type": "Pod",
            "phase": "Succeeded",
            "outputs": {"parameters": [{"name": "report", "value": json.dumps(report)}]},
        }
    kube.merge_patch(workflow_path(job), {"status": {"phase": phase, "progress": "1/1", "nodes": nodes}})


def test_a_quantumjob_runs_through_its_workflow_and_its_status_carries_the_estimate(
    kube, operators, tmp_path
):
    operator = operators.start()
    job = apply_job(kube, operators.namespace, "cutting")
    # The operator creates the Workflow that `qhybrid workflow render` builds, owned by the job.
    workflow = wait_for("the job's Workflow", lambda: read(kube, workflow_path(job)))
    assert workflow["metadata"]["ownerReferences"] == [owner_reference(job)]
    assert workflow["metadata"]["labels"][JOB_UID_LABEL] == job["metadata"]["uid"]
    templates = {t["name"] for t in workflow["spec"]["templates"]}
    assert {"cutting", "generate", "batches", "execute-cpu", "reconstruct", "report"} <= templates
    pending = wait_for(
        "status Pending", lambda: job_status(kube, job).get("workflowName") and job_status(kube, job)
    )
    assert pending["phase"] == "Pending"
    assert pending["specHash"] == request_of(job["spec"]).spec.spec_hash()
    # Argo runs it (here: the same spec run locally, its report as the report step's output).
    play_argo(kube, job, "Running")
    wait_for("status Running", lambda: job_status(kube, job).get("phase") == "Running")
    report = run_local(request_of(job["spec"]).spec, tmp_path / "run")
    play_argo(kube, job, "Succeeded", report)
    done = wait_for(
        "status Succeeded",
        lambda: job_status(kube, job).get("phase") == "Succeeded" and job_status(kube, job),
    )
    assert done["estimate"] == report["estimate"] and done["exact"] == report["exact"]
    assert done["counts"]["unique"] == report["counts"]["unique"]
    conditions = {c["type"]: c["status"] for c in done["conditions"]}
    assert conditions["Complete"] == "True"
    metrics = operator.metrics()
    assert f'qhybrid_quantumjobs{{namespace="{operators.namespace}",phase="Succeeded"}} 1.0' in metrics
    assert 'qhybrid_quantumjob_time_to_result_seconds_count{phase="Succeeded"} 1.0' in metrics


def test_a_restarted_operator_follows_the_job_without_a_second_workflow(kube, operators):
    first = operators.start()
    job = apply_job(kube, operators.namespace, "restart")
    wait_for("the job's Workflow", lambda: read(kube, workflow_path(job)))
    first.stop(signal.SIGKILL)  # no clean shutdown
    operators.start()
    play_argo(kube, job, "Running")
    wait_for("status Running", lambda: job_status(kube, job).get("phase") == "Running")
    selector = f"{JOB_UID_LABEL}={job['metadata']['uid']}"
    listed = kube.get(resource_path(WORKFLOWS, "workflows", operators.namespace), {"labelSelector": selector})
    assert len(listed["items"]) == 1


def test_a_workflow_deleted_from_under_the_job_fails_it(kube, operators):
    operators.start()
    job = apply_job(kube, operators.namespace, "orphan")
    wait_for("status with its workflow", lambda: job_status(kube, job).get("workflowName"))
    kube.delete(workflow_path(job))
    failed = wait_for(
        "status Failed", lambda: job_status(kube, job).get("phase") == "Failed" and job_status(kube, job)
    )
    assert "deleted before it finished" in failed["message"]
    assert read(kube, workflow_path(job)) is None  # not recreated


def test_deleting_a_quantumjob_garbage_collects_its_workflow(kube, operators):
    lease = read(kube, "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager")
    if lease is None:
        pytest.skip(
            "no kube-controller-manager runs (no leader lease): nothing collects garbage on this server"
        )
    operators.start()
    job = apply_job(kube, operators.namespace, "collected")
    wait_for("the job's Workflow", lambda: read(kube, workflow_path(job)))
    kube.delete(resource_path(JOBS, PLURAL, operators.namespace, "collected"))
    wait_for("the Workflow garbage-collected", lambda: read(kube, workflow_path(job)) is None)


def test_the_server_refuses_quantumjobs_that_break_the_cel_rules(kube, quantumjobs, scratch):
    ns = namespace(scratch, "cel")
    good = job_from_spec(spec_from_flags(ProblemFlags({})), "good", namespace=ns)
    collection = resource_path(JOBS, PLURAL, ns)
    kube.create(collection, good, dry_run=True)  # the reference job passes
    bad_specs = {
        SPEC_RULES[0][1]: {"maxWidth": 5},  # partition and maxWidth
        SPEC_RULES[1][1]: {"mode": "sampled"},  # sampled without shots
        SPEC_RULES[2][1]: {"shots": 100},  # shots in exact mode
        SPEC_RULES[3][1]: {"circuit": {"qasm": "OPENQASM 2.0;"}},  # a circuit without an observable
        SPEC_RULES[4][1]: {"mode": "sampled", "shots": 100, "shotBudget": 10},
    }
    for message, change in bad_specs.items():
        bad = copy.deepcopy(good)
        bad["spec"].update(change)
        with pytest.raises(ApiFailure) as refused:
            kube.create(collection, bad, dry_run=True)
        assert refused.value.status == 422 and message in refused.value.message, (change, refused.value)
    # The spec may change until the operator has created the Workflow, and not after.
    created = kube.create(collection, good)
    path = resource_path(JOBS, PLURAL, ns, "good")
    kube.merge_patch(path, {"spec": {"seed": 1}})
    kube.merge_patch(
        f"{path}/status", {"status": {"phase": "Pending", "workflowName": workflow_name(created)}}
    )
    with pytest.raises(ApiFailure) as refused:
        kube.merge_patch(path, {"spec": {"seed": 2}})
    assert refused.value.status == 422 and IMMUTABLE_RULE[1] in refused.value.message
