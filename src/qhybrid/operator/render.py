"""A QuantumJob from the problem flags (``qhybrid job render``), and back (what the operator runs)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qhybrid.blueprint.quantumjob_crd import GROUP, KIND, VERSION
from qhybrid.cutting.policies import DEFAULT_FAILOVER
from qhybrid.errors import InputError
from qhybrid.spec import ProblemFlags, RunSpec, load_problem_inputs, problem_of, spec_from_problem
from qhybrid.workflow.build import RunOptions


def job_from_spec(
    spec: RunSpec, name: str, *, namespace: str | None = None, options: RunOptions | None = None
) -> dict[str, Any]:
    """Return the QuantumJob that runs ``spec`` (a scenario's partition is written out explicitly)."""
    options = options or RunOptions()
    job_spec: dict[str, Any] = {"mode": spec.mode, "seed": spec.seed, "policy": spec.policy}
    if spec.circuit_qasm is not None:
        job_spec["circuit"] = {"qasm": spec.circuit_qasm}
    else:
        job_spec.update({k: v for k, v in (("qubits", spec.qubits), ("reps", spec.reps)) if v is not None})
    if spec.observable is not None:
        job_spec["observable"] = spec.observable
    if spec.max_width is not None:
        job_spec["maxWidth"] = spec.max_width
    else:
        # The CRD asks for exactly one of partition or maxWidth: a scenario's default is written out.
        job_spec["partition"] = spec.partition or load_problem_inputs(spec)[2]
    if spec.shots is not None:
        job_spec["shots"] = spec.shots
    job_spec.update({"failover": options.failover, "cache": options.cache})
    if options.priority_class is not None:
        job_spec["priorityClassName"] = options.priority_class
    if options.shot_budget is not None:
        job_spec["shotBudget"] = options.shot_budget
    metadata: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/part-of": "qhybrid"}}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": metadata, "spec": job_spec}


# The problem flags a QuantumJob's spec carries, by CRD field (the rest are RunOptions).
_FLAG_OF_FIELD = {
    "qubits": "qubits",
    "reps": "reps",
    "observable": "observable",
    "partition": "partition",
    "maxWidth": "max_width",
    "mode": "mode",
    "shots": "shots",
    "seed": "seed",
    "policy": "policy",
}
# The fields that are run options, not problem flags (RunOptions).
_OPTION_FIELDS = {"failover", "cache", "priorityClassName", "shotBudget"}
_FIELD_OF_OPTION = {
    **{"--" + flag.replace("_", "-"): field for field, flag in _FLAG_OF_FIELD.items()},
    "--failover": "failover",
    "--shot-budget": "shotBudget",
}


@dataclass(frozen=True)
class JobRequest:
    """What a QuantumJob asks for: the run's numbers (``spec``) and how it runs (``options``)."""

    spec: RunSpec
    options: RunOptions


def circuit_source(job_spec: Mapping[str, Any]) -> tuple[str, str] | None:
    """Return ("inline", "") or ("configmap", "<name>/<key>") for a job's circuit, None for a scenario."""
    circuit = job_spec.get("circuit")
    if not circuit:
        return None
    ref = circuit.get("configMapKeyRef")
    if ref is not None:
        return "configmap", f"{ref.get('name')}/{ref.get('key')}"
    return "inline", ""


def request_of(job_spec: Mapping[str, Any], circuit_text: str | None = None) -> JobRequest:
    """Return the run a QuantumJob's spec asks for; an InputError names the ``spec.<field>`` at fault.

    The API server's schema and CEL rules refuse most bad specs; this makes the same
    checks as ``qhybrid run`` (parsing the circuit and observable, the partition's
    length), so a spec that slipped past them (an old CRD, a rule the server could not
    evaluate) fails with the reason in its status. ``circuit_text`` is the circuit a
    ConfigMap holds, read by the caller; an inline circuit is read from the spec.
    """
    try:
        unknown = sorted(set(job_spec) - set(_FLAG_OF_FIELD) - _OPTION_FIELDS - {"circuit"})
        if unknown:
            raise InputError(f"spec.{unknown[0]}", "is not a QuantumJob field")
        values = {flag: job_spec.get(field) for field, flag in _FLAG_OF_FIELD.items()}
        for field, flag in _FLAG_OF_FIELD.items():
            value = values[flag]
            expected = int if flag in ("qubits", "reps", "max_width", "shots", "seed") else str
            if value is not None and (type(value) is not expected):
                raise InputError(f"spec.{field}", f"must be {expected.__name__}, got {value!r}")
        circuit = None
        source = circuit_source(job_spec)
        if source is not None:
            kind, where = source
            text = job_spec["circuit"].get("qasm") if kind == "inline" else circuit_text
            if not isinstance(text, str) or not text:
                raise InputError(
                    "spec.circuit", "no circuit text" + (f" in ConfigMap key {where}" if where else "")
                )
            circuit = (text, f"configmap:{where}" if kind == "configmap" else "quantumjob:spec.circuit.qasm")
        if values["mode"] == "sampled" and values["shots"] is None:
            raise InputError("spec.shots", "sampled mode needs shots")
        spec = spec_from_problem(ProblemFlags(values), circuit)
        if (spec.partition is None) == (spec.max_width is None):
            raise InputError("spec.partition", "give exactly one of partition or maxWidth")
        problem_of(spec)  # the circuit, observable and partition agree (widths, labels)
        options = RunOptions(
            failover=job_spec.get("failover", DEFAULT_FAILOVER),
            cache=bool(job_spec.get("cache", True)),
            priority_class=job_spec.get("priorityClassName"),
            shot_budget=job_spec.get("shotBudget"),
        )
    except InputError as error:
        field = error.field
        if not field.startswith("spec."):
            field = f"spec.{_FIELD_OF_OPTION.get(field, field.lstrip('-').split('/')[0])}"
        raise InputError(field, error.problem) from None
    return JobRequest(spec, options)
