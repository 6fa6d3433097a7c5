"""Benchmark qhybrid's circuit cutting against the plain qiskit-addon-cutting flow.

Everything runs in one process; every ratio is taken against a baseline measured
in that same process, and nothing asserts on time. Imports happen before any
timer starts, the CPU simulator is built once before timing, and one qhybrid
warm-up run (in its own temporary directory) warms caches, so both sides are
measured warm. What is measured:

1. Plain flow on the reference workload (10 qubits, reps 3, seed 0, halves):
   ``partition_problem`` + ``generate_cutting_experiments(num_samples=inf)`` +
   Aer ``SamplerV2`` (4096 shots) per partition + ``reconstruct_expectation_values``.
2. qhybrid exact mode via ``run_local``: ``timings["total_wall"]`` (generate, execute,
   reconstruct, every file written: the plain flow's work) is the target; the whole
   run including the report step (JSON, summary, PNG plot) is printed for information.
3. qhybrid sampled mode at 4096 shots.
4. Reconstruction alone on identical counts: qhybrid's vectorised ``reconstruct``
   versus ``reconstruct_expectation_values`` on the step-1 sampler results.
5. 24 qubits / 4 cuts in exact mode (skip with ``--skip-24``).
6. Local orchestration overhead: the execute step's wall time over the summed time
   inside the backends, and the whole run's wall time over all of its compute
   (generation, simulation, reconstruction, exact reference).

Each target line ends with PASS or MISS.

Usage:
    .venv/bin/python benchmarks/bench_cutting.py [--skip-24] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from qiskit_addon_cutting import (
    generate_cutting_experiments,
    partition_problem,
    reconstruct_expectation_values,
)
from qiskit_aer.primitives import SamplerV2
from rich.console import Console
from rich.table import Table

from qhybrid import scenarios
from qhybrid.backends import get_backend
from qhybrid.cutting.plan import build_plan
from qhybrid.cutting.policies import get_policy
from qhybrid.cutting.reconstruct import distribution_from_sampler_pub, reconstruct
from qhybrid.pipeline.runner import run_local
from qhybrid.spec import RunSpec

SCENARIO = scenarios.CUTTING
QUBITS, REPS, SEED, SHOTS = 10, 3, 0, 4096
QHYBRID_RECONSTRUCT_REPEATS = 5
console = Console()


def plain_flow() -> dict[str, Any]:
    """Run the plain qiskit-addon-cutting flow, timing each phase."""
    circuit = SCENARIO.circuit(QUBITS, REPS, SEED)
    observable = SCENARIO.observable(QUBITS)
    t: dict[str, float] = {}
    start = time.perf_counter()
    labels = list(SCENARIO.partition(QUBITS))
    problem = partition_problem(circuit, labels, observables=observable.paulis)
    t["partition"] = time.perf_counter() - start
    mark = time.perf_counter()
    subexperiments, coefficients = generate_cutting_experiments(
        circuits=problem.subcircuits, observables=problem.subobservables, num_samples=np.inf
    )
    t["generate"] = time.perf_counter() - mark
    mark = time.perf_counter()
    sampler = SamplerV2(default_shots=SHOTS, seed=SEED)
    results = {label: sampler.run(subexperiments[label]).result() for label in subexperiments}
    t["sample"] = time.perf_counter() - mark
    mark = time.perf_counter()
    values = reconstruct_expectation_values(results, coefficients, problem.subobservables)
    t["reconstruct"] = time.perf_counter() - mark
    t["total"] = time.perf_counter() - start
    coeffs = observable.coeffs.real.copy()
    return {
        "timings": t,
        "estimate": float(np.dot(values, coeffs)),
        "coeffs": coeffs,
        "subexperiments": subexperiments,
        "coefficients": coefficients,
        "subobservables": problem.subobservables,
        "results": results,
    }


def timed_run(spec: RunSpec) -> tuple[float, dict[str, Any]]:
    """Run ``spec`` with run_local (one worker) in a fresh temporary directory."""
    with tempfile.TemporaryDirectory(prefix="bench-cutting-") as tmp:
        start = time.perf_counter()
        report = run_local(spec, Path(tmp) / "run", workers=1, console=Console(quiet=True))
        return time.perf_counter() - start, report


def reconstruction_comparison(plain: dict[str, Any]) -> dict[str, Any]:
    """Time both reconstructions on the same SamplerV2 counts and compare their values."""
    subexperiments, results = plain["subexperiments"], plain["results"]
    plan, _circuits = build_plan(
        subexperiments,
        plain["coefficients"],
        plain["subobservables"],
        policy=get_policy("cpu"),
        run_seed=SEED,
        dedupe=False,
    )
    # build_plan enumerates labels (subobservables order), then positions: one unique id each.
    distributions = [
        distribution_from_sampler_pub(results[label][i].data)
        for label in plan.labels
        for i in range(len(subexperiments[label]))
    ]
    assert len(distributions) == len(plan.unique) == plan.num_subexperiments
    start = time.perf_counter()
    values = np.asarray(
        reconstruct_expectation_values(results, plain["coefficients"], plain["subobservables"])
    )
    plain_seconds = time.perf_counter() - start
    times = []
    for _ in range(QHYBRID_RECONSTRUCT_REPEATS):
        start = time.perf_counter()
        ours = reconstruct(plan, distributions, plain["coeffs"])
        times.append(time.perf_counter() - start)
    ours_seconds = statistics.median(times)
    return {
        "plain_seconds": plain_seconds,
        "qhybrid_seconds": ours_seconds,
        "speedup": plain_seconds / ours_seconds,
        "max_term_diff": float(np.max(np.abs(ours.term_values - values))),
        "estimate_diff": abs(ours.estimate - float(np.dot(values, plain["coeffs"]))),
    }


def fmt(timings: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f}s" for k, v in timings.items())


def summary(report: dict[str, Any], wall: float) -> dict[str, Any]:
    keys = ("timings", "estimate", "standard_error", "exact", "error", "counts")
    return {"wall": wall, **{k: report[k] for k in keys}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-24", action="store_true", help="skip the 24-qubit / 4-cut case")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write all figures as JSON")
    args = parser.parse_args()
    say = console.print
    figures: dict[str, Any] = {}
    checks: list[tuple[str, str, str, bool]] = []  # (what, measured, target, ok)

    def check(what: str, value: float, shown: str, target: str, ok: bool) -> None:
        checks.append((what, shown.format(value), target, ok))

    console.rule(f"1. plain flow (qiskit-addon-cutting + Aer SamplerV2, {SHOTS} shots)")
    plain = plain_flow()
    plain_total = plain["timings"]["total"]
    say(f"timings: {fmt(plain['timings'])}")
    say(f"estimate {plain['estimate']:+.12f}")

    get_backend("cpu")  # simulator construction is not part of any timing
    timed_run(RunSpec(scenario="cutting", seed=SEED))  # warm-up, in its own temp dir

    console.rule("2. qhybrid exact mode, 10 qubits (run_local, workers=1)")
    wall, exact = timed_run(RunSpec(scenario="cutting", seed=SEED))
    compute = exact["timings"]["total_wall"]
    say(f"run_local wall {wall:.3f}s; report timings: {fmt(exact['timings'])}")
    say(
        f"estimate {exact['estimate']:+.15f}, exact {exact['exact']:+.15f}, "
        f"error {exact['error']:+.2e}; counts {exact['counts']}"
    )
    say(f"plain flow's error vs exact {plain['estimate'] - exact['exact']:+.3e}")
    figures["plain"] = {**plain["timings"], "estimate": plain["estimate"]}
    figures["exact_10"] = summary(exact, wall)
    ratio, ratio_compute = plain_total / wall, plain_total / compute
    # Like for like: the plain flow partitions, generates, samples and reconstructs, and
    # so does total_wall (plus writing every file); the report step's JSON, summary and
    # PNG have no counterpart in the plain flow, so the whole run is shown for information.
    check(
        "exact: plain total / qhybrid generate+execute+reconstruct (total_wall)",
        ratio_compute,
        "{:.1f}x",
        ">= 50x",
        ratio_compute >= 50,
    )
    check("exact: plain total / qhybrid whole run incl. report+PNG", ratio, "{:.1f}x", "(info)", True)
    error = abs(exact["error"])
    check("exact: |estimate - exact|", error, "{:.2e}", "<= 1e-9", error <= 1e-9)

    console.rule(f"3. qhybrid sampled mode, {SHOTS} shots")
    wall, sampled = timed_run(RunSpec(scenario="cutting", seed=SEED, mode="sampled", shots=SHOTS))
    z = abs(sampled["error"]) / sampled["standard_error"]
    say(f"run_local wall {wall:.3f}s; report timings: {fmt(sampled['timings'])}")
    say(
        f"estimate {sampled['estimate']:+.6f}, standard error {sampled['standard_error']:.4f}, "
        f"error {sampled['error']:+.4f}, |error|/standard error {z:.2f}"
    )
    figures["sampled_10"] = {**summary(sampled, wall), "error_over_standard_error": z}
    ratio = plain_total / wall
    check("sampled: plain total / qhybrid run_local wall", ratio, "{:.1f}x", ">= 10x", ratio >= 10)

    console.rule("4. reconstruction alone on identical SamplerV2 counts (dedupe=False plan)")
    rec = figures["reconstruction"] = reconstruction_comparison(plain)
    say(
        f"reconstruct_expectation_values {rec['plain_seconds']:.3f}s; qhybrid reconstruct "
        f"{rec['qhybrid_seconds']:.4f}s (median of {QHYBRID_RECONSTRUCT_REPEATS})"
    )
    say(f"max |term diff| {rec['max_term_diff']:.2e}, |estimate diff| {rec['estimate_diff']:.2e}")
    check(
        "reconstruction speedup on identical counts",
        rec["speedup"],
        "{:.1f}x",
        ">= 10x",
        rec["speedup"] >= 10,
    )
    for key, what in (
        ("max_term_diff", "max |per-term value diff|"),
        ("estimate_diff", "|final estimate diff|"),
    ):
        check(f"reconstruction {what}", rec[key], "{:.2e}", "<= 1e-12", rec[key] <= 1e-12)

    runs = [("10q", exact)]
    if not args.skip_24:
        console.rule("5. qhybrid exact mode, 24 qubits, reps 4 (run_local, workers=1)")
        wall, wide = timed_run(RunSpec(scenario="cutting", qubits=24, reps=4, seed=SEED))
        counts = wide["counts"]
        say(f"run_local wall {wall:.3f}s; report timings: {fmt(wide['timings'])}")
        say(
            f"error {wide['error']:+.2e}; {wide['problem']['num_cuts']} cuts; {counts['unique']} "
            f"unique of {counts['subexperiments']} subexperiments"
        )
        figures["exact_24"] = summary(wide, wall)
        check("24q exact: run_local wall", wall, "{:.1f}s", "< 60s", wall < 60)
        error = abs(wide["error"])
        check("24q exact: |estimate - exact|", error, "{:.2e}", "<= 1e-9", error <= 1e-9)
        runs.append(("24q", wide))

    console.rule("6. local orchestration overhead, relative to time inside the backends")
    say(
        "simulation = summed time inside Backend.run (the backend lowers each circuit by "
        "deferred measurement, then Aer runs it); the execute step adds batching, QPY "
        "shards, result files and progress on top: that is the orchestration overhead."
    )
    for name, report in runs:
        t = report["timings"]
        ratio = t["execute_wall"] / t["simulation"]
        figures.setdefault("overhead", {})[f"{name} execute_wall/simulation"] = ratio
        check(f"{name} exact: execute step wall / simulation", ratio, "{:.3f}", "<= 1.15", ratio <= 1.15)
        compute = sum(t[k] for k in ("generate", "simulation", "reconstruct", "exact_reference"))
        ratio = t["total_wall"] / compute
        figures["overhead"][f"{name} total_wall/compute"] = ratio
        check(
            f"{name} exact: whole run wall / (generate + simulation + reconstruct + exact reference)",
            ratio,
            "{:.3f}",
            "<= 1.15",
            ratio <= 1.15,
        )

    table = Table(title="targets")
    for column in ("what", "measured", "target", "result"):
        table.add_column(column)
    for what, measured, target, ok in checks:
        result = "info" if target == "(info)" else "[green]PASS[/]" if ok else "[red]MISS[/]"
        table.add_row(what, measured, target, result)
    say(table)
    for what, measured, target, ok in checks:
        verdict = "INFO" if target == "(info)" else "PASS" if ok else "MISS"
        print(f"{verdict}  {what}: {measured} (target {target})")
    keys = ("what", "measured", "target", "pass")
    figures["checks"] = [dict(zip(keys, c, strict=True)) for c in checks]
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=float) + "\n", encoding="utf-8")
        say(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
