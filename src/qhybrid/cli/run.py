"""``qhybrid run`` and ``qhybrid plan``: a workflow end to end on this machine, or its cost first."""

from __future__ import annotations

import errno
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from qhybrid.backends import GatewaySettings
from qhybrid.cache.session import CacheSettings
from qhybrid.cli.options import cache_options, gateway_options, problem_options
from qhybrid.cli.terminal import EXIT_FAILED_OVER, print_report, user_errors, warn
from qhybrid.cost import PriceTable
from qhybrid.errors import InputError, QhybridError
from qhybrid.pipeline.runner import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS
from qhybrid.spec import ProblemFlags, RunSpec

run_app = typer.Typer(no_args_is_help=True, help="Run a workflow end to end on this machine.")

# Above this many subexperiments (duplicates included) `run` shows the plan and stops,
# unless --max-subexperiments is raised: the reference workload has 432.
DEFAULT_MAX_SUBEXPERIMENTS = 20_000


@run_app.command("cutting")
@cache_options
@gateway_options
@problem_options
def run_cutting(
    problem: ProblemFlags,
    gateway: GatewaySettings,
    cache: CacheSettings,
    workers: Annotated[int, typer.Option(help="Worker processes for the execute step.")] = DEFAULT_WORKERS,
    batch_size: Annotated[
        int, typer.Option(help="Unique subexperiments per execute task.")
    ] = DEFAULT_BATCH_SIZE,
    out: Annotated[
        Path | None,
        typer.Option(help="Run directory.", show_default="runs/<date>-<scenario or circuit>-<spec hash>"),
    ] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue the run in this directory.")] = None,
    label: Annotated[str | None, typer.Option(help="A name for the run, shown by `runs list`.")] = None,
    max_subexperiments: Annotated[
        int, typer.Option(help="Refuse (showing the plan) a problem with more subexperiments.")
    ] = DEFAULT_MAX_SUBEXPERIMENTS,
    dry_run: Annotated[bool, typer.Option(help="Print the plan and its cost; run nothing.")] = False,
    shards: Annotated[
        bool | None,
        typer.Option(
            "--shards/--no-shards",
            help="Write each subexperiment as QPY (default: only with --workers > 1, whose "
            "processes read them).",
        ),
    ] = None,
    plot: Annotated[
        bool,
        typer.Option(
            "--plot/--no-plot",
            help="Draw terms.png in the run directory too (later: qhybrid runs plot DIR).",
        ),
    ] = False,
    strict: Annotated[
        bool, typer.Option(help=f"Exit {EXIT_FAILED_OVER} when any subexperiment failed over.")
    ] = False,
    quiet: Annotated[bool, typer.Option(help="No progress display.")] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object on stdout.")
    ] = False,
    sweep: Annotated[
        str | None,
        typer.Option(
            help="Run a sweep instead: LABEL=START:STOP:N adds N offsets (START to STOP) to the "
            "rotation angles on partition LABEL; one run per point under OUT/points."
        ),
    ] = None,
    prices: Annotated[
        str,
        typer.Option(help="Price the run's usage with this stack's table (stacks/Pulumi.<stack>.yaml)."),
    ] = "kind",
    track: Annotated[
        str | None,
        typer.Option(
            envvar="MLFLOW_TRACKING_URI",
            help="Log the run to this MLflow tracking server (params, metrics, provenance tags, artifacts).",
        ),
    ] = None,
) -> None:
    """Cut a circuit, run its subexperiments, reconstruct the observable, compare with exact."""
    from qhybrid.pipeline.rundir import RunDir
    from qhybrid.pipeline.runner import run_local

    with user_errors():
        price_table = stack_prices(prices)
        if resume is not None:
            if out is not None and out.resolve() != resume.resolve():
                raise InputError("--out", "give --resume DIR alone; it is the output directory")
            spec = resumed_spec(resume, problem)
            out = resume
        else:
            spec = checked_spec(problem, max_subexperiments, show_plan=dry_run)
            if dry_run:
                return
            out = out or default_run_dir(spec)
            check_writable(out)
        if sweep is not None:
            from qhybrid.pipeline.sweep import Sweep, run_sweep

            table = run_sweep(
                spec,
                Sweep.parse(sweep),
                out,
                cache=cache,
                gateway=gateway,
                workers=workers,
                prices=price_table,
            )
            print_sweep(table, out, as_json=json_output)
            return
        report = run_local(
            spec,
            out,
            workers=workers,
            batch_size=batch_size,
            gateway=gateway,
            progress=not quiet and not json_output,
            keep_shards=shards,
            label=label,
            cache=cache,
            prices=price_table,
            plot=plot,
        )
        tracked = track_finished_run(track, report, out) if track is not None else None
    if json_output:
        summary = json_summary(report, RunDir(out)) | ({"mlflow_run_id": tracked} if tracked else {})
        sys.stdout.write(json.dumps(summary, sort_keys=True) + "\n")
    elif not quiet:
        print_report(report, RunDir(out).report_file)
    failovers = report["provenance"]["failovers"]
    if failovers:
        reasons = sorted({f["reason"] for f in failovers})
        warn(
            f"{len(failovers)} of {len(report['provenance']['backend_per_subexperiment'])} unique "
            f"subexperiments failed over from {failovers[0]['from']} to {failovers[0]['to']}: {reasons[0]}"
            + (f" (and {len(reasons) - 1} other reasons)" if len(reasons) > 1 else "")
        )
        if strict:
            raise typer.Exit(EXIT_FAILED_OVER)


