"""Argo Workflows as data: chart values, the workflow namespace and what its pods may do.

Workflow pods run with a service account that may only report step results
(``workflowtaskresults``), live in a ``restricted`` namespace, accept no
connections and may connect only to DNS, the QPU gateway and the cluster's own
address ranges. Steps share files on one ReadWriteMany volume (the paper's
layout) or through an S3 artifact repository, per stack.
"""

from __future__ import annotations

from typing import Any

import yaml

from qhybrid.blueprint.config import StackConfig
from qhybrid.blueprint.helm_values import merge_values
from qhybrid.blueprint.names import (
    ARTIFACT_PVC,
    ARTIFACT_REPOSITORY_CONFIGMAP,
    CACHE_LABELS,
    CACHE_NAMESPACE,
    CACHE_PORT,
    GATEWAY_LABELS,
    GATEWAY_NAMESPACE,
    PART_OF,
    WORKFLOW_SERVICE_ACCOUNT,
)
from qhybrid.blueprint.namespaces import namespace, restricted_container_security
from qhybrid.blueprint.network import dns_egress_rule, namespace_peer
from qhybrid.blueprint.pools import pool_placement

S3_CREDENTIALS_SECRET = "qhybrid-artifact-s3"
# On kind every node container mounts the same host directory here (see kind.py),
# so a hostPath volume behaves as ReadWriteMany across the cluster.
KIND_ARTIFACT_NODE_PATH = "/var/lib/qhybrid/artifacts"
KIND_ARTIFACT_PV = "qhybrid-artifacts-kind"


def helm_values(config: StackConfig, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return the argo-workflows chart's values; ``extra`` (e.g. metrics settings) is merged on top."""
    placement = pool_placement("system")
    values: dict[str, Any] = {
        "singleNamespace": False,
        "controller": {
            "workflowNamespaces": [config.workflow_namespace],
            "nodeSelector": placement["nodeSelector"],
            "tolerations": placement["tolerations"],
            "workflowDefaults": {
                "spec": {
                    "serviceAccountName": WORKFLOW_SERVICE_ACCOUNT,
                    # Keep failed pods for diagnosis; succeeded ones go at once.
                    "podGC": {"strategy": "OnPodSuccess"},
                    "ttlStrategy": {"secondsAfterSuccess": 86400, "secondsAfterFailure": 604800},
                }
            },
        },
        # Argo's own init and wait containers take their securityContext only from here; without
        # it PodSecurity "restricted" in the workflow namespace refuses every workflow pod.
        "executor": {"securityContext": restricted_container_security()},
        "server": {"nodeSelector": placement["nodeSelector"], "tolerations": placement["tolerations"]},
        # The chart's generic workflow service account is broader than ours; we create our own.
        "workflow": {"serviceAccount": {"create": False}, "rbac": {"create": False}},
    }
    return merge_values(values, extra or {})


def workflow_namespace(config: StackConfig) -> dict[str, Any]:
    """Return the workflow namespace (``restricted``: our worker images run as non-root)."""
    return namespace(config.workflow_namespace, enforce="restricted")


def workflow_rbac(config: StackConfig) -> list[dict[str, Any]]:
    """Return the workflow pods' ServiceAccount, Role and RoleBinding (least privilege)."""
    ns = config.workflow_namespace
    rules: list[dict[str, Any]] = [
        # All the emissary executor needs: record each step's outputs.
        {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]}
    ]
    if config.artifact_store == "s3":
        # The wait container reads the artifact credentials through the API; no pod mounts them.
        rules.append(
            {
                "apiGroups": [""],
                "resources": ["secrets"],
                "resourceNames": [S3_CREDENTIALS_SECRET],
                "verbs": ["get"],
            }
        )
    metadata = {"name": WORKFLOW_SERVICE_ACCOUNT, "namespace": ns, "labels": dict(PART_OF)}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": metadata, "rules": rules},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": metadata,
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": WORKFLOW_SERVICE_ACCOUNT,
            },
            "subjects": [{"kind": "ServiceAccount", "name": WORKFLOW_SERVICE_ACCOUNT, "namespace": ns}],
        },
    ]


