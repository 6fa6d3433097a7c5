"""The JSON Schema of report.json, and its version.

``schema_version`` changes when a field is removed or changes meaning (a major
step) or when fields are added (a minor step). Every report the report step writes
is checked against this schema before it is written, and ``docs/report.schema.json``
is this schema as a file for other tools (a drift test keeps the two equal).

Versions: 1.0: the first with a schema; it adds ``schema_version``,
``provenance.gateway_jobs``, ``provenance.failovers[].transient``,
``problem.cuts`` and ``problem.preprocessing``. 1.1: adds ``cache``, what the result
cache did (hits by kind, computed, collisions, errors). 1.2: adds
``provenance.exact_reference``, how the exact value was computed (statevector, or a
matrix product state with its bond dimension and truncation) or why it was not. 1.3
(this one): adds ``provenance.cost``, the run's usage and its price from the stack's
table (``qhybrid.cost``).
"""

from __future__ import annotations

from typing import Any

SCHEMA_VERSION = "1.3"

_NUMBER_OR_NULL = {"type": ["number", "null"]}
_SECONDS = {"type": "object", "additionalProperties": {"type": "number", "minimum": 0}}
_MONEY = {"type": "number", "minimum": 0}
_COST = {
    "type": "object",
    "description": "What the run used and, priced with the stack's table, what it cost (schema 1.3).",
    "required": ["usage", "prices", "estimate"],
    "additionalProperties": False,
    "properties": {
        "usage": {
            "type": "object",
            "required": ["cpu_seconds", "gpu_seconds", "qpu_shots"],
            "additionalProperties": False,
            "properties": {
                "cpu_seconds": {
                    "type": "number",
                    "minimum": 0,
                    "description": "CPU seconds of every step's work.",
                },
                "gpu_seconds": {"type": "number", "minimum": 0, "description": "Seconds in the GPU backend."},
                "qpu_shots": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
            },
        },
        "prices": {
            "type": ["object", "null"],
            "required": ["currency", "cpu_core_hour", "gpu_hour", "qpu_shot"],
            "additionalProperties": False,
            "properties": {
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                "cpu_core_hour": _MONEY,
                "gpu_hour": _MONEY,
                "qpu_shot": {"type": "object", "additionalProperties": _MONEY},
            },
        },
        "estimate": {
            "type": ["object", "null"],
            "required": ["currency", "cpu", "gpu", "qpu", "total", "unpriced_qpu_backends"],
            "additionalProperties": False,
            "properties": {
                "currency": {"type": "string"},
                "cpu": _MONEY,
                "gpu": _MONEY,
                "qpu": _MONEY,
                "total": _MONEY,
                "unpriced_qpu_backends": {"type": "array", "items": {"type": "string"}},
            },
        },
        "reason": {"type": "string", "description": "Why there is no estimate."},
    },
}

REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://qhybrid.io/schemas/report.schema.json",
    "title": "qhybrid run report (report.json)",
    "type": "object",
    "required": [
        "schema_version", "estimate", "standard_error", "exact", "error", "terms", "problem", "counts",
        "provenance", "timings",
    ],
    "additionalProperties": False,
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "estimate": {"type": "number", "description": "The reconstructed expectation value."},
        "standard_error": {"type": "number", "minimum": 0, "description": "0 in exact mode."},
        "exact": {**_NUMBER_OR_NULL, "description": "Statevector value; null past the reference width."},
        "error": {**_NUMBER_OR_NULL, "description": "estimate - exact."},
        "terms": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["pauli", "coeff", "value", "standard_error", "exact"],
                "additionalProperties": False,
                "properties": {
                    "pauli": {"type": "string", "pattern": "^[IXYZ]+$"},
                    "coeff": {"type": "number"},
                    "value": {"type": "number"},
                    "standard_error": {"type": "number", "minimum": 0},
                    "exact": _NUMBER_OR_NULL,
                },
            },
        },
        "problem": {
            "type": "object",
            "required": [
                "num_qubits", "num_cuts", "partition_widths", "sampling_overhead", "circuit_fingerprint",
                "observable_fingerprint", "observable_paulis", "observable_coeffs",
            ],
            "properties": {
                "num_qubits": {"type": "integer", "minimum": 1},
                "num_cuts": {"type": "integer", "minimum": 0},
                "partition_widths": {
                    "type": "object",
                    "additionalProperties": {"type": "integer", "minimum": 1},
                },
                "sampling_overhead": {"type": "number", "minimum": 1},
                "cuts": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["index", "kind", "gate", "partitions", "overhead"],
                        "properties": {"kind": {"enum": ["gate", "wire"]}},
                    },
                },
                "preprocessing": {"type": "object"},
            },
        },
        "counts": {
            "type": "object",
            "required": ["subexperiments", "unique", "duplicates", "by_backend"],
            "properties": {
                "subexperiments": {"type": "integer", "minimum": 1},
                "unique": {"type": "integer", "minimum": 1},
                "duplicates": {"type": "integer", "minimum": 0},
                "by_backend": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
            },
        },
        "provenance": {
            "type": "object",
            "required": [
                "spec", "spec_hash", "seed", "shots", "mode", "policy", "circuit_fingerprint",
                "observable_fingerprint", "backends", "backend_per_subexperiment", "failovers",
                "gateway_jobs", "environment", "generated_with",
            ],
            "properties": {
                "spec_hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "seed": {"type": "integer", "minimum": 0},
                "shots": {"type": ["integer", "null"], "minimum": 1},
                "mode": {"enum": ["exact", "sampled"]},
                "backend_per_subexperiment": {"type": "array", "items": {"enum": ["cpu", "gpu", "qpu"]}},
                "failovers": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["subexperiment", "from", "to", "reason"],
                        "properties": {
                            "subexperiment": {"type": "integer", "minimum": 0},
                            "transient": {"type": "boolean"},
                        },
                    },
                },
                "exact_reference": {
                    "type": "object",
                    "description": "How the exact reference was computed, or why it was not (schema 1.2).",
                    "required": ["computed"],
                    "additionalProperties": False,
                    "properties": {
                        "computed": {"type": "boolean"},
                        "method": {"enum": ["statevector", "matrix_product_state"]},
                        "max_bond_dimension": {"type": "integer", "minimum": 1},
                        "truncation": {"type": "string"},
                        "reason": {"type": "string"},
                    },
                },
                "cost": _COST,
                "gateway_jobs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["subexperiment", "job_id", "backend"],
                        "additionalProperties": False,
                        "properties": {
                            "subexperiment": {"type": "integer", "minimum": 0},
                            "job_id": {"type": "string", "minLength": 1},
                            "backend": {"type": "string", "minLength": 1},
                        },
                    },
                },
            },
        },
        "timings": _SECONDS,
        "cache": {
            "type": "object",
            "description": "What the result cache did for the simulator subexperiments.",
            "required": ["stores", "hits", "from_store", "from_memory", "computed", "collisions", "errors"],
            "properties": {
                "stores": {"type": "array", "items": {"type": "string"}},
                "hits": {
                    "type": "object",
                    "required": ["exact", "canonical", "relabelled"],
                    "additionalProperties": {"type": "integer", "minimum": 0},
                },
            },
            "additionalProperties": {"type": "integer", "minimum": 0},
        },
        "qpu": {
            "type": "object",
            "description": "Present when the policy planned or ran subexperiments on the QPU.",
            "required": ["planned", "ran", "failed_over", "failover_reasons"],
        },
    },
}  # fmt: skip


def check_report(report: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` when ``report`` does not follow :data:`REPORT_SCHEMA`."""
    import jsonschema

    jsonschema.Draft202012Validator(REPORT_SCHEMA).validate(report)
