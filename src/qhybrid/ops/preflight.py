"""``qhybrid preflight``: is this cluster ready for the platform, and is the platform sound on it?

A platform engineer runs it against their own cluster before ``pulumi up`` (what is
missing, what would be refused) and after it (what is in place). Each check returns
rows: pass, fail or warn, a detail and a hint. Nothing is created: objects are sent
as server-side dry runs with strict field validation, and permissions are asked with
SubjectAccessReview.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from qhybrid.blueprint.config import StackConfig
from qhybrid.blueprint.names import (
    GATEWAY_NAMESPACE,
    GATEWAY_SERVICE_ACCOUNT,
    WORKFLOW_SERVICE_ACCOUNT,
)
from qhybrid.blueprint.pools import POOL_LABEL, POOLS
from qhybrid.blueprint.render import rendered_parts
from qhybrid.blueprint.versions import MIN_KUBERNETES_VERSION
from qhybrid.ops.kubeapi import ApiFailure, KubeApi, resource_path

PASS, FAIL, WARN = "pass", "fail", "warn"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
PSS_ENFORCE = "pod-security.kubernetes.io/enforce"
# The custom resources our objects and workflows use: (group/version, plural).
REQUIRED_APIS = (
    ("kueue.x-k8s.io/v1beta2", "resourceflavors"),
    ("kueue.x-k8s.io/v1beta2", "clusterqueues"),
    ("kueue.x-k8s.io/v1beta2", "localqueues"),
    ("argoproj.io/v1alpha1", "workflows"),
    ("argoproj.io/v1alpha1", "workflowtaskresults"),
    ("monitoring.coreos.com/v1", "servicemonitors"),
    ("monitoring.coreos.com/v1", "podmonitors"),
    ("monitoring.coreos.com/v1", "prometheusrules"),
)


@dataclass(frozen=True)
class Row:
    """One line of the preflight table."""

    check: str
    status: str  # pass | fail | warn
    detail: str
    hint: str = ""


Check = Callable[[KubeApi, StackConfig], list[Row]]


def server_version(api: KubeApi, config: StackConfig) -> list[Row]:
    """The API server's version is one we support."""
    info = api.get("/version")
    major = int(re.sub(r"\D", "", str(info.get("major", "0"))) or 0)
    minor = int(re.sub(r"\D", "", str(info.get("minor", "0"))) or 0)
    version = info.get("gitVersion") or f"{major}.{minor}"
    low = ".".join(map(str, MIN_KUBERNETES_VERSION))
    if (major, minor) >= MIN_KUBERNETES_VERSION:
        return [Row("server version", PASS, f"{version} (>= {low})")]
    return [Row("server version", FAIL, f"{version} is older than {low}", f"upgrade the cluster to {low}+")]


def custom_resources_served(api: KubeApi, config: StackConfig) -> list[Row]:
    """The CRDs we use are installed, with the API versions we emit served."""
    rows = []
    for api_version, plural in REQUIRED_APIS:
        resources = api.resources(api_version)
        found = resources is not None and any(r["name"] == plural for r in resources.values())
        rows.append(
            Row(
                f"API {api_version} {plural}",
                PASS if found else FAIL,
                "served" if found else "not served",
                "" if found else "install its CRDs (pulumi up installs the chart that ships them)",
            )
        )
    return rows


def dry_run_objects(api: KubeApi, config: StackConfig) -> list[Row]:
    """Every object we would create is accepted by a server-side dry run with strict field validation."""
    objects = [o for part in rendered_parts(config).values() for o in part]
    existing_namespaces = _namespaces(api)
    created_namespaces = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
    rows = []
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        namespace = obj["metadata"].get("namespace")
        what = f"dry run {kind} {namespace + '/' if namespace else ''}{name}"
        api_version = obj["apiVersion"]
        resource = (api.resources(api_version) or {}).get(kind)
        if resource is None:
            rows.append(Row(what, FAIL, f"{api_version} {kind} is not served", "install its CRDs first"))
            continue
        if namespace and namespace not in existing_namespaces:
            # A dry run cannot create the namespace first; it is checked once it exists.
            status = WARN if namespace in created_namespaces else FAIL
            rows.append(
                Row(what, status, f"namespace {namespace} does not exist yet", "rerun after pulumi up")
            )
            continue
        path = resource_path(
            api_version, resource["name"], namespace if resource["namespaced"] else None, name
        )
        try:
            api.apply(path, obj, dry_run=True)
        except ApiFailure as failure:
            rows.append(Row(what, FAIL, f"refused: {failure}", "fix the object or the cluster"))
            continue
        rows.append(Row(what, PASS, "accepted (dry run, strict fields)"))
    return rows


