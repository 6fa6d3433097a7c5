"""The ``qhybrid`` command line."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from qhybrid.errors import InputError, QhybridError
from qhybrid.gateway.cli import gateway_app
from qhybrid.options import (
    DEFAULT_SHOTS,
    SCENARIO_NAME,
    CircuitFile,
    GatewayBackend,
    GatewayTokenFile,
    GatewayUrl,
    MaxWidth,
    ModeOption,
    ObservableText,
    Partition,
    PolicyOption,
    Qubits,
    Reps,
    Seed,
    Shots,
)
from qhybrid.problem import RunSpec, read_circuit_file
from qhybrid.workflow.cli import workflow_app

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
run_app = typer.Typer(no_args_is_help=True, help="Run a workflow end to end on this machine.")
step_app = typer.Typer(no_args_is_help=True, help="Run one step of a workflow over a run directory.")
app.add_typer(run_app, name="run")
app.add_typer(step_app, name="step")
app.add_typer(gateway_app, name="gateway")
app.add_typer(workflow_app, name="workflow")


def _use_gateway(url: str | None, token_file: Path | None, backend: str | None) -> None:
    """Hand the gateway settings to the qpu backend, here and in worker processes (via the environment).

    Only the token file's path travels, never the token.
    """
    import os

    for name, value in (
        ("QHYBRID_GATEWAY_URL", url),
        ("QHYBRID_GATEWAY_TOKEN_FILE", None if token_file is None else str(token_file.resolve())),
        ("QHYBRID_GATEWAY_BACKEND", backend),
    ):
        if value is not None:
            os.environ[name] = value


def _spec(
    *,
    qubits: int | None,
    reps: int | None,
    circuit: Path | None,
    observable: str | None,
    partition: str | None,
    max_width: int | None,
    mode: str | None,
    shots: int | None,
    seed: int | None,
    policy: str | None,
) -> RunSpec:
    """Build a spec from flags, reading files and filling defaults."""
    resolved_mode = mode or "exact"
    if resolved_mode == "sampled" and shots is None:
        shots = DEFAULT_SHOTS
    common: dict[str, Any] = {
        "observable": None,
        "partition": partition,
        "max_width": max_width,
        "mode": resolved_mode,
        "shots": shots,
        "seed": 0 if seed is None else seed,
        "policy": policy or "cpu",
    }
    if circuit is not None:
        if qubits is not None or reps is not None:
            raise InputError("--qubits/--reps", "shape only the reference circuit; drop them with --circuit")
        text, parsed = read_circuit_file(circuit)
        common["observable"] = _normalised_observable(observable, parsed.num_qubits)
        return RunSpec(circuit_qasm=text, circuit_source=str(circuit), **common)
    from qhybrid.scenarios import SCENARIOS

    width = qubits or SCENARIOS[SCENARIO_NAME].default_qubits
    common["observable"] = _normalised_observable(observable, width)
    return RunSpec(scenario=SCENARIO_NAME, qubits=qubits, reps=reps, **common)


def _normalised_observable(value: str | None, num_qubits: int) -> str | None:
    """Read an observable flag (expression or file) into the exact text a spec stores."""
    if value is None:
        return None
    from qhybrid.observables import format_pauli_sum, load_observable

    return format_pauli_sum(load_observable(value, num_qubits))


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn a QhybridError into one unwrapped line on stderr and exit code 2."""
    try:
        yield
    except QhybridError as error:
        message = " ".join(str(error).split())
        sys.stderr.write(f"qhybrid: error: {message}\n")
        raise typer.Exit(2) from None


