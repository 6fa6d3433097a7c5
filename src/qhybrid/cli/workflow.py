"""``qhybrid workflow``: render the cutting workflow, replay it locally, submit it to a cluster."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from qhybrid.cli.errors import run_command, user_errors
from qhybrid.cli.options import PerPod, ProjectDir, Stack, problem_options
from qhybrid.spec import ProblemFlags

workflow_app = typer.Typer(
    no_args_is_help=True, help="The cutting workflow on Argo Workflows + Kueue: render, replay, submit."
)
DEFAULT_STACK = "kind"


def _checked_workflow(
    stack: str, project_dir: Path | None, problem: ProblemFlags, per_pod: int | None
) -> dict[str, Any]:
    """Return the Workflow dict after the structural checks; problems are a user error."""
    from qhybrid.blueprint.config import load_stack_file
    from qhybrid.errors import InputError
    from qhybrid.spec import spec_from_flags
    from qhybrid.workflow.build import workflow_object
    from qhybrid.workflow.checks import check_workflow

    config = load_stack_file(stack, project_dir=project_dir)
    workflow = workflow_object(config, spec_from_flags(problem), per_pod=per_pod)
    problems = check_workflow(workflow, config)
    if problems:
        raise InputError("workflow", "; ".join(problems))
    return workflow


@workflow_app.command("render")
@problem_options
def render(
    problem: ProblemFlags,
    stack: Stack = DEFAULT_STACK,
    project_dir: ProjectDir = None,
    out: Annotated[Path | None, typer.Option(help="YAML file to write.", show_default="stdout")] = None,
    per_pod: PerPod = None,
) -> None:
    """Write the Argo Workflow of a cutting run (same options as `qhybrid run cutting`) as YAML."""
    from qhybrid import atomic
    from qhybrid.workflow.build import to_yaml

    with user_errors():
        text = to_yaml(_checked_workflow(stack, project_dir, problem, per_pod))
    if out is None:
        sys.stdout.write(text)
    else:
        atomic.write_text(out, text)
        print(f"{out}")


@workflow_app.command("replay")
@problem_options
def replay_command(
    ctx: typer.Context,
    problem: ProblemFlags,
    root: Annotated[Path, typer.Option(help="Local folder standing in for the pods' volumes.")],
    file: Annotated[
        Path | None, typer.Option(help="A rendered Workflow YAML.", show_default="render one")
    ] = None,
    stack: Stack = DEFAULT_STACK,
    project_dir: ProjectDir = None,
    per_pod: PerPod = None,
) -> None:
    """Run a rendered workflow's step containers here, in its DAG order, and print the summary."""
    import yaml

    from qhybrid import atomic
    from qhybrid.pipeline.report import summary_text
    from qhybrid.pipeline.rundir import RunDir
    from qhybrid.workflow.replay import replay

    with user_errors():
        if file is None:
            workflow = _checked_workflow(stack, project_dir, problem, per_pod)
        else:
            workflow = yaml.safe_load(file.read_text(encoding="utf-8"))
        # Each pod's args go to this same command line (the root command), in this process.
        done = replay(workflow, root, runner=functools.partial(run_command, ctx.find_root().command))
        report = atomic.read_json(RunDir(done.run_dir).report_file)
    sys.stdout.write(summary_text(report))


@workflow_app.command("submit")
@problem_options
def submit(
    problem: ProblemFlags,
    stack: Stack = DEFAULT_STACK,
    project_dir: ProjectDir = None,
    kubeconfig: Annotated[
        Path | None, typer.Option(help="Kubeconfig.", show_default="$KUBECONFIG or ~/.kube/config")
    ] = None,
    context: Annotated[
        str | None, typer.Option(help="Kubeconfig context.", show_default="the current context")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the workflow to finish.")] = 3600.0,
    out: Annotated[
        Path | None, typer.Option(help="Folder for report.json.", show_default="runs/<workflow name>")
    ] = None,
    per_pod: PerPod = None,
) -> None:
    """Render, create the Workflow through the Kubernetes API, follow it to the end, fetch the report."""
    from qhybrid import atomic
    from qhybrid.pipeline.report import summary_text
    from qhybrid.pipeline.rundir import RunDir
    from qhybrid.workflow.submit import custom_objects_api, submit_and_wait

    with user_errors():
        workflow = _checked_workflow(stack, project_dir, problem, per_pod)
        api = custom_objects_api(None if kubeconfig is None else str(kubeconfig), context)
        name, report = submit_and_wait(api, workflow, timeout_s=timeout)
        target = RunDir(out or Path("runs") / name).report_file
        atomic.write_json(target, report)
    sys.stdout.write(summary_text(report))
    sys.stdout.write(f"report          {target}\n")


@workflow_app.command("check")
def check_command(
    file: Annotated[Path, typer.Option(help="A Workflow YAML, e.g. one rendered and then edited.")],
    stack: Stack = DEFAULT_STACK,
    project_dir: ProjectDir = None,
) -> None:
    """Run the structural checks on a Workflow file; exit 1 listing each problem."""
    import yaml

    from qhybrid.blueprint.config import load_stack_file
    from qhybrid.workflow.checks import check_workflow

    with user_errors():
        workflow = yaml.safe_load(file.read_text(encoding="utf-8"))
        problems = check_workflow(workflow, load_stack_file(stack, project_dir=project_dir))
    for problem in problems:
        sys.stderr.write(f"{file}: {problem}\n")
    if problems:
        raise typer.Exit(1)
    print(f"{file}: no problems")