def artifact_volume(config: StackConfig) -> list[dict[str, Any]]:
    """Return the shared ReadWriteMany volume (artifactStore=pvc), or nothing for s3."""
    if config.artifact_store != "pvc":
        return []
    claim: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": ARTIFACT_PVC, "namespace": config.workflow_namespace, "labels": dict(PART_OF)},
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "resources": {"requests": {"storage": config.artifact_pvc_size}},
        },
    }
    if config.cluster != "kind":
        if config.artifact_storage_class:
            claim["spec"]["storageClassName"] = config.artifact_storage_class
        return [claim]
    # kind's default provisioner is ReadWriteOnce only: bind the claim to a hostPath
    # volume on the directory that every kind node shares.
    claim["spec"]["storageClassName"] = ""
    claim["spec"]["volumeName"] = KIND_ARTIFACT_PV
    volume = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": KIND_ARTIFACT_PV, "labels": dict(PART_OF)},
        "spec": {
            "capacity": {"storage": config.artifact_pvc_size},
            "accessModes": ["ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "hostPath": {"path": KIND_ARTIFACT_NODE_PATH, "type": "DirectoryOrCreate"},
            "claimRef": {"namespace": config.workflow_namespace, "name": ARTIFACT_PVC},
        },
    }
    return [volume, claim]


def artifact_repository(config: StackConfig, access_key: Any, secret_key: Any) -> list[dict[str, Any]]:
    """Return the S3 credentials Secret and the default artifact repository ConfigMap (s3 only).

    ``access_key``/``secret_key`` are whatever the caller holds: Pulumi secret
    Outputs in the program, placeholders when rendering.
    """
    if config.artifact_store != "s3":
        return []
    ns = config.workflow_namespace
    s3 = {
        "endpoint": config.artifact_s3_endpoint,
        "bucket": config.artifact_s3_bucket,
        "region": config.artifact_s3_region,
        "insecure": config.artifact_s3_insecure,
        "keyFormat": "qhybrid/{{workflow.name}}/{{pod.name}}",
        "accessKeySecret": {"name": S3_CREDENTIALS_SECRET, "key": "accessKey"},
        "secretKeySecret": {"name": S3_CREDENTIALS_SECRET, "key": "secretKey"},
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": S3_CREDENTIALS_SECRET, "namespace": ns, "labels": dict(PART_OF)},
            "stringData": {"accessKey": access_key, "secretKey": secret_key},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": ARTIFACT_REPOSITORY_CONFIGMAP,
                "namespace": ns,
                "labels": dict(PART_OF),
                "annotations": {"workflows.argoproj.io/default-artifact-repository": "default-v1"},
            },
            "data": {"default-v1": yaml.safe_dump({"s3": s3}, sort_keys=True)},
        },
    ]


def workflow_network_policies(config: StackConfig) -> list[dict[str, Any]]:
    """Return the workflow namespace's policies: no ingress; egress to DNS, gateway, cache, cluster ranges."""
    ns = config.workflow_namespace
    dns = dns_egress_rule()
    gateway = {
        "to": [namespace_peer(GATEWAY_NAMESPACE, GATEWAY_LABELS)],
        "ports": [{"protocol": "TCP", "port": config.gateway_port}],
    }
    cluster = {"to": [{"ipBlock": {"cidr": cidr}} for cidr in config.workflow_egress_cidrs]}
    result_cache = {
        "to": [namespace_peer(CACHE_NAMESPACE, CACHE_LABELS)],
        "ports": [{"protocol": "TCP", "port": CACHE_PORT}],
    }
    return [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "workflow-pods", "namespace": ns, "labels": dict(PART_OF)},
            "spec": {
                "podSelector": {},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [],
                "egress": [dns, gateway, *([result_cache] if config.cache_enabled else []), cluster],
            },
        }
    ]


def argo_objects(
    config: StackConfig, s3_access_key: Any = None, s3_secret_key: Any = None
) -> list[dict[str, Any]]:
    """Return every object of the Argo part (chart excluded), namespace first."""
    return [
        workflow_namespace(config),
        *workflow_rbac(config),
        *artifact_volume(config),
        *artifact_repository(config, s3_access_key, s3_secret_key),
        *workflow_network_policies(config),
    ]
