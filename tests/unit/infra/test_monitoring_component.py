"""The Monitoring component under Pulumi's mocks: resource graph, ordering, providers, secrets."""

from __future__ import annotations

import json

import pulumi
import pulumi_kubernetes as k8s
import pytest
from pulumi.runtime import rpc

from qhybrid.blueprint import monitoring
from qhybrid.blueprint.config import from_pulumi, load_stack_file, secret_value
from qhybrid.blueprint.monitoring import alerts, dashboards
from qhybrid.blueprint.names import MONITORING_NAMESPACE, MONITORING_RELEASE
from qhybrid.blueprint.versions import KUBE_PROMETHEUS_STACK
from tests.unit.infra.conftest import SECRET_KEYS, SECRET_VALUES, run_program, stack_values

COMPONENT = "qhybrid:monitoring:Monitoring"
RELEASE = "kubernetes:helm.sh/v3:Release"
GRAFANA_PASSWORD = SECRET_VALUES[SECRET_KEYS.index("qhybrid:grafanaAdminPassword")]
OUTPUTS: dict[str, dict] = {}


def monitoring_program(stack):
    def program():
        from infra.monitoring import Monitoring, MonitoringArgs

        provider = k8s.Provider("k8s", kubeconfig="apiVersion: v1")
        component = Monitoring(
            "monitoring",
            MonitoringArgs(
                config=from_pulumi(),
                provider=provider,
                grafana_admin_password=secret_value("grafanaAdminPassword"),
            ),
        )
        outputs = {
            "namespace": component.namespace,
            "release_name": component.release_name,
            "grafana_admin_secret": component.grafana_admin_secret,
            "dashboard_uids": component.dashboard_uids,
            "alert_names": component.alert_names,
        }
        return pulumi.Output.all(**outputs).apply(lambda values: OUTPUTS.__setitem__(stack, values))

    return program


@pytest.fixture(scope="module", params=["kind", "eks"])
def stack(request):
    return request.param


@pytest.fixture(scope="module")
def graph(stack):
    return run_program(monitoring_program(stack), stack_values(stack), SECRET_KEYS, stack=stack)


@pytest.fixture(scope="module")
def config(stack):
    return load_stack_file(stack)


def the(graph, type_):
    [found] = graph.of_type(type_)
    return found


def kube_children(graph):
    return [r for r in graph.registrations if r.type.startswith("kubernetes:")]


def test_component_type_and_every_child_parented_and_on_the_cluster_provider(graph):
    component = the(graph, COMPONENT)
    provider = graph.named("k8s")
    children = kube_children(graph)
    assert {c.urn for c in children} == {c.urn for c in graph.children_of(component)}
    for child in children:
        assert child.parent == component.urn, child.name
        assert child.provider.startswith(provider.urn + "::"), (child.name, child.provider)


def test_release_is_the_pinned_chart_with_the_builder_values(graph, config):
    release = the(graph, RELEASE)
    inputs = release.inputs
    assert inputs["name"] == MONITORING_RELEASE
    assert inputs["chart"] == KUBE_PROMETHEUS_STACK.name
    assert inputs["version"] == KUBE_PROMETHEUS_STACK.version
    assert inputs["repositoryOpts"]["repo"] == KUBE_PROMETHEUS_STACK.repo
    assert inputs["namespace"] == MONITORING_NAMESPACE
    assert inputs["createNamespace"] is False
    assert inputs["values"] == monitoring.helm_values(config)


def test_release_waits_for_its_namespace_and_the_admin_secret(graph):
    release = the(graph, RELEASE)
    [namespace] = graph.kubernetes_objects("Namespace")
    [secret] = graph.kubernetes_objects("Secret")
    assert namespace.inputs["metadata"]["name"] == MONITORING_NAMESPACE
    assert namespace.urn in release.dependencies
    assert secret.urn in release.dependencies
    assert namespace.urn in secret.dependencies


@pytest.mark.parametrize("kind", ["ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap"])
def test_objects_needing_the_chart_depend_on_the_release(graph, kind):
    release = the(graph, RELEASE)
    found = graph.kubernetes_objects(kind)
    assert found
    for resource in found:
        assert release.urn in resource.dependencies, resource.name


def test_resources_are_exactly_the_builder_objects(graph, config):
    expected = {(o["kind"], o["metadata"]["name"]): o for o in monitoring.monitoring_objects(config)}
    created = {}
    for r in kube_children(graph):
        if r.type == RELEASE or r.type.endswith(":Secret"):
            continue
        created[(r.type.rsplit(":", 1)[1], r.inputs["metadata"]["name"])] = r
    assert set(created) == set(expected)
    for key, resource in created.items():
        obj = expected[key]
        assert resource.inputs["metadata"] == obj["metadata"], key
        for field in ("spec", "data"):
            if field in obj:
                assert resource.inputs[field] == obj[field], key
        if key[0] in ("ServiceMonitor", "PodMonitor", "PrometheusRule"):
            assert resource.type == f"kubernetes:{obj['apiVersion']}:{key[0]}"


def test_grafana_password_goes_into_the_secret_the_chart_reads_and_nowhere_else(graph, config):
    [secret] = graph.kubernetes_objects("Secret")
    values = monitoring.helm_values(config)["grafana"]["admin"]
    assert secret.inputs["metadata"]["name"] == values["existingSecret"]
    assert secret.inputs["metadata"]["namespace"] == MONITORING_NAMESPACE
    # The whole stringData reaches the engine as a secret: encrypted in state, masked in previews.
    string_data = secret.inputs["stringData"]
    assert string_data[rpc._special_sig_key] == rpc._special_secret_sig
    assert string_data["value"][values["passwordKey"]] == GRAFANA_PASSWORD
    assert string_data["value"][values["userKey"]] == "admin"
    for r in graph.registrations:
        if r is not secret:
            assert GRAFANA_PASSWORD not in json.dumps(r.inputs, default=str), r.name


def test_component_outputs(graph, stack, config):
    outputs = OUTPUTS[stack]
    assert outputs["namespace"] == MONITORING_NAMESPACE
    assert outputs["release_name"] == MONITORING_RELEASE
    assert outputs["grafana_admin_secret"] == monitoring.GRAFANA_ADMIN_SECRET
    assert outputs["dashboard_uids"] == list(dashboards.UIDS.values())
    assert outputs["alert_names"] == alerts.alert_names()


def test_args_refuse_a_missing_password_or_provider():
    from infra.monitoring import MonitoringArgs

    errors = []

    def program():
        config = from_pulumi()
        provider = k8s.Provider("k8s", kubeconfig="apiVersion: v1")
        for password in (None, ""):
            try:
                MonitoringArgs(config=config, provider=provider, grafana_admin_password=password)
            except ValueError as error:
                errors.append(str(error))
        try:
            MonitoringArgs(config=config, provider="not a provider", grafana_admin_password="pw")
        except TypeError as error:
            errors.append(str(error))

    run_program(program, stack_values("kind"), SECRET_KEYS)
    assert len(errors) == 3
    assert "grafanaAdminPassword" in errors[0] and "grafanaAdminPassword" in errors[1]
    assert "Provider" in errors[2]
