"""``qhybrid run``: a workflow end to end on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qhybrid.backends import GatewaySettings
from qhybrid.cli.options import gateway_options, problem_options
from qhybrid.cli.terminal import print_report, user_errors
from qhybrid.errors import InputError
from qhybrid.pipeline.runner import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS
from qhybrid.spec import ProblemFlags

run_app = typer.Typer(no_args_is_help=True, help="Run a workflow end to end on this machine.")


@run_app.command("cutting")
@gateway_options
@problem_options
def run_cutting(
    problem: ProblemFlags,
    gateway: GatewaySettings,
    workers: Annotated[int, typer.Option(help="Worker processes for the execute step.")] = DEFAULT_WORKERS,
    batch_size: Annotated[
        int, typer.Option(help="Unique subexperiments per execute task.")
    ] = DEFAULT_BATCH_SIZE,
    out: Annotated[
        Path | None, typer.Option(help="Run directory.", show_default="runs/cutting-<spec hash>")
    ] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue the run in this directory.")] = None,
) -> None:
    """Cut a circuit, run its subexperiments, reconstruct the observable, compare with exact."""
    from qhybrid.pipeline.rundir import RunDir
    from qhybrid.pipeline.runner import run_local
    from qhybrid.spec import spec_from_flags

    with user_errors():
        if resume is not None:
            if out is not None and out.resolve() != resume.resolve():
                raise InputError("--out", "give --resume DIR alone; it is the output directory")
            spec = RunDir(resume).read_spec()
            if problem.given() and spec_from_flags(problem).spec_hash() != spec.spec_hash():
                raise InputError(
                    "--resume", f"{resume} holds a run with other inputs; drop the flags to resume it"
                )
            out = resume
        else:
            spec = spec_from_flags(problem)
            out = out or Path("runs") / f"cutting-{spec.spec_hash()[:12]}"
        report = run_local(spec, out, workers=workers, batch_size=batch_size, gateway=gateway)
    print_report(report, RunDir(out).report_file)
