"""What the operator does for one QuantumJob, as a pure function of what it observes.

:func:`reconcile` takes the QuantumJob (spec, status, metadata), the Workflow of that
name if one exists, and the circuit text a ConfigMap holds, and returns a
:class:`Decision`: the Workflow to create (or none), the status to write, and the
phase transition to log. It reads no clock and calls no API, so every case (creation,
each Workflow phase, a Workflow that already exists or was deleted, a bad spec, a spec
changed after start, a restarted operator) is a unit test; :mod:`qhybrid.operator.handlers`
does the I/O around it.

The Workflow's name is derived from the job's name and uid, so a restarted operator
that lost its in-memory state finds the Workflow it created before instead of
creating a second one; a job deleted and re-applied under the same name gets a new
uid and so a new Workflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from qhybrid.blueprint.config import StackConfig
from qhybrid.blueprint.quantumjob_crd import GROUP, KIND, VERSION
from qhybrid.errors import InputError, QhybridError
from qhybrid.operator.render import JobRequest, circuit_source, request_of
from qhybrid.workflow.build import report_location, workflow_object
from qhybrid.workflow.submit import report_of

# The job's uid on its Workflow (a label value holds 63 characters; a job's name may be longer).
JOB_UID_LABEL = "qhybrid.io/quantumjob-uid"
JOB_NAME_ANNOTATION = "qhybrid.io/quantumjob"
FINAL_PHASES = ("Succeeded", "Failed")
# Argo's Workflow phase -> the job's phase (Succeeded is decided by the report, not only the phase).
_JOB_PHASE_OF = {
    "": "Pending",
    "Pending": "Pending",
    "Running": "Running",
    "Failed": "Failed",
    "Error": "Failed",
}
_MAX_MESSAGE = 1024


@dataclass(frozen=True)
class Transition:
    """A change of phase, for the one structured log line and the metrics."""

    old: str | None
    new: str
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    """What to do: create ``workflow`` (if not None), then write ``status``."""

    status: dict[str, Any]
    workflow: dict[str, Any] | None = None
    transition: Transition | None = None
    # Set when the job reached a final phase in this step: seconds from creation to result.
    time_to_result: float | None = None


@dataclass(frozen=True)
class Observed:
    """What the handler read: the job, its Workflow (None: not found), and the circuit lookup."""

    job: Mapping[str, Any]
    workflow: Mapping[str, Any] | None
    circuit_text: str | None = None  # what the ConfigMap key holds, when the spec names one
    circuit_problem: str | None = None  # why that ConfigMap key could not be read


def workflow_name(job: Mapping[str, Any]) -> str:
    """Return the name of a job's Workflow: its name (cut to fit a label value) and its uid's head."""
    meta = job["metadata"]
    head = meta["name"][:52].rstrip("-.")
    return f"{head}-{meta['uid'][:8]}"


def owner_reference(job: Mapping[str, Any]) -> dict[str, Any]:
    """Return the ownerReference that makes a Workflow the job's (garbage-collected with it)."""
    meta = job["metadata"]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def is_owned_by(workflow: Mapping[str, Any], job: Mapping[str, Any]) -> bool:
    """Return whether ``workflow`` is controlled by ``job`` (same uid)."""
    uid = job["metadata"]["uid"]
    refs = (workflow.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid and ref.get("controller") for ref in refs)


def desired_workflow(job: Mapping[str, Any], request: JobRequest, config: StackConfig) -> dict[str, Any]:
    """Return the Workflow a job runs: ``qhybrid workflow render``'s, named and owned by the job."""
    workflow = workflow_object(config, request.spec, name=workflow_name(job), options=request.options)
    meta = workflow["metadata"]
    meta["namespace"] = job["metadata"].get("namespace", config.workflow_namespace)
    meta["labels"] = {**meta.get("labels", {}), JOB_UID_LABEL: job["metadata"]["uid"]}
    meta["annotations"] = {**meta.get("annotations", {}), JOB_NAME_ANNOTATION: job["metadata"]["name"]}
    meta["ownerReferences"] = [owner_reference(job)]
    return workflow


