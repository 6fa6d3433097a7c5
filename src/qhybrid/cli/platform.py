"""``qhybrid platform``: the platform blueprint, without Pulumi or a cluster."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from qhybrid.cli.errors import user_errors
from qhybrid.cli.options import ProjectDir, Stack

platform_app = typer.Typer(no_args_is_help=True, help="The platform blueprint: render its manifests.")


@platform_app.command("render")
def render(
    stack: Stack = "kind",
    project_dir: ProjectDir = None,
    out: Annotated[Path, typer.Option(help="Directory for the YAML files (a folder per stack).")] = Path(
        "rendered"
    ),
) -> None:
    """Write every manifest the blueprint builds for a stack (not the upstream charts) as YAML."""
    from qhybrid.blueprint.config import load_stack_file
    from qhybrid.blueprint.render import write_rendered

    with user_errors():
        config = load_stack_file(stack, project_dir=project_dir)
        written = write_rendered(config, out / stack)
    for path in written:
        sys.stdout.write(f"{path}\n")
