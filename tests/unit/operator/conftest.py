"""QuantumJobs and Workflow states for the operator's unit tests (no cluster: plain objects)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from qhybrid.blueprint.config import load_stack_file
from qhybrid.operator.render import job_from_spec
from qhybrid.spec import ProblemFlags, spec_from_flags
from qhybrid.workflow.build import RunOptions

NAMESPACE = "qhybrid-workflows"
UID = "5f0c1d2e-3a4b-4c5d-8e9f-a0b1c2d3e4f5"
CREATED = "2026-11-30T08:00:00Z"
CREATED_EPOCH = 1796025600.0  # CREATED as seconds since the epoch


@pytest.fixture(scope="session")
def config():
    return load_stack_file("kind")


def make_job(
    flags: dict[str, Any] | None = None,
    *,
    name: str = "cutting",
    options: RunOptions | None = None,
    status: dict[str, Any] | None = None,
    generation: int = 1,
    spec: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A QuantumJob as the API server returns it: defaults applied, uid and generation set."""
    job = job_from_spec(
        spec_from_flags(ProblemFlags(flags or {})), name, namespace=NAMESPACE, options=options
    )
    if spec is not None:
        job["spec"] = spec
    job["metadata"].update(uid=UID, generation=generation, creationTimestamp=CREATED, resourceVersion="1")
    if status is not None:
        job["status"] = copy.deepcopy(status)
    return job


def pod_node(name: str, template: str, phase: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": name,
        "displayName": template,
        "templateName": template,
        "type": "Pod",
        "phase": phase,
        **extra,
    }


def with_status(
    workflow: dict[str, Any], phase: str, nodes: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The Workflow as Argo leaves it in ``phase``, with these pod nodes."""
    done = copy.deepcopy(workflow)
    done["metadata"].setdefault("uid", "wf-uid")
    done["status"] = {
        "phase": phase,
        "progress": f"{sum(n['phase'] == 'Succeeded' for n in nodes or [])}/{len(nodes or [])}",
        "nodes": {node["id"]: node for node in nodes or []},
    }
    return done


def succeeded(workflow: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """The Workflow after its report step exported ``report`` (what Argo would record)."""
    node = pod_node(
        "n-report",
        "report",
        "Succeeded",
        outputs={"parameters": [{"name": "report", "value": json.dumps(report)}]},
    )
    return with_status(workflow, "Succeeded", [pod_node("n-generate", "generate", "Succeeded"), node])