def print_sweep(table: dict[str, Any], out: Path, *, as_json: bool) -> None:
    """Print a sweep's table (or its JSON)."""
    if as_json:
        sys.stdout.write(json.dumps({**table, "out": str(out)}, sort_keys=True) + "\n")
        return
    sys.stdout.write("point  offset              estimate           exact              served\n")
    for row in table["rows"]:
        exact = "-" if row["exact"] is None else f"{row['exact']:+.12f}"
        sys.stdout.write(
            f"{row['point']:>5}  {row['offset']:<18.12g}  {row['estimate']:+.12f}  {exact:<17}  "
            f"{row['served']}/{row['unique']}\n"
        )
    sys.stdout.write(
        f"cache           {table['served_from_cache']} of {table['unique']} unique subexperiments served "
        f"({table['share_served']:.1%})\nsweep           {out / 'sweep.json'}, {out / 'sweep.png'}\n"
    )


def resumed_spec(resume: Path, problem: ProblemFlags) -> RunSpec:
    """Return the spec of the run in ``resume``; flags given with --resume must agree with it."""
    from qhybrid.pipeline.rundir import RunDir
    from qhybrid.spec import PROBLEM_FLAGS

    spec = RunDir(resume).read_spec()
    for flag in PROBLEM_FLAGS:
        given = problem.get(flag.name)
        if given is None or flag.name in ("circuit", "observable", "max_qpd_terms"):
            continue
        if given != getattr(spec, flag.name):
            raise InputError(
                flag.flag,
                f"{resume} holds a run with {flag.flag} {getattr(spec, flag.name)}, not {given}; "
                f"drop {flag.flag} to resume it, or start a new run with --out",
            )
    if problem.get("circuit") is not None or problem.get("observable") is not None:
        from qhybrid.spec import spec_from_flags

        if spec_from_flags(problem).spec_hash() != spec.spec_hash():
            raise InputError(
                "--resume", f"{resume} holds a run with other inputs; drop the flags to resume it"
            )
    return spec


