"""Namespaces, labelled with the Pod Security Standard their workloads allow.

Our own workloads (workers, gateway) meet ``restricted``. Upstream charts are
held to what they run: the node exporter of kube-prometheus-stack needs host
namespaces (``privileged``); Argo's and Kueue's controllers are enforced at
``baseline`` and warned/audited at ``restricted`` so drift shows up in events.
"""

from __future__ import annotations

from typing import Any

from qhybrid.blueprint.names import (
    ARGO_NAMESPACE,
    CACHE_NAMESPACE,
    GATEWAY_NAMESPACE,
    KUEUE_NAMESPACE,
    MONITORING_NAMESPACE,
    OBJECT_STORE_NAMESPACE,
    OPERATOR_NAMESPACE,
    PART_OF,
    TRACKING_NAMESPACE,
)

POD_SECURITY_LEVELS = ("privileged", "baseline", "restricted")
_PSS = "pod-security.kubernetes.io"


def namespace(name: str, *, enforce: str, extra_labels: dict[str, str] | None = None) -> dict[str, Any]:
    """Return a Namespace that enforces ``enforce`` and warns/audits at ``restricted``."""
    if enforce not in POD_SECURITY_LEVELS:
        raise ValueError(f"unknown Pod Security level {enforce!r}; choose one of {list(POD_SECURITY_LEVELS)}")
    labels = {
        **PART_OF,
        f"{_PSS}/enforce": enforce,
        f"{_PSS}/enforce-version": "latest",
        f"{_PSS}/warn": "restricted",
        f"{_PSS}/audit": "restricted",
        **(extra_labels or {}),
    }
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


# Namespace -> enforced level, for every namespace the blueprint creates except the
# workflow namespace (its name comes from config; it is always ``restricted``).
PLATFORM_NAMESPACES: dict[str, str] = {
    ARGO_NAMESPACE: "baseline",
    KUEUE_NAMESPACE: "baseline",
    MONITORING_NAMESPACE: "privileged",
    GATEWAY_NAMESPACE: "restricted",
    CACHE_NAMESPACE: "restricted",
    OPERATOR_NAMESPACE: "restricted",
    OBJECT_STORE_NAMESPACE: "restricted",
    TRACKING_NAMESPACE: "restricted",
}


def platform_namespace(name: str) -> dict[str, Any]:
    """Return one of PLATFORM_NAMESPACES at the Pod Security level that table gives it."""
    return namespace(name, enforce=PLATFORM_NAMESPACES[name])


def restricted_container_security() -> dict[str, Any]:
    """Return the container securityContext the ``restricted`` standard requires."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_pod_security() -> dict[str, Any]:
    """Return the pod securityContext our workloads run with (non-root uid/gid 10001)."""
    return {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