def _namespaces(api: KubeApi) -> dict[str, dict[str, Any]]:
    return {n["metadata"]["name"]: n for n in api.get("/api/v1/namespaces").get("items") or []}


def pod_security_labels(api: KubeApi, config: StackConfig) -> list[Row]:
    """Our namespaces exist and enforce the Pod Security level the blueprint gives them."""
    live = _namespaces(api)
    rows = []
    for obj in (o for part in rendered_parts(config).values() for o in part if o["kind"] == "Namespace"):
        name, wanted = obj["metadata"]["name"], obj["metadata"]["labels"][PSS_ENFORCE]
        if name not in live:
            rows.append(Row(f"namespace {name}", WARN, "does not exist yet", "pulumi up creates it"))
            continue
        actual = (live[name]["metadata"].get("labels") or {}).get(PSS_ENFORCE)
        ok = actual == wanted
        rows.append(
            Row(
                f"namespace {name}",
                PASS if ok else FAIL,
                f"enforces {actual or 'nothing'}" + ("" if ok else f", not {wanted}"),
                "" if ok else f"kubectl label namespace {name} {PSS_ENFORCE}={wanted} --overwrite",
            )
        )
    return rows


def node_pools(api: KubeApi, config: StackConfig) -> list[Row]:
    """Nodes of each pool exist, with the labels, taints and allocatable GPUs the flavors expect."""
    nodes = api.get("/api/v1/nodes").get("items") or []
    rows = []
    for pool_name, wanted in config.pool_sizes().items():
        pool = POOLS[pool_name]
        members = [n for n in nodes if (n["metadata"].get("labels") or {}).get(POOL_LABEL) == pool_name]
        what = f"pool {pool_name}"
        if wanted > 0 and not members:
            rows.append(
                Row(what, FAIL, f"no node labelled {POOL_LABEL}={pool_name}", "check the node groups")
            )
            continue
        problems = []
        for node in members:
            taints = [
                {k: t.get(k) for k in ("key", "value", "effect")}
                for t in node.get("spec", {}).get("taints") or []
            ]
            for taint in pool.taints:
                if {k: taint.get(k) for k in ("key", "value", "effect")} not in taints:
                    problems.append(
                        f"{node['metadata']['name']} lacks taint {taint['key']}={taint.get('value')}"
                    )
            if pool_name == "gpu" and config.gpu_resource is not None:
                allocatable = (node.get("status") or {}).get("allocatable") or {}
                if int(str(allocatable.get(config.gpu_resource, "0")) or 0) < 1:
                    problems.append(f"{node['metadata']['name']} has no allocatable {config.gpu_resource}")
        if problems:
            rows.append(
                Row(what, FAIL, "; ".join(problems), "fix the node group's labels, taints or device plugin")
            )
        else:
            rows.append(Row(what, PASS, f"{len(members)} node(s) (config: {wanted})"))
    return rows


