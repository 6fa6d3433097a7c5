"""The MLflow tracking server: experiments of runs and variational loops, artifacts in S3.

One ``mlflow server`` (the official image's ``-full`` variant: database drivers and
boto3) in the ``restricted`` namespace ``qhybrid-tracking``:

- **its database**: ``trackingDatabase=sqlite`` keeps runs in a SQLite file on its own
  volume (kind; one replica, ``Recreate`` so two servers never open the file);
  ``external`` reads the SQLAlchemy URI (PostgreSQL on RDS, say) from the secret
  ``trackingDatabaseUri`` through ``MLFLOW_BACKEND_STORE_URI``, never a flag, and may
  reach only ``trackingDatabaseCidrs``.
- **its artifacts**: proxied (clients only talk to the server), in the object store's
  bucket under ``mlflow/`` (``--artifacts-destination``), or, without the object store,
  in the stack's S3 artifact bucket. The S3 keys are an AWS credentials file in a Secret
  mounted only here.
- **access**: a ServiceAccount with no token and no role (it never calls the API); a
  NetworkPolicy admitting the workflow pods (a report step may track its run) and
  Prometheus (``--expose-prometheus``), and letting out only DNS, S3 and the database.
  ``--allowed-hosts`` names the Service, so requests through it are not refused as a
  DNS-rebinding attempt; users reach it with ``kubectl port-forward`` (localhost).
"""

from __future__ import annotations

from typing import Any

from qhybrid.blueprint import objectstore
from qhybrid.blueprint.config import StackConfig
from qhybrid.blueprint.monitoring import http_service_monitor
from qhybrid.blueprint.monitoring import metric_names as m
from qhybrid.blueprint.names import (
    MLFLOW_ARTIFACT_PREFIX,
    MONITORING_NAMESPACE,
    OBJECT_STORE_LABELS,
    OBJECT_STORE_NAMESPACE,
    OBJECT_STORE_PORT,
    PART_OF,
    PROMETHEUS_POD_LABELS,
    TRACKING_DATABASE_SECRET,
    TRACKING_LABELS,
    TRACKING_NAME,
    TRACKING_NAMESPACE,
    TRACKING_PORT,
    TRACKING_PORT_NAME,
    TRACKING_S3_SECRET,
    WORKER_LABELS,
)
from qhybrid.blueprint.namespaces import (
    platform_namespace,
    restricted_container_security,
    restricted_pod_security,
)
from qhybrid.blueprint.network import dns_egress_rule, namespace_peer
from qhybrid.blueprint.pools import pool_placement
from qhybrid.blueprint.versions import MLFLOW_IMAGE

DATA_DIR = "/mlflow"
CREDENTIALS_DIR = "/var/run/secrets/qhybrid/s3"
METRICS_DIR = "/tmp/mlflow-metrics"
DATABASE_PORTS = (5432, 3306)  # PostgreSQL, MySQL


def url() -> str:
    """The tracking server's in-cluster URL (``--track`` for a run inside the cluster)."""
    return f"http://{TRACKING_NAME}.{TRACKING_NAMESPACE}.svc:{TRACKING_PORT}"


def artifact_destination(config: StackConfig) -> tuple[str, str]:
    """The S3 endpoint and ``s3://`` root of MLflow's artifacts: the object store, else the stack's bucket."""
    if config.object_store_enabled:
        return objectstore.endpoint(), f"s3://{config.object_store_bucket}/{MLFLOW_ARTIFACT_PREFIX}"
    scheme = "http" if config.artifact_s3_insecure else "https"
    s3_endpoint = config.artifact_s3_endpoint
    if not s3_endpoint.startswith(("http://", "https://")):
        s3_endpoint = f"{scheme}://{s3_endpoint}"
    return s3_endpoint, f"s3://{config.artifact_s3_bucket}/{MLFLOW_ARTIFACT_PREFIX}"


def _metadata(name: str) -> dict[str, Any]:
    return {"name": name, "namespace": TRACKING_NAMESPACE, "labels": {**PART_OF, **TRACKING_LABELS}}


