"""Field-level checks shared by the object checkers: names, labels, selectors, durations.

Each returns what is wrong in words (or nothing); the rules are those of the API
server, which would refuse the value at apply time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
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


def labels_problems(labels: Any, what: str) -> list[str]:
    """Return the problems of a labels (or annotations) mapping: keys, and values for labels."""
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
    problems = [f"{where}.matchLabels: {p}" for p in labels_problems(match_labels, "labels")]
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
