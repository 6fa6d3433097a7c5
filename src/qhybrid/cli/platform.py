"""``qhybrid platform``: the platform blueprint, without Pulumi or a cluster."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from qhybrid.cli.options import StackChoice, stack_options
from qhybrid.cli.terminal import user_errors

platform_app = typer.Typer(no_args_is_help=True, help="The platform blueprint: render its manifests.")


@platform_app.command("render")
@stack_options
def render(
    stack: StackChoice,
    out: Annotated[Path, typer.Option(help="Directory for the YAML files (a folder per stack).")] = Path(
        "rendered"
    ),
) -> None:
    """Write every manifest the blueprint builds for a stack (not the upstream charts) as YAML."""
    from qhybrid.blueprint.render import write_rendered

    with user_errors():
        written = write_rendered(stack.load(), out / stack.name)
    for path in written:
        sys.stdout.write(f"{path}\n")