def s3_credentials_secret(access_key: Any, secret_key: Any) -> dict[str, Any]:
    """Return the Secret holding an AWS credentials file with the S3 keys (may be Pulumi Outputs)."""

    def render(keys: list[str]) -> str:
        return f"[default]\naws_access_key_id = {keys[0]}\naws_secret_access_key = {keys[1]}\n"

    if isinstance(access_key, str) and isinstance(secret_key, str):
        text: Any = render([access_key, secret_key])
    else:
        import pulumi  # only the Pulumi program passes Outputs

        text = pulumi.Output.all(access_key, secret_key).apply(render)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(TRACKING_S3_SECRET),
        "type": "Opaque",
        "stringData": {"credentials": text},
    }


def database_secret(uri: Any) -> dict[str, Any]:
    """Return the Secret holding the external database's URI."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(TRACKING_DATABASE_SECRET),
        "type": "Opaque",
        "stringData": {"uri": uri},
    }


def allowed_hosts() -> list[str]:
    """Host headers the server answers: the Service's names, and localhost for a port-forward."""
    names = [
        TRACKING_NAME,
        f"{TRACKING_NAME}.{TRACKING_NAMESPACE}",
        f"{TRACKING_NAME}.{TRACKING_NAMESPACE}.svc",
    ]
    names += [f"{names[-1]}.cluster.local", "localhost", "127.0.0.1"]
    return [host for name in names for host in (name, f"{name}:{TRACKING_PORT}")]


def server_args(config: StackConfig) -> list[str]:
    """The ``mlflow server`` flags (the database comes from the environment, never a flag)."""
    _endpoint, root = artifact_destination(config)
    return [
        "server",
        "--host", "0.0.0.0",
        "--port", str(TRACKING_PORT),
        "--workers", "2",
        "--artifacts-destination", root,
        "--allowed-hosts", ",".join(allowed_hosts()),
        "--expose-prometheus", METRICS_DIR,
    ]  # fmt: skip


def deployment(config: StackConfig) -> dict[str, Any]:
    """Return the tracking server's Deployment (one replica; Recreate with SQLite on its volume)."""
    placement = pool_placement("system")
    s3_endpoint, _root = artifact_destination(config)
    sqlite = config.tracking_database == "sqlite"
    database: dict[str, Any] = (
        {"name": "MLFLOW_BACKEND_STORE_URI", "value": f"sqlite:///{DATA_DIR}/mlflow.db"}
        if sqlite
        else {
            "name": "MLFLOW_BACKEND_STORE_URI",
            "valueFrom": {"secretKeyRef": {"name": TRACKING_DATABASE_SECRET, "key": "uri"}},
        }
    )
    probe = {"httpGet": {"path": "/health", "port": TRACKING_PORT_NAME}, "periodSeconds": 10}
    mounts = [
        {"name": "s3-credentials", "mountPath": CREDENTIALS_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "s3-credentials", "secret": {"secretName": TRACKING_S3_SECRET}},
        {"name": "tmp", "emptyDir": {}},
    ]
    if sqlite:
        mounts.append({"name": "data", "mountPath": DATA_DIR})
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": f"{TRACKING_NAME}-data"}})
    server = {
        "name": "mlflow",
        "image": MLFLOW_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["mlflow"],
        "args": server_args(config),
        "env": [
            database,
            {"name": "MLFLOW_S3_ENDPOINT_URL", "value": s3_endpoint},
            {"name": "AWS_SHARED_CREDENTIALS_FILE", "value": f"{CREDENTIALS_DIR}/credentials"},
            {"name": "AWS_DEFAULT_REGION", "value": config.artifact_s3_region or "us-east-1"},
            {"name": "HOME", "value": "/tmp"},
        ],
        "ports": [{"name": TRACKING_PORT_NAME, "containerPort": TRACKING_PORT, "protocol": "TCP"}],
        "readinessProbe": probe,
        "livenessProbe": {**probe, "initialDelaySeconds": 30, "failureThreshold": 6},
        "resources": {
            "requests": {"cpu": "250m", "memory": "768Mi"},
            "limits": {"cpu": "2", "memory": "2Gi"},
        },
        "securityContext": restricted_container_security(),
        "volumeMounts": mounts,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(TRACKING_NAME),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": dict(TRACKING_LABELS)},
            "template": {
                "metadata": {"labels": {**PART_OF, **TRACKING_LABELS}},
                "spec": {
                    "serviceAccountName": TRACKING_NAME,
                    "automountServiceAccountToken": False,
                    "securityContext": restricted_pod_security(),
                    "nodeSelector": placement["nodeSelector"],
                    "tolerations": placement["tolerations"],
                    "containers": [server],
                    "volumes": volumes,
                },
            },
        },
    }


