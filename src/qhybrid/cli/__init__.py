"""The ``qhybrid`` command line: one module per command group, all of them thin.

Each command reads its flags (the environment only through typer's ``envvar``, here
at the edge), builds the settings objects the library takes, calls one library
function, and prints. User errors become one ``qhybrid: error: ...`` line and exit 2.
"""

from __future__ import annotations

from typing import Annotated

import typer

from qhybrid import __version__
from qhybrid.cli.cache import cache_app
from qhybrid.cli.gateway import gateway_app
from qhybrid.cli.job import job_app
from qhybrid.cli.operator import operator_app
from qhybrid.cli.ops import drift, gameday, preflight
from qhybrid.cli.platform import platform_app
from qhybrid.cli.qaoa import run_qaoa_command  # noqa: F401 - registers `run qaoa`
from qhybrid.cli.run import plan, run_app
from qhybrid.cli.runs import runs_app, status
from qhybrid.cli.step import step_app
from qhybrid.cli.terminal import run_command
from qhybrid.cli.workflow import workflow_app

app = typer.Typer(
    no_args_is_help=True,
    help="Hybrid quantum-classical workflows: circuit cutting, its platform and its test harness.",
)
app.add_typer(run_app, name="run")
app.add_typer(step_app, name="step")
app.add_typer(workflow_app, name="workflow")
app.add_typer(platform_app, name="platform")
app.add_typer(gateway_app, name="gateway")
app.add_typer(runs_app, name="runs")
app.add_typer(cache_app, name="cache")
app.add_typer(job_app, name="job")
app.add_typer(operator_app, name="operator")
app.command("plan")(plan)
app.command("status")(status)
app.command("gameday")(gameday)
app.command("drift")(drift)
app.command("preflight")(preflight)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"qhybrid {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print qhybrid's version and exit."
        ),
    ] = False,
) -> None:
    """Hybrid quantum-classical workflows: circuit cutting, its platform and its test harness."""


def run_in_process(args: list[str]) -> int:
    """Run ``qhybrid ARGS`` in this process, as a workflow pod's container would; return its exit code."""
    return run_command(typer.main.get_command(app), args)


def main() -> None:
    """Entry point of the ``qhybrid`` console script."""
    app(prog_name="qhybrid")
