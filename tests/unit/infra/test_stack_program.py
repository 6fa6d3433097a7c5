"""The whole Pulumi program per stack under mocks: parts, provider wiring, config errors, secrets."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from qhybrid.blueprint.config import ConfigError
from tests.unit.infra.conftest import SECRET_KEYS, SECRET_VALUES, Graph, run_program, stack_values

PARTS = {
    "qhybrid:cluster:Cluster",
    "qhybrid:argo:ArgoWorkflows",
    "qhybrid:kueue:Kueue",
    "qhybrid:monitoring:Monitoring",
    "qhybrid:gateway:QpuGateway",
    "qhybrid:cache:ResultCache",
    "qhybrid:operator:QuantumJobOperator",
    "qhybrid:objectstore:ObjectStore",
    "qhybrid:tracking:TrackingServer",
}


def program():
    from infra.stack import build_stack

    return build_stack()


@pytest.fixture(scope="module", params=["kind", "eks"])
def stack(request):
    graph = run_program(program, stack_values(request.param), SECRET_KEYS, stack=request.param)
    return request.param, graph


def test_each_stack_creates_every_part_once(stack):
    _, graph = stack
    counts = Counter(r.type for r in graph.registrations if r.type.startswith("qhybrid:"))
    assert set(counts) == PARTS
    assert all(n == 1 for n in counts.values())


def test_every_kubernetes_resource_uses_the_provider_built_from_the_cluster_kubeconfig(stack):
    name, graph = stack
    [cluster] = graph.of_type("qhybrid:cluster:Cluster")
    providers = [r for r in graph.of_type("pulumi:providers:kubernetes") if r.parent == cluster.urn]
    assert len(providers) == 1
    provider = providers[0]
    kubeconfig_source = "kubeconfig"
    assert kubeconfig_source in provider.inputs
    kubernetes = [r for r in graph.registrations if r.type.startswith("kubernetes:")]
    assert len(kubernetes) > 30
    for resource in kubernetes:
        assert resource.provider.startswith(provider.urn), (resource.type, resource.name)


def test_the_release_set_per_stack(stack):
    name, graph = stack
    charts = sorted(
        r.inputs["chart"].rsplit("/", 1)[-1] for r in graph.of_type("kubernetes:helm.sh/v3:Release")
    )
    expected = ["argo-workflows", "kube-prometheus-stack", "kueue"]
    if name == "eks":
        expected += ["dcgm-exporter", "nvidia-device-plugin"]
    assert charts == sorted(expected)


def test_secret_values_never_reach_anything_but_kubernetes_secrets(stack):
    _, graph = stack
    for resource in graph.registrations:
        text = json.dumps(resource.inputs, default=str)
        for value in SECRET_VALUES:
            if value in text:
                assert resource.type == "kubernetes:core/v1:Secret", (resource.type, resource.name)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"cpuQuotaCpu": -4}, "qhybrid:cpuQuotaCpu"),
        ({"gpuVendor": "intel"}, "qhybrid:gpuVendor"),
        ({"cpuNodes": 0}, "qhybrid:cpuNodes"),
    ],
)
def test_invalid_config_fails_before_any_resource(override, key):
    graph = Graph()
    with pytest.raises(ConfigError) as caught:
        run_program(program, stack_values("kind", **override), SECRET_KEYS, graph=graph)
    assert caught.value.field == key
    assert graph.registrations == []


def test_the_graph_records_resources_registered_before_a_failure():
    # Guards the test above: a program that fails after one resource leaves it in the graph.
    import pulumi_kubernetes as k8s

    def failing():
        k8s.Provider("early", kubeconfig="x")
        raise ConfigError("cpuQuotaCpu", "late failure")

    graph = Graph()
    with pytest.raises(ConfigError):
        run_program(failing, stack_values("kind"), SECRET_KEYS, graph=graph)
    assert [r.name for r in graph.registrations] == ["early"]


def test_a_secret_set_in_plain_text_fails_before_any_resource():
    plain = [k for k in SECRET_KEYS if not k.endswith("qpuProviderToken")]
    with pytest.raises(ConfigError, match="qpuProviderToken: is a secret but was set in plain text"):
        run_program(program, stack_values("kind"), plain)


def test_a_missing_grafana_password_fails_before_any_resource():
    values = stack_values("kind")
    del values["qhybrid:grafanaAdminPassword"]
    with pytest.raises(ConfigError, match="grafanaAdminPassword: is not set"):
        run_program(program, values, [k for k in SECRET_KEYS if "grafana" not in k])


# The resources each committed stack produces, by type. A change here is a change to
# what `pulumi up` creates: update the table on purpose, never to make a test pass.
COMMON = {
    "qhybrid:cluster:Cluster": 1,
    "qhybrid:argo:ArgoWorkflows": 1,
    "qhybrid:kueue:Kueue": 1,
    "qhybrid:monitoring:Monitoring": 1,
    "qhybrid:gateway:QpuGateway": 1,
    "qhybrid:cache:ResultCache": 1,
    "qhybrid:operator:QuantumJobOperator": 1,
    "qhybrid:objectstore:ObjectStore": 1,
    "qhybrid:tracking:TrackingServer": 1,
    "pulumi:providers:kubernetes": 1,
    "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition": 1,  # QuantumJob
    "kubernetes:core/v1:Namespace": 9,  # + the object store's, the tracking server's
    "kubernetes:core/v1:ServiceAccount": 4,  # + MLflow's (no role, no token)
    # the gateway's, the result cache's, the operator's metrics, the object store's, MLflow's
    "kubernetes:core/v1:Service": 5,
    "kubernetes:apps/v1:Deployment": 3,  # the gateway, the QuantumJob operator, MLflow
    "kubernetes:apps/v1:StatefulSet": 2,  # the result cache (Valkey), the object store (SeaweedFS)
    "kubernetes:policy/v1:PodDisruptionBudget": 1,
    "kubernetes:networking.k8s.io/v1:NetworkPolicy": 6,
    "kubernetes:rbac.authorization.k8s.io/v1:Role": 2,  # + the operator's, in the workflow namespace
    "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding": 2,
    "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding": 1,  # the gateway may review tokens
    "kubernetes:kueue.x-k8s.io/v1beta2:ResourceFlavor": 3,
    "kubernetes:kueue.x-k8s.io/v1beta2:ClusterQueue": 3,
    "kubernetes:kueue.x-k8s.io/v1beta2:LocalQueue": 3,
    "kubernetes:monitoring.coreos.com/v1:ServiceMonitor": 6,
    "kubernetes:monitoring.coreos.com/v1:PodMonitor": 1,
    "kubernetes:monitoring.coreos.com/v1:PrometheusRule": 1,
}
EXPECTED = {
    "kind": {
        **COMMON,
        "command:local:Command": 2,  # create/delete the cluster; read its kubeconfig
        "kubernetes:helm.sh/v3:Release": 3,
        # provider credentials, Grafana admin, the object store's identities, MLflow's S3 keys
        "kubernetes:core/v1:Secret": 4,
        "kubernetes:core/v1:ConfigMap": 10,  # 7 dashboards, gateway config, cache config, operator stack
        "kubernetes:core/v1:PersistentVolume": 1,  # the shared host directory
        "kubernetes:core/v1:PersistentVolumeClaim": 3,  # artifacts, gateway state, MLflow's SQLite
    },
    "eks": {
        **COMMON,
        "pulumi:providers:aws": 1,
        "aws:ec2/vpc:Vpc": 1,
        "aws:ec2/internetGateway:InternetGateway": 1,
        "aws:ec2/routeTable:RouteTable": 1,
        "aws:ec2/routeTableAssociation:RouteTableAssociation": 2,
        "aws:ec2/subnet:Subnet": 2,
        "aws:iam/role:Role": 1,
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment": 4,
        "aws:eks/addon:Addon": 1,
        "eks:index:Cluster": 1,
        "eks:index:ManagedNodeGroup": 4,
        "kubernetes:storage.k8s.io/v1:StorageClass": 1,
        "kubernetes:helm.sh/v3:Release": 5,  # + NVIDIA device plugin, dcgm-exporter
        "kubernetes:core/v1:Secret": 6,  # + S3 artifact credentials, MLflow's external database URI
        "kubernetes:core/v1:ConfigMap": 11,  # + the S3 artifact repository
        # gateway state (artifacts go to S3; MLflow's runs to the external database)
        "kubernetes:core/v1:PersistentVolumeClaim": 1,
    },
}


def test_each_stack_config_produces_exactly_the_expected_resources(stack):
    name, graph = stack
    assert dict(Counter(r.type for r in graph.registrations)) == EXPECTED[name]


def test_platform_render_holds_every_object_the_program_creates(stack):
    # `qhybrid platform render` is the reviewable copy of what `pulumi up` creates: nothing may
    # be created that the render leaves out, nor rendered that is not created (charts excepted).
    from qhybrid.blueprint.config import load_stack_file
    from qhybrid.blueprint.render import rendered_parts

    name, graph = stack

    def identity(kind: str, metadata: dict) -> tuple[str, str, str]:
        return kind, metadata.get("namespace") or "", metadata["name"]

    created = {
        identity(r.type.rsplit(":", 1)[-1], r.inputs["metadata"])
        for r in graph.registrations
        if r.type.startswith("kubernetes:") and r.type != "kubernetes:helm.sh/v3:Release"
    }
    rendered = {
        identity(o["kind"], o["metadata"])
        for objs in rendered_parts(load_stack_file(name)).values()
        for o in objs
    }
    assert created == rendered
