"""``qhybrid workflow``: render the cutting workflow, replay it locally, submit it to a cluster."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from qhybrid.options import (
    CircuitFile,
    MaxWidth,
    ModeOption,
    ObservableText,
    Partition,
    PolicyOption,
    Qubits,
    Reps,
    Seed,
    Shots,
)

workflow_app = typer.Typer(
    no_args_is_help=True, help="The cutting workflow on Argo Workflows + Kueue: render, replay, submit."
)

Stack = Annotated[str, typer.Option(help="Stack name: stacks/Pulumi.<stack>.yaml.")]
PerPod = Annotated[
    int | None,
    typer.Option(help="Subexperiments per pod (1: the paper's plan) [default: one batch per quota slot]."),
]


def _render(stack: str, flags: dict[str, Any], per_pod: int | None) -> tuple[Any, dict[str, Any]]:
    """Return (config, Workflow dict) after the structural checks; problems are a user error."""
    from qhybrid.blueprint.config import load_stack_file
    from qhybrid.cli import _spec
    from qhybrid.errors import InputError
    from qhybrid.workflow.build import workflow_object
    from qhybrid.workflow.checks import check_workflow

    config = load_stack_file(stack)
    workflow = workflow_object(config, _spec(**flags), per_pod=per_pod)
    problems = check_workflow(workflow, config)
    if problems:
        raise InputError("workflow", "; ".join(problems))
    return config, workflow


def to_yaml(workflow: dict[str, Any]) -> str:
    """Return the Workflow as YAML in a stable key order (the committed golden file's format)."""
    import yaml

    return yaml.safe_dump(workflow, sort_keys=True, default_flow_style=False, width=100)


@workflow_app.command("render")
def render(
    stack: Stack = "kind",
    out: Annotated[Path | None, typer.Option(help="YAML file to write [default: stdout].")] = None,
    per_pod: PerPod = None,
    qubits: Qubits = None,
    reps: Reps = None,
    circuit: CircuitFile = None,
    observable: ObservableText = None,
    partition: Partition = None,
    max_width: MaxWidth = None,
    mode: ModeOption = None,
    shots: Shots = None,
    seed: Seed = None,
    policy: PolicyOption = None,
) -> None:
    """Write the Argo Workflow of a cutting run (same options as `qhybrid run cutting`) as YAML."""
    flags = dict(locals())
    for key in ("stack", "out", "per_pod"):
        flags.pop(key)

    from qhybrid import atomic
    from qhybrid.cli import _user_errors

    with _user_errors():
        _, workflow = _render(stack, flags, per_pod)
    text = to_yaml(workflow)
    if out is None:
        sys.stdout.write(text)
    else:
        atomic.write_text(out, text)
        print(f"{out}")


@workflow_app.command("replay")
def replay_command(
    root: Annotated[Path, typer.Option(help="Local folder standing in for the pods' volumes.")],
    file: Annotated[Path | None, typer.Option(help="A rendered Workflow YAML [default: render one].")] = None,
    stack: Stack = "kind",
    per_pod: PerPod = None,
    qubits: Qubits = None,
    reps: Reps = None,
    circuit: CircuitFile = None,
    observable: ObservableText = None,
    partition: Partition = None,
    max_width: MaxWidth = None,
    mode: ModeOption = None,
    shots: Shots = None,
    seed: Seed = None,
    policy: PolicyOption = None,
) -> None:
    """Run a rendered workflow's step containers here, in its DAG order, and print the summary."""
    flags = dict(locals())
    for key in ("root", "file", "stack", "per_pod"):
        flags.pop(key)

    import yaml

    from qhybrid.cli import _user_errors
    from qhybrid.report import summary_text
    from qhybrid.workflow.local import replay

    with _user_errors():
        if file is None:
            _, workflow = _render(stack, flags, per_pod)
        else:
            workflow = yaml.safe_load(file.read_text(encoding="utf-8"))
        done = replay(workflow, root)
    sys.stdout.write(summary_text(json.loads((done.run_dir / "report.json").read_text())))


@workflow_app.command("submit")
def submit(
    stack: Stack = "kind",
    kubeconfig: Annotated[Path | None, typer.Option(help="Kubeconfig [default: $KUBECONFIG].")] = None,
    context: Annotated[str | None, typer.Option(help="Kubeconfig context.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the workflow to finish.")] = 3600.0,
    out: Annotated[Path | None, typer.Option(help="Folder for report.json [default: runs/NAME].")] = None,
    per_pod: PerPod = None,
    qubits: Qubits = None,
    reps: Reps = None,
    circuit: CircuitFile = None,
    observable: ObservableText = None,
    partition: Partition = None,
    max_width: MaxWidth = None,
    mode: ModeOption = None,
    shots: Shots = None,
    seed: Seed = None,
    policy: PolicyOption = None,
) -> None:
    """Render, create the Workflow through the Kubernetes API, follow it to the end, fetch the report."""
    flags = dict(locals())
    for key in ("stack", "kubeconfig", "context", "timeout", "out", "per_pod"):
        flags.pop(key)

    from qhybrid import atomic
    from qhybrid.cli import _user_errors
    from qhybrid.report import summary_text
    from qhybrid.workflow.submit import custom_objects_api, submit_and_wait

    with _user_errors():
        _, workflow = _render(stack, flags, per_pod)
        api = custom_objects_api(None if kubeconfig is None else str(kubeconfig), context)
        name, report = submit_and_wait(api, workflow, timeout_s=timeout)
        target = (out or Path("runs") / name) / "report.json"
        atomic.write_json(target, report)
    sys.stdout.write(summary_text(report))
    sys.stdout.write(f"report          {target}\n")


@workflow_app.command("check")
def check_command(
    file: Annotated[Path, typer.Option(help="A Workflow YAML, e.g. one rendered and then edited.")],
    stack: Stack = "kind",
) -> None:
    """Run the structural checks on a Workflow file; exit 1 listing each problem."""
    import yaml

    from qhybrid.blueprint.config import load_stack_file
    from qhybrid.cli import _user_errors
    from qhybrid.workflow.checks import check_workflow

    with _user_errors():
        problems = check_workflow(yaml.safe_load(file.read_text(encoding="utf-8")), load_stack_file(stack))
    for problem in problems:
        sys.stderr.write(f"{file}: {problem}\n")
    if problems:
        raise typer.Exit(1)
    print(f"{file}: no problems")
