"""``qhybrid job``: write a QuantumJob (``kubectl apply -f``) for a problem, and read one back."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from qhybrid.cli.options import ClusterAccess, cluster_options, problem_options
from qhybrid.cli.terminal import print_report, user_errors
from qhybrid.cutting.policies import DEFAULT_FAILOVER
from qhybrid.errors import InputError
from qhybrid.spec import ProblemFlags

job_app = typer.Typer(no_args_is_help=True, help="QuantumJob custom resources.")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@job_app.command("render")
@problem_options
def render(
    problem: ProblemFlags,
    name: Annotated[str, typer.Option(help="The QuantumJob's name (an RFC 1123 label).")] = "cutting",
    namespace: Annotated[str | None, typer.Option(help="Its namespace.", show_default="kubectl's")] = None,
    failover: Annotated[str, typer.Option(help="never | transient | always.")] = DEFAULT_FAILOVER,
    cache: Annotated[bool, typer.Option(help="Use the shared result cache.")] = True,
    priority_class: Annotated[str | None, typer.Option(help="A Kueue WorkloadPriorityClass.")] = None,
    shot_budget: Annotated[int | None, typer.Option(help="Most QPU shots the job may spend.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """Write the QuantumJob that runs this problem, for ``kubectl apply -f``."""
    from qhybrid.operator.render import job_from_spec
    from qhybrid.spec import spec_from_flags
    from qhybrid.workflow.build import RunOptions

    with user_errors():
        if not _NAME.match(name):
            raise InputError("--name", f"{name!r} is not a Kubernetes name (lower case, digits, '-')")
        options = RunOptions(
            failover=failover, cache=cache, priority_class=priority_class, shot_budget=shot_budget
        )
        job = job_from_spec(spec_from_flags(problem), name, namespace=namespace, options=options)
    text = yaml.safe_dump(job, sort_keys=False)
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")


def _namespace_or_default(namespace: str | None) -> str:
    from qhybrid.blueprint.config import declarations

    return namespace or str(declarations()["workflowNamespace"].default)


@job_app.command("get")
@cluster_options
def get(
    cluster: ClusterAccess,
    name: Annotated[str, typer.Argument(help="The QuantumJob's name.")],
    namespace: Annotated[
        str | None, typer.Option(help="Its namespace.", show_default="Pulumi.yaml's workflowNamespace")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the job's status as JSON.")] = False,
) -> None:
    """Print a QuantumJob's status; once it succeeded, the run's summary as ``qhybrid run`` prints it.

    Exit 1 when the job failed, 0 otherwise (also while it is Pending or Running).
    """
    from qhybrid.blueprint.quantumjob_crd import GROUP, PLURAL, VERSION
    from qhybrid.workflow.submit import report_of

    with user_errors():
        api = cluster.custom_objects_api()
        where = _namespace_or_default(namespace)
        job = _read(api, GROUP, VERSION, where, PLURAL, name, what=f"QuantumJob {where}/{name}")
        status = dict(job.get("status") or {})
        report = None
        workflow_name = status.get("workflowName")
        if status.get("phase") == "Succeeded" and workflow_name:
            # The full report is the Workflow's output until Argo's TTL removes the Workflow.
            workflow = _read(api, "argoproj.io", "v1alpha1", where, "workflows", workflow_name, what=None)
            report = None if workflow is None else report_of(workflow)
    if json_output:
        sys.stdout.write(
            json.dumps({"name": name, "namespace": where, "status": status}, sort_keys=True) + "\n"
        )
    else:
        sys.stdout.write(_status_text(where, name, status))
        if report is not None:
            print_report(report)
        elif status.get("phase") == "Succeeded":
            sys.stdout.write(_result_text(status))
        if status.get("reportPath"):
            sys.stdout.write(f"report          {status['reportPath']}\n")
    if status.get("phase") == "Failed":
        raise typer.Exit(1)


def _read(
    api: Any, group: str, version: str, namespace: str, plural: str, name: str, *, what: str | None
) -> Any:
    """Return the object, None when it is gone (``what`` None), or a one-line error naming ``what``."""
    from kubernetes.client.exceptions import ApiException

    from qhybrid.errors import QhybridError

    try:
        return api.get_namespaced_custom_object(group, version, namespace, plural, name)
    except ApiException as error:
        if error.status == 404 and what is None:
            return None
        if error.status == 404:
            raise InputError("NAME", f"{what} not found") from None
        raise QhybridError(f"reading {what or name}: {error.status} {error.reason}") from None


def _status_text(namespace: str, name: str, status: dict[str, Any]) -> str:
    phase = status.get("phase") or "Pending (not seen by the operator yet)"
    lines = [f"quantumjob      {namespace}/{name}  {phase}"]
    if status.get("workflowName"):
        lines.append(f"workflow        {status['workflowName']}")
    if status.get("phase") != "Succeeded" and status.get("message"):
        step = f"step {status['failedStep']}: " if status.get("failedStep") else ""
        lines.append(f"message         {step}{status['message']}")
    return "".join(f"{line}\n" for line in lines)


def _result_text(status: dict[str, Any]) -> str:
    """The summary from the status alone (the Workflow, and its full report output, are gone)."""
    lines = [
        f"estimate        {status['estimate']:+.12f}  (standard error {status.get('standardError', 0):.2e})"
    ]
    if status.get("exact") is not None:
        lines.append(f"exact           {status['exact']:+.12f}")
        lines.append(f"error           {status['error']:+.3e}")
    counts = status.get("counts") or {}
    if counts:
        lines.append(
            f"subexperiments  {counts.get('subexperiments')} ({counts.get('unique')} unique, "
            f"{counts.get('cached')} from the cache, {counts.get('failedOver')} failed over)"
        )
    if status.get("specHash"):
        lines.append(f"spec hash       {status['specHash']}")
    return "".join(f"{line}\n" for line in lines)
