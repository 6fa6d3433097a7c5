"""``qhybrid step``: one step of a workflow over a run directory (what a workflow's pods run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from qhybrid.backends import GatewaySettings
from qhybrid.cache.session import CacheSettings
from qhybrid.cli.options import gateway_options, problem_options, step_cache_options
from qhybrid.cli.terminal import print_report, user_errors
from qhybrid.spec import ProblemFlags

step_app = typer.Typer(no_args_is_help=True, help="Run one step of a workflow over a run directory.")


@step_app.command("generate")
@step_cache_options
@gateway_options
@problem_options
def step_generate(
    problem: ProblemFlags,
    gateway: GatewaySettings,
    cache: CacheSettings,
    out: Annotated[Path, typer.Option(help="Run directory to create.")],
    check_backends: Annotated[
        bool,
        typer.Option(
            help="Check here that every planned backend can run (off in a workflow's generate pod)."
        ),
    ] = True,
    shot_budget: Annotated[
        int | None, typer.Option(help="Refuse a plan that would draw more QPU shots than this.")
    ] = None,
    prices: Annotated[
        str | None,
        typer.Option(
            help="The price table the report prices the run with, as JSON (a workflow passes its stack's)."
        ),
    ] = None,
) -> None:
    """Partition the problem and write its unique subexperiments (QPY) and manifest."""
    from qhybrid.cost import prices_from_text
    from qhybrid.pipeline.gc_pacing import fewer_collections
    from qhybrid.pipeline.generate import generate
    from qhybrid.pipeline.rundir import RunDir
    from qhybrid.spec import spec_from_flags

    with user_errors(), fewer_collections():
        spec = spec_from_flags(problem)
        manifest = generate(
            RunDir(out), spec, check_backends=check_backends, gateway=gateway, cache=cache,
            shot_budget=shot_budget, prices=None if prices is None else prices_from_text(prices),
        )  # fmt: skip
    counts = manifest["counts"]
    cached = manifest.get("cached_before_execute", 0)
    print(
        f"{counts['unique']} unique subexperiments ({counts['subexperiments']} in all) in {out}"
        + (f"; {cached} already in the cache" if cached else "")
    )


@step_app.command("execute")
@step_cache_options
@gateway_options
def step_execute(
    gateway: GatewaySettings,
    cache: CacheSettings,
    run_dir: Annotated[Path, typer.Option(help="Run directory.")],
    start: Annotated[int, typer.Option(help="First unique subexperiment.")] = 0,
    stop: Annotated[int | None, typer.Option(help="One past the last.", show_default="all")] = None,
    backend: Annotated[
        str | None,
        typer.Option(help="Run only those of [start, stop) planned on this backend (a workflow branch)."),
    ] = None,
) -> None:
    """Execute unique subexperiments [start, stop) and write their results."""
    from qhybrid.pipeline.execute import execute
    from qhybrid.pipeline.gc_pacing import fewer_collections
    from qhybrid.pipeline.rundir import RunDir

    with user_errors(), fewer_collections():
        directory = RunDir(run_dir)
        end = stop if stop is not None else directory.generated().manifest["counts"]["unique"]
        reply = execute(directory, start, end, backend, gateway=gateway, cache=cache)
    state = "already done" if reply["skipped"] else f"simulated in {reply['simulation_seconds']:.3f}s"
    which = "" if backend is None else f" on {backend}"
    print(f"subexperiments [{start}, {end}){which} {state}")


@step_app.command("batches")
def step_batches(
    run_dir: Annotated[Path, typer.Option(help="Run directory (generate has finished).")],
    out_dir: Annotated[Path, typer.Option(help="Where to write <branch>.json, one per branch.")],
    slots: Annotated[
        list[str], typer.Option("--slots", help="BRANCH=N: pods the branch's queue admits at once.")
    ],
    per_pod: Annotated[
        int | None,
        typer.Option(help="Subexperiments per pod instead of one batch per slot.", show_default="none"),
    ] = None,
) -> None:
    """Split each branch's unique subexperiments into batches (JSON lists for Argo's withParam)."""
    from qhybrid import atomic
    from qhybrid.pipeline.rundir import RunDir
    from qhybrid.workflow.batching import parse_slots, split_batches

    with user_errors():
        directory = RunDir(run_dir)
        backends = [entry.backend for entry in directory.generated().plan.unique]
        # Results generate already served from the cache need no pod.
        done = directory.done_ids(backends)
        batches = split_batches(backends, parse_slots(slots), per_pod, done)
        for name, items in batches.items():
            atomic.write_text(out_dir / f"{name}.json", json.dumps(items, separators=(",", ":")))
    for name, items in batches.items():
        print(f"{name}: {sum(b['count'] for b in items)} unique subexperiments in {len(items)} batches")
    if done:
        print(f"cached: {len(done)} unique subexperiments already have a result")


@step_app.command("reconstruct")
def step_reconstruct(run_dir: Annotated[Path, typer.Option(help="Run directory.")]) -> None:
    """Combine all results into the estimate (and the exact value when feasible)."""
    from qhybrid.pipeline.reconstruct import reconstruct_run
    from qhybrid.pipeline.rundir import RunDir

    with user_errors():
        result = reconstruct_run(RunDir(run_dir))
    print(f"estimate {result['estimate']!r} standard error {result['standard_error']!r}")


@step_app.command("report")
def step_report(
    run_dir: Annotated[Path, typer.Option(help="Run directory.")],
    plot: Annotated[
        bool,
        typer.Option(
            "--plot/--no-plot",
            help="Draw terms.png too (a workflow's report pod does: its cost is small beside the pod's).",
        ),
    ] = True,
) -> None:
    """Write report.json and summary.txt, and terms.png unless --no-plot."""
    from qhybrid.pipeline.report import build_report
    from qhybrid.pipeline.rundir import RunDir
    from qhybrid.pipeline.terms_plot import write_terms_plot

    with user_errors():
        directory = RunDir(run_dir)
        report = build_report(directory)
        if plot:
            write_terms_plot(directory)
    print_report(report)
