"""``qhybrid run qaoa``: the variational scenario, a QAOA MaxCut loop whose every energy is a cutting run."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from qhybrid.backends import GatewaySettings
from qhybrid.cache.session import CacheSettings
from qhybrid.cli.options import cache_options, gateway_options
from qhybrid.cli.run import run_app, stack_prices
from qhybrid.cli.terminal import user_errors
from qhybrid.spec import DEFAULT_POLICY, DEFAULT_SEED


@run_app.command("qaoa")
@cache_options
@gateway_options
def run_qaoa_command(
    gateway: GatewaySettings,
    cache: CacheSettings,
    graph: Annotated[str, typer.Option(help="ring, or regular3 (a random 3-regular graph).")] = "ring",
    nodes: Annotated[int, typer.Option(help="Graph nodes (qubits).")] = 12,
    layers: Annotated[int, typer.Option(help="QAOA layers p.")] = 1,
    graph_seed: Annotated[int, typer.Option(help="Seed of the random 3-regular graph.")] = 0,
    mode: Annotated[str, typer.Option(help="exact or sampled.")] = "exact",
    shots: Annotated[int | None, typer.Option(help="Shots per subexperiment (sampled mode).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the starting angles and of sampling.")] = DEFAULT_SEED,
    policy: Annotated[str, typer.Option(help="Backend policy, as for run cutting.")] = DEFAULT_POLICY,
    partition: Annotated[
        str | None, typer.Option(help="One label per node.", show_default="two halves")
    ] = None,
    max_width: Annotated[int | None, typer.Option(help="Find cuts automatically instead.")] = None,
    max_evaluations: Annotated[int, typer.Option(help="COBYLA's evaluation budget.")] = 40,
    workers: Annotated[int, typer.Option(help="Worker processes per evaluation.")] = 1,
    out: Annotated[Path, typer.Option(help="Output folder (resumes what is there).")] = Path("runs/qaoa"),
    quiet: Annotated[bool, typer.Option(help="No line per evaluation.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print qaoa.json's content on stdout.")] = False,
    track: Annotated[
        str | None,
        typer.Option(
            envvar="MLFLOW_TRACKING_URI",
            help="Log the loop to this MLflow tracking server: one run, one step per evaluation.",
        ),
    ] = None,
    prices: Annotated[
        str,
        typer.Option(
            help="Price each evaluation's usage with this stack's table (stacks/Pulumi.<stack>.yaml)."
        ),
    ] = "kind",
) -> None:
    """Maximise a graph's expected cut with QAOA and COBYLA; every energy is cut, run and reconstructed."""
    from qhybrid.pipeline.variational import QaoaSpec, run_qaoa, summary_lines

    tracker: Any = None  # a VariationalTracker with --track

    def progress(entry: dict) -> None:
        if tracker is not None:
            tracker.step(entry)
        if not quiet and not json_output:
            sys.stderr.write(
                f"evaluation {entry['evaluation']:>3}  energy {entry['energy']:+.10f}  "
                f"served {entry['served']}/{entry['unique']}\n"
            )

    with user_errors():
        spec = QaoaSpec(
            graph=graph, nodes=nodes, layers=layers, graph_seed=graph_seed, mode=mode, shots=shots, seed=seed,
            policy=policy, partition=partition, max_width=max_width, max_evaluations=max_evaluations,
        )  # fmt: skip
        price_table = stack_prices(prices)
        if track is not None:
            from qhybrid.tracking.mlflow_runs import VariationalTracker

            tracker = VariationalTracker(track, out.name, asdict(spec))
        result = run_qaoa(
            spec,
            out,
            cache=cache,
            gateway=gateway,
            workers=workers,
            on_evaluation=progress,
            prices=price_table,
        )
        if tracker is not None:
            tracker.finish(result, out)
    if json_output:
        sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
        return
    for line in summary_lines(result):
        typer.echo(line)
    typer.echo(f"trace           {out / 'qaoa.json'}, {out / 'qaoa.png'}")