@run_app.command("cutting")
def run_cutting(
    qubits: Qubits = None,
    reps: Reps = None,
    circuit: CircuitFile = None,
    observable: ObservableText = None,
    partition: Partition = None,
    max_width: MaxWidth = None,
    mode: ModeOption = None,
    shots: Shots = None,
    seed: Seed = None,
    policy: PolicyOption = None,
    workers: Annotated[int, typer.Option(help="Worker processes for the execute step.")] = 1,
    batch_size: Annotated[int, typer.Option(help="Unique subexperiments per execute task.")] = 64,
    out: Annotated[
        Path | None, typer.Option(help="Run directory [default: runs/cutting-<spec hash>].")
    ] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue the run in this directory.")] = None,
    gateway_url: GatewayUrl = None,
    gateway_token_file: GatewayTokenFile = None,
    gateway_backend: GatewayBackend = None,
) -> None:
    """Cut a circuit, run its subexperiments, reconstruct the observable, compare with exact."""
    from qhybrid.rundir import RunDir
    from qhybrid.runner import run_local

    _use_gateway(gateway_url, gateway_token_file, gateway_backend)
    with _user_errors():
        flags: dict[str, Any] = {
            "qubits": qubits,
            "reps": reps,
            "circuit": circuit,
            "observable": observable,
            "partition": partition,
            "max_width": max_width,
            "mode": mode,
            "shots": shots,
            "seed": seed,
            "policy": policy,
        }
        if resume is not None:
            if out is not None and out.resolve() != resume.resolve():
                raise InputError("--out", "give --resume DIR alone; it is the output directory")
            spec = RunDir(resume).read_spec()
            if any(value is not None for value in flags.values()):
                given = _spec(**flags)
                if given.spec_hash() != spec.spec_hash():
                    raise InputError(
                        "--resume", f"{resume} holds a run with other inputs; drop the flags to resume it"
                    )
            out = resume
        else:
            spec = _spec(**flags)
            out = out or Path("runs") / f"cutting-{spec.spec_hash()[:12]}"
        report = run_local(spec, out, workers=workers, batch_size=batch_size)
    from qhybrid.report import summary_text

    sys.stdout.write(summary_text(report))
    sys.stdout.write(f"report          {out / 'report.json'}\n")


@step_app.command("generate")
def step_generate(
    out: Annotated[Path, typer.Option(help="Run directory to create.")],
    qubits: Qubits = None,
    reps: Reps = None,
    circuit: CircuitFile = None,
    observable: ObservableText = None,
    partition: Partition = None,
    max_width: MaxWidth = None,
    mode: ModeOption = None,
    shots: Shots = None,
    seed: Seed = None,
    policy: PolicyOption = None,
    gateway_url: GatewayUrl = None,
    gateway_token_file: GatewayTokenFile = None,
    gateway_backend: GatewayBackend = None,
    check_backends: Annotated[
        bool,
        typer.Option(
            help="Check here that every planned backend can run (off in a workflow's generate pod)."
        ),
    ] = True,
) -> None:
    """Partition the problem and write its unique subexperiments (QPY) and manifest."""
    from qhybrid.rundir import RunDir
    from qhybrid.steps import generate

    _use_gateway(gateway_url, gateway_token_file, gateway_backend)
    with _user_errors():
        spec = _spec(
            qubits=qubits,
            reps=reps,
            circuit=circuit,
            observable=observable,
            partition=partition,
            max_width=max_width,
            mode=mode,
            shots=shots,
            seed=seed,
            policy=policy,
        )
        counts = generate(RunDir(out), spec, check_backends=check_backends)["counts"]
    print(f"{counts['unique']} unique subexperiments ({counts['subexperiments']} in all) in {out}")


