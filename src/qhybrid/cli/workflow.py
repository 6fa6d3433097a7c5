"""``qhybrid workflow``: render the cutting workflow, replay it locally, submit it to a cluster."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from qhybrid.cli.options import (
    ClusterAccess,
    StackChoice,
    WorkflowTarget,
    cluster_options,
    problem_options,
    stack_options,
    workflow_options,
)
from qhybrid.cli.terminal import print_report, run_command, user_errors
from qhybrid.spec import ProblemFlags

workflow_app = typer.Typer(
    no_args_is_help=True, help="The cutting workflow on Argo Workflows + Kueue: render, replay, submit."
)


@workflow_app.command("render")
@workflow_options
@problem_options
def render(
    problem: ProblemFlags,
    target: WorkflowTarget,
    out: Annotated[Path | None, typer.Option(help="YAML file to write.", show_default="stdout")] = None,
) -> None:
    """Write the Argo Workflow of a cutting run (same options as `qhybrid run cutting`) as YAML."""
    from qhybrid import atomic
    from qhybrid.workflow.build import to_yaml

    with user_errors():
        text = to_yaml(target.render(problem))
    if out is None:
        sys.stdout.write(text)
    else:
        atomic.write_text(out, text)
        print(f"{out}")


@workflow_app.command("replay")
@workflow_options
@problem_options
def replay_command(
    ctx: typer.Context,
    problem: ProblemFlags,
    target: WorkflowTarget,
    root: Annotated[Path, typer.Option(help="Local folder standing in for the pods' volumes.")],
    file: Annotated[
        Path | None, typer.Option(help="A rendered Workflow YAML.", show_default="render one")
    ] = None,
) -> None:
    """Run a rendered workflow's step containers here, in its DAG order, and print the summary."""
    from qhybrid import atomic
    from qhybrid.pipeline.rundir import RunDir
    from qhybrid.workflow.replay import replay

    with user_errors():
        if file is None:
            workflow = target.render(problem)
        else:
            workflow = read_workflow_file(file)
        # Each pod's args go to this same command line (the root command), in this process.
        done = replay(workflow, root, runner=functools.partial(run_command, ctx.find_root().command))
        report = atomic.read_json(RunDir(done.run_dir).report_file)
    print_report(report)


@workflow_app.command("submit")
@cluster_options
@workflow_options
@problem_options
def submit(
    problem: ProblemFlags,
    target: WorkflowTarget,
    cluster: ClusterAccess,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the workflow to finish.")] = 3600.0,
    out: Annotated[
        Path | None, typer.Option(help="Folder for report.json.", show_default="runs/<workflow name>")
    ] = None,
) -> None:
    """Render, create the Workflow through the Kubernetes API, follow it to the end, fetch the report."""
    from qhybrid import atomic
    from qhybrid.pipeline.rundir import RunDir
    from qhybrid.workflow.submit import submit_and_wait

    with user_errors():
        workflow = target.render(problem)
        name, report = submit_and_wait(cluster.custom_objects_api(), workflow, timeout_s=timeout)
        report_file = RunDir(out or Path("runs") / name).report_file
        atomic.write_json(report_file, report)
    print_report(report, report_file)


@workflow_app.command("check")
@stack_options
def check_command(
    stack: StackChoice,
    file: Annotated[Path, typer.Option(help="A Workflow YAML, e.g. one rendered and then edited.")],
) -> None:
    """Run the structural checks on a Workflow file; exit 1 listing each problem."""
    from qhybrid.workflow.checks import check_workflow

    with user_errors():
        workflow = read_workflow_file(file)
        problems = check_workflow(workflow, stack.load())
    for problem in problems:
        sys.stderr.write(f"{file}: {problem}\n")
    if problems:
        raise typer.Exit(1)
    print(f"{file}: no problems")


def read_workflow_file(path: Path) -> dict[str, Any]:
    """Read a Workflow YAML file, or fail in one line naming --file and what is wrong."""
    import yaml

    from qhybrid.errors import InputError

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("--file", f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(
            "--file", f"{path}: cannot read ({getattr(error, 'strerror', None) or error})"
        ) from None
    try:
        workflow = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "not valid YAML"
        raise InputError("--file", f"{path}: not valid YAML: {problem}{where}") from None
    if not isinstance(workflow, dict):
        raise InputError("--file", f"{path}: not a Workflow (the file holds no YAML mapping)")
    return workflow
