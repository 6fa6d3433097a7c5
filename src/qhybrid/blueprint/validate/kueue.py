"""Structural checks for Kueue objects, and the references between queues, flavors and pools.

Kueue's CRD schemas (validate.schemas, strict) check shapes and name formats; these
catch what they cannot: a LocalQueue pointing at a ClusterQueue that does not exist,
a quota for a resource the group does not cover, a flavor whose tolerations do
not match the taints of the pool its node labels select. ``qhybrid.blueprint.validate``
lists these checkers in its table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from qhybrid.blueprint.pools import POOL_LABEL, POOLS

KUEUE_API = "kueue.x-k8s.io/v1beta2"


def _api_problem(obj: Mapping[str, Any]) -> list[str]:
    return [] if obj.get("apiVersion") == KUEUE_API else [f"apiVersion is not {KUEUE_API}"]


def tolerates(tolerations: Iterable[Mapping[str, Any]], taint: Mapping[str, str]) -> bool:
    """Return whether any toleration matches ``taint`` (Kubernetes' matching rules)."""
    for toleration in tolerations:
        if toleration.get("effect") not in (None, "", taint["effect"]):
            continue
        operator = toleration.get("operator", "Equal")
        if operator == "Exists" and toleration.get("key") in (None, "", taint["key"]):
            return True
        if (
            operator == "Equal"
            and toleration.get("key") == taint["key"]
            and toleration.get("value") == taint["value"]
        ):
            return True
    return False


def check_resource_flavor(obj: Mapping[str, Any]) -> list[str]:
    """A flavor selects one pool by its label and tolerates exactly that pool's taints."""
    problems = _api_problem(obj)
    spec = obj.get("spec") or {}
    pool_name = (spec.get("nodeLabels") or {}).get(POOL_LABEL)
    if pool_name not in POOLS:
        return [*problems, f"spec.nodeLabels.{POOL_LABEL} is {pool_name!r}, not one of {sorted(POOLS)}"]
    tolerations = spec.get("tolerations") or []
    for taint in POOLS[pool_name].taints:
        if not tolerates(tolerations, taint):
            problems.append(f"spec.tolerations do not tolerate pool {pool_name!r}'s taint {taint}")
    for other in POOLS.values():
        if other.name != pool_name and any(tolerates(tolerations, t) for t in other.taints):
            problems.append(f"spec.tolerations also tolerate pool {other.name!r}: pods could land there")
    return problems


def check_cluster_queue(obj: Mapping[str, Any]) -> list[str]:
    """Each flavor of a resource group quotes exactly the covered resources, non-negatively."""
    problems = _api_problem(obj)
    spec = obj.get("spec") or {}
    groups = spec.get("resourceGroups") or []
    if not groups:
        problems.append("spec.resourceGroups is empty: the queue admits nothing")
    seen_flavors: set[str] = set()
    for g, group in enumerate(groups):
        covered = group.get("coveredResources") or []
        for flavor in group.get("flavors") or []:
            where = f"spec.resourceGroups[{g}].flavors[{flavor.get('name')}]"
            if flavor.get("name") in seen_flavors:
                problems.append(f"{where}: flavor listed twice")
            seen_flavors.add(flavor.get("name"))
            names = [r.get("name") for r in flavor.get("resources") or []]
            if names != covered:
                problems.append(f"{where}: quotes {names}, but the group covers {covered}")
            for resource in flavor.get("resources") or []:
                quota = resource.get("nominalQuota")
                negative = (isinstance(quota, int | float) and quota < 0) or str(quota).startswith("-")
                if negative:
                    problems.append(f"{where}: negative nominalQuota {quota!r} for {resource.get('name')}")
    return problems


def check_local_queue(obj: Mapping[str, Any]) -> list[str]:
    """A LocalQueue is in the version we emit (its ClusterQueue name's format is the CRD's)."""
    return _api_problem(obj)


def check_kueue_references(objs: Iterable[Mapping[str, Any]]) -> list[str]:
    """Return broken references: LocalQueue -> ClusterQueue -> ResourceFlavor, and queue namespaces."""
    objs = list(objs)
    by_kind: dict[str, dict[str, Mapping[str, Any]]] = {}
    for obj in objs:
        by_kind.setdefault(str(obj.get("kind")), {})[obj["metadata"]["name"]] = obj
    flavors = by_kind.get("ResourceFlavor", {})
    cluster_queues = by_kind.get("ClusterQueue", {})
    problems = []
    for name, lq in by_kind.get("LocalQueue", {}).items():
        target = (lq.get("spec") or {}).get("clusterQueue")
        if target not in cluster_queues:
            problems.append(f"LocalQueue {name}: ClusterQueue {target!r} does not exist")
            continue
        selector = (cluster_queues[target].get("spec") or {}).get("namespaceSelector")
        allowed = ((selector or {}).get("matchLabels") or {}).get("kubernetes.io/metadata.name")
        if allowed is not None and allowed != lq["metadata"].get("namespace"):
            problems.append(f"LocalQueue {name}: ClusterQueue {target} admits only namespace {allowed!r}")
    for name, cq in cluster_queues.items():
        for group in (cq.get("spec") or {}).get("resourceGroups") or []:
            for flavor in group.get("flavors") or []:
                if flavor.get("name") not in flavors:
                    problems.append(
                        f"ClusterQueue {name}: ResourceFlavor {flavor.get('name')!r} does not exist"
                    )
    return problems
