"""Helm values: one deep merge, so a part's defaults and extra settings combine the same way everywhere."""

from __future__ import annotations

from typing import Any


def merge_values(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``extra`` merged in: nested dicts merge, anything else is replaced."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_values(merged[key], value)
        else:
            merged[key] = value
    return merged
