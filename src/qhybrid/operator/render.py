"""``qhybrid job render``: a QuantumJob from the same problem flags as ``qhybrid run``."""

from __future__ import annotations

from typing import Any

from qhybrid.backends.qpu import DEFAULT_FAILOVER, FAILOVER_MODES
from qhybrid.errors import InputError
from qhybrid.operator.crd import GROUP, KIND, VERSION
from qhybrid.spec import RunSpec, load_problem_inputs


def job_from_spec(
    spec: RunSpec,
    name: str,
    *,
    namespace: str | None = None,
    failover: str = DEFAULT_FAILOVER,
    cache: bool = True,
    priority_class: str | None = None,
    shot_budget: int | None = None,
) -> dict[str, Any]:
    """Return the QuantumJob that runs ``spec`` (a scenario's partition is written out explicitly)."""
    if failover not in FAILOVER_MODES:
        raise InputError("--failover", f"unknown mode {failover!r}; choose one of {list(FAILOVER_MODES)}")
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
    job_spec.update({"failover": failover, "cache": cache})
    if priority_class is not None:
        job_spec["priorityClassName"] = priority_class
    if shot_budget is not None:
        if shot_budget < 1:
            raise InputError("--shot-budget", f"must be at least 1, got {shot_budget}")
        job_spec["shotBudget"] = shot_budget
    metadata: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/part-of": "qhybrid"}}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": metadata, "spec": job_spec}