def default_storage_class(api: KubeApi, config: StackConfig) -> list[Row]:
    """A default StorageClass exists: the gateway's queue volume names none."""
    classes = api.get("/apis/storage.k8s.io/v1/storageclasses").get("items") or []
    defaults = [
        c["metadata"]["name"]
        for c in classes
        if (c["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"
    ]
    if defaults:
        return [Row("default StorageClass", PASS, ", ".join(defaults))]
    return [
        Row(
            "default StorageClass",
            FAIL,
            "none: the gateway's PersistentVolumeClaim would stay Pending",
            f"mark one with the annotation {DEFAULT_CLASS_ANNOTATION}=true",
        )
    ]


def can(
    api: KubeApi,
    user: str,
    verb: str,
    group: str,
    resource: str,
    namespace: str | None,
    name: str | None = None,
) -> bool:
    """Ask the server (SubjectAccessReview) whether ``user`` may ``verb`` the resource."""
    attributes: dict[str, Any] = {"verb": verb, "group": group, "resource": resource}
    if namespace:
        attributes["namespace"] = namespace
    if name:
        attributes["name"] = name
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {"user": user, "resourceAttributes": attributes},
    }
    answer = api.create("/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
    return bool((answer.get("status") or {}).get("allowed"))


def service_account_permissions(api: KubeApi, config: StackConfig) -> list[Row]:
    """Each service account can do what it needs and no more (SubjectAccessReview)."""
    workflow = f"system:serviceaccount:{config.workflow_namespace}:{WORKFLOW_SERVICE_ACCOUNT}"
    gateway = f"system:serviceaccount:{GATEWAY_NAMESPACE}:{GATEWAY_SERVICE_ACCOUNT}"
    wanted = [
        (workflow, "create", "argoproj.io", "workflowtaskresults", config.workflow_namespace, True),
        (workflow, "patch", "argoproj.io", "workflowtaskresults", config.workflow_namespace, True),
        (workflow, "list", "", "secrets", config.workflow_namespace, False),
        (workflow, "create", "", "pods", config.workflow_namespace, False),
        (gateway, "create", "authentication.k8s.io", "tokenreviews", None, True),
        (gateway, "list", "", "secrets", GATEWAY_NAMESPACE, False),
    ]
    rows = []
    for user, verb, group, resource, namespace, should in wanted:
        account = user.rsplit(":", 1)[-1]
        what = f"{account} {'can' if should else 'cannot'} {verb} {resource}"
        allowed = can(api, user, verb, group, resource, namespace)
        ok = allowed == should
        rows.append(
            Row(
                what,
                PASS if ok else FAIL,
                "allowed" if allowed else "denied",
                "" if ok else "check its Role/ClusterRole bindings (pulumi up creates them)",
            )
        )
    return rows


CHECKS: tuple[Check, ...] = (
    server_version,
    custom_resources_served,
    dry_run_objects,
    pod_security_labels,
    node_pools,
    default_storage_class,
    service_account_permissions,
)


def run_preflight(api: KubeApi, config: StackConfig, checks: Iterable[Check] = CHECKS) -> list[Row]:
    """Run every check; a check whose API call fails becomes one failed row, and the others still run."""
    rows: list[Row] = []
    for check in checks:
        name = check.__name__.replace("_", " ")
        try:
            rows += check(api, config)
        except ApiFailure as failure:
            rows.append(Row(name, FAIL, f"the API server refused: {failure}", "check your permissions"))
    return rows


def failed(rows: Iterable[Row]) -> bool:
    """Return whether any row failed."""
    return any(row.status == FAIL for row in rows)


def counts(rows: Iterable[Row]) -> dict[str, int]:
    """Return how many rows passed, failed and warned."""
    statuses = [row.status for row in rows]
    return {status: statuses.count(status) for status in (PASS, FAIL, WARN)}


def as_json(rows: Iterable[Row], stack: str) -> dict[str, Any]:
    """Return the rows as JSON data."""
    rows = list(rows)
    return {
        "stack": stack,
        "passed": not failed(rows),
        "counts": counts(rows),
        "rows": [asdict(r) for r in rows],
    }


def as_table(rows: Iterable[Row]) -> Any:
    """Return a rich Table of the rows."""
    from rich.table import Table

    table = Table(title="qhybrid preflight")
    for column in ("check", "result", "detail", "hint"):
        table.add_column(column, overflow="fold")
    style = {PASS: "green", FAIL: "red", WARN: "yellow"}
    for row in rows:
        table.add_row(row.check, f"[{style[row.status]}]{row.status}[/]", row.detail, row.hint)
    return table


def summary(rows: Iterable[Row]) -> str:
    """Return the one-line count of passes, failures and warnings."""
    tally = counts(rows)
    return f"preflight: {tally[PASS]} pass, {tally[FAIL]} fail, {tally[WARN]} warn"
