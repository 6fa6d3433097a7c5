"""The kind stack for real: `pulumi up` through the Automation API, the platform ready, then destroy.

Everything here runs against the cluster the session fixture ``kind_stack``
brought up (see conftest.py); it is destroyed and the stack removed afterwards,
whatever happens. Run with ``pytest -m cluster tests/integration``.
"""

from __future__ import annotations

from typing import Any

import pytest

from qhybrid.blueprint.names import ARGO_NAMESPACE, KUEUE_NAMESPACE, MONITORING_NAMESPACE
from qhybrid.blueprint.pools import POOL_LABEL, RESOURCE_CLASSES
from tests.integration.conftest import (
    READY_TIMEOUT_S,
    KindStack,
    KubeClients,
    image_placements,
    normalise_image,
    wait_until,
)

pytestmark = pytest.mark.cluster

# Names the upstream charts give their controllers (release prefixes vary, suffixes do not).
ARGO_CONTROLLER_SUFFIX = "workflow-controller"
KUEUE_CONTROLLER_SUFFIX = "controller-manager"
PROMETHEUS_POD_SELECTOR = "app.kubernetes.io/name=prometheus"
# Kueue's API as served by the pinned chart (0.13).
KUEUE_GROUP = "kueue.x-k8s.io"
KUEUE_VERSION = "v1beta2"


def _condition(conditions: list[Any] | None, kind: str) -> str | None:
    """Status of condition ``kind`` from typed objects or plain dicts (custom resources)."""
    for condition in conditions or []:
        if isinstance(condition, dict):
            if condition.get("type") == kind:
                return condition.get("status")
        elif condition.type == kind:
            return condition.status
    return None


def _deployment_available(kube: KubeClients, namespace: str, suffix: str):
    def probe() -> tuple[bool, str]:
        listed = kube.apps.list_namespaced_deployment(namespace).items
        deployments = [d for d in listed if d.metadata.name.endswith(suffix)]
        if not deployments:
            return False, f"no Deployment named *{suffix} in {namespace}"
        states = {
            d.metadata.name: (
                _condition(d.status.conditions, "Available"),
                d.status.ready_replicas or 0,
                d.spec.replicas,
            )
            for d in deployments
        }
        done = all(available == "True" and ready >= 1 for available, ready, _ in states.values())
        return done, f"{namespace}: (Available, ready, wanted) = {states}"

    return probe


def test_argo_workflow_controller_is_available(kube):
    wait_until(
        "Argo workflow-controller",
        _deployment_available(kube, ARGO_NAMESPACE, ARGO_CONTROLLER_SUFFIX),
        READY_TIMEOUT_S,
    )


def test_kueue_controller_manager_is_available(kube):
    wait_until(
        "Kueue controller-manager",
        _deployment_available(kube, KUEUE_NAMESPACE, KUEUE_CONTROLLER_SUFFIX),
        READY_TIMEOUT_S,
    )


def test_prometheus_is_ready(kube):
    def probe() -> tuple[bool, str]:
        listed = kube.core.list_namespaced_pod(MONITORING_NAMESPACE, label_selector=PROMETHEUS_POD_SELECTOR)
        pods = listed.items
        if not pods:
            return False, f"no pod with {PROMETHEUS_POD_SELECTOR} in {MONITORING_NAMESPACE}"
        ready = {p.metadata.name: _condition(p.status.conditions, "Ready") for p in pods}
        return all(status == "True" for status in ready.values()), f"Ready: {ready}"

    wait_until("Prometheus", probe, READY_TIMEOUT_S)


@pytest.mark.parametrize("resource_class", sorted(RESOURCE_CLASSES))
def test_cluster_queue_is_active(kube, kind_stack: KindStack, resource_class):
    name = RESOURCE_CLASSES[resource_class].cluster_queue

    def probe() -> tuple[bool, str]:
        from kubernetes.client.exceptions import ApiException

        try:
            queue = kube.custom.get_cluster_custom_object(KUEUE_GROUP, KUEUE_VERSION, "clusterqueues", name)
        except ApiException as error:
            return False, f"ClusterQueue {name}: {error.status} {error.reason}"
        active = _condition(queue.get("status", {}).get("conditions"), "Active")
        return active == "True", f"ClusterQueue {name}: Active={active}, status={queue.get('status')}"

    wait_until(f"ClusterQueue {name}", probe, READY_TIMEOUT_S)
    queue = kube.custom.get_cluster_custom_object(KUEUE_GROUP, KUEUE_VERSION, "clusterqueues", name)
    assert queue["spec"].get("cohortName") == kind_stack.config.cohort


@pytest.mark.parametrize("resource_class", sorted(RESOURCE_CLASSES))
def test_local_queue_feeds_its_cluster_queue(kube, kind_stack: KindStack, resource_class):
    expected = RESOURCE_CLASSES[resource_class]
    namespace = kind_stack.config.workflow_namespace

    def probe() -> tuple[bool, str]:
        from kubernetes.client.exceptions import ApiException

        try:
            queue = kube.custom.get_namespaced_custom_object(
                KUEUE_GROUP, KUEUE_VERSION, namespace, "localqueues", expected.local_queue
            )
        except ApiException as error:
            return False, f"LocalQueue {namespace}/{expected.local_queue}: {error.status} {error.reason}"
        return True, queue["spec"].get("clusterQueue")

    cluster_queue = wait_until(f"LocalQueue {namespace}/{expected.local_queue}", probe, READY_TIMEOUT_S)
    assert cluster_queue == expected.cluster_queue


def test_images_are_on_the_nodes_of_their_pools(kube, kind_stack: KindStack):
    assert set(kind_stack.loaded) == set(image_placements(kind_stack.config)), kind_stack.loaded
    nodes = kube.core.list_node(label_selector=POOL_LABEL).items
    for image, loaded_onto in kind_stack.loaded.items():
        wanted = normalise_image(image)
        for node in nodes:
            if node.metadata.name not in loaded_onto:
                continue
            names = {name for entry in node.status.images or [] for name in entry.names or []}
            assert wanted in names, f"{wanted} is not on node {node.metadata.name}"


def test_kubeconfig_output_is_a_secret(kind_stack: KindStack):
    assert "kubeconfig" in kind_stack.outputs, f"stack outputs: {sorted(kind_stack.outputs)}"
    assert kind_stack.outputs["kubeconfig"].secret, "the kubeconfig output must be a Pulumi secret"