def checked_spec(problem: ProblemFlags, max_subexperiments: int, *, show_plan: bool) -> RunSpec:
    """Build the spec; print the plan when asked, and refuse one over ``max_subexperiments``."""
    from qhybrid.pipeline.preview import preview, preview_text
    from qhybrid.spec import problem_of, spec_from_flags

    spec = spec_from_flags(problem)
    if show_plan:
        sys.stdout.write(preview_text(preview(spec)))
        return spec
    if max_subexperiments < 1:
        raise InputError("--max-subexperiments", f"must be at least 1, got {max_subexperiments}")
    from qhybrid.cutting.plan import count_subexperiments

    cut = problem_of(spec)
    total, _ = count_subexperiments(cut.subcircuits, cut.subobservables)
    if total > max_subexperiments:
        sys.stderr.write(preview_text(preview(spec)))
        raise InputError(
            "--max-subexperiments",
            f"this problem has {total} subexperiments, over the limit of {max_subexperiments} "
            "(the plan above shows their cost); raise --max-subexperiments to run it",
        )
    return spec


def default_run_dir(spec: RunSpec, root: Path = Path("runs")) -> Path:
    """Return ``runs/<date>-<scenario or circuit stem>-<short spec hash>``."""
    stem = spec.scenario or Path(spec.circuit_source or "circuit").stem
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in stem)[:40] or "circuit"
    return root / f"{datetime.now(UTC):%Y-%m-%d}-{safe}-{spec.spec_hash()[:8]}"


def check_writable(out: Path) -> None:
    """Fail, creating nothing, when ``out`` cannot be created or written."""
    existing = out
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise InputError("--out", f"cannot write {out}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        read_only = os.statvfs(existing).f_flag & os.ST_RDONLY
        raise InputError(
            "--out", f"cannot write {out}: {os.strerror(errno.EROFS if read_only else errno.EACCES)}"
        )


def stack_prices(stack: str) -> PriceTable:
    """The price table of ``stacks/Pulumi.<stack>.yaml`` (``--prices``); a bad stack names the flag."""
    from qhybrid.blueprint.config import load_stack_file

    try:
        return load_stack_file(stack).prices
    except InputError as error:
        raise InputError("--prices", error.problem) from None


def track_finished_run(uri: str, report: dict[str, Any], out: Path) -> str:
    """Log a finished run to MLflow; a failure says the run itself is safe and how to track it later."""
    from qhybrid.tracking.mlflow_runs import track_run

    try:
        run_id = track_run(uri, report, out)
    except QhybridError as error:
        raise QhybridError(
            f"the run finished ({out / 'report.json'}) but was not tracked: {error}; "
            f"retry with `qhybrid runs track {out} --track {uri}`"
        ) from None
    warn(f"tracked as MLflow run {run_id} at {uri}")
    return run_id


def json_summary(report: dict[str, Any], run_dir: Any) -> dict[str, Any]:
    """Return the report's summary for scripts: the same values as report.json, and where it is."""
    provenance = report["provenance"]
    return {
        "run_dir": str(run_dir.root),
        "report": str(run_dir.report_file),
        "estimate": report["estimate"],
        "standard_error": report["standard_error"],
        "exact": report["exact"],
        "error": report["error"],
        "mode": provenance["mode"],
        "policy": provenance["policy"],
        "seed": provenance["seed"],
        "shots": provenance["shots"],
        "spec_hash": provenance["spec_hash"],
        "counts": report["counts"],
        "failed_over": len(provenance["failovers"]),
        "timings": report["timings"],
    }


def plan(
    problem: ProblemFlags,
    workers: Annotated[int, typer.Option(help="Worker processes the run would use.")] = DEFAULT_WORKERS,
    json_output: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Show the cuts, the subexperiment counts and the estimated memory, disk and time; run nothing."""
    from qhybrid.pipeline.preview import preview, preview_text
    from qhybrid.spec import spec_from_flags

    with user_errors():
        facts = preview(spec_from_flags(problem), workers=workers)
    sys.stdout.write(json.dumps(facts, sort_keys=True) + "\n" if json_output else preview_text(facts))


plan = problem_options(plan)