def data_claim(config: StackConfig) -> dict[str, Any]:
    """Return the SQLite file's volume claim."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _metadata(f"{TRACKING_NAME}-data"),
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": config.tracking_storage_size}},
        },
    }


def service() -> dict[str, Any]:
    """Return the tracking server's ClusterIP Service (the UI, the API and /metrics)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(TRACKING_NAME),
        "spec": {
            "type": "ClusterIP",
            "selector": dict(TRACKING_LABELS),
            "ports": [{"name": TRACKING_PORT_NAME, "port": TRACKING_PORT, "targetPort": TRACKING_PORT_NAME}],
        },
    }


def network_policy(config: StackConfig) -> dict[str, Any]:
    """Return the policy: workflow pods and Prometheus in; DNS, S3 and the database out."""
    egress: list[dict[str, Any]] = [dns_egress_rule()]
    if config.object_store_enabled:
        egress.append(
            {
                "to": [namespace_peer(OBJECT_STORE_NAMESPACE, OBJECT_STORE_LABELS)],
                "ports": [{"protocol": "TCP", "port": OBJECT_STORE_PORT}],
            }
        )
    else:  # the stack's S3, outside the cluster's network
        egress.append(
            {
                "to": [
                    {"ipBlock": {"cidr": cidr}} for cidr in config.workflow_egress_cidrs or ("0.0.0.0/0",)
                ],
                "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 80}],
            }
        )
    if config.tracking_database == "external":
        egress.append(
            {
                "to": [{"ipBlock": {"cidr": cidr}} for cidr in config.tracking_database_cidrs],
                "ports": [{"protocol": "TCP", "port": port} for port in DATABASE_PORTS],
            }
        )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(TRACKING_NAME),
        "spec": {
            "podSelector": {"matchLabels": dict(TRACKING_LABELS)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [
                        namespace_peer(config.workflow_namespace, WORKER_LABELS),
                        namespace_peer(MONITORING_NAMESPACE, PROMETHEUS_POD_LABELS),
                    ],
                    "ports": [{"protocol": "TCP", "port": TRACKING_PORT}],
                }
            ],
            "egress": egress,
        },
    }


def service_account() -> dict[str, Any]:
    """Return the server's ServiceAccount: bound to no role, its token never mounted."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(TRACKING_NAME),
        "automountServiceAccountToken": False,
    }


def tracking_objects(
    config: StackConfig, s3_access_key: Any, s3_secret_key: Any, database_uri: Any = None
) -> list[dict[str, Any]]:
    """Return every object of the tracking part, namespace first (none when it is turned off).

    ``s3_access_key``/``s3_secret_key``: the object store's keys (or the stack's S3 keys);
    ``database_uri``: the external database's URI (``trackingDatabase=external`` only).
    """
    if not config.tracking_enabled:
        return []
    objects = [
        platform_namespace(TRACKING_NAMESPACE),
        service_account(),
        s3_credentials_secret(s3_access_key, s3_secret_key),
    ]
    if config.tracking_database == "external":
        objects.append(database_secret(database_uri))
    else:
        objects.append(data_claim(config))
    objects += [
        deployment(config),
        service(),
        network_policy(config),
        http_service_monitor(
            TRACKING_NAME, TRACKING_NAMESPACE, TRACKING_LABELS, TRACKING_PORT_NAME, m.JOB_TRACKING
        ),
    ]
    return objects
