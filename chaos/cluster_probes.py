"""Chaos Toolkit activities for the cluster game days (``chaos/experiments/cluster/*.json``).

Plain functions, referenced by the experiments as python providers of module
``qhybrid_chaos.cluster_probes`` (this folder installs as ``qhybrid_chaos``). They
talk to the cluster named by ``KUBECONFIG``, as chaostoolkit-kubernetes' own
activities do.

An experiment's method starts a cutting workflow with :func:`submit_workflow`
(which records it in a small JSON state file), waits with
:func:`wait_for_running_pods` until the fan-out is running, then injects the
fault. Its steady-state hypothesis, checked after the method, runs
:func:`workflows_reproduce_local_estimate`: every recorded workflow must
succeed, and its report must match what this machine computes:

- ``expect="local"``: simulator branches only; estimate, standard error and
  every term bitwise equal to ``run_local`` of the same spec;
- ``expect="cpu-failover"``: every subexperiment planned on the QPU failed over
  to ``cpu`` (each with a reason), so the numbers are bitwise those of the same
  spec with policy ``cpu``;
- ``expect="qpu-accounted"``: every subexperiment planned on the QPU ran there
  or failed over with a reason, and the estimate is within
  ``max_standard_errors`` of the exact value (the in-cluster gateway's default
  backend is the noiseless ``aer``).

A failure raises ``chaoslib.exceptions.ActivityFailed`` (``AssertionError``
where chaostoolkit-lib is not installed) naming what differed.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

try:
    from chaoslib.exceptions import ActivityFailed
except ImportError:  # chaostoolkit-lib is a dev dependency; the functions work without it

    class ActivityFailed(AssertionError):  # type: ignore[no-redef]
        """Stands in for chaoslib's ActivityFailed."""


__all__ = [
    "restore_gateway_secret",
    "submit_workflow",
    "wait_for_running_pods",
    "wait_for_workflows",
    "workflows_reproduce_local_estimate",
]

logger = logging.getLogger("chaostoolkit")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_STATE_FILE = "runs/chaos-cluster/state.json"


def _spec(**fields: Any) -> Any:
    from qhybrid.spec import RunSpec

    return RunSpec(scenario="cutting", **{k: v for k, v in fields.items() if v is not None})


