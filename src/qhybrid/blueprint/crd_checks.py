"""Structural checks for objects that Kubernetes' own schemas do not cover.

``check_object(obj)`` returns a list of problems (empty when fine): generic checks
for every object (apiVersion, kind, names, labels, namespace of namespaced kinds),
then the checker registered for its kind. Checkers for ServiceMonitor, PodMonitor,
PrometheusRule and ConfigMap live here; other parts add theirs with
``@register("Kind")``. ``check_references(objs)`` checks what ties objects together:
namespaces that exist, monitors Prometheus will select, unique identities and
dashboard uids.

The rules mirror what the API server, the Prometheus operator and Prometheus
would reject or silently ignore, so a mistake fails a unit test instead of a
deployment (or, worse, a scrape target that never appears).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from qhybrid.blueprint.names import GRAFANA_DASHBOARD_LABEL, PROMETHEUS_SELECTOR_LABELS
from qhybrid.blueprint.namespaces import PLATFORM_NAMESPACES

Checker = Callable[[Mapping[str, Any]], list[str]]
CHECKERS: dict[str, Checker] = {}

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
ALERT_SEVERITIES = ("critical", "warning", "info")
CONFIGMAP_MAX_BYTES = 1024 * 1024
GRAFANA_UID_MAX = 40

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_CONFIGMAP_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_PROM_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_PROM_METRIC = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_ALERT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_DURATION = re.compile(r"^(0|([0-9]+y)?([0-9]+w)?([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?)$")
_DURATION_UNITS = {
    "y": 31536000.0,
    "w": 604800.0,
    "d": 86400.0,
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 0.001,
}
_SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
_RELABEL_ACTIONS = (
    "replace",
    "keep",
    "drop",
    "hashmod",
    "labelmap",
    "labeldrop",
    "labelkeep",
    "lowercase",
    "uppercase",
    "keepequal",
    "dropequal",
)
_NEEDS_TARGET = ("replace", "hashmod", "lowercase", "uppercase", "keepequal", "dropequal")


def register(kind: str) -> Callable[[Checker], Checker]:
    """Register ``fn`` as the checker of ``kind`` (a decorator); it returns problems without a prefix."""

    def decorate(fn: Checker) -> Checker:
        CHECKERS[kind] = fn
        return fn

    return decorate


# ---------------------------------------------------------------- primitives


def dns_label_problem(name: Any) -> str | None:
    """Return why ``name`` is not an RFC 1123 label (a Namespace name), or None."""
    if not isinstance(name, str) or not _DNS_LABEL.match(name) or len(name) > 63:
        return f"{name!r} is not a DNS-1123 label (lowercase alphanumerics and '-', at most 63)"
    return None


def dns_subdomain_problem(name: Any) -> str | None:
    """Return why ``name`` is not an RFC 1123 subdomain (most object names), or None."""
    if not isinstance(name, str) or not _DNS_SUBDOMAIN.match(name) or len(name) > 253:
        return f"{name!r} is not a DNS-1123 subdomain (lowercase alphanumerics, '-' and '.')"
    return None


def label_key_problem(key: Any) -> str | None:
    """Return why ``key`` is not a valid label/annotation key (``[prefix/]name``), or None."""
    if not isinstance(key, str) or not key:
        return f"label key {key!r} is empty or not a string"
    prefix, _, name = key.rpartition("/")
    if prefix and (dns_subdomain_problem(prefix) or len(prefix) > 253):
        return f"label key {key!r} has an invalid prefix"
    if not _LABEL_NAME.match(name) or len(name) > 63:
        return f"label key {key!r}: name must be alphanumerics, '-', '_' or '.', at most 63"
    return None


def label_value_problem(value: Any) -> str | None:
    """Return why ``value`` is not a valid label value (strings only, may be empty), or None."""
    if not isinstance(value, str):
        return f"label value {value!r} is not a string"
    if value and (not _LABEL_NAME.match(value) or len(value) > 63):
        return f"label value {value!r}: alphanumerics, '-', '_' or '.', at most 63"
    return None


def duration_seconds(value: Any) -> float | None:
    """Return a Prometheus duration (``1h30m``) in seconds, or None when it is not one."""
    if not isinstance(value, str) or not value or not _DURATION.match(value):
        return None
    return sum(float(n) * _DURATION_UNITS[u] for n, u in re.findall(r"([0-9]+)(ms|y|w|d|h|m|s)", value))


def _labels_problems(labels: Any, what: str) -> list[str]:
    if labels is None:
        return []
    if not isinstance(labels, Mapping):
        return [f"{what} must be a mapping"]
    problems = [p for key in labels for p in [label_key_problem(key)] if p]
    if what == "labels":
        problems += [p for value in labels.values() for p in [label_value_problem(value)] if p]
    elif not all(isinstance(v, str) for v in labels.values()):
        problems.append(f"{what} values must be strings")
    return problems


def selector_problems(selector: Any, where: str) -> list[str]:
    """Return the problems of a LabelSelector; an empty one selects everything and is refused."""
    if not isinstance(selector, Mapping):
        return [f"{where} must be a LabelSelector mapping"]
    match_labels = selector.get("matchLabels") or {}
    expressions = selector.get("matchExpressions") or []
    problems = [f"{where}.matchLabels: {p}" for p in _labels_problems(match_labels, "labels")]
    for i, expression in enumerate(expressions):
        at = f"{where}.matchExpressions[{i}]"
        if not isinstance(expression, Mapping):
            problems.append(f"{at} must be a mapping")
            continue
        if problem := label_key_problem(expression.get("key")):
            problems.append(f"{at}: {problem}")
        operator, values = expression.get("operator"), expression.get("values") or []
        if operator not in _SELECTOR_OPERATORS:
            problems.append(f"{at}: operator {operator!r} is not one of {list(_SELECTOR_OPERATORS)}")
        elif operator in ("In", "NotIn") and not values:
            problems.append(f"{at}: {operator} needs values")
        elif operator in ("Exists", "DoesNotExist") and values:
            problems.append(f"{at}: {operator} takes no values")
    if not match_labels and not expressions:
        problems.append(f"{where} is empty and would select everything")
    return problems


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Return whether a LabelSelector selects an object carrying ``labels``."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def describe(obj: Mapping[str, Any]) -> str:
    """Return ``Kind namespace/name`` for messages."""
    metadata = obj.get("metadata") or {}
    namespace = metadata.get("namespace")
    name = metadata.get("name", "<unnamed>")
    return f"{obj.get('kind', '<no kind>')} {namespace + '/' if namespace else ''}{name}"


# ---------------------------------------------------------------- generic


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
    problems += [f"metadata.labels: {p}" for p in _labels_problems(metadata.get("labels"), "labels")]
    problems += [
        f"metadata.annotations: {p}" for p in _labels_problems(metadata.get("annotations"), "annotations")
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


# ---------------------------------------------------------------- Prometheus operator


def _relabel_problems(relabelings: Any, where: str) -> list[str]:
    if relabelings is None:
        return []
    if not isinstance(relabelings, list):
        return [f"{where} must be a list"]
    problems = []
    for i, relabel in enumerate(relabelings):
        at = f"{where}[{i}]"
        action = str(relabel.get("action", "replace")).lower()
        if action not in _RELABEL_ACTIONS:
            problems.append(f"{at}: unknown action {action!r}")
        target = relabel.get("targetLabel")
        if action in _NEEDS_TARGET and not target:
            problems.append(f"{at}: action {action} needs targetLabel")
        if target and "$" not in target and not _PROM_LABEL.match(target):
            problems.append(f"{at}: targetLabel {target!r} is not a valid label name")
    return problems


def _endpoint_problems(endpoint: Any, where: str, port_fields: tuple[str, ...]) -> list[str]:
    if not isinstance(endpoint, Mapping):
        return [f"{where} must be a mapping"]
    problems = []
    ports = [f for f in port_fields if endpoint.get(f) not in (None, "")]
    if len(ports) != 1:
        problems.append(f"{where}: exactly one of {list(port_fields)} must be set, got {ports}")
    port = endpoint.get("port")
    if port is not None and (
        not isinstance(port, str)
        or not _IANA_SVC_NAME.match(port)
        or len(port) > 15
        or "--" in port
        or not re.search("[a-z]", port)
    ):
        problems.append(f"{where}: port {port!r} is not a port name (IANA_SVC_NAME)")
    path = endpoint.get("path", "/metrics")
    if not isinstance(path, str) or not path.startswith("/"):
        problems.append(f"{where}: path {path!r} must start with '/'")
    scheme = str(endpoint.get("scheme", "http")).lower()
    if scheme not in ("http", "https"):
        problems.append(f"{where}: scheme {scheme!r} is not http or https")
    if scheme == "http" and (endpoint.get("tlsConfig") or endpoint.get("bearerTokenFile")):
        problems.append(f"{where}: tlsConfig or a bearer token over plain http")
    durations = {}
    for field in ("interval", "scrapeTimeout"):
        if field in endpoint:
            durations[field] = duration_seconds(endpoint[field])
            if durations[field] is None:
                problems.append(f"{where}: {field} {endpoint[field]!r} is not a Prometheus duration")
    interval, timeout = durations.get("interval"), durations.get("scrapeTimeout")
    if interval is not None and timeout is not None and timeout > interval:
        problems.append(f"{where}: scrapeTimeout is longer than interval")
    problems += _relabel_problems(endpoint.get("relabelings"), f"{where}.relabelings")
    problems += _relabel_problems(endpoint.get("metricRelabelings"), f"{where}.metricRelabelings")
    return problems


def _monitor_problems(
    obj: Mapping[str, Any], endpoints_field: str, port_fields: tuple[str, ...]
) -> list[str]:
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        return ["spec is missing"]
    problems = []
    if not str(obj.get("apiVersion", "")).startswith("monitoring.coreos.com/"):
        problems.append(f"apiVersion {obj.get('apiVersion')!r} is not monitoring.coreos.com")
    problems += selector_problems(spec.get("selector"), "spec.selector")
    namespace_selector = spec.get("namespaceSelector")
    if namespace_selector is not None:
        names = namespace_selector.get("matchNames")
        if namespace_selector.get("any") and names:
            problems.append("spec.namespaceSelector: any and matchNames are exclusive")
        for name in names or []:
            if problem := dns_label_problem(name):
                problems.append(f"spec.namespaceSelector.matchNames: {problem}")
    endpoints = spec.get(endpoints_field)
    if not isinstance(endpoints, list) or not endpoints:
        problems.append(f"spec.{endpoints_field} must be a non-empty list")
    else:
        for i, endpoint in enumerate(endpoints):
            problems += _endpoint_problems(endpoint, f"spec.{endpoints_field}[{i}]", port_fields)
    return problems


@register("ServiceMonitor")
def check_service_monitor(obj: Mapping[str, Any]) -> list[str]:
    """Check a ServiceMonitor: selector, namespaces, endpoints (named port, path, scheme, durations)."""
    return _monitor_problems(obj, "endpoints", ("port", "targetPort"))


@register("PodMonitor")
def check_pod_monitor(obj: Mapping[str, Any]) -> list[str]:
    """Check a PodMonitor: selector, namespaces, podMetricsEndpoints."""
    return _monitor_problems(obj, "podMetricsEndpoints", ("port", "portNumber", "targetPort"))


def _rule_problems(rule: Any, where: str) -> list[str]:
    if not isinstance(rule, Mapping):
        return [f"{where} must be a mapping"]
    problems = []
    alert, record = rule.get("alert"), rule.get("record")
    if bool(alert) == bool(record):
        return [f"{where}: exactly one of alert and record must be set"]
    if not isinstance(rule.get("expr"), str) or not rule["expr"].strip():
        problems.append(f"{where}: expr is missing")
    labels = rule.get("labels") or {}
    for name in labels:
        if not _PROM_LABEL.match(str(name)) or str(name).startswith("__"):
            problems.append(f"{where}: label name {name!r} is invalid")
    if record:
        if not _PROM_METRIC.match(str(record)):
            problems.append(f"{where}: record {record!r} is not a valid metric name")
        for field in ("for", "keep_firing_for", "annotations"):
            if field in rule:
                problems.append(f"{where}: a recording rule has no {field}")
        return problems
    where = f"{where} ({alert})"
    if not _ALERT_NAME.match(str(alert)):
        problems.append(f"{where}: alert name must be letters, digits and '_'")
    for field in ("for", "keep_firing_for"):
        if field in rule and duration_seconds(rule[field]) is None:
            problems.append(f"{where}: {field} {rule[field]!r} is not a Prometheus duration")
    if labels.get("severity") not in ALERT_SEVERITIES:
        problems.append(f"{where}: labels.severity must be one of {list(ALERT_SEVERITIES)}")
    annotations = rule.get("annotations") or {}
    for field in ("summary", "description"):
        if not isinstance(annotations.get(field), str) or not annotations[field].strip():
            problems.append(f"{where}: annotations.{field} is missing")
    return problems


@register("PrometheusRule")
def check_prometheus_rule(obj: Mapping[str, Any]) -> list[str]:
    """Check a PrometheusRule: unique named groups, valid rules, alerts with severity/summary/description."""
    spec = obj.get("spec")
    if not isinstance(spec, Mapping) or not isinstance(spec.get("groups"), list) or not spec["groups"]:
        return ["spec.groups must be a non-empty list"]
    problems = []
    names = [group.get("name") for group in spec["groups"]]
    problems += [f"spec.groups: duplicate group name {n!r}" for n, c in Counter(names).items() if c > 1]
    for i, group in enumerate(spec["groups"]):
        where = f"spec.groups[{i}]"
        if not group.get("name"):
            problems.append(f"{where}: name is missing")
        if "interval" in group and duration_seconds(group["interval"]) is None:
            problems.append(f"{where}: interval {group['interval']!r} is not a Prometheus duration")
        rules = group.get("rules")
        if not isinstance(rules, list) or not rules:
            problems.append(f"{where}: rules must be a non-empty list")
            continue
        for j, rule in enumerate(rules):
            problems += _rule_problems(rule, f"{where}.rules[{j}]")
    alerts = [r.get("alert") for g in spec["groups"] for r in g.get("rules") or [] if isinstance(r, Mapping)]
    problems += [f"duplicate alert {a!r}" for a, c in Counter(a for a in alerts if a).items() if c > 1]
    return problems


@register("ConfigMap")
def check_configmap(obj: Mapping[str, Any]) -> list[str]:
    """Check a ConfigMap's keys and size; a Grafana dashboard's values must be dashboard JSON."""
    data = obj.get("data") or {}
    problems = [f"data key {key!r} is invalid" for key in data if not _CONFIGMAP_KEY.match(str(key))]
    if not all(isinstance(v, str) for v in data.values()):
        problems.append("data values must be strings")
        return problems
    size = sum(len(k) + len(v.encode()) for k, v in data.items())
    if size > CONFIGMAP_MAX_BYTES:
        problems.append(f"data is {size} bytes, over the 1 MiB limit")
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if all(labels.get(k) == v for k, v in GRAFANA_DASHBOARD_LABEL.items()):
        for key, value in data.items():
            try:
                board = json.loads(value)
            except json.JSONDecodeError as error:
                problems.append(f"data[{key!r}] is not JSON: {error}")
                continue
            uid = board.get("uid") if isinstance(board, dict) else None
            if not isinstance(uid, str) or not uid or len(uid) > GRAFANA_UID_MAX:
                problems.append(f"data[{key!r}]: dashboard uid must be 1-{GRAFANA_UID_MAX} characters")
            if not isinstance(board, dict) or not board.get("title"):
                problems.append(f"data[{key!r}]: dashboard has no title")
    return problems


# ---------------------------------------------------------------- references


def _dashboard_uids(obj: Mapping[str, Any]) -> list[str]:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if obj.get("kind") != "ConfigMap" or any(labels.get(k) != v for k, v in GRAFANA_DASHBOARD_LABEL.items()):
        return []
    uids = []
    for value in (obj.get("data") or {}).values():
        try:
            board = json.loads(value)
        except (TypeError, json.JSONDecodeError):
            continue
        if isinstance(board, dict) and isinstance(board.get("uid"), str):
            uids.append(board["uid"])
    return uids


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
    uids = Counter(uid for obj in objs for uid in _dashboard_uids(obj))
    problems += [f"Grafana dashboard uid {uid!r} is used {c} times" for uid, c in uids.items() if c > 1]
    return problems


# Kueue's checkers live in their own module and register themselves here; imported
# last because they use ``register`` from this module.
from qhybrid.blueprint import kueue_checks  # noqa: E402,F401
