"""Argo, Kueue and QPU gateway components of the real program (infra/stack.py) under Pulumi's mocks.

Checks that need the resource graph (parents, explicit dependencies, providers) use
the recording monitor in conftest.py, because Pulumi's public Mocks do not see
them. Checks on what each resource receives use only the public mock API
(``pulumi.runtime.set_mocks`` and ``@pulumi.runtime.test``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pulumi
import pytest

from qhybrid.blueprint import monitoring
from qhybrid.blueprint.versions import ARGO_WORKFLOWS, KUEUE
from tests.unit.infra.conftest import SECRET_KEYS, run_program, stack_values

PROGRAM_PARTS = ("qhybrid:argo:ArgoWorkflows", "qhybrid:kueue:Kueue", "qhybrid:gateway:QpuGateway")


def platform_program():
    # The program `pulumi up` runs, not a stand-in assembled here.
    from infra.stack import build_stack

    return build_stack()


@pytest.fixture(scope="module", params=["kind", "eks"])
def graph(request):
    return run_program(platform_program, stack_values(request.param), SECRET_KEYS, stack=request.param)


def component(graph, type_):
    [found] = graph.of_type(type_)
    return found


def depends_on(graph, resource, other) -> bool:
    return other.urn in resource.dependencies


def test_every_child_has_its_component_as_parent_and_uses_the_cluster_provider(graph):
    [cluster] = graph.of_type("qhybrid:cluster:Cluster")
    [provider] = [r for r in graph.of_type("pulumi:providers:kubernetes") if r.parent == cluster.urn]
    for type_ in PROGRAM_PARTS:
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
    flavors = graph.of_type("kubernetes:kueue.x-k8s.io/v1beta2:ResourceFlavor")
    cluster_queues = graph.of_type("kubernetes:kueue.x-k8s.io/v1beta2:ClusterQueue")
    local_queues = graph.of_type("kubernetes:kueue.x-k8s.io/v1beta2:LocalQueue")
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


def gateway_deployments(graph):
    return [
        d for d in graph.kubernetes_objects("Deployment") if d.inputs["metadata"]["name"] == "qpu-gateway"
    ]


def test_gateway_pods_start_after_their_secret(graph):
    [deployment] = gateway_deployments(graph)
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
    [deployment] = gateway_deployments(graph)
    for kind in ("ConfigMap", "PersistentVolumeClaim", "ServiceAccount"):
        [needed] = [
            r
            for r in graph.kubernetes_objects(kind)
            if r.inputs["metadata"].get("namespace") == "qhybrid-gateway"
        ]
        assert depends_on(graph, deployment, needed), kind


def test_gateway_pods_start_after_they_may_review_tokens(graph):
    [deployment] = gateway_deployments(graph)
    [binding] = graph.kubernetes_objects("ClusterRoleBinding")
    assert binding.inputs["roleRef"]["name"] == "system:auth-delegator"
    assert depends_on(graph, deployment, binding)


# --------------------------------------------------------------------------- public mock API only


class RecordingMocks(pulumi.runtime.Mocks):
    """Pulumi's public Mocks, remembering what each resource was given."""

    def __init__(self) -> None:
        self.created: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        self.created.append(args)
        outputs = dict(args.inputs)
        if args.typ == "command:local:Command":
            outputs.setdefault("stdout", "apiVersion: v1\nkind: Config\nclusters: []\n")
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list]:
        return {}, []

    def releases(self) -> dict[str, dict[str, Any]]:
        return {a.inputs["name"]: a.inputs for a in self.created if a.typ == "kubernetes:helm.sh/v3:Release"}


MOCKS = RecordingMocks()


@pytest.fixture
def fresh_event_loop():
    # The graph fixture's runs (and the gateway tests' asyncio.run) leave other loops behind;
    # the decorated test must create its Outputs on the loop that @pulumi.runtime.test drives.
    asyncio.set_event_loop(asyncio.new_event_loop())
    from pulumi.runtime.settings import SETTINGS

    SETTINGS.rpc_manager.clear()
    SETTINGS.outputs.clear()


@pulumi.runtime.test
def run_kind_program() -> Any:
    """Run the real program for the kind stack under the public mocks; return when every resource is in."""
    MOCKS.created.clear()
    pulumi.runtime.set_mocks(MOCKS, project="qhybrid", stack="kind", preview=False)
    pulumi.runtime.set_all_config({k: str(v) for k, v in stack_values("kind").items()}, SECRET_KEYS)
    from infra.stack import build_stack

    return pulumi.Output.all(*build_stack().values())


def test_the_program_installs_argo_and_kueue_with_their_metrics_values(fresh_event_loop):
    # Given the monitoring part's scrape settings, when the program runs,
    run_kind_program()
    releases = MOCKS.releases()
    # then each chart gets them: a component built without extra_values would not.
    controller = releases["argo-workflows"]["values"]["controller"]
    for key, value in monitoring.argo_metrics_values()["controller"].items():
        assert controller[key] == value, key
    for key, value in monitoring.kueue_metrics_values().items():
        assert releases["kueue"]["values"][key] == value, key
    assert releases["argo-workflows"]["version"] == ARGO_WORKFLOWS.version
    assert releases["kueue"]["version"] == KUEUE.version


def test_the_provider_token_reaches_only_its_secret(fresh_event_loop):
    run_kind_program()
    token = "provider-token-secret-value"
    holders = [(a.typ, a.name) for a in MOCKS.created if token in json.dumps(a.inputs, default=str)]
    assert len(holders) == 1 and holders[0][0] == "kubernetes:core/v1:Secret", holders
