"""Checks for Prometheus operator objects (monitors, rules) and Grafana dashboard ConfigMaps.

Only what the upstream CRDs' schemas cannot say (validate.schemas checks those, in
strict mode: field names, types, enums such as a relabel action or a scheme, and
duration patterns): fields that depend on each other (one port field, a timeout
within its interval, an action that needs a target), our own rules (every alert has
a severity, a summary and a description), and what Prometheus or Grafana would
reject or silently ignore (a port that is not a port name, a dashboard that is not
JSON or whose uid is too long).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from qhybrid.blueprint.names import GRAFANA_DASHBOARD_LABEL
from qhybrid.blueprint.validate.fields import (
    dns_label_problem,
    duration_seconds,
    selector_problems,
)

CONFIGMAP_MAX_BYTES = 1024 * 1024
GRAFANA_UID_MAX = 40

_IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_CONFIGMAP_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_PROM_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_PROM_METRIC = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_ALERT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_NEEDS_TARGET = ("replace", "hashmod", "lowercase", "uppercase", "keepequal", "dropequal")
ALERT_SEVERITIES = ("critical", "warning", "info")


def _relabel_problems(relabelings: Any, where: str) -> list[str]:
    if relabelings is None:
        return []
    if not isinstance(relabelings, list):
        return [f"{where} must be a list"]
    problems = []
    for i, relabel in enumerate(relabelings):
        at = f"{where}[{i}]"
        # The action's spelling is the CRD's enum (validate.schemas); what it needs is checked here.
        action = str(relabel.get("action", "replace")).lower()
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
    scheme = str(endpoint.get("scheme", "http")).lower()  # its enum is the CRD's
    if scheme == "http" and (endpoint.get("tlsConfig") or endpoint.get("bearerTokenFile")):
        problems.append(f"{where}: tlsConfig or a bearer token over plain http")
    # Their format is the CRD's pattern; how they compare is not.
    interval, timeout = (duration_seconds(endpoint.get(f)) for f in ("interval", "scrapeTimeout"))
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
    problems = selector_problems(spec.get("selector"), "spec.selector")
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


def check_service_monitor(obj: Mapping[str, Any]) -> list[str]:
    """Check a ServiceMonitor: selector, namespaces, endpoints (named port, path, scheme, durations)."""
    return _monitor_problems(obj, "endpoints", ("port", "targetPort"))


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
    if labels.get("severity") not in ALERT_SEVERITIES:
        problems.append(f"{where}: labels.severity must be one of {list(ALERT_SEVERITIES)}")
    annotations = rule.get("annotations") or {}
    for field in ("summary", "description"):
        if not isinstance(annotations.get(field), str) or not annotations[field].strip():
            problems.append(f"{where}: annotations.{field} is missing")
    return problems


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
        rules = group.get("rules")
        if not isinstance(rules, list) or not rules:
            problems.append(f"{where}: rules must be a non-empty list")
            continue
        for j, rule in enumerate(rules):
            problems += _rule_problems(rule, f"{where}.rules[{j}]")
    alerts = [r.get("alert") for g in spec["groups"] for r in g.get("rules") or [] if isinstance(r, Mapping)]
    problems += [f"duplicate alert {a!r}" for a, c in Counter(a for a in alerts if a).items() if c > 1]
    return problems


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


def dashboard_uids(obj: Mapping[str, Any]) -> list[str]:
    """Return the uids of the Grafana dashboards a dashboard ConfigMap holds (none for other objects)."""
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
