"""The QuantumJob CustomResourceDefinition, generated from the same source of truth as RunSpec.

The spec's fields, their enums, defaults and help come from :mod:`qhybrid.spec` (the
problem flags), :mod:`qhybrid.cutting.policies` and :mod:`qhybrid.backends.qpu`, so the
CRD cannot drift from what ``qhybrid run`` accepts. The cross-field checks the CLI makes
are CEL rules (``x-kubernetes-validations``), so the API server refuses a bad job before
any operator sees it; the spec is immutable once a job has left Pending.
"""

from __future__ import annotations

from typing import Any

from qhybrid.cutting.policies import DEFAULT_FAILOVER, FAILOVER_MODES, POLICIES
from qhybrid.spec import DEFAULT_MODE, DEFAULT_POLICY, DEFAULT_SEED, MODES, PROBLEM_FLAGS

GROUP = "qhybrid.io"
VERSION = "v1alpha1"
KIND = "QuantumJob"
PLURAL = "quantumjobs"
PHASES = ("Pending", "Running", "Succeeded", "Failed")
# An inline circuit is stored in etcd with the object: keep it well under the 1.5 MiB limit.
MAX_INLINE_QASM = 512 * 1024
_HELP = {flag.name: flag.help for flag in PROBLEM_FLAGS}
_DESCRIPTION = "A circuit-cutting job: cut, run on the policy's backends, reconstruct."

# (rule, message): the CLI's cross-field checks, as the API server evaluates them.
SPEC_RULES: tuple[tuple[str, str], ...] = (
    ("has(self.partition) != has(self.maxWidth)", "give exactly one of partition or maxWidth"),
    ("self.mode != 'sampled' || has(self.shots)", "sampled mode needs shots"),
    ("self.mode == 'sampled' || !has(self.shots)", "shots are for sampled mode only"),
    ("!has(self.circuit) || has(self.observable)", "a circuit needs an observable"),
    (
        "!has(self.shotBudget) || !has(self.shots) || self.shotBudget >= self.shots",
        "shotBudget must allow at least one subexperiment's shots",
    ),
)
CIRCUIT_RULE = (
    "has(self.qasm) != has(self.configMapKeyRef)",
    "give the circuit inline (qasm) or as a ConfigMap key (configMapKeyRef), not both",
)
# The spec may change until the operator has created the job's Workflow (status.workflowName:
# e.g. while it waits for a ConfigMap holding the circuit); after that it is fixed.
IMMUTABLE_RULE = (
    "!has(oldSelf.status) || !has(oldSelf.status.workflowName) || self.spec == oldSelf.spec",
    "spec is immutable once the job has started; create a new QuantumJob",
)


def _rules(*rules: tuple[str, str]) -> list[dict[str, str]]:
    return [{"rule": rule, "message": message} for rule, message in rules]


def spec_schema() -> dict[str, Any]:
    """Return the structural schema of ``spec``."""
    circuit = {
        "type": "object",
        "description": "Your circuit (OpenQASM 2 or 3); without it, the reference scenario's.",
        "properties": {
            "qasm": {"type": "string", "maxLength": MAX_INLINE_QASM, "description": "The circuit, inline."},
            "configMapKeyRef": {
                "type": "object",
                "description": "A key of a ConfigMap in the job's namespace holding the circuit.",
                "required": ["name", "key"],
                "properties": {"name": {"type": "string"}, "key": {"type": "string"}},
            },
        },
        "x-kubernetes-validations": _rules(CIRCUIT_RULE),
    }
    return {
        "type": "object",
        "properties": {
            "circuit": circuit,
            "qubits": {"type": "integer", "minimum": 2, "description": _HELP["qubits"]},
            "reps": {"type": "integer", "minimum": 1, "description": _HELP["reps"]},
            "observable": {"type": "string", "maxLength": 65536, "description": _HELP["observable"]},
            "partition": {
                "type": "string",
                "pattern": "^[A-Za-z]+$",
                "maxLength": 1024,
                "description": _HELP["partition"],
            },
            "maxWidth": {"type": "integer", "minimum": 1, "description": _HELP["max_width"]},
            "mode": {
                "type": "string",
                "enum": list(MODES),
                "default": DEFAULT_MODE,
                "description": _HELP["mode"],
            },
            "shots": {"type": "integer", "minimum": 1, "description": _HELP["shots"]},
            "seed": {"type": "integer", "minimum": 0, "default": DEFAULT_SEED, "description": _HELP["seed"]},
            "policy": {
                "type": "string",
                "enum": sorted(POLICIES),
                "default": DEFAULT_POLICY,
                "description": _HELP["policy"],
            },
            "failover": {
                "type": "string",
                "enum": list(FAILOVER_MODES),
                "default": DEFAULT_FAILOVER,
                "description": "When qpu subexperiments may move to the policy's simulator.",
            },
            "cache": {"type": "boolean", "default": True, "description": "Use the shared result cache."},
            "priorityClassName": {
                "type": "string",
                "description": "A Kueue WorkloadPriorityClass for the job's pods.",
            },
            "shotBudget": {
                "type": "integer",
                "minimum": 1,
                "description": "Most QPU shots the job may spend.",
            },
        },
        "x-kubernetes-validations": _rules(*SPEC_RULES),
    }


def status_schema() -> dict[str, Any]:
    """Return the schema of ``status`` (written by the operator through the status subresource)."""
    number = {"type": "number"}
    condition = {
        "type": "object",
        "required": ["type", "status", "lastTransitionTime", "reason", "message"],
        "properties": {
            "type": {"type": "string"},
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "reason": {"type": "string"},
            "message": {"type": "string"},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
            "observedGeneration": {"type": "integer", "minimum": 0},
        },
    }
    return {
        "type": "object",
        "properties": {
            "phase": {"type": "string", "enum": list(PHASES)},
            "conditions": {
                "type": "array",
                "items": condition,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
            "workflowName": {"type": "string"},
            "estimate": number,
            "standardError": number,
            "exact": {**number, "nullable": True},
            "error": {**number, "nullable": True},
            "counts": {
                "type": "object",
                "properties": {
                    name: {"type": "integer", "minimum": 0}
                    for name in ("subexperiments", "unique", "cached", "failedOver")
                },
            },
            "reportPath": {
                "type": "string",
                "description": "Where the full report.json lives (PVC path or S3 key).",
            },
            "specHash": {"type": "string", "description": "The provenance hash of the run spec."},
            "failedStep": {"type": "string"},
            "message": {"type": "string"},
            "observedGeneration": {"type": "integer", "minimum": 0},
        },
    }


def quantumjob_crd() -> dict[str, Any]:
    """Return the CustomResourceDefinition of QuantumJob."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}", "labels": {"app.kubernetes.io/part-of": "qhybrid"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "plural": PLURAL,
                "singular": "quantumjob",
                "listKind": f"{KIND}List",
                "shortNames": ["qjob"],
                "categories": ["qhybrid"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {"name": "Estimate", "type": "number", "jsonPath": ".status.estimate"},
                        {
                            "name": "Error",
                            "type": "number",
                            "jsonPath": ".status.error",
                            "description": "estimate - exact",
                        },
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": _DESCRIPTION,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": status_schema(),
                            },
                            "x-kubernetes-validations": _rules(IMMUTABLE_RULE),
                        }
                    },
                }
            ],
        },
    }