def _read_state(state_file: str) -> list[dict[str, Any]]:
    path = Path(state_file)
    return list(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else []


def _write_state(state_file: str, entries: list[dict[str, Any]]) -> None:
    from qhybrid import atomic

    atomic.write_json(Path(state_file), entries)


def submit_workflow(
    stack: str = "kind",
    qubits: int | None = None,
    reps: int | None = None,
    mode: str = "exact",
    shots: int | None = None,
    seed: int = 0,
    policy: str = "cpu",
    per_pod: int | None = None,
    expect: str = "local",
    state_file: str = DEFAULT_STATE_FILE,
) -> str:
    """Render and create the cutting Workflow for these options; record it; return its name.

    Args:
        stack: the stack whose config shapes the Workflow (``stacks/Pulumi.<stack>.yaml``).
        qubits: reference circuit width (default: the scenario's).
        reps: reference circuit layers (default: the scenario's).
        mode: ``exact`` or ``sampled``.
        shots: shots per subexperiment in sampled mode.
        seed: the run's seed.
        policy: backend policy (``cpu``, ``gpu``, ``width``).
        per_pod: subexperiments per execute pod (default: one batch per quota slot); small
            values make more pods than slots, which Kueue spreads over borrowed flavors.
        expect: how :func:`workflows_reproduce_local_estimate` judges its report.
        state_file: where submitted workflows are recorded.
    """
    from qhybrid.blueprint.config import load_stack_file
    from qhybrid.workflow.build import workflow_object
    from qhybrid.workflow.checks import check_workflow
    from qhybrid.workflow.submit import create, custom_objects_api

    if expect not in ("local", "cpu-failover", "qpu-accounted"):
        raise ActivityFailed(f"expect must be local, cpu-failover or qpu-accounted, not {expect!r}")
    config = load_stack_file(stack)
    spec = _spec(qubits=qubits, reps=reps, mode=mode, shots=shots, seed=seed, policy=policy)
    workflow = workflow_object(config, spec, per_pod=per_pod)
    problems = check_workflow(workflow, config)
    if problems:
        raise ActivityFailed("the rendered workflow fails its checks: " + "; ".join(problems))
    name = create(custom_objects_api(), workflow)
    entries = _read_state(state_file)
    entries.append(
        {
            "name": name,
            "namespace": workflow["metadata"]["namespace"],
            "spec": spec.to_json(),
            "expect": expect,
            "checked": False,
        }
    )
    _write_state(state_file, entries)
    logger.info(f"submitted workflow {name} ({policy}, {mode}), expecting {expect}")
    return name


def wait_for_running_pods(
    label_selector: str,
    ns: str,
    count: int = 1,
    node_label_selector: str | None = None,
    timeout_s: float = 900,
    poll_s: float = 2,
) -> int:
    """Wait until at least ``count`` pods matching ``label_selector`` in ``ns`` are Running.

    Lets an experiment inject its fault while the fan-out is running, not before it.

    Args:
        label_selector: Kubernetes label selector of the pods.
        ns: their namespace.
        count: how many must be Running at once.
        node_label_selector: count only pods on nodes with these labels (e.g. one pool's).
        timeout_s: give up (ActivityFailed) after this many seconds.
        poll_s: seconds between looks.
    """
    from kubernetes import client, config

    config.load_kube_config()
    core = client.CoreV1Api()
    deadline = time.monotonic() + float(timeout_s)
    running = 0
    while time.monotonic() < deadline:
        nodes = None
        if node_label_selector:
            nodes = {n.metadata.name for n in core.list_node(label_selector=node_label_selector).items}
        pods = core.list_namespaced_pod(ns, label_selector=label_selector).items
        running = sum(
            1
            for pod in pods
            if pod.status.phase == "Running" and (nodes is None or pod.spec.node_name in nodes)
        )
        if running >= count:
            return running
        time.sleep(poll_s)
    where = f" on nodes {node_label_selector!r}" if node_label_selector else ""
    raise ActivityFailed(
        f"{running} of {count} pods {label_selector!r} in {ns} Running{where} after {timeout_s} s"
    )


def _numbers(report: dict[str, Any]) -> dict[str, Any]:
    return {
        "estimate": float(report["estimate"]).hex(),
        "standard_error": float(report["standard_error"]).hex(),
        "terms": [float(t["value"]).hex() for t in report["terms"]],
    }


def _judge(entry: dict[str, Any], report: dict[str, Any], max_standard_errors: float) -> dict[str, Any]:
    """Compare one workflow's report with what ``entry['expect']`` says it must equal."""
    from rich.console import Console

    from qhybrid.pipeline.runner import run_local

    spec = _spec(**{k: v for k, v in entry["spec"].items() if k != "scenario"})
    provenance = report["provenance"]
    planned_qpu = report["counts"].get("by_backend", {}).get("qpu", 0)
    failovers = provenance.get("failovers", [])
    if any(not f.get("reason") for f in failovers):
        raise ActivityFailed(f"{entry['name']}: a failover without a reason: {failovers}")
    ran = provenance["backend_per_subexperiment"]
    misplaced = [f["subexperiment"] for f in failovers if ran[f["subexperiment"]] != f["to"]]
    if misplaced:
        raise ActivityFailed(f"{entry['name']}: subexperiments {misplaced} did not run where they went")
    summary = {"workflow": entry["name"], "estimate": report["estimate"], "failovers": len(failovers)}
    if entry["expect"] == "qpu-accounted":
        if planned_qpu == 0 or ran.count("qpu") + len(failovers) != planned_qpu:
            raise ActivityFailed(
                f"{entry['name']}: {planned_qpu} planned on the QPU, {ran.count('qpu')} ran there, "
                f"{len(failovers)} failed over"
            )
        distance = abs(report["estimate"] - report["exact"]) / report["standard_error"]
        if distance > max_standard_errors:
            raise ActivityFailed(f"{entry['name']}: estimate {distance:.1f} standard errors from exact")
        return {**summary, "standard_errors_from_exact": distance}
    if entry["expect"] == "cpu-failover":
        if planned_qpu == 0 or len(failovers) != planned_qpu:
            raise ActivityFailed(
                f"{entry['name']}: {len(failovers)} of {planned_qpu} QPU subexperiments failed over, not all"
            )
        spec = replace(spec, policy="cpu")
    with tempfile.TemporaryDirectory(prefix="qhybrid-chaos-") as scratch:
        local = run_local(spec, Path(scratch) / "local", console=Console(stderr=True, quiet=True))
    if _numbers(report) != _numbers(local):
        raise ActivityFailed(
            f"{entry['name']}: estimate {report['estimate']!r} (standard error {report['standard_error']!r}) "
            f"but the local run of policy {spec.policy} gives {local['estimate']!r} "
            f"({local['standard_error']!r}); numbers compared as float.hex"
        )
    return {**summary, "local_estimate": local["estimate"], "bitwise_equal": True}


def wait_for_workflows(state_file: str = DEFAULT_STATE_FILE, timeout_s: float = 2400) -> dict[str, str]:
    """Wait until every recorded, unchecked workflow has ended; return each one's phase (no judging).

    For experiments that must repair the fault (within their method) after the
    workflow ran through it and before the hypothesis judges its report.

    Args:
        state_file: where :func:`submit_workflow` recorded its workflows.
        timeout_s: how long each workflow may take to finish.
    """
    from qhybrid.errors import QhybridError
    from qhybrid.workflow.submit import custom_objects_api, follow, snapshot

    api = custom_objects_api()
    phases = {}
    for entry in _read_state(state_file):
        if not entry["checked"]:
            try:
                final = follow(api, entry["namespace"], entry["name"], timeout_s=float(timeout_s))
            except QhybridError as error:
                raise ActivityFailed(str(error)) from None
            phases[entry["name"]] = snapshot(final).phase
    return phases


def workflows_reproduce_local_estimate(
    state_file: str = DEFAULT_STATE_FILE, timeout_s: float = 2400, max_standard_errors: float = 5.0
) -> bool:
    """Follow every recorded, unchecked workflow to its end and judge its report (see the module doc).

    With none recorded (the hypothesis before the method), check that the Argo
    Workflow API answers in the namespaces of earlier entries or the default one.

    Args:
        state_file: where :func:`submit_workflow` recorded its workflows.
        timeout_s: how long each workflow may take to finish.
        max_standard_errors: ``qpu-accounted``: the furthest the estimate may sit from exact.
    """
    from qhybrid.errors import QhybridError
    from qhybrid.workflow.submit import (
        GROUP,
        PLURAL,
        VERSION,
        custom_objects_api,
        follow,
        report_of,
        snapshot,
    )

    api = custom_objects_api()
    entries = _read_state(state_file)
    pending = [entry for entry in entries if not entry["checked"]]
    if not pending:
        from qhybrid.blueprint.config import load_stack_file

        namespace = load_stack_file("kind").workflow_namespace
        try:
            api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, limit=1)
        except Exception as error:  # noqa: BLE001 (any API failure means the platform is not steady)
            raise ActivityFailed(f"the Argo Workflow API does not answer in {namespace}: {error}") from None
        return True
    for entry in pending:
        try:
            final = follow(api, entry["namespace"], entry["name"], timeout_s=float(timeout_s))
        except QhybridError as error:
            raise ActivityFailed(str(error)) from None
        seen = snapshot(final)
        if seen.phase != "Succeeded":
            raise ActivityFailed(f"workflow {entry['name']} ended {seen.phase}: {seen.message}")
        result = _judge(entry, report_of(final), max_standard_errors)
        logger.info(f"workflow {entry['name']}: {json.dumps(result)}")
        entry["checked"] = True
        entry["result"] = result
        _write_state(state_file, entries)
    return True


