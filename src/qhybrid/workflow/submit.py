"""Submit a rendered Workflow through the Kubernetes API, follow it to the end, fetch its report.

The Workflow is created as an ``argoproj.io/v1alpha1`` custom object (what
``kubectl create`` does; no argo CLI needed). Progress comes from the object's
status: Argo's ``progress`` ("done/total" pods) and each pod node's phase, per
branch. The report comes back through the status too: the ``report`` step
exports report.json as an output parameter, so it is read from the Workflow
object on either artifact store, with no pod, volume or bucket access.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from qhybrid.errors import InputError, QhybridError

GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "workflows"
DONE_PHASES = ("Succeeded", "Failed", "Error")
POLL_S = 5.0


@dataclass(frozen=True)
class Snapshot:
    """What a Workflow's status says at one moment."""

    phase: str
    done: int
    total: int
    by_step: dict[str, Counter[str]]  # step (template) -> pod phase -> count
    message: str


def snapshot(workflow: Mapping[str, Any]) -> Snapshot:
    """Summarise a Workflow object's status (no status yet: Pending, 0 of 0)."""
    status = workflow.get("status") or {}
    done, _, total = (status.get("progress") or "0/0").partition("/")
    by_step: dict[str, Counter[str]] = {}
    for node in (status.get("nodes") or {}).values():
        if node.get("type") == "Pod":
            by_step.setdefault(node.get("templateName", "?"), Counter())[node.get("phase", "Pending")] += 1
    return Snapshot(
        phase=status.get("phase") or "Pending",
        done=int(done or 0),
        total=int(total or 0),
        by_step=by_step,
        message=status.get("message") or "",
    )


def report_of(workflow: Mapping[str, Any]) -> dict[str, Any]:
    """Return report.json from the succeeded ``report`` pod's output parameter."""
    for node in ((workflow.get("status") or {}).get("nodes") or {}).values():
        is_report = node.get("templateName") == "report" and node.get("type") == "Pod"
        if is_report and node.get("phase") == "Succeeded":
            for parameter in (node.get("outputs") or {}).get("parameters") or []:
                if parameter.get("name") == "report":
                    return dict(json.loads(parameter["value"]))
    raise QhybridError("the workflow has no succeeded report step with a report output")


def custom_objects_api(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """Return a CustomObjectsApi from a kubeconfig (or the in-cluster service account)."""
    from kubernetes import client, config

    if kubeconfig is not None and not Path(kubeconfig).is_file():
        raise InputError("--kubeconfig", f"{kubeconfig}: no such file")
    try:
        config.load_kube_config(config_file=kubeconfig, context=context)
    except config.ConfigException:
        if kubeconfig is not None:
            raise InputError("--kubeconfig", f"{kubeconfig}: not a usable kubeconfig") from None
        try:
            config.load_incluster_config()
        except config.ConfigException as error:
            raise QhybridError(f"no Kubernetes credentials: {error}") from None
    return client.CustomObjectsApi()


def create(api: Any, workflow: Mapping[str, Any]) -> str:
    """Create the Workflow; return its name (generated from generateName)."""
    from urllib3.exceptions import HTTPError

    namespace = workflow["metadata"]["namespace"]
    try:
        created = api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, dict(workflow))
    except HTTPError as error:  # no answer at all; an answer with an error status is an ApiException
        host = getattr(getattr(api, "api_client", None), "configuration", None)
        where = getattr(host, "host", "the API server")
        reason = getattr(error, "reason", None) or error
        raise InputError(
            "--kubeconfig", f"cannot reach the API server at {where}: {_first_words(reason)}"
        ) from None
    return str(created["metadata"]["name"])


def _first_words(reason: object) -> str:
    """Return an urllib3 failure's cause without its object reprs ("[Errno 111] Connection refused")."""
    text = str(reason)
    if "] " in text and "[Errno" in text:
        return text[text.index("[Errno") :].split(")")[0].split("'")[0].strip(' "')
    return text.splitlines()[0][:200]


def follow(
    api: Any,
    namespace: str,
    name: str,
    *,
    timeout_s: float,
    console: Console | None = None,
    poll_s: float = POLL_S,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll the Workflow until it is done or ``timeout_s`` passes, showing progress; return it."""
    console = console or Console(stderr=True)
    deadline = time.monotonic() + timeout_s
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(name, total=None, detail="")
        while True:
            workflow = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            seen = snapshot(workflow)
            detail = "  ".join(
                f"{step} " + ",".join(f"{phase}={n}" for phase, n in sorted(phases.items()))
                for step, phases in sorted(seen.by_step.items())
            )
            progress.update(
                task, total=seen.total or None, completed=seen.done, detail=f"{seen.phase}  {detail}"
            )
            if seen.phase in DONE_PHASES:
                return dict(workflow)
            if time.monotonic() >= deadline:
                raise QhybridError(f"workflow {namespace}/{name} still {seen.phase} after {timeout_s:.0f} s")
            sleep(poll_s)


def submit_and_wait(
    api: Any, workflow: Mapping[str, Any], *, timeout_s: float, console: Console | None = None
) -> tuple[str, dict[str, Any]]:
    """Create, follow and return (name, report); a workflow that did not succeed is an error."""
    name = create(api, workflow)
    namespace = workflow["metadata"]["namespace"]
    final = follow(api, namespace, name, timeout_s=timeout_s, console=console)
    seen = snapshot(final)
    if seen.phase != "Succeeded":
        raise QhybridError(f"workflow {namespace}/{name} ended {seen.phase}: {seen.message}")
    return name, report_of(final)
