"""The cluster game-day experiments: valid Chaos Toolkit files whose activities all exist.

Also runs qhybrid_chaos.cluster_probes offline: a fake Workflow API that replays
each created Workflow locally stands in for Argo, so submit -> follow -> judge
runs for real against the numbers this machine computes.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import inspect
import json
from pathlib import Path

import pytest
import yaml
from qhybrid_chaos import cluster_probes

from qhybrid.blueprint.config import load_stack_file
from qhybrid.blueprint.names import (
    GATEWAY_CREDENTIALS_SECRET,
    GATEWAY_LABELS,
    GATEWAY_NAME,
    GATEWAY_NAMESPACE,
    WORKER_LABELS,
)
from qhybrid.blueprint.pools import POOL_LABEL
from qhybrid.cli import run_in_process
from qhybrid.pipeline.runner import run_local
from qhybrid.spec import RunSpec
from qhybrid.workflow.build import to_yaml
from qhybrid.workflow.replay import replay
from tests.conftest import REPO

EXPERIMENTS = sorted((REPO / "chaos" / "experiments" / "cluster").glob("*.json"))
ACTIVITY_SECTIONS = ("method", "rollbacks")
HAS_CHAOSLIB = importlib.util.find_spec("chaoslib") is not None
HAS_CHAOSK8S = importlib.util.find_spec("chaosk8s") is not None


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def activities(experiment: dict) -> list[dict]:
    found = list(experiment.get("steady-state-hypothesis", {}).get("probes", []))
    for section in ACTIVITY_SECTIONS:
        found += experiment.get(section, [])
    return found


def python_providers(experiment: dict, prefix: str) -> list[dict]:
    return [
        a["provider"]
        for a in activities(experiment)
        if a["provider"]["type"] == "python" and a["provider"]["module"].startswith(prefix)
    ]


def test_the_four_game_days_are_there():
    assert [p.stem for p in EXPERIMENTS] == [
        "delete-gateway-secret",
        "drain-gpu-node",
        "kill-gateway-pod",
        "terminate-worker-pods",
    ]


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_structure(path):
    experiment = load(path)
    assert {"version", "title", "description", "method"} <= set(experiment)
    assert experiment["method"], "an experiment needs a method"
    assert "cluster" in experiment["tags"]
    hypothesis = experiment["steady-state-hypothesis"]
    assert hypothesis["title"] and hypothesis["probes"]
    for probe in hypothesis["probes"]:
        assert probe["type"] == "probe" and "tolerance" in probe, probe["name"]
    names = [a["name"] for a in activities(experiment)]
    for activity in activities(experiment):
        assert activity["type"] in ("probe", "action") and activity["name"]
        assert activity["provider"]["type"] == "python", activity["name"]
    # Every hypothesis judges the workflows the method submitted.
    assert any(p["provider"]["func"] == "workflows_reproduce_local_estimate" for p in hypothesis["probes"])
    assert any(a["provider"]["func"] == "submit_workflow" for a in experiment["method"]), names
    for key, entry in experiment["configuration"].items():
        assert entry["type"] == "env" and entry["key"].startswith("QHYBRID_CHAOS_"), key


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_our_activities_exist_with_their_arguments(path):
    for provider in python_providers(load(path), "qhybrid_chaos"):
        module = importlib.import_module(provider["module"])
        assert provider["func"] in module.__all__, provider
        parameters = inspect.signature(getattr(module, provider["func"])).parameters
        assert set(provider.get("arguments", {})) <= set(parameters), provider


@pytest.mark.skipif(not HAS_CHAOSK8S, reason="chaostoolkit-kubernetes is not installed in this venv")
@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_kubernetes_activities_exist_in_chaostoolkit_kubernetes(path):
    providers = python_providers(load(path), "chaosk8s")
    assert providers
    for provider in providers:
        module = importlib.import_module(provider["module"])
        assert provider["func"] in module.__all__, provider
        parameters = inspect.signature(getattr(module, provider["func"])).parameters
        assert set(provider.get("arguments", {})) <= set(parameters), provider


@pytest.mark.skipif(
    not (HAS_CHAOSLIB and HAS_CHAOSK8S), reason="needs chaostoolkit-lib and chaostoolkit-kubernetes"
)
@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_chaos_toolkit_accepts_the_experiment(path):
    from chaoslib.exceptions import InvalidActivity
    from chaoslib.experiment import ensure_experiment_is_valid

    experiment = load(path)
    ensure_experiment_is_valid(experiment)
    # and it would refuse a misspelled function: the check is real.
    broken = copy.deepcopy(experiment)
    broken["method"][0]["provider"]["func"] += "x"
    with pytest.raises(InvalidActivity):
        ensure_experiment_is_valid(broken)


def arguments_of(experiment: dict, func: str) -> list[dict]:
    return [a["provider"]["arguments"] for a in activities(experiment) if a["provider"]["func"] == func]


def test_faults_target_the_blueprints_objects():
    config = load_stack_file("kind")
    by_name = {p.stem: load(p) for p in EXPERIMENTS}
    worker = "{}={}".format(*next(iter(WORKER_LABELS.items())))
    gateway = "app.kubernetes.io/name=" + GATEWAY_LABELS["app.kubernetes.io/name"]
    [terminate] = arguments_of(by_name["terminate-worker-pods"], "terminate_pods")
    assert terminate["label_selector"].startswith(worker) and terminate["ns"] == config.workflow_namespace
    for name in ("kill-gateway-pod", "delete-gateway-secret"):
        [kill] = arguments_of(by_name[name], "terminate_pods")
        assert (kill["label_selector"], kill["ns"]) == (gateway, GATEWAY_NAMESPACE)
    [drain] = arguments_of(by_name["drain-gpu-node"], "drain_nodes")
    assert drain["label_selector"] == f"{POOL_LABEL}=gpu" and drain["delete_pods_with_local_storage"]
    rollbacks = by_name["drain-gpu-node"]["rollbacks"]
    assert [r["provider"]["func"] for r in rollbacks] == ["uncordon_node"]
    [delete] = arguments_of(by_name["delete-gateway-secret"], "delete_secret")
    assert (delete["name"], delete["ns"]) == (GATEWAY_CREDENTIALS_SECRET, GATEWAY_NAMESPACE)
    assert "restore_gateway_secret" in [
        r["provider"]["func"] for r in by_name["delete-gateway-secret"]["rollbacks"]
    ]
    for experiment in by_name.values():
        for args in arguments_of(experiment, "deployment_available_and_healthy"):
            if args["ns"] == GATEWAY_NAMESPACE:
                assert args["name"] == GATEWAY_NAME


# --------------------------------------------------------------------------- the probes, offline


class ReplayingApi:
    """A Workflow API whose workflows run here: each created Workflow is replayed locally."""

    def __init__(self, root: Path, tamper=None) -> None:
        self.root = root
        self.created: dict[str, dict] = {}
        self.tamper = tamper

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        assert (group, version, plural) == ("argoproj.io", "v1alpha1", "workflows")
        name = f"cutting-{len(self.created):05d}"
        self.created[name] = yaml.safe_load(to_yaml(body))  # what the API server would store
        return {"metadata": {"name": name}}

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        done = replay(self.created[name], self.root / name, runner=run_in_process, name=name)
        report = json.loads((done.run_dir / "report.json").read_text())
        if self.tamper:
            self.tamper(report)
        node = {
            "type": "Pod",
            "templateName": "report",
            "phase": "Succeeded",
            "outputs": {"parameters": [{"name": "report", "value": json.dumps(report)}]},
        }
        return {"status": {"phase": "Succeeded", "progress": "6/6", "nodes": {f"{name}-1": node}}}

    def list_namespaced_custom_object(self, group, version, namespace, plural, **kwargs):
        return {"items": []}


@pytest.fixture
def fake_argo(monkeypatch, tmp_path):
    def install(tamper=None) -> ReplayingApi:
        api = ReplayingApi(tmp_path / "cluster", tamper)
        monkeypatch.setattr("qhybrid.workflow.submit.custom_objects_api", lambda *a, **k: api)
        return api

    return install


def test_submitted_workflow_is_judged_against_the_local_run(fake_argo, tmp_path):
    fake_argo()
    state = str(tmp_path / "state.json")
    assert cluster_probes.workflows_reproduce_local_estimate(state_file=state)  # nothing yet: API answers
    name = cluster_probes.submit_workflow(mode="sampled", shots=500, seed=2, state_file=state)
    assert cluster_probes.wait_for_workflows(state_file=state) == {name: "Succeeded"}
    assert cluster_probes.workflows_reproduce_local_estimate(state_file=state, timeout_s="60")
    [entry] = json.loads(Path(state).read_text())
    assert entry["checked"] and entry["result"]["bitwise_equal"]


def test_a_moved_term_fails_the_hypothesis(fake_argo, tmp_path):
    def one_ulp(report):
        report["terms"][4]["value"] = float.fromhex(report["terms"][4]["value"].hex()) + 2**-52

    fake_argo(one_ulp)
    state = str(tmp_path / "state.json")
    cluster_probes.submit_workflow(mode="exact", seed=2, state_file=state)
    with pytest.raises(cluster_probes.ActivityFailed, match="numbers compared as float.hex"):
        cluster_probes.workflows_reproduce_local_estimate(state_file=state)


def qpu_report(tmp_path, *, failed_over: int, estimate_shift: float = 0.0) -> dict:
    # A sampled cpu run dressed as a width-policy run whose QPU work partly failed over.
    report = run_local(RunSpec(scenario="cutting", mode="sampled", shots=500, seed=2), tmp_path / "run")
    report["counts"]["by_backend"] = {"qpu": 250}
    report["provenance"]["backend_per_subexperiment"] = ["cpu"] * failed_over + ["qpu"] * (250 - failed_over)
    report["provenance"]["failovers"] = [
        {"subexperiment": i, "from": "qpu", "to": "cpu", "reason": "cannot reach the gateway"}
        for i in range(failed_over)
    ]
    report["estimate"] += estimate_shift
    return report


def entry(expect: str) -> dict:
    spec = {"mode": "sampled", "shots": 500, "seed": 2, "policy": "width"}
    return {"name": "cutting-x", "spec": spec, "expect": expect}


def test_cpu_failover_is_bitwise_the_cpu_policy_run(tmp_path):
    all_failed = qpu_report(tmp_path, failed_over=250)
    assert cluster_probes._judge(entry("cpu-failover"), all_failed, 5.0)["bitwise_equal"]
    with pytest.raises(cluster_probes.ActivityFailed, match="249 of 250 QPU subexperiments failed over"):
        cluster_probes._judge(entry("cpu-failover"), qpu_report(tmp_path / "b", failed_over=249), 5.0)


def test_qpu_accounting_and_distance_from_exact(tmp_path):
    report = qpu_report(tmp_path, failed_over=3)
    assert cluster_probes._judge(entry("qpu-accounted"), report, 5.0)["failovers"] == 3
    moved = copy.deepcopy(report)
    moved["provenance"]["backend_per_subexperiment"][0] = "gpu"  # not where it failed over to
    with pytest.raises(cluster_probes.ActivityFailed, match=r"\[0\] did not run where they went"):
        cluster_probes._judge(entry("qpu-accounted"), moved, 5.0)
    lost = copy.deepcopy(report)
    lost["provenance"]["backend_per_subexperiment"][-1] = "cpu"  # ran elsewhere with no failover record
    with pytest.raises(cluster_probes.ActivityFailed, match="250 planned on the QPU, 246 ran there"):
        cluster_probes._judge(entry("qpu-accounted"), lost, 5.0)
    far = qpu_report(tmp_path / "far", failed_over=0, estimate_shift=1.0)
    with pytest.raises(cluster_probes.ActivityFailed, match="standard errors from exact"):
        cluster_probes._judge(entry("qpu-accounted"), far, 5.0)
