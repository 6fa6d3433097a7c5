"""The QuantumJob part's objects: least-privilege RBAC, one replica, isolated network, scraped metrics."""

from __future__ import annotations

import json

import pytest

from qhybrid.blueprint.config import load_stack_file, stack_from_values
from qhybrid.blueprint.monitoring import metric_names as m
from qhybrid.blueprint.names import MONITORING_NAMESPACE, OPERATOR_NAMESPACE
from qhybrid.blueprint.quantumjob import (
    CONFIG_FILE,
    METRICS_PORT,
    OPERATOR_LABELS,
    OPERATOR_NAME,
    quantumjob_objects,
)
from qhybrid.blueprint.quantumjob_crd import GROUP, PLURAL
from qhybrid.blueprint.render import rendered_parts

# Every API call the operator makes, as (API group, resource, verb): JobApi's five calls and kopf's
# own (watching jobs and Workflows, patching its progress annotations, posting events).
OPERATOR_CALLS = {
    (GROUP, PLURAL, "get"),
    (GROUP, PLURAL, "list"),
    (GROUP, PLURAL, "watch"),
    (GROUP, PLURAL, "patch"),
    (GROUP, f"{PLURAL}/status", "patch"),
    ("argoproj.io", "workflows", "get"),
    ("argoproj.io", "workflows", "list"),
    ("argoproj.io", "workflows", "watch"),
    ("argoproj.io", "workflows", "create"),
    ("", "configmaps", "get"),
    ("", "events", "create"),
}


@pytest.fixture(scope="module", params=["kind", "eks"])
def config(request):
    return load_stack_file(request.param)


def by_kind(config, kind):
    return [o for o in quantumjob_objects(config) if o["kind"] == kind]


def granted(role):
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_the_part_is_in_platform_render_after_argo(config):
    parts = list(rendered_parts(config))
    assert parts.index("operator") > parts.index("argo")
    assert rendered_parts(config)["operator"] == quantumjob_objects(config)


def test_rbac_is_one_role_in_the_workflow_namespace_allowing_what_the_operator_calls(config):
    objects = quantumjob_objects(config)
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    [role] = by_kind(config, "Role")
    assert role["metadata"]["namespace"] == config.workflow_namespace
    allowed = granted(role)
    assert OPERATOR_CALLS <= allowed, OPERATOR_CALLS - allowed
    # Nothing destructive, no Secrets, no pods: the Workflow goes with its job (ownerReference).
    assert not {v for _, _, v in allowed} & {
        "delete",
        "deletecollection",
        "*",
        "escalate",
        "bind",
        "impersonate",
    }
    assert not {r for _, r, _ in allowed} & {"secrets", "pods", "*"}
    [binding] = by_kind(config, "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": OPERATOR_NAME, "namespace": OPERATOR_NAMESPACE}
    ]


def test_one_operator_at_a_time_from_the_worker_image_with_the_stack_config_mounted(config):
    [deployment] = by_kind(config, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == OPERATOR_NAME and pod["automountServiceAccountToken"] is True
    [container] = pod["containers"]
    assert container["image"] == config.worker_image
    args = container["args"]
    assert args[args.index("--namespace") + 1] == config.workflow_namespace
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert not any("valueFrom" in e for e in container.get("env", []))  # no Secret reaches it
    [config_map] = by_kind(config, "ConfigMap")
    assert stack_from_values(json.loads(config_map["data"][CONFIG_FILE])) == config
    [account] = by_kind(config, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False  # only the operator pod opts in


def test_the_stack_config_changes_restart_the_operator(config):
    from dataclasses import replace

    [before] = by_kind(config, "Deployment")
    [after] = by_kind(replace(config, worker_image="qhybrid/worker:other"), "Deployment")
    key = "qhybrid.io/stack-sha256"
    assert (
        before["spec"]["template"]["metadata"]["annotations"][key]
        != after["spec"]["template"]["metadata"]["annotations"][key]
    )


def test_network_policy_admits_prometheus_and_lets_out_only_dns_and_the_api_server(config):
    [policy] = by_kind(config, "NetworkPolicy")
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"] == OPERATOR_LABELS
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    [ingress] = spec["ingress"]
    assert ingress["ports"] == [{"protocol": "TCP", "port": METRICS_PORT}]
    [peer] = ingress["from"]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": MONITORING_NAMESPACE}
    ports = sorted(p["port"] for rule in spec["egress"] for p in rule["ports"])
    assert ports == [53, 53, 443, 6443]


def test_the_service_monitor_scrapes_the_operator_service(config):
    [monitor] = by_kind(config, "ServiceMonitor")
    [service] = by_kind(config, "Service")
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [OPERATOR_NAMESPACE]}
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    relabel = json.dumps(endpoint["relabelings"])
    assert m.JOB_QUANTUMJOB_OPERATOR in relabel
