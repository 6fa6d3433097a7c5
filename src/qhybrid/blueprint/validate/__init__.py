"""Structural checks for objects that Kubernetes' own schemas do not cover.

``check_object(obj)`` returns a list of problems (empty when fine): generic checks
for every object (apiVersion, kind, names, labels, namespace of namespaced kinds),
then the checker :data:`CHECKERS` lists for its kind (Prometheus operator and
dashboard checkers in ``monitoring``, Kueue's in ``kueue``; field rules in
``fields``). ``check_references(objs)`` checks what ties objects together:
namespaces that exist, monitors Prometheus will select, unique identities and
dashboard uids.

The rules mirror what the API server, the Prometheus operator and Prometheus
would reject or silently ignore, so a mistake fails a unit test instead of a
deployment (or, worse, a scrape target that never appears).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from qhybrid.blueprint.names import PROMETHEUS_SELECTOR_LABELS
from qhybrid.blueprint.namespaces import PLATFORM_NAMESPACES
from qhybrid.blueprint.validate import kueue, monitoring
from qhybrid.blueprint.validate.fields import (
    describe,
    dns_label_problem,
    dns_subdomain_problem,
    labels_problems,
    selector_matches,
)

Checker = Callable[[Mapping[str, Any]], list[str]]
# The checker of each kind, in one explicit table: a kind without an entry gets the
# generic checks only.
CHECKERS: dict[str, Checker] = {
    "ServiceMonitor": monitoring.check_service_monitor,
    "PodMonitor": monitoring.check_pod_monitor,
    "PrometheusRule": monitoring.check_prometheus_rule,
    "ConfigMap": monitoring.check_configmap,
    "ResourceFlavor": kueue.check_resource_flavor,
    "ClusterQueue": kueue.check_cluster_queue,
    "LocalQueue": kueue.check_local_queue,
}

# Kinds without a namespace; extend for other cluster-scoped CRDs (e.g. Kueue's ClusterQueue).
CLUSTER_SCOPED_KINDS: set[str] = {
    "Namespace",
    "Node",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "ClusterQueue",
    "ResourceFlavor",
    "Cohort",
    "WorkloadPriorityClass",
    "ClusterWorkflowTemplate",
}
DEFAULT_KNOWN_NAMESPACES = frozenset({*PLATFORM_NAMESPACES, "default", "kube-system"})
MONITOR_KINDS = ("ServiceMonitor", "PodMonitor", "PrometheusRule")


def _generic_problems(obj: Mapping[str, Any]) -> list[str]:
    problems = []
    for field in ("apiVersion", "kind"):
        if not isinstance(obj.get(field), str) or not obj.get(field):
            problems.append(f"{field} is missing")
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping):
        return [*problems, "metadata is missing"]
    name, kind = metadata.get("name"), obj.get("kind")
    name_problem = dns_label_problem(name) if kind == "Namespace" else dns_subdomain_problem(name)
    if name_problem:
        problems.append(f"metadata.name: {name_problem}")
    namespace = metadata.get("namespace")
    if kind in CLUSTER_SCOPED_KINDS:
        if namespace is not None:
            problems.append(f"{kind} is cluster-scoped but has metadata.namespace {namespace!r}")
    elif namespace is None:
        problems.append("metadata.namespace is missing (the object would land in the provider's default)")
    elif problem := dns_label_problem(namespace):
        problems.append(f"metadata.namespace: {problem}")
    problems += [f"metadata.labels: {p}" for p in labels_problems(metadata.get("labels"), "labels")]
    problems += [
        f"metadata.annotations: {p}" for p in labels_problems(metadata.get("annotations"), "annotations")
    ]
    return problems


def check_object(obj: Mapping[str, Any]) -> list[str]:
    """Return every problem of ``obj`` (generic, then its kind's checker), each prefixed with the object."""
    problems = _generic_problems(obj)
    checker = CHECKERS.get(str(obj.get("kind")))
    if checker is not None and isinstance(obj.get("metadata"), Mapping):
        problems += checker(obj)
    return [f"{describe(obj)}: {p}" for p in problems]


def check_objects(objs: Iterable[Mapping[str, Any]]) -> list[str]:
    """Return ``check_object``'s problems for every object, then ``check_references``'."""
    objs = list(objs)
    return [p for obj in objs for p in check_object(obj)] + check_references(objs)


def check_references(
    objs: Iterable[Mapping[str, Any]],
    *,
    known_namespaces: Iterable[str] = DEFAULT_KNOWN_NAMESPACES,
    monitor_selector: Mapping[str, str] = PROMETHEUS_SELECTOR_LABELS,
) -> list[str]:
    """Return cross-object problems of ``objs``.

    Namespaces named by objects and by monitors' namespaceSelectors must be created
    in ``objs`` or be in ``known_namespaces``; monitors and rules must carry
    ``monitor_selector`` (else Prometheus ignores them); kind/namespace/name and
    Grafana dashboard uids must be unique.
    """
    objs = list(objs)
    created = {o["metadata"]["name"] for o in objs if o.get("kind") == "Namespace"}
    available = created | set(known_namespaces)
    problems = []
    identities = Counter(
        (
            o.get("apiVersion", "").split("/")[0],
            o.get("kind"),
            o["metadata"].get("namespace"),
            o["metadata"]["name"],
        )
        for o in objs
    )
    problems += [f"{k} {ns or ''}/{n}: defined {c} times" for (_, k, ns, n), c in identities.items() if c > 1]
    for obj in objs:
        metadata = obj["metadata"]
        namespace = metadata.get("namespace")
        if namespace is not None and namespace not in available:
            problems.append(
                f"{describe(obj)}: namespace {namespace!r} is neither created nor a platform namespace"
            )
        if obj.get("kind") not in MONITOR_KINDS:
            continue
        if not selector_matches({"matchLabels": dict(monitor_selector)}, metadata.get("labels") or {}):
            problems.append(
                f"{describe(obj)}: lacks labels {dict(monitor_selector)}; Prometheus would ignore it"
            )
        names = ((obj.get("spec") or {}).get("namespaceSelector") or {}).get("matchNames") or []
        for name in names:
            if name not in available:
                problems.append(f"{describe(obj)}: namespaceSelector names {name!r}, which does not exist")
    uids = Counter(uid for obj in objs for uid in monitoring.dashboard_uids(obj))
    problems += [f"Grafana dashboard uid {uid!r} is used {c} times" for uid, c in uids.items() if c > 1]
    return problems
