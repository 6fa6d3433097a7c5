"""Validate custom resources against the upstream CRDs' own schemas, strictly, with jsonschema.

A CRD's ``openAPIV3Schema`` is a structural schema: the API server prunes every field
it does not declare (unless ``x-kubernetes-preserve-unknown-fields`` says keep it), so
a misspelt field is silently dropped on a real cluster. Strict mode turns each such
field into an error here: every object schema that declares its properties gets
``additionalProperties: false``. The Kubernetes extensions become JSON Schema:

- ``x-kubernetes-int-or-string``: an integer or a string;
- ``x-kubernetes-preserve-unknown-fields``: any further field is allowed;
- ``x-kubernetes-embedded-resource``: apiVersion, kind and metadata are allowed;
- ``nullable``: null is allowed too.

``x-kubernetes-validations`` (CEL rules) are not evaluated here; the API server does
that (the ``apiserver`` test tier). Formats (``int32``, ``date-time``, ...) are not
checked either, as the API server checks only a few of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

Schemas = dict[tuple[str, str], dict[str, Any]]  # (apiVersion, kind) -> JSON Schema


# The libyaml parser when PyYAML has it: the CRD files are large (several MB in all).
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _CrdLoader(_SafeLoader):  # type: ignore[valid-type,misc]
    """A safe loader without YAML 1.1's ``value`` tag, which a bare ``=`` in an enum would trigger."""


_CrdLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:value"]
    for first, resolvers in _SafeLoader.yaml_implicit_resolvers.items()
}


def to_json_schema(schema: Mapping[str, Any], *, strict: bool = True) -> dict[str, Any]:
    """Return the JSON Schema of one structural (Kubernetes OpenAPI v3) schema node."""
    out: dict[str, Any] = {}
    kind = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    elif kind is not None:
        out["type"] = [kind, "null"] if schema.get("nullable") else kind
    for key in ("enum", "minimum", "maximum", "minLength", "maxLength", "pattern", "minItems", "maxItems"):
        if key in schema:
            out[key] = list(schema[key]) if key == "enum" else schema[key]
    if "enum" in out and schema.get("nullable"):
        out["enum"].append(None)
    for key in ("exclusiveMinimum", "exclusiveMaximum"):
        # OpenAPI v3.0 spells these as booleans beside minimum/maximum.
        bound = "minimum" if key == "exclusiveMinimum" else "maximum"
        if schema.get(key) is True and bound in out:
            out[key] = out.pop(bound)
    if "required" in schema:
        out["required"] = list(schema["required"])
    if "items" in schema:
        out["items"] = to_json_schema(schema["items"], strict=strict)
    properties = dict(schema.get("properties") or {})
    if schema.get("x-kubernetes-embedded-resource"):
        for name in ("apiVersion", "kind"):
            properties.setdefault(name, {"type": "string"})
        properties.setdefault("metadata", {"type": "object", "x-kubernetes-preserve-unknown-fields": True})
    if properties:
        out["properties"] = {name: to_json_schema(sub, strict=strict) for name, sub in properties.items()}
    additional = schema.get("additionalProperties")
    if isinstance(additional, Mapping):
        out["additionalProperties"] = to_json_schema(additional, strict=strict)
    elif (
        strict
        and kind == "object"
        and properties
        and additional is None
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:
            # These only constrain shape further; their nodes declare no new fields.
            out.setdefault("allOf", []).append(
                {key: [to_json_schema(sub, strict=False) for sub in schema[key]]}
            )
    if "not" in schema:
        out["not"] = to_json_schema(schema["not"], strict=False)
    return out


def crd_schemas(crd: Mapping[str, Any], *, strict: bool = True) -> Schemas:
    """Return the JSON Schema of every served version of one CustomResourceDefinition."""
    spec = crd["spec"]
    group, kind = spec["group"], spec["names"]["kind"]
    found: Schemas = {}
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        schema = to_json_schema(version["schema"]["openAPIV3Schema"], strict=strict)
        # metadata is the API server's own ObjectMeta, checked there, not by the CRD.
        schema.setdefault("properties", {})["metadata"] = {"type": "object"}
        found[(f"{group}/{version['name']}", kind)] = schema
    return found


def crd_documents(directory: Path) -> list[dict[str, Any]]:
    """Return every CustomResourceDefinition in the YAML files below ``directory``, in file order."""
    documents = []
    for path in sorted(directory.rglob("*.yaml")):
        for document in yaml.load_all(path.read_text(encoding="utf-8"), Loader=_CrdLoader):  # noqa: S506
            if isinstance(document, dict) and document.get("kind") == "CustomResourceDefinition":
                documents.append(document)
    return documents


def load_crd_schemas(directory: Path, *, strict: bool = True) -> Schemas:
    """Read every CRD file below ``directory`` and return the schemas of all their served versions."""
    schemas: Schemas = {}
    for document in crd_documents(directory):
        schemas.update(crd_schemas(document, strict=strict))
    return schemas


def schema_problems(obj: Mapping[str, Any], schemas: Schemas) -> list[str]:
    """Return why ``obj`` does not validate against its CRD's schema (empty when it does).

    An object whose apiVersion and kind no loaded CRD serves is itself a problem.
    """
    from jsonschema import Draft202012Validator

    key = (str(obj.get("apiVersion")), str(obj.get("kind")))
    name = (obj.get("metadata") or {}).get("name", "<unnamed>")
    where = f"{key[1]} {name} ({key[0]})"
    if key not in schemas:
        served = sorted(version for version, kind in schemas if kind == key[1])
        return [f"{where}: no CRD serves it" + (f"; served: {served}" if served else "")]
    validator = Draft202012Validator(schemas[key])
    problems = []
    for error in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
        path = ".".join(str(part) for part in error.absolute_path) or "<root>"
        problems.append(f"{where}: {path}: {error.message}")
    return problems


def custom_resources(objs: Iterable[Mapping[str, Any]], schemas: Schemas) -> list[Mapping[str, Any]]:
    """Return the objects of ``objs`` whose API group some loaded CRD belongs to."""
    groups = {api.split("/")[0] for api, _ in schemas}
    return [o for o in objs if str(o.get("apiVersion", "")).split("/")[0] in groups]