def restore_gateway_secret(
    stack: str = "kind",
    name: str = "qpu-provider-credentials",
    ns: str = "qhybrid-gateway",
    timeout_s: float = 1800,
) -> bool:
    """Re-create the provider credentials Secret the blueprint owns: ``pulumi up --refresh``.

    The token lives only in the stack's encrypted config, so Pulumi is what can
    put the Secret back (``--refresh`` first notices it is gone). Needs the
    Pulumi CLI and the stack's backend and passphrase in the environment, as the
    nightly has them. By hand: ``pulumi up --refresh --yes -s kind``. Does
    nothing when the Secret exists (the rollback after a method that restored it).

    Args:
        stack: the Pulumi stack.
        name: the Secret.
        ns: its namespace.
        timeout_s: how long ``pulumi up`` may take.
    """
    from kubernetes import client, config

    config.load_kube_config()
    found = client.CoreV1Api().list_namespaced_secret(ns, field_selector=f"metadata.name={name}").items
    if found:
        logger.info(f"secret {ns}/{name} exists: nothing to restore")
        return True
    command = ["pulumi", "up", "--refresh", "--yes", "--skip-preview", "--non-interactive", "-s", stack]
    try:
        result = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, timeout=float(timeout_s), env={**os.environ}
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ActivityFailed(f"{' '.join(command)}: {error}") from None
    if result.returncode != 0:
        raise ActivityFailed(f"{' '.join(command)} exited {result.returncode}: {result.stderr[-2000:]}")
    if not client.CoreV1Api().list_namespaced_secret(ns, field_selector=f"metadata.name={name}").items:
        raise ActivityFailed(f"`pulumi up` succeeded but secret {ns}/{name} is still missing")
    return True
