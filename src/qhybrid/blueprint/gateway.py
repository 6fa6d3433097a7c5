"""The QPU gateway's platform objects: its credentials, pods, Service, PDB and network policies.

The provider credentials live in one Secret in the gateway's namespace and are
mounted read-only, as files, into the gateway pods only (never as environment
variables, never into worker pods). The gateway runs on the ``qpu-gateway``
pool; worker pods may reach it, Prometheus may scrape it, and it is the only
pod allowed to leave the cluster. The gateway program itself is its own issue:
here its image and port come from config.

Worker pods hold no Secret either: the workflow's QPU-branch pods authenticate
with a projected service-account token for the audience ``qpu-gateway``
(``qhybrid.workflow`` mounts it at ``WORKER_GATEWAY_TOKEN_DIR``), which the
gateway checks with the TokenReview API; hence its own service-account token and
the ``system:auth-delegator`` binding.
"""

from __future__ import annotations

from typing import Any

import yaml

from qhybrid.blueprint.config import ConfigError, StackConfig
from qhybrid.blueprint.names import (
    GATEWAY_CONFIG_DIR,
    GATEWAY_CONFIG_FILE,
    GATEWAY_CONFIG_MAP,
    GATEWAY_CREDENTIALS_MOUNT,
    GATEWAY_CREDENTIALS_SECRET,
    GATEWAY_LABELS,
    GATEWAY_METRICS_PATH,
    GATEWAY_NAME,
    GATEWAY_NAMESPACE,
    GATEWAY_PORT_NAME,
    GATEWAY_SERVICE_ACCOUNT,
    GATEWAY_STATE_CLAIM,
    GATEWAY_STATE_DIR,
    GATEWAY_TOKEN_AUDIENCE,
    MONITORING_NAMESPACE,
    PART_OF,
    PROMETHEUS_POD_LABELS,
    WORKER_LABELS,
    WORKFLOW_SERVICE_ACCOUNT,
)
from qhybrid.blueprint.namespaces import (
    namespace,
    restricted_container_security,
    restricted_pod_security,
)
from qhybrid.blueprint.network import api_server_egress_rule, dns_egress_rule, namespace_peer
from qhybrid.blueprint.pools import pool_placement

# File names inside the mounted credentials directory (the gateway reads them and
# reloads them when they change).
PROVIDER_TOKEN_FILE = "ibm-quantum-token"
PROVIDER_INSTANCE_FILE = "ibm-quantum-instance"

# The built-in ClusterRole that may create tokenreviews (and subjectaccessreviews).
AUTH_DELEGATOR_CLUSTER_ROLE = "system:auth-delegator"
TOKEN_REVIEW_BINDING = f"qhybrid-{GATEWAY_NAME}-auth-delegator"
# Where the API server listens behind the ``kubernetes`` Service (see network_policies).


def _metadata(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": GATEWAY_NAMESPACE, "labels": {**PART_OF, **GATEWAY_LABELS}, **extra}


def credentials_secret(config: StackConfig, provider_token: Any) -> dict[str, Any]:
    """Return the provider credentials Secret; ``provider_token`` is a Pulumi secret or a placeholder."""
    data: dict[str, Any] = {}
    if provider_token is not None:
        data[PROVIDER_TOKEN_FILE] = provider_token
    if config.qpu_provider_instance:
        data[PROVIDER_INSTANCE_FILE] = config.qpu_provider_instance
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": _metadata(GATEWAY_CREDENTIALS_SECRET),
        "stringData": data,
    }


def backend_entry(short: str, slots: int) -> dict[str, Any]:
    """Return a gateway backend entry (aer, emulator:<device>) that runs ``slots`` jobs at once.

    A QPU *slot* is one job in flight at the gateway: each QPU-branch pod has at most one
    (it submits its chunks one after another), Kueue admits ``qpuQuotaPods`` such pods at
    once, and every backend runs that many jobs at once: one number, so pods never queue
    at the gateway behind a quota Kueue already granted, and the gateway is never offered
    more than it runs.
    """
    kind, _, device = short.partition(":")
    if kind == "emulator" and device:
        return {"name": device, "kind": "emulator", "device": device, "concurrency": slots}
    if kind == "aer" and not device:
        return {"name": kind, "kind": kind, "concurrency": slots}
    raise ConfigError("gatewayBackends", f"{short!r}: use 'aer' or 'emulator:<fake device>'")