def failed_step(workflow: Mapping[str, Any]) -> tuple[str, str]:
    """Return (step, message) of the first failed pod of a Workflow, or ("", the Workflow's message)."""
    status = workflow.get("status") or {}
    failed = [
        node
        for node in (status.get("nodes") or {}).values()
        if node.get("type") == "Pod" and node.get("phase") in ("Failed", "Error")
    ]
    if not failed:
        return "", status.get("message") or "the workflow failed"
    first = min(failed, key=lambda node: (node.get("finishedAt") or "", node.get("id") or ""))
    step = first.get("displayName") or first.get("templateName") or "?"
    return step, first.get("message") or status.get("message") or f"step {step} failed"


def result_fields(report: Mapping[str, Any]) -> dict[str, Any]:
    """Return the status fields a finished run's report.json gives."""
    counts = report["counts"]
    cache = report.get("cache") or {}
    return {
        "estimate": report["estimate"],
        "standardError": report["standard_error"],
        "exact": report["exact"],
        "error": report["error"],
        "counts": {
            "subexperiments": counts["subexperiments"],
            "unique": counts["unique"],
            "cached": sum((cache.get("hits") or {}).values()),
            "failedOver": len(report["provenance"]["failovers"]),
        },
        "specHash": report["provenance"]["spec_hash"],
    }


def _condition(kind: str, state: bool, reason: str, message: str, generation: int) -> dict[str, Any]:
    return {
        "type": kind,
        "status": "True" if state else "False",
        "reason": reason,
        "message": message[:_MAX_MESSAGE],
        "observedGeneration": generation,
    }


def _in_progress(generation: int) -> dict[str, Any]:
    return _condition("Complete", False, "InProgress", "the workflow has not finished", generation)


def _merge_conditions(old: list[dict[str, Any]], new: list[dict[str, Any]], now: str) -> list[dict[str, Any]]:
    """Return ``old`` updated by ``new``: lastTransitionTime moves only when a status flips."""
    by_type = {c["type"]: dict(c) for c in old}
    for condition in new:
        previous = by_type.get(condition["type"])
        kept = previous is not None and previous.get("status") == condition["status"]
        stamp = previous.get("lastTransitionTime", now) if kept and previous is not None else now
        by_type[condition["type"]] = {**condition, "lastTransitionTime": stamp}
    return [by_type[kind] for kind in sorted(by_type)]


def reconcile(observed: Observed, config: StackConfig, *, now: str, now_epoch: float) -> Decision:
    """Return what to do for one job, given what was observed (``now``: RFC 3339, for conditions)."""
    decision = _reconcile(observed, config, now)
    if decision.transition is not None and decision.transition.new in FINAL_PHASES:
        created = observed.job["metadata"].get("creationTimestamp")
        decision = replace(decision, time_to_result=_seconds_since(created, now_epoch))
    return decision


