"""Turn a plain Kubernetes object (a dict from qhybrid.blueprint) into a Pulumi resource.

Built-in kinds map to pulumi-kubernetes' typed resources, so previews show real
diffs and the provider validates them; any other kind (Kueue, Prometheus
Operator) becomes a CustomResource. Top-level fields are passed through
unchanged apart from their Python spelling; nested fields keep Kubernetes'
camelCase, which the provider accepts as is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

_TYPED: dict[tuple[str, str], Any] = {
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "ServiceAccount"): k8s.core.v1.ServiceAccount,
    ("v1", "Secret"): k8s.core.v1.Secret,
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "Service"): k8s.core.v1.Service,
    ("v1", "PersistentVolume"): k8s.core.v1.PersistentVolume,
    ("v1", "PersistentVolumeClaim"): k8s.core.v1.PersistentVolumeClaim,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("apps/v1", "StatefulSet"): k8s.apps.v1.StatefulSet,
    ("policy/v1", "PodDisruptionBudget"): k8s.policy.v1.PodDisruptionBudget,
    ("networking.k8s.io/v1", "NetworkPolicy"): k8s.networking.v1.NetworkPolicy,
    ("rbac.authorization.k8s.io/v1", "Role"): k8s.rbac.v1.Role,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): k8s.rbac.v1.RoleBinding,
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): k8s.rbac.v1.ClusterRoleBinding,
    ("storage.k8s.io/v1", "StorageClass"): k8s.storage.v1.StorageClass,
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): k8s.apiextensions.v1.CustomResourceDefinition,
}


def logical_name(obj: Mapping[str, Any]) -> str:
    """Return a stack-unique resource name: kind, namespace and name."""
    metadata = obj["metadata"]
    parts = [obj["kind"].lower(), metadata.get("namespace", ""), metadata["name"]]
    return "-".join(p for p in parts if p)


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def create_object(
    obj: Mapping[str, Any], opts: pulumi.ResourceOptions, name: str | None = None
) -> pulumi.CustomResource:
    """Create the resource for ``obj`` with ``opts`` (parent, provider, depends_on)."""
    api_version, kind = obj["apiVersion"], obj["kind"]
    fields = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
    resource_name = name or logical_name(obj)
    typed = _TYPED.get((api_version, kind))
    if typed is not None:
        return typed(resource_name, opts=opts, **{_snake(k): v for k, v in fields.items()})
    return k8s.apiextensions.CustomResource(
        resource_name, api_version=api_version, kind=kind, opts=opts, **fields
    )


def helm_release(
    name: str,
    *,
    chart: Any,
    namespace: str,
    values: Mapping[str, Any],
    opts: pulumi.ResourceOptions,
    resource_name: str | None = None,
) -> k8s.helm.v3.Release:
    """Install a pinned upstream chart (a ``versions.HelmChart``) and wait until it is ready.

    ``name`` is the Helm release's name; ``resource_name`` the Pulumi resource's, when
    it must differ (a component's children are prefixed with the component's name).
    """
    repository = k8s.helm.v3.RepositoryOptsArgs(repo=chart.repo) if chart.repo else None
    return k8s.helm.v3.Release(
        resource_name or name,
        name=name,
        chart=chart.name,
        version=chart.version,
        repository_opts=repository,
        namespace=namespace,
        create_namespace=False,  # our Namespace objects carry the Pod Security labels
        values=dict(values),
        atomic=True,
        cleanup_on_fail=True,
        timeout=900,
        opts=opts,
    )