@step_app.command("execute")
def step_execute(
    run_dir: Annotated[Path, typer.Option(help="Run directory.")],
    start: Annotated[int, typer.Option(help="First unique subexperiment.")] = 0,
    stop: Annotated[int | None, typer.Option(help="One past the last [default: all].")] = None,
    backend: Annotated[
        str | None,
        typer.Option(help="Run only those of [start, stop) planned on this backend (a workflow branch)."),
    ] = None,
    gateway_url: GatewayUrl = None,
    gateway_token_file: GatewayTokenFile = None,
    gateway_backend: GatewayBackend = None,
) -> None:
    """Execute unique subexperiments [start, stop) and write their results."""
    from qhybrid.rundir import RunDir
    from qhybrid.steps import execute

    _use_gateway(gateway_url, gateway_token_file, gateway_backend)
    with _user_errors():
        directory = RunDir(run_dir)
        end = stop if stop is not None else directory.read_manifest()["counts"]["unique"]
        reply = execute(directory, start, end, backend)
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
        int | None, typer.Option(help="Subexperiments per pod instead of one batch per slot.")
    ] = None,
) -> None:
    """Split each branch's unique subexperiments into batches (JSON lists for Argo's withParam)."""
    from qhybrid import atomic
    from qhybrid.rundir import RunDir
    from qhybrid.workflow.batching import parse_slots, split_batches

    with _user_errors():
        manifest = RunDir(run_dir).read_manifest()
        backends = [entry["backend"] for entry in manifest["plan"]["unique"]]
        batches = split_batches(backends, parse_slots(slots), per_pod)
        for name, items in batches.items():
            atomic.write_text(out_dir / f"{name}.json", json.dumps(items, separators=(",", ":")))
    for name, items in batches.items():
        print(f"{name}: {sum(b['count'] for b in items)} unique subexperiments in {len(items)} batches")


@step_app.command("reconstruct")
def step_reconstruct(run_dir: Annotated[Path, typer.Option(help="Run directory.")]) -> None:
    """Combine all results into the estimate (and the exact value when feasible)."""
    from qhybrid.rundir import RunDir
    from qhybrid.steps import reconstruct_run

    with _user_errors():
        result = reconstruct_run(RunDir(run_dir))
    print(f"estimate {result['estimate']!r} standard error {result['standard_error']!r}")


@step_app.command("report")
def step_report(run_dir: Annotated[Path, typer.Option(help="Run directory.")]) -> None:
    """Write report.json, summary.txt and terms.png."""
    from qhybrid.report import build_report, summary_text
    from qhybrid.rundir import RunDir

    with _user_errors():
        report = build_report(RunDir(run_dir))
    sys.stdout.write(summary_text(report))


@app.command("render")
def render(
    stack: Annotated[str, typer.Option(help="Stack name: stacks/Pulumi.<stack>.yaml.")] = "kind",
    out: Annotated[Path, typer.Option(help="Directory for the YAML files.")] = Path("rendered"),
) -> None:
    """Write every manifest the blueprint builds for a stack (not the upstream charts) as YAML."""
    from qhybrid.blueprint.config import load_stack_file
    from qhybrid.blueprint.render import write_rendered

    with _user_errors():
        config = load_stack_file(stack)
        written = write_rendered(config, out / stack)
    for path in written:
        sys.stdout.write(f"{path}\n")


@app.command("gameday")
def gameday(
    local: Annotated[
        bool, typer.Option("--local", help="Run the local experiments (the only kind here).")
    ] = False,
    out: Annotated[Path, typer.Option(help="Report directory (must not hold earlier results).")] = Path(
        "runs/gameday"
    ),
    only: Annotated[list[str] | None, typer.Option(help="Run only this experiment; repeatable.")] = None,
) -> None:
    """Run the chaos experiments; write journals, summary.json/.txt and timeline.png; fail on any miss."""
    from qhybrid.gameday import passed, run_gameday

    with _user_errors():
        if not local:
            raise InputError(
                "--local",
                "only local game days run from here; chaos/experiments/cluster/*.json run with "
                "`chaos run` against a cluster",
            )
        rows = run_gameday(out, only)
    sys.stdout.write((out / "summary.txt").read_text(encoding="utf-8"))
    sys.stdout.write(f"report          {out}\n")
    if not all(passed(row) for row in rows):
        raise typer.Exit(1)


@app.command(
    "drift",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def drift(ctx: typer.Context) -> None:
    """Drift report: two runs, or a fresh run against a baseline (see `qhybrid drift --help`)."""
    from qhybrid.drift import main as drift_main

    raise typer.Exit(drift_main(list(ctx.args)))


def main() -> None:
    """Entry point of the ``qhybrid`` console script."""
    app()
