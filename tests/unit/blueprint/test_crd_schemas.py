"""The schemas tier: every custom resource we build validates, strictly, against the upstream CRDs.

The CRDs are the unmodified upstream files in ``QHYBRID_CRDS_DIR`` (default
``../shared/crds``: Kueue, Argo Workflows' full CRDs, prometheus-operator). Strict means
a field the API server would prune is an error. Without that folder these tests skip,
saying so.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

from qhybrid.blueprint.config import load_stack_file
from qhybrid.blueprint.render import rendered_parts
from qhybrid.blueprint.validate.schemas import custom_resources, load_crd_schemas, schema_problems
from tests.conftest import REPO, every_workflow

CRDS_DIR = Path(os.environ.get("QHYBRID_CRDS_DIR") or REPO.parent / "shared" / "crds")
pytestmark = pytest.mark.skipif(
    not CRDS_DIR.is_dir(), reason=f"no upstream CRDs at {CRDS_DIR}: set QHYBRID_CRDS_DIR to the folder"
)
STACKS = ("kind", "eks")


@pytest.fixture(scope="module")
def schemas():
    return load_crd_schemas(CRDS_DIR)


def platform_resources(stack: str, schemas) -> list[dict]:
    objects = [o for part in rendered_parts(load_stack_file(stack)).values() for o in part]
    return custom_resources(objects, schemas)


def workflows(stack: str) -> list[dict]:
    return every_workflow(stack, both_artifact_stores=True)


def test_every_upstream_crd_loads_with_every_served_version(schemas):
    # alertmanagerconfigs has a bare "=" in an enum, which PyYAML's safe loader refuses.
    kinds = {kind for _, kind in schemas}
    assert {"ClusterQueue", "LocalQueue", "ResourceFlavor", "Workflow", "ServiceMonitor"} <= kinds
    assert {"PodMonitor", "PrometheusRule", "AlertmanagerConfig"} <= kinds
    assert ("kueue.x-k8s.io/v1beta2", "ClusterQueue") in schemas


@pytest.mark.parametrize("stack", STACKS)
def test_every_platform_custom_resource_validates_strictly(schemas, stack):
    resources = platform_resources(stack, schemas)
    kinds = {o["kind"] for o in resources}
    assert {"ResourceFlavor", "ClusterQueue", "LocalQueue", "ServiceMonitor", "PrometheusRule"} <= kinds
    assert [p for o in resources for p in schema_problems(o, schemas)] == []


@pytest.mark.parametrize("stack", STACKS)
def test_every_workflow_we_render_validates_strictly(schemas, stack):
    for workflow in workflows(stack):
        assert schema_problems(workflow, schemas) == []


def test_the_committed_workflow_validates_strictly(schemas):
    golden = yaml.safe_load((REPO / "workflows" / "cutting-default.yaml").read_text())
    assert schema_problems(golden, schemas) == []


def first(kind: str, schemas) -> dict:
    return copy.deepcopy(next(o for o in platform_resources("kind", schemas) if o["kind"] == kind))


def test_a_field_the_api_server_would_prune_is_an_error(schemas):
    # Given one ClusterQueue, one ServiceMonitor and the default Workflow with a misspelt field each,
    queue = first("ClusterQueue", schemas)
    queue["spec"]["namespaceSelectr"] = {}
    monitor = first("ServiceMonitor", schemas)
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    workflow = workflows("kind")[0]
    workflow["spec"]["templates"][1]["container"]["imagePullPolicyy"] = "Always"
    # then each is refused, naming the path and the field.
    [problem] = schema_problems(queue, schemas)
    assert "ClusterQueue" in problem and "'namespaceSelectr' was unexpected" in problem
    [problem] = schema_problems(monitor, schemas)
    assert "spec.endpoints.0" in problem and "'intervall' was unexpected" in problem
    [problem] = schema_problems(workflow, schemas)
    assert "spec.templates.1.container" in problem and "imagePullPolicyy" in problem


def test_wrong_types_and_unserved_versions_are_errors(schemas):
    queue = first("LocalQueue", schemas)
    queue["spec"]["clusterQueue"] = 3
    assert any("is not of type 'string'" in p for p in schema_problems(queue, schemas))
    queue["apiVersion"] = "kueue.x-k8s.io/v1alpha9"
    [problem] = schema_problems(queue, schemas)
    assert "no CRD serves it" in problem and "kueue.x-k8s.io/v1beta2" in problem


# What the hand-written checks (blueprint/validate) no longer check because the schema does.
SCHEMA_CATCHES = {
    "relabel action": (
        "ServiceMonitor",
        lambda o: o["spec"]["endpoints"][0].update(relabelings=[{"action": "rename", "targetLabel": "x"}]),
        "spec.endpoints.0.relabelings.0.action",
    ),
    "scheme": ("ServiceMonitor", lambda o: o["spec"]["endpoints"][0].update(scheme="ftp"), "scheme"),
    "interval format": (
        "ServiceMonitor",
        lambda o: o["spec"]["endpoints"][0].update(interval="30 seconds"),
        "spec.endpoints.0.interval",
    ),
    "monitor API group": (
        "ServiceMonitor",
        lambda o: o.update(apiVersion="monitoring.example.com/v1"),
        "no CRD",
    ),
    "alert for": (
        "PrometheusRule",
        lambda o: next(r for g in o["spec"]["groups"] for r in g["rules"] if "alert" in r).update(
            {"for": "10 min"}
        ),
        ".for",
    ),
    "group interval": (
        "PrometheusRule",
        lambda o: o["spec"]["groups"][0].update(interval="often"),
        "interval",
    ),
    "cohort name": ("ClusterQueue", lambda o: o["spec"].update(cohortName="Bad_Name"), "spec.cohortName"),
    "local queue target": (
        "LocalQueue",
        lambda o: o["spec"].update(clusterQueue="Bad_Name"),
        "spec.clusterQueue",
    ),
}


@pytest.mark.parametrize("case", sorted(SCHEMA_CATCHES))
def test_the_schema_catches_what_the_hand_written_checks_left_to_it(schemas, case):
    kind, mutate, where = SCHEMA_CATCHES[case]
    obj = first(kind, schemas)
    assert schema_problems(obj, schemas) == []
    mutate(obj)
    problems = schema_problems(obj, schemas)
    assert problems and any(where in p for p in problems), problems
