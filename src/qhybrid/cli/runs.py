"""``qhybrid status DIR`` and ``qhybrid runs list``: where a run stands, and the runs made so far."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from qhybrid.cli.terminal import user_errors

runs_app = typer.Typer(no_args_is_help=True, help="Past runs in a folder.")


def status(run_dir: Annotated[Path, typer.Argument(help="Run directory.")]) -> None:
    """Say which steps of a run are done, which subexperiments are pending, and its estimate."""
    from qhybrid.pipeline.status import run_status, status_text

    with user_errors():
        text = status_text(run_status(run_dir))
    typer.echo(text, nl=False)


@runs_app.command("list")
def runs_list(
    root: Annotated[Path, typer.Option(help="Folder holding run directories.")] = Path("runs"),
) -> None:
    """List past runs, oldest first: date, label, problem, mode, estimate, error, wall time."""
    from qhybrid.pipeline.status import list_runs

    rows = list_runs(root)
    if not rows:
        typer.echo(f"no runs in {root}")
        return
    header = ("date", "label", "problem", "mode", "estimate", "error", "wall", "directory")
    table = [header] + [tuple(_cell(row, key) for key in header) for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


def _cell(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if value is None:
        return "-"
    if key == "estimate":
        return f"{value:+.10f}"
    if key == "error":
        return f"{value:+.2e}"
    if key == "wall":
        return f"{value:.1f}s"
    return str(value)
