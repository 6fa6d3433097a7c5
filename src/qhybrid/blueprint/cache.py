"""The shared result cache: Valkey in its own namespace, reachable only by the workflow's pods.

One Valkey (the BSD fork of Redis; the client speaks to either) as a StatefulSet with a
volume for its append-only file, so a restart keeps the results. ``maxmemory`` with the
``allkeys-lru`` policy bounds it; qhybrid writes each key with ``SET NX`` (written once).
Its NetworkPolicy admits the workflow's generate and execute pods on the Valkey port and
Prometheus on the exporter's port, and lets nothing out: a cache that any pod could write
could be poisoned by any pod. The exporter (``redis_exporter``, a sidecar) gives hits,
misses, memory and evictions; the ServiceMonitor is in the monitoring namespace like the
others. There is no password: a password would have to reach worker pods, which carry no
Secret; the NetworkPolicy is the access control.
"""

from __future__ import annotations

from typing import Any

from qhybrid.blueprint.config import StackConfig
from qhybrid.blueprint.monitoring import http_service_monitor
from qhybrid.blueprint.monitoring import metric_names as m
from qhybrid.blueprint.names import (
    CACHE_CLIENT_STEPS,
    CACHE_CONFIG_MAP,
    CACHE_LABELS,
    CACHE_METRICS_PORT,
    CACHE_METRICS_PORT_NAME,
    CACHE_NAME,
    CACHE_NAMESPACE,
    CACHE_PORT,
    CACHE_PORT_NAME,
    MONITORING_NAMESPACE,
    PART_OF,
    PROMETHEUS_POD_LABELS,
    WORKER_LABELS,
    WORKFLOW_STEP_LABEL,
)
from qhybrid.blueprint.namespaces import (
    platform_namespace,
    restricted_container_security,
    restricted_pod_security,
)
from qhybrid.blueprint.network import namespace_peer
from qhybrid.blueprint.pools import pool_placement
from qhybrid.blueprint.versions import REDIS_EXPORTER_IMAGE, VALKEY_IMAGE

DATA_DIR = "/data"
CONFIG_DIR = "/etc/valkey"


def cache_url(config: StackConfig) -> str:
    """Return the ``--cache`` URL the workflow's pods use."""
    return f"redis://{CACHE_NAME}.{CACHE_NAMESPACE}.svc:{CACHE_PORT}/0"


def _metadata(name: str) -> dict[str, Any]:
    return {"name": name, "namespace": CACHE_NAMESPACE, "labels": {**PART_OF, **CACHE_LABELS}}


def server_config(config: StackConfig) -> str:
    """Return valkey.conf: the memory bound, LRU eviction, an append-only file, no snapshots."""
    return "\n".join(
        [
            "bind 0.0.0.0",
            f"port {CACHE_PORT}",
            "protected-mode no",  # no password (see the module docstring): the NetworkPolicy admits
            f"dir {DATA_DIR}",
            "appendonly yes",
            "appendfsync everysec",
            'save ""',
            f"maxmemory {config.cache_max_memory_mib}mb",
            "maxmemory-policy allkeys-lru",
            "",
        ]
    )


