"""Argo, Kueue and QPU gateway components under Pulumi's mocks: graph, ordering, secrets."""

from __future__ import annotations

import json

import pulumi_kubernetes as k8s
import pytest

from qhybrid.blueprint.config import from_pulumi, secret_value
from qhybrid.blueprint.versions import ARGO_WORKFLOWS, KUEUE
from tests.unit.infra.conftest import SECRET_KEYS, run_program, stack_values


def platform_program():
    from infra.argo import ArgoWorkflows, ArgoWorkflowsArgs
    from infra.gateway import QpuGateway, QpuGatewayArgs
    from infra.kueue import Kueue, KueueArgs

    config = from_pulumi()
    provider = k8s.Provider("k8s", kubeconfig="apiVersion: v1")
    argo = ArgoWorkflows(
        "argo",
        ArgoWorkflowsArgs(
            config=config,
            provider=provider,
            s3_access_key=secret_value("artifactS3AccessKey"),
            s3_secret_key=secret_value("artifactS3SecretKey"),
        ),
    )
    Kueue(
        "kueue",
        KueueArgs(config=config, provider=provider, workflow_namespace=argo.workflow_namespace_resource),
    )
    QpuGateway(
        "qpu-gateway",
        QpuGatewayArgs(config=config, provider=provider, provider_token=secret_value("qpuProviderToken")),
    )


@pytest.fixture(scope="module", params=["kind", "eks"])
def graph(request):
    return run_program(platform_program, stack_values(request.param), SECRET_KEYS, stack=request.param)


def component(graph, type_):
    [found] = graph.of_type(type_)
    return found


def depends_on(graph, resource, other) -> bool:
    return other.urn in resource.dependencies


def test_every_child_has_its_component_as_parent_and_uses_the_cluster_provider(graph):
    provider = graph.named("k8s")
    for type_ in ("qhybrid:argo:ArgoWorkflows", "qhybrid:kueue:Kueue", "qhybrid:gateway:QpuGateway"):
        parent = component(graph, type_)
        children = graph.children_of(parent)
        assert children, type_
        for child in children:
            assert child.provider.startswith(provider.urn), (child.name, child.provider)


def test_charts_are_pinned_and_installed_after_their_namespace(graph):
    releases = {r.inputs["name"]: r for r in graph.of_type("kubernetes:helm.sh/v3:Release")}
    assert releases["argo-workflows"].inputs["version"] == ARGO_WORKFLOWS.version
    assert releases["kueue"].inputs["version"] == KUEUE.version
    assert releases["kueue"].inputs["chart"] == KUEUE.name
    namespaces = {r.inputs["metadata"]["name"]: r for r in graph.kubernetes_objects("Namespace")}
    assert depends_on(graph, releases["kueue"], namespaces["kueue-system"])
    assert depends_on(graph, releases["argo-workflows"], namespaces["argo"])
    assert releases["argo-workflows"].inputs["createNamespace"] is False


def test_kueue_objects_wait_for_their_crds_and_references(graph):
    release = next(r for r in graph.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["name"] == "kueue")
    flavors = graph.of_type("kubernetes:kueue.x-k8s.io/v1beta1:ResourceFlavor")
    cluster_queues = graph.of_type("kubernetes:kueue.x-k8s.io/v1beta1:ClusterQueue")
    local_queues = graph.of_type("kubernetes:kueue.x-k8s.io/v1beta1:LocalQueue")
    assert len(flavors) == len(cluster_queues) == len(local_queues) == 3
    workflow_ns = next(
        r
        for r in graph.kubernetes_objects("Namespace")
        if r.inputs["metadata"]["name"] == "qhybrid-workflows"
    )
    for flavor in flavors:
        assert depends_on(graph, flavor, release)
    for cq in cluster_queues:
        assert depends_on(graph, cq, release)
        assert all(depends_on(graph, cq, f) for f in flavors)
    for lq in local_queues:
        assert depends_on(graph, lq, workflow_ns)
        assert all(depends_on(graph, lq, cq) for cq in cluster_queues)


def test_gateway_pods_start_after_their_secret(graph):
    [deployment] = graph.kubernetes_objects("Deployment")
    [secret] = [
        s
        for s in graph.kubernetes_objects("Secret")
        if s.inputs["metadata"]["name"] == "qpu-provider-credentials"
    ]
    assert depends_on(graph, deployment, secret)


def test_secret_values_flow_only_into_their_secrets(graph):
    token = "provider-token-secret-value"
    holders = [r for r in graph.registrations if token in json.dumps(r.inputs, default=str)]
    assert [(r.type, r.inputs["metadata"]["name"]) for r in holders] == [
        ("kubernetes:core/v1:Secret", "qpu-provider-credentials")
    ]
    s3_key = "s3-secret-key-secret-value"
    s3_holders = [r for r in graph.registrations if s3_key in json.dumps(r.inputs, default=str)]
    assert all(r.type == "kubernetes:core/v1:Secret" for r in s3_holders)
    for release in graph.of_type("kubernetes:helm.sh/v3:Release"):
        text = json.dumps(release.inputs, default=str)
        assert token not in text and s3_key not in text


def test_a_plain_text_token_is_refused():
    from infra.gateway import QpuGatewayArgs
    from qhybrid.blueprint.config import load_stack_file

    with pytest.raises(ValueError, match="Pulumi secret"):
        QpuGatewayArgs(config=load_stack_file("kind"), provider=None, provider_token="plain")  # type: ignore[arg-type]


def test_gateway_pods_start_after_everything_they_mount(graph):
    [deployment] = graph.kubernetes_objects("Deployment")
    for kind in ("ConfigMap", "PersistentVolumeClaim", "ServiceAccount"):
        [needed] = [
            r
            for r in graph.kubernetes_objects(kind)
            if r.inputs["metadata"].get("namespace") == "qhybrid-gateway"
        ]
        assert depends_on(graph, deployment, needed), kind


def test_gateway_pods_start_after_they_may_review_tokens(graph):
    [deployment] = graph.kubernetes_objects("Deployment")
    [binding] = graph.kubernetes_objects("ClusterRoleBinding")
    assert binding.inputs["roleRef"]["name"] == "system:auth-delegator"
    assert depends_on(graph, deployment, binding)
