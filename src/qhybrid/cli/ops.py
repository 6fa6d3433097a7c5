"""``qhybrid gameday`` and ``qhybrid drift``: operating the engine (chaos game days, numeric drift)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from qhybrid.cli.options import ClusterAccess, StackChoice, cluster_options, stack_options
from qhybrid.cli.terminal import user_errors


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def gameday(
    out: Annotated[Path, typer.Option(help="Report directory (must not hold earlier results).")] = Path(
        "runs/gameday"
    ),
    only: Annotated[
        list[str] | None,
        typer.Option(help="Run only this experiment (a file stem); repeatable.", show_default="all"),
    ] = None,
) -> None:
    """Run the local chaos experiments (chaos/experiments/local) against processes on 127.0.0.1.

    Writes each journal, summary.json/.txt and timeline.png; exits 1 if any
    steady-state hypothesis fails. The cluster experiments (chaos/experiments/cluster)
    run with `chaos run` against a cluster.
    """
    from qhybrid.ops.gameday import SUMMARY_TEXT_FILE, passed, run_gameday

    with user_errors():
        rows = run_gameday(out, only, say=_say)
    sys.stdout.write((out / SUMMARY_TEXT_FILE).read_text(encoding="utf-8"))
    sys.stdout.write(f"report          {out}\n")
    if not all(passed(row) for row in rows):
        raise typer.Exit(1)


def drift(
    old: Annotated[
        Path | None,
        typer.Argument(
            metavar="OLD", help="report.json, run directory or baseline file.", show_default=False
        ),
    ] = None,
    new: Annotated[
        Path | None, typer.Argument(metavar="NEW", help="The same kinds.", show_default=False)
    ] = None,
    check: Annotated[
        Path | None,
        typer.Option(
            metavar="BASELINE",
            help="Run the reference workloads here and compare them with this baseline file "
            "(e.g. tests/reproducibility/baseline.json of a checkout).",
        ),
    ] = None,
    write_baseline: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Run the reference workloads; write a baseline.")
    ] = None,
    work: Annotated[
        Path | None, typer.Option(help="Where the reference runs go.", show_default="a temporary folder")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", metavar="FILE", help="Also write the report as JSON here.")
    ] = None,
) -> None:
    """Drift report: how the numbers of two runs differ, or fresh reference runs against a baseline.

    Exit 0 when nothing moved (or it moved with changed package versions: review it),
    1 when numbers moved with the same package versions (a reproducibility bug),
    2 on unusable input.
    """
    from qhybrid.ops.drift import run_drift

    with user_errors():
        code = run_drift(
            old=old, new=new, check=check, write_baseline=write_baseline, work=work, json_out=json_out
        )
    raise typer.Exit(code)


@stack_options
@cluster_options
def preflight(
    cluster: ClusterAccess,
    stack: StackChoice,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")] = False,
) -> None:
    """Check a cluster for the platform, before and after `pulumi up`; exit 1 on any failure.

    Server version, the CRDs we use, a server-side dry run (strict fields) of every
    object we create, Pod Security labels, node pools (labels, taints, GPUs), a default
    StorageClass and each service account's permissions (SubjectAccessReview).
    Nothing is created.
    """
    import json

    from rich.console import Console

    from qhybrid.ops.kubeapi import KubeApi
    from qhybrid.ops.preflight import as_json, as_table, failed, run_preflight, summary

    with user_errors():
        config = stack.load()
        api = KubeApi.from_kubeconfig(cluster.kubeconfig, cluster.context)
        rows = run_preflight(api, config)
    if json_output:
        sys.stdout.write(json.dumps(as_json(rows, config.stack), indent=1) + "\n")
    else:
        console = Console()
        console.print(as_table(rows))
        console.print(summary(rows))
    if failed(rows):
        raise typer.Exit(1)
