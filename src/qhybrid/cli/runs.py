"""``qhybrid status DIR`` and ``qhybrid runs list``: where a run stands, and the runs made so far."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from qhybrid.cli.terminal import user_errors
from qhybrid.errors import InputError

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


@runs_app.command("plot")
def runs_plot(run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")]) -> None:
    """Draw a finished run's terms.png: each term's contribution and its residual against the exact value."""
    from qhybrid.pipeline.rundir import RunDir
    from qhybrid.pipeline.terms_plot import write_terms_plot

    with user_errors():
        written = write_terms_plot(RunDir(run_dir))
    typer.echo(str(written))


@runs_app.command("track")
def runs_track(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
    track: Annotated[
        str, typer.Option(envvar="MLFLOW_TRACKING_URI", help="The MLflow tracking server to log the run to.")
    ],
) -> None:
    """Log a finished run to MLflow (again: a run already tracked there is not logged twice)."""
    from qhybrid import atomic
    from qhybrid.tracking.mlflow_runs import track_run

    with user_errors():
        report_file = run_dir / "report.json"
        if not report_file.is_file():
            raise InputError("RUN_DIR", f"{run_dir} holds no finished run (no report.json)")
        run_id = track_run(track, atomic.read_json(report_file), run_dir)
    typer.echo(f"{run_dir}: MLflow run {run_id} at {track}")


S3_ENDPOINT = typer.Option(envvar="QHYBRID_S3_ENDPOINT", help="The S3 endpoint URL (credentials: AWS_* env).")
S3_BUCKET = typer.Option(envvar="QHYBRID_S3_BUCKET", help="The bucket (the stack's artifactS3Bucket).")


@runs_app.command("push")
def runs_push(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
    endpoint: Annotated[str, S3_ENDPOINT],
    bucket: Annotated[str, S3_BUCKET],
    name: Annotated[
        str | None, typer.Option(help="Its name in the bucket.", show_default="the run directory's name")
    ] = None,
) -> None:
    """Upload a run's files to s3://BUCKET/qhybrid/NAME/, the layout a workflow's S3 artifacts use."""
    from qhybrid.tracking.objectstore import ObjectStore, push_run, run_prefix

    with user_errors():
        store = ObjectStore(endpoint=endpoint, bucket=bucket)
        key_name = name or run_dir.resolve().name
        written = push_run(store, run_dir, key_name)
    typer.echo(f"{len(written)} files sent to s3://{bucket}/{run_prefix(key_name)} (unchanged ones skipped)")


@runs_app.command("pull")
def runs_pull(
    name: Annotated[str, typer.Argument(help="The run's or workflow's name in the bucket.")],
    endpoint: Annotated[str, S3_ENDPOINT],
    bucket: Annotated[str, S3_BUCKET],
    out: Annotated[Path, typer.Option(help="Run directory to write.")],
) -> None:
    """Download s3://BUCKET/qhybrid/NAME/ (a pushed run, or a workflow's artifacts) into a run directory."""
    from qhybrid.tracking.objectstore import ObjectStore, pull_run

    with user_errors():
        written = pull_run(ObjectStore(endpoint=endpoint, bucket=bucket), name, out)
    typer.echo(f"{len(written)} files written to {out}")