def gateway_config(config: StackConfig) -> dict[str, Any]:
    """Return the gateway's config file content (``qhybrid gateway serve --config``).

    The one client is the workflow's service account, authenticated by its projected
    token through the TokenReview API (the in-cluster API server, CA and the pod's own
    token are the config's defaults). Further clients with hashed bearer tokens can be
    added by whoever issues them.
    """
    workflow: dict[str, Any] = {
        "name": WORKFLOW_SERVICE_ACCOUNT,
        "kubernetes_service_account": f"{config.workflow_namespace}/{WORKFLOW_SERVICE_ACCOUNT}",
    }
    if config.gateway_workflow_shot_budget > 0:
        workflow["shot_budget"] = config.gateway_workflow_shot_budget
    return {
        "backends": [backend_entry(entry, config.qpu_quota_pods) for entry in config.gateway_backends],
        # In a pod, an accepted job must survive a node crash, not only a process crash.
        "store": {"synchronous": "FULL"},
        "clients": [workflow],
        "kubernetes": {"audience": GATEWAY_TOKEN_AUDIENCE},
    }


def token_review_binding() -> dict[str, Any]:
    """Return the ClusterRoleBinding that lets the gateway create TokenReviews."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": TOKEN_REVIEW_BINDING, "labels": {**PART_OF, **GATEWAY_LABELS}},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": AUTH_DELEGATOR_CLUSTER_ROLE,
        },
        "subjects": [
            {"kind": "ServiceAccount", "name": GATEWAY_SERVICE_ACCOUNT, "namespace": GATEWAY_NAMESPACE}
        ],
    }


def config_map(config: StackConfig) -> dict[str, Any]:
    """Return the ConfigMap holding the gateway's config file."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(GATEWAY_CONFIG_MAP),
        "data": {GATEWAY_CONFIG_FILE: yaml.safe_dump(gateway_config(config), sort_keys=True)},
    }