def _reconcile(observed: Observed, config: StackConfig, now: str) -> Decision:
    job = observed.job
    meta = job["metadata"]
    old = dict(job.get("status") or {})
    old_phase = old.get("phase")
    generation = int(meta.get("generation") or 1)
    started = bool(old.get("workflowName"))
    updates: dict[str, Any] = {}
    conditions: list[dict[str, Any]] = []
    workflow = observed.workflow
    run_generation = int(old.get("observedGeneration") or generation)

    if started and generation != run_generation:
        # The CRD's CEL rule forbids this; it happens only where the rule was not enforced.
        message = (
            f"spec changed after start (generation {generation}); workflow {old['workflowName']} "
            f"runs generation {run_generation}'s spec; create a new QuantumJob to run the new one"
        )
        conditions.append(_condition("SpecChanged", True, "ImmutableAfterStart", message, generation))

    # A final job stays final, except one refused before it started whose spec was fixed since.
    retry_fixed_spec = not started and generation != run_generation
    if old_phase in FINAL_PHASES and not retry_fixed_spec:
        return _decide(old, updates, conditions, now)

    if workflow is not None and not is_owned_by(workflow, job):
        name = workflow_name(job)
        message = f"a Workflow named {name} exists and is not this QuantumJob's; delete it or rename the job"
        return _fail(old, conditions, "WorkflowConflict", message, generation, now)

    if workflow is None and started:
        message = (
            f"workflow {old['workflowName']} was deleted before it finished; "
            "delete and re-apply the QuantumJob to run it again"
        )
        return _fail(old, conditions, "WorkflowDeleted", message, run_generation, now)

    request = None
    if not started:
        # Not started, or started by an operator that stopped before writing the status:
        # the spec is read again (it cannot have changed once a Workflow exists).
        if circuit_source(job["spec"]) is not None and observed.circuit_problem is not None:
            conditions.append(
                _condition("Accepted", False, "CircuitNotFound", observed.circuit_problem, generation)
            )
            updates.update(phase="Pending", message=observed.circuit_problem, observedGeneration=generation)
            return _decide(old, updates, conditions, now, reason="CircuitNotFound")
        try:
            request = request_of(job["spec"], observed.circuit_text)
        except InputError as error:
            conditions.append(_condition("Accepted", False, "InvalidSpec", str(error), generation))
            return _fail(old, conditions, "InvalidSpec", str(error), generation, now)
        conditions.append(_condition("Accepted", True, "Valid", "the spec is a valid run", generation))
        updates.update(
            workflowName=workflow_name(job),
            specHash=request.spec.spec_hash(),
            observedGeneration=generation,
            reportPath=report_location(config, workflow_name(job)),
        )

    create = None
    if workflow is None:
        assert request is not None
        create = desired_workflow(job, request, config)
        conditions.append(
            _condition("WorkflowCreated", True, "Created", f"workflow {workflow_name(job)}", generation)
        )
        conditions.append(_in_progress(generation))
        updates.update(phase="Pending", message="workflow created; waiting for Argo and Kueue")
        return _decide(old, updates, conditions, now, workflow=create, reason="Created")

    conditions.append(
        _condition("WorkflowCreated", True, "Created", f"workflow {workflow_name(job)}", run_generation)
    )
    argo_phase = (workflow.get("status") or {}).get("phase") or ""
    if argo_phase == "Succeeded":
        try:
            results = result_fields(report_of(workflow))
        except (QhybridError, KeyError, TypeError, ValueError) as error:
            message = f"the workflow succeeded but its report output is unusable: {error}"
            return _fail(old, conditions, "NoReport", message, run_generation, now)
        updates.update(results, phase="Succeeded", message="done")
        conditions.append(
            _condition("Complete", True, "Succeeded", "the estimate is in the status", run_generation)
        )
        return _decide(old, updates, conditions, now, reason="Succeeded")
    phase = _JOB_PHASE_OF.get(argo_phase, "Running")
    if phase == "Failed":
        step, message = failed_step(workflow)
        updates["failedStep"] = step
        reason = "StepFailed" if step else "WorkflowFailed"
        return _fail(old, conditions, reason, message, run_generation, now, updates)
    progress = (workflow.get("status") or {}).get("progress")
    conditions.append(_in_progress(run_generation))
    updates.update(
        phase=phase, message=f"workflow {phase.lower()}" + (f", {progress} pods" if progress else "")
    )
    return _decide(old, updates, conditions, now, reason=f"Workflow{phase}")


def _fail(
    old: dict[str, Any],
    conditions: list[dict[str, Any]],
    reason: str,
    message: str,
    generation: int,
    now: str,
    updates: dict[str, Any] | None = None,
) -> Decision:
    conditions = [*conditions, _condition("Complete", False, reason, message, generation)]
    fields = {**(updates or {}), "phase": "Failed", "message": message[:_MAX_MESSAGE]}
    fields.setdefault("observedGeneration", generation)
    return _decide(old, fields, conditions, now, reason=reason)


def _decide(
    old: dict[str, Any],
    updates: dict[str, Any],
    conditions: list[dict[str, Any]],
    now: str,
    *,
    workflow: dict[str, Any] | None = None,
    reason: str = "",
) -> Decision:
    status = {**old, **updates}
    status["conditions"] = _merge_conditions(list(old.get("conditions") or []), conditions, now)
    old_phase, new_phase = old.get("phase"), status.get("phase")
    transition = None
    if new_phase is not None and new_phase != old_phase:
        transition = Transition(old_phase, new_phase, reason, str(status.get("message") or ""))
    return Decision(status, workflow, transition)


def _seconds_since(stamp: str | None, now_epoch: float) -> float | None:
    if not stamp:
        return None
    return max(0.0, now_epoch - datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())
