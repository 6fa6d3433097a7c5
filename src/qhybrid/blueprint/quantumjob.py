"""The QuantumJob operator's objects: the CRD, and the operator in its own ``restricted`` namespace.

The operator (``qhybrid operator run``, from the worker image) watches QuantumJobs in
the workflow namespace and creates their Argo Workflows there. Its RBAC is one Role
in that namespace and nothing cluster-wide: kopf runs standalone (no peering objects)
with cluster scanning off (no namespace or CRD listing). The Role allows exactly:
QuantumJobs (read, watch, and patch for kopf's progress annotations), their status,
Workflows (read, watch, create), ConfigMaps (read, for a circuit given by reference)
and Events (kopf reports handler failures on the job). It never deletes: a job's
Workflow goes with the job through its ownerReference.

The stack's config reaches the operator as a ConfigMap (``stack.json``), so it renders
each job's Workflow exactly as ``qhybrid workflow render --stack`` would; it holds no
secret value, only which secrets are set.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from qhybrid.blueprint.config import StackConfig, stack_values
from qhybrid.blueprint.monitoring import http_service_monitor
from qhybrid.blueprint.monitoring import metric_names as m
from qhybrid.blueprint.names import MONITORING_NAMESPACE, OPERATOR_NAMESPACE, PART_OF, PROMETHEUS_POD_LABELS
from qhybrid.blueprint.namespaces import (
    platform_namespace,
    restricted_container_security,
    restricted_pod_security,
)
from qhybrid.blueprint.network import api_server_egress_rule, dns_egress_rule, namespace_peer
from qhybrid.blueprint.pools import pool_placement
from qhybrid.blueprint.quantumjob_crd import GROUP, PLURAL, quantumjob_crd

OPERATOR_NAME = "quantumjob-operator"
OPERATOR_LABELS = {"app.kubernetes.io/name": OPERATOR_NAME, "app.kubernetes.io/component": "operator"}
OPERATOR_CONFIG_MAP = "quantumjob-operator-stack"
CONFIG_DIR = "/etc/qhybrid-operator"
CONFIG_FILE = "stack.json"
METRICS_PORT = 9090
METRICS_PORT_NAME = "metrics"
HEALTH_PORT = 8080
HEALTH_PORT_NAME = "health"
# Importing Qiskit and cutting a job's circuit once (to check it) before its Workflow is created.
REQUESTS = {"cpu": "100m", "memory": "512Mi"}
LIMITS = {"cpu": "1", "memory": "1Gi"}


def _metadata(name: str, namespace: str = OPERATOR_NAMESPACE) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": {**PART_OF, **OPERATOR_LABELS}}


def operator_role(config: StackConfig) -> dict[str, Any]:
    """Return the operator's only permissions: a Role in the workflow namespace."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _metadata(OPERATOR_NAME, config.workflow_namespace),
        "rules": [
            {"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["get", "list", "watch", "patch"]},
            {"apiGroups": [GROUP], "resources": [f"{PLURAL}/status"], "verbs": ["get", "patch", "update"]},
            {
                "apiGroups": ["argoproj.io"],
                "resources": ["workflows"],
                "verbs": ["get", "list", "watch", "create"],
            },
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
            {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
        ],
    }


def operator_role_binding(config: StackConfig) -> dict[str, Any]:
    """Bind the Role to the operator's service account (which lives in the operator namespace)."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(OPERATOR_NAME, config.workflow_namespace),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": OPERATOR_NAME},
        "subjects": [{"kind": "ServiceAccount", "name": OPERATOR_NAME, "namespace": OPERATOR_NAMESPACE}],
    }


def deployment(config: StackConfig) -> dict[str, Any]:
    """Return the operator Deployment: one replica, replaced (never two at once), on the system pool."""
    placement = pool_placement("system")
    container = {
        "name": "operator",
        "image": config.worker_image,
        "imagePullPolicy": "IfNotPresent",
        # The image's entry point is `tini -- qhybrid`: args pick the subcommand.
        "args": [
            "operator",
            "run",
            "--stack-config",
            f"{CONFIG_DIR}/{CONFIG_FILE}",
            "--namespace",
            config.workflow_namespace,
            "--metrics-port",
            str(METRICS_PORT),
            "--liveness-port",
            str(HEALTH_PORT),
        ],
        "ports": [
            {"name": METRICS_PORT_NAME, "containerPort": METRICS_PORT, "protocol": "TCP"},
            {"name": HEALTH_PORT_NAME, "containerPort": HEALTH_PORT, "protocol": "TCP"},
        ],
        "env": [{"name": "HOME", "value": "/tmp"}, {"name": "MPLCONFIGDIR", "value": "/tmp/matplotlib"}],
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": HEALTH_PORT_NAME},
            "initialDelaySeconds": 30,
            "periodSeconds": 20,
            "failureThreshold": 3,
        },
        "resources": {"requests": dict(REQUESTS), "limits": dict(LIMITS)},
        "securityContext": restricted_container_security(),
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "stack", "mountPath": CONFIG_DIR, "readOnly": True},
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(OPERATOR_NAME),
        "spec": {
            "replicas": 1,
            # kopf runs standalone: two operators at once would both reconcile.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": dict(OPERATOR_LABELS)},
            "template": {
                "metadata": {
                    "labels": {**PART_OF, **OPERATOR_LABELS},
                    # A new stack config restarts the operator.
                    "annotations": {"qhybrid.io/stack-sha256": _config_digest(config)},
                },
                "spec": {
                    "serviceAccountName": OPERATOR_NAME,
                    "automountServiceAccountToken": True,
                    "securityContext": restricted_pod_security(),
                    "nodeSelector": placement["nodeSelector"],
                    "tolerations": placement["tolerations"],
                    "containers": [container],
                    "volumes": [
                        {"name": "tmp", "emptyDir": {}},
                        {"name": "stack", "configMap": {"name": OPERATOR_CONFIG_MAP}},
                    ],
                },
            },
        },
    }


def _config_text(config: StackConfig) -> str:
    return json.dumps(stack_values(config), sort_keys=True, indent=2) + "\n"


def _config_digest(config: StackConfig) -> str:
    return hashlib.sha256(_config_text(config).encode()).hexdigest()[:16]


def service() -> dict[str, Any]:
    """Return the Service that Prometheus scrapes the operator's metrics through."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(OPERATOR_NAME),
        "spec": {
            "type": "ClusterIP",
            "selector": dict(OPERATOR_LABELS),
            "ports": [{"name": METRICS_PORT_NAME, "port": METRICS_PORT, "targetPort": METRICS_PORT_NAME}],
        },
    }