def state_claim(config: StackConfig) -> dict[str, Any]:
    """Return the claim for the gateway's durable job queue (the cluster's default StorageClass)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _metadata(GATEWAY_STATE_CLAIM),
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": config.gateway_state_size}},
        },
    }


def deployment(config: StackConfig) -> dict[str, Any]:
    """Return the gateway Deployment, pinned to the qpu-gateway pool.

    One replica, replaced with Recreate: the durable job queue is one SQLite file on
    one volume, and two gateways each with their own queue could run a retried job twice.
    """
    placement = pool_placement("qpu-gateway")
    probe = {"httpGet": {"path": "/healthz", "port": GATEWAY_PORT_NAME}, "periodSeconds": 10}
    container = {
        "name": "gateway",
        # By digest where the stack config gives one (gatewayImage: repo@sha256:...): kind loads
        # locally built images by tag, which no registry can resolve to a digest.
        "image": config.gateway_image,
        # Not Always: kind's nodes hold images `kind load` put there and pull from nowhere; a
        # released tag is immutable in our registry, and a digest pins it where one is given.
        "imagePullPolicy": "IfNotPresent",
        "args": [
            "gateway",
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            str(config.gateway_port),
            "--credentials-dir",
            GATEWAY_CREDENTIALS_MOUNT,
            "--state-dir",
            GATEWAY_STATE_DIR,
            "--config",
            f"{GATEWAY_CONFIG_DIR}/{GATEWAY_CONFIG_FILE}",
        ],
        "ports": [{"name": GATEWAY_PORT_NAME, "containerPort": config.gateway_port, "protocol": "TCP"}],
        "readinessProbe": {**probe, "httpGet": {"path": "/readyz", "port": GATEWAY_PORT_NAME}},
        "livenessProbe": {**probe, "failureThreshold": 6},
        # An emulator job is CPU-bound; the limit keeps two at once from starving the node.
        "resources": {
            "requests": {"cpu": "250m", "memory": "512Mi"},
            "limits": {"cpu": "2", "memory": "2Gi"},
        },
        "securityContext": restricted_container_security(),
        "volumeMounts": [
            {"name": "provider-credentials", "mountPath": GATEWAY_CREDENTIALS_MOUNT, "readOnly": True},
            {"name": "config", "mountPath": GATEWAY_CONFIG_DIR, "readOnly": True},
            {"name": "state", "mountPath": GATEWAY_STATE_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(GATEWAY_NAME),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": dict(GATEWAY_LABELS)},
            "template": {
                "metadata": {"labels": {**PART_OF, **GATEWAY_LABELS}},
                "spec": {
                    "serviceAccountName": GATEWAY_SERVICE_ACCOUNT,
                    # The gateway's own token: it calls the TokenReview API (and nothing else:
                    # see token_review_binding). The ServiceAccount itself keeps automount off.
                    "automountServiceAccountToken": True,
                    "securityContext": restricted_pod_security(),
                    "nodeSelector": placement["nodeSelector"],
                    "tolerations": placement["tolerations"],
                    "containers": [container],
                    "volumes": [
                        {
                            "name": "provider-credentials",
                            "secret": {"secretName": GATEWAY_CREDENTIALS_SECRET, "defaultMode": 0o400},
                        },
                        {"name": "config", "configMap": {"name": GATEWAY_CONFIG_MAP}},
                        {"name": "state", "persistentVolumeClaim": {"claimName": GATEWAY_STATE_CLAIM}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def service(config: StackConfig) -> dict[str, Any]:
    """Return the gateway's ClusterIP Service (API and /metrics on one named port)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(GATEWAY_NAME, annotations={"qhybrid.io/metrics-path": GATEWAY_METRICS_PATH}),
        "spec": {
            "type": "ClusterIP",
            "selector": dict(GATEWAY_LABELS),
            "ports": [
                {"name": GATEWAY_PORT_NAME, "port": config.gateway_port, "targetPort": GATEWAY_PORT_NAME}
            ],
        },
    }


def disruption_budget() -> dict[str, Any]:
    """Return the PDB: a drain may move the single gateway pod (its queue is on its volume).

    ``minAvailable: 1`` would block every drain of the qpu-gateway pool forever.
    """
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(GATEWAY_NAME),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": dict(GATEWAY_LABELS)}},
    }


def network_policies(config: StackConfig) -> list[dict[str, Any]]:
    """Return the gateway's policies: ingress from workers and Prometheus; egress to DNS, providers, API."""
    port = [{"protocol": "TCP", "port": config.gateway_port}]
    workers = namespace_peer(config.workflow_namespace, WORKER_LABELS)
    prometheus = namespace_peer(MONITORING_NAMESPACE, PROMETHEUS_POD_LABELS)
    dns = dns_egress_rule()
    providers = {
        "to": [{"ipBlock": {"cidr": cidr}} for cidr in config.gateway_egress_cidrs],
        "ports": [{"protocol": "TCP", "port": 443}],
    }
    api_server = api_server_egress_rule(config.workflow_egress_cidrs)  # for TokenReviews
    return [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _metadata(GATEWAY_NAME),
            "spec": {
                "podSelector": {"matchLabels": dict(GATEWAY_LABELS)},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [workers, prometheus], "ports": port}],
                "egress": [dns, providers, api_server],
            },
        }
    ]


def gateway_objects(config: StackConfig, provider_token: Any) -> list[dict[str, Any]]:
    """Return every gateway object, namespace first and the Secret before the pods that mount it."""
    return [
        namespace(GATEWAY_NAMESPACE, enforce="restricted"),
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _metadata(GATEWAY_SERVICE_ACCOUNT),
            "automountServiceAccountToken": False,  # only the gateway pod opts in
        },
        token_review_binding(),
        credentials_secret(config, provider_token),
        config_map(config),
        state_claim(config),
        deployment(config),
        service(config),
        disruption_budget(),
        *network_policies(config),
    ]