def stateful_set(config: StackConfig) -> dict[str, Any]:
    """Return the Valkey StatefulSet (one replica, its volume from a claim template) with the exporter."""
    placement = pool_placement("cpu")
    probe = {"tcpSocket": {"port": CACHE_PORT_NAME}, "periodSeconds": 10}
    # The AOF rewrite forks: room for a copy of the data set on top of maxmemory.
    memory = f"{config.cache_max_memory_mib * 2 + 128}Mi"
    server = {
        "name": "valkey",
        "image": VALKEY_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["valkey-server", f"{CONFIG_DIR}/valkey.conf"],
        "ports": [{"name": CACHE_PORT_NAME, "containerPort": CACHE_PORT, "protocol": "TCP"}],
        "readinessProbe": probe,
        "livenessProbe": {**probe, "failureThreshold": 6},
        "resources": {
            "requests": {"cpu": "250m", "memory": memory},
            "limits": {"cpu": "1", "memory": memory},
        },
        "securityContext": restricted_container_security(),
        "volumeMounts": [
            {"name": "data", "mountPath": DATA_DIR},
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        ],
    }
    exporter = {
        "name": "exporter",
        "image": REDIS_EXPORTER_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "args": [
            f"--redis.addr=redis://127.0.0.1:{CACHE_PORT}",
            f"--web.listen-address=:{CACHE_METRICS_PORT}",
        ],
        "ports": [{"name": CACHE_METRICS_PORT_NAME, "containerPort": CACHE_METRICS_PORT, "protocol": "TCP"}],
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"cpu": "200m", "memory": "64Mi"},
        },
        "securityContext": restricted_container_security(),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _metadata(CACHE_NAME),
        "spec": {
            "serviceName": CACHE_NAME,
            "replicas": 1,
            "selector": {"matchLabels": dict(CACHE_LABELS)},
            "template": {
                "metadata": {"labels": {**PART_OF, **CACHE_LABELS}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": restricted_pod_security(),
                    "nodeSelector": placement["nodeSelector"],
                    "tolerations": placement["tolerations"],
                    "containers": [server, exporter],
                    "volumes": [{"name": "config", "configMap": {"name": CACHE_CONFIG_MAP}}],
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data", "labels": {**PART_OF, **CACHE_LABELS}},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": config.cache_storage_size}},
                    },
                }
            ],
        },
    }


def service() -> dict[str, Any]:
    """Return the cache's ClusterIP Service: Valkey and the exporter's metrics."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(CACHE_NAME),
        "spec": {
            "type": "ClusterIP",
            "selector": dict(CACHE_LABELS),
            "ports": [
                {"name": CACHE_PORT_NAME, "port": CACHE_PORT, "targetPort": CACHE_PORT_NAME},
                {
                    "name": CACHE_METRICS_PORT_NAME,
                    "port": CACHE_METRICS_PORT,
                    "targetPort": CACHE_METRICS_PORT_NAME,
                },
            ],
        },
    }


def client_peer(config: StackConfig) -> dict[str, Any]:
    """Return the policy peer of the pods that may use the cache: the workflow's generate and execute pods."""
    peer = namespace_peer(config.workflow_namespace, WORKER_LABELS)
    peer["podSelector"]["matchExpressions"] = [
        {"key": WORKFLOW_STEP_LABEL, "operator": "In", "values": list(CACHE_CLIENT_STEPS)}
    ]
    return peer


def network_policy(config: StackConfig) -> dict[str, Any]:
    """Return the cache's policy: Valkey for generate/execute pods, metrics for Prometheus, no egress."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(CACHE_NAME),
        "spec": {
            "podSelector": {"matchLabels": dict(CACHE_LABELS)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {"from": [client_peer(config)], "ports": [{"protocol": "TCP", "port": CACHE_PORT}]},
                {
                    "from": [namespace_peer(MONITORING_NAMESPACE, PROMETHEUS_POD_LABELS)],
                    "ports": [{"protocol": "TCP", "port": CACHE_METRICS_PORT}],
                },
            ],
            "egress": [],
        },
    }


def service_monitor() -> dict[str, Any]:
    """Return the ServiceMonitor (in the monitoring namespace) of the cache's exporter."""
    return http_service_monitor(
        CACHE_NAME, CACHE_NAMESPACE, CACHE_LABELS, CACHE_METRICS_PORT_NAME, m.JOB_RESULT_CACHE
    )


def cache_objects(config: StackConfig) -> list[dict[str, Any]]:
    """Return every object of the cache part, namespace first (none when ``cacheEnabled`` is false)."""
    if not config.cache_enabled:
        return []
    return [
        platform_namespace(CACHE_NAMESPACE),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _metadata(CACHE_CONFIG_MAP),
            "data": {"valkey.conf": server_config(config)},
        },
        stateful_set(config),
        service(),
        network_policy(config),
        service_monitor(),
    ]