def network_policy(config: StackConfig) -> dict[str, Any]:
    """Return the operator's policy: Prometheus in; the API server and DNS out; nothing else."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(OPERATOR_NAME),
        "spec": {
            "podSelector": {"matchLabels": dict(OPERATOR_LABELS)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [namespace_peer(MONITORING_NAMESPACE, PROMETHEUS_POD_LABELS)],
                    "ports": [{"protocol": "TCP", "port": METRICS_PORT}],
                }
            ],
            "egress": [dns_egress_rule(), api_server_egress_rule(config.workflow_egress_cidrs)],
        },
    }


def quantumjob_objects(config: StackConfig) -> list[dict[str, Any]]:
    """Return the CRD, the operator namespace and what is in it, and its Role in the workflow namespace."""
    return [
        quantumjob_crd(),
        platform_namespace(OPERATOR_NAMESPACE),
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _metadata(OPERATOR_NAME),
            "automountServiceAccountToken": False,  # only the operator pod opts in
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _metadata(OPERATOR_CONFIG_MAP),
            "data": {CONFIG_FILE: _config_text(config)},
        },
        operator_role(config),
        operator_role_binding(config),
        deployment(config),
        service(),
        network_policy(config),
        http_service_monitor(
            OPERATOR_NAME, OPERATOR_NAMESPACE, OPERATOR_LABELS, METRICS_PORT_NAME, m.JOB_QUANTUMJOB_OPERATOR
        ),
    ]
