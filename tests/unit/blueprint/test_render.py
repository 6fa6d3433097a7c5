"""`qhybrid platform render`: every manifest for each stack, schema-valid and structurally sound."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
import yaml

from qhybrid.blueprint import kueue
from qhybrid.blueprint import validate as crd_checks
from qhybrid.blueprint.config import load_stack_file
from qhybrid.blueprint.render import rendered_parts
from qhybrid.blueprint.validate.kueue import check_kueue_references
from qhybrid.blueprint.versions import KUBERNETES_SCHEMA_VERSION
from tests.conftest import run_cli
from tests.unit.blueprint.test_platform_objects import CORE_GROUPS, api_group
from tests.unit.infra.conftest import SECRET_VALUES

STACKS = ["kind", "eks"]


@pytest.fixture(scope="module", params=STACKS)
def rendered(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("rendered")
    result = run_cli("platform", "render", "--stack", request.param, "--out", str(out))
    assert result.returncode == 0, result.stderr
    files = [line for line in result.stdout.splitlines() if line]
    return request.param, out / request.param, files


def test_render_writes_every_part_values_and_the_cluster(rendered):
    stack, root, files = rendered
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.yaml"))
    cluster_file = "kind-config.yaml" if stack == "kind" else "eks-node-groups.yaml"
    parts = ["argo", "kueue", "gateway", "monitoring", "cache", "operator", "object-store", "tracking"]
    if stack == "eks":  # the default StorageClass the program creates on EKS comes first
        parts.insert(0, "cluster")
    assert names == sorted(
        [
            *(f"{i:02d}-{part}.yaml" for i, part in enumerate(parts, start=1)),
            "helm-values/argo-workflows.yaml",
            "helm-values/kube-prometheus-stack.yaml",
            "helm-values/kueue.yaml",
            cluster_file,
        ]
    )
    assert len(files) == len(names)


def test_rendered_manifests_validate(rendered):
    _, root, _ = rendered
    objects = [doc for path in sorted(root.glob("0*.yaml")) for doc in yaml.safe_load_all(path.read_text())]
    assert len(objects) > 20
    for obj in objects:
        if api_group(obj) in CORE_GROUPS:
            kubernetes_validate.validate(obj, KUBERNETES_SCHEMA_VERSION, strict=True)
    assert crd_checks.check_objects(objects) == []
    assert check_kueue_references(objects) == []


def test_rendered_secrets_hold_placeholders_never_values(rendered):
    _, root, _ = rendered
    text = "".join(path.read_text() for path in root.rglob("*.yaml"))
    assert "<secret: pulumi config set --secret qpuProviderToken>" in text
    for value in SECRET_VALUES:
        assert value not in text


def test_bad_stack_config_gives_one_line_naming_the_key(tmp_path):
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    result = run_cli("platform", "render", "--stack", "nope", "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.startswith("qhybrid: error: --stack: no stack 'nope'")
    assert not (tmp_path / "out").exists()


# Breaking a reference on purpose must be caught.


def objects_of(stack):
    return [o for objs in rendered_parts(load_stack_file(stack)).values() for o in objs]


def test_a_missing_toleration_on_a_flavor_is_caught():
    flavor = copy.deepcopy(kueue.resource_flavor("gpu"))
    del flavor["spec"]["tolerations"]
    assert any("do not tolerate pool 'gpu'" in p for p in crd_checks.check_object(flavor))


def test_a_toleration_for_another_pool_is_caught():
    flavor = copy.deepcopy(kueue.resource_flavor("cpu"))
    flavor["spec"]["tolerations"].append({"key": "qhybrid.io/pool", "operator": "Exists"})
    assert any("also tolerate pool" in p for p in crd_checks.check_object(flavor))


def test_a_queue_without_its_flavor_is_caught():
    objects = [
        o
        for o in objects_of("kind")
        if not (o["kind"] == "ResourceFlavor" and o["metadata"]["name"] == "qpu")
    ]
    problems = check_kueue_references(objects)
    assert problems == ["ClusterQueue cq-qpu: ResourceFlavor 'qpu' does not exist"]


def test_a_local_queue_pointing_nowhere_is_caught():
    objects = copy.deepcopy(objects_of("kind"))
    local = next(o for o in objects if o["kind"] == "LocalQueue")
    local["spec"]["clusterQueue"] = "cq-missing"
    assert any("ClusterQueue 'cq-missing' does not exist" in p for p in check_kueue_references(objects))


def test_a_quota_for_an_uncovered_resource_is_caught():
    queue = copy.deepcopy(kueue.cluster_queue(load_stack_file("eks"), "gpu"))
    queue["spec"]["resourceGroups"][0]["flavors"][0]["resources"].pop()
    assert any("but the group covers" in p for p in crd_checks.check_object(queue))
