"""Benchmark qhybrid's circuit cutting against qiskit-addon-cutting's own flow, like for like.

Everything runs in one process; every ratio is taken against a baseline measured
in that same process, and nothing asserts on time. Like for like means:

- exact mode against upstream's exact path: ``partition_problem`` +
  ``generate_cutting_experiments(num_samples=inf)`` + ``ExactSampler``
  (qiskit_addon_cutting.utils.simulation) + ``reconstruct_expectation_values``;
- sampled mode against the same flow with Aer's ``SamplerV2`` at the same shots;
- both sides warm: one untimed warm-up run each before any timer; the samplers
  (and qhybrid's CPU simulator) are built before the timers start;
- the same number of timed repeats on both sides of a comparison, and the same
  statistic (the median);
- qhybrid's side is generate + execute + reconstruct (``total_wall``) less the exact
  reference value, which upstream's flow does not compute; the whole ``run_local``, exact
  reference and report included, is issue 16's target. terms.png is drawn only when asked
  (``--plot``): the time it adds is printed apart.

What is measured:

1. Exact mode, 10 qubits (reps 3, seed 0, halves): upstream exact path vs qhybrid.
2. Sampled mode, 4096 shots: upstream SamplerV2 flow vs qhybrid sampled mode.
3. Reconstruction alone on identical SamplerV2 counts: qhybrid's vectorised
   ``reconstruct`` vs ``reconstruct_expectation_values``, each the median of the same repeats.
4. 24 qubits / 4 cuts in exact mode (qhybrid alone: one untimed run, then the median of 3;
   skip with ``--skip-24``).
5. Local orchestration overhead: the execute step's wall time over the time inside
   the backends, and the whole run's wall time over all of its compute.

Target lines end with PASS or MISS; the rest are information. The exact-mode targets are
issue 16's: the whole ``run_local`` at least 50x faster than upstream's ExactSampler flow
with error at most 1e-12, and 24 qubits / 4 cuts in at most 3 s.

Figures of one run on a 2-core machine (the README quotes the same run): exact 74.5x like
for like (upstream ExactSampler flow 4.67 s, qhybrid 0.063 s) and 53.9x against qhybrid's
whole run_local (0.087 s, PASS); terms.png adds 0.177 s when asked; sampled 268x like for
like (SamplerV2 flow 36.4 s, qhybrid 0.136 s); reconstruction on identical counts 424x with
a max difference of 0.0; 24 qubits / 4 cuts exact 2.6 s (median of 3 after a first run of
2.63 s) with error 8.1e-14 (PASS); 40 qubits / 3 cuts 0.37 s. Subexperiments are computed
in their partitions' leaf forms, each made afresh by every timed run.

Usage:
    .venv/bin/python benchmarks/bench_cutting.py [--skip-24] [--repeats N] [--json PATH]
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
from qiskit_addon_cutting.utils.simulation import ExactSampler
from qiskit_aer.primitives import SamplerV2
from rich.console import Console
from rich.table import Table

from qhybrid import scenarios
from qhybrid.backends import get_backend
from qhybrid.backends.aer import BRANCHING_MAX_WIDTH
from qhybrid.cutting.plan import build_plan
from qhybrid.cutting.policies import get_policy
from qhybrid.cutting.reconstruct import distribution_from_sampler_pub, reconstruct
from qhybrid.pipeline.runner import run_local
from qhybrid.pipeline.simulate import forget_canonical_forms
from qhybrid.pipeline.terms_plot import draw_terms
from qhybrid.spec import RunSpec

SCENARIO = scenarios.CUTTING
QUBITS, REPS, SEED, SHOTS = 10, 3, 0, 4096
RECONSTRUCT_REPEATS = 5
console = Console()


def plain_flow(sampler: Any) -> dict[str, Any]:
    """Run upstream's flow with ``sampler`` (built by the caller, outside the timers), timing each phase."""
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
        # Canonical forms kept from an earlier run would spare this one work upstream's flow does
        # not get to skip: every timed run computes its own.
        forget_canonical_forms()
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
    values, plain_seconds = median_timed(
        lambda: np.asarray(
            reconstruct_expectation_values(results, plain["coefficients"], plain["subobservables"])
        ),
        RECONSTRUCT_REPEATS,
    )
    ours, ours_seconds = median_timed(
        lambda: reconstruct(plan, distributions, plain["coeffs"]), RECONSTRUCT_REPEATS
    )
    return {
        "plain_seconds": plain_seconds,
        "qhybrid_seconds": ours_seconds,
        "speedup": plain_seconds / ours_seconds,
        "max_term_diff": float(np.max(np.abs(ours.term_values - values))),
        "estimate_diff": abs(ours.estimate - float(np.dot(values, plain["coeffs"]))),
    }


def median_timed(work: Any, repeats: int) -> tuple[Any, float]:
    """Run ``work`` once untimed (warm-up), then ``repeats`` timed times; return its value and the median."""
    value = work()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        value = work()
        times.append(time.perf_counter() - start)
    return value, statistics.median(times)


def like_for_like(report: dict[str, Any]) -> float:
    """Return qhybrid's generate + execute + reconstruct time, less the exact reference upstream lacks."""
    timings = report["timings"]
    return float(timings["total_wall"] - timings.get("exact_reference", 0.0))


def compare_flows(
    name: str, sampler: Any, spec: RunSpec, repeats: int
) -> tuple[dict[str, Any], dict[str, Any], dict[str, float]]:
    """Time upstream's flow with ``sampler`` and qhybrid's run of ``spec``.

    One untimed warm-up each, then the median of ``repeats`` timed runs each.
    """
    plain_flow(sampler)  # warm-up
    timed_run(spec)  # warm-up, in its own temporary directory
    plain_runs = [plain_flow(sampler) for _ in range(repeats)]
    ours_runs = [timed_run(spec) for _ in range(repeats)]
    plain = plain_runs[-1]
    _, report = ours_runs[-1]
    figures = {
        "repeats": repeats,
        "upstream_median_s": statistics.median(r["timings"]["total"] for r in plain_runs),
        "qhybrid_median_s": statistics.median(like_for_like(r) for _, r in ours_runs),
        "qhybrid_whole_run_median_s": statistics.median(wall for wall, _ in ours_runs),
    }
    say = console.print
    say(
        f"upstream {name}: timings of the last run: {fmt(plain['timings'])}; "
        f"estimate {plain['estimate']:+.12f}"
    )
    say(f"qhybrid: report timings of the last run: {fmt(report['timings'])}")
    say(
        f"medians of {repeats}: upstream {figures['upstream_median_s']:.3f}s, qhybrid generate+execute+"
        f"reconstruct {figures['qhybrid_median_s']:.3f}s, "
        f"qhybrid whole run {figures['qhybrid_whole_run_median_s']:.3f}s"
    )
    return plain, report, figures


def fmt(timings: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f}s" for k, v in timings.items())


def summary(report: dict[str, Any], wall: float) -> dict[str, Any]:
    keys = ("timings", "estimate", "standard_error", "exact", "error", "counts")
    return {"wall": wall, **{k: report[k] for k in keys}}


# 40 qubits in 4 pieces of 10. The scenario's ansatz crosses each piece boundary once per
# rep, so 3 cuts means reps 1 (reps 3 would be 9 cuts: 6**9 QPD terms, over the limit).
FORTY_QUBITS = "RunSpec(scenario='cutting', qubits=40, reps=1, partition='A'*10+'B'*10+'C'*10+'D'*10)"
_CHILD = """
import json, resource, sys, tempfile, time
from pathlib import Path
from qhybrid.cache.session import CacheSettings
from qhybrid.pipeline.runner import run_local
from qhybrid.spec import RunSpec
spec = {spec}
started = time.perf_counter()
report = run_local(spec, Path(tempfile.mkdtemp()) / "run", cache=CacheSettings(enabled=False))
wall = time.perf_counter() - started
print(json.dumps({{
    "wall_s": wall, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    "error": report["error"], "exact_reference": report["provenance"]["exact_reference"],
    "unique": report["counts"]["unique"], "subexperiments": report["counts"]["subexperiments"],
    "timings": report["timings"],
}}))
"""


def run_in_child(spec: str) -> dict[str, Any]:
    """Run one spec with run_local in a fresh process; return its wall time, peak memory and figures."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _CHILD.format(spec=spec)], check=True, capture_output=True, text=True
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-24", action="store_true", help="skip the 24-qubit / 4-cut case")
    parser.add_argument("--skip-40", action="store_true", help="skip the 40-qubit / 3-cut case")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write all figures as JSON")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each exact flow (median)")
    parser.add_argument(
        "--sampled-repeats", type=int, default=1, help="timed runs of each sampled flow (median; ~30 s each)"
    )
    args = parser.parse_args()
    say = console.print
    figures: dict[str, Any] = {}
    checks: list[tuple[str, str, str, bool]] = []  # (what, measured, target, ok)

    def check(what: str, value: float, shown: str, target: str, ok: bool) -> None:
        checks.append((what, shown.format(value), target, ok))

    # Built before any timer: the samplers of both upstream flows and qhybrid's CPU simulator.
    exact_sampler = ExactSampler()
    shot_sampler = SamplerV2(default_shots=SHOTS, seed=SEED)
    get_backend("cpu")

    console.rule("1. exact mode, 10 qubits: upstream ExactSampler flow vs qhybrid exact")
    plain_exact, exact, flows = compare_flows(
        "ExactSampler flow", exact_sampler, RunSpec(scenario="cutting", seed=SEED), args.repeats
    )
    say(
        f"qhybrid estimate {exact['estimate']:+.15f}, exact {exact['exact']:+.15f}, "
        f"error {exact['error']:+.2e}; upstream's exact path error "
        f"{plain_exact['estimate'] - exact['exact']:+.2e}; counts {exact['counts']}"
    )
    figures["exact_10"] = {**flows, **summary(exact, flows["qhybrid_whole_run_median_s"])}
    ratio = flows["upstream_median_s"] / flows["qhybrid_median_s"]
    check("exact: ExactSampler flow / qhybrid exact (like for like)", ratio, "{:.1f}x", "(info)", True)
    whole = flows["upstream_median_s"] / flows["qhybrid_whole_run_median_s"]
    check(
        "exact: ExactSampler flow / qhybrid whole run_local incl. exact ref and report",
        whole,
        "{:.1f}x",
        ">= 50x",
        whole >= 50,
    )
    # terms.png is drawn only when asked (--plot): what asking adds, for information.
    _, plot_seconds = median_timed(lambda: draw_terms(exact), args.repeats)
    check("exact: terms.png when asked (--plot), median", plot_seconds, "{:.3f}s", "(info)", True)
    figures["exact_10"]["terms_plot_median_s"] = plot_seconds
    error = abs(exact["error"])
    check("exact: |estimate - exact|", error, "{:.2e}", "<= 1e-12", error <= 1e-12)
    upstream_error = abs(plain_exact["estimate"] - exact["exact"])
    check("exact: upstream ExactSampler flow |estimate - exact|", upstream_error, "{:.2e}", "(info)", True)

    console.rule(f"2. sampled mode, {SHOTS} shots: upstream SamplerV2 flow vs qhybrid sampled")
    sampled_spec = RunSpec(scenario="cutting", seed=SEED, mode="sampled", shots=SHOTS)
    plain, sampled, flows = compare_flows("SamplerV2 flow", shot_sampler, sampled_spec, args.sampled_repeats)
    z = abs(sampled["error"]) / sampled["standard_error"]
    say(
        f"qhybrid estimate {sampled['estimate']:+.6f}, standard error {sampled['standard_error']:.4f}, "
        f"error {sampled['error']:+.4f}, |error|/standard error {z:.2f}"
    )
    figures["plain_sampled"] = {**plain["timings"], "estimate": plain["estimate"]}
    figures["sampled_10"] = {
        **flows,
        **summary(sampled, flows["qhybrid_whole_run_median_s"]),
        "error_over_standard_error": z,
    }
    ratio = flows["upstream_median_s"] / flows["qhybrid_median_s"]
    check(
        "sampled: SamplerV2 flow / qhybrid sampled (like for like)", ratio, "{:.1f}x", ">= 10x", ratio >= 10
    )
    whole = flows["upstream_median_s"] / flows["qhybrid_whole_run_median_s"]
    check("sampled: SamplerV2 flow / qhybrid whole run incl. report", whole, "{:.1f}x", "(info)", True)

    console.rule("3. reconstruction alone on identical SamplerV2 counts (dedupe=False plan)")
    rec = figures["reconstruction"] = reconstruction_comparison(plain)
    say(
        f"reconstruct_expectation_values {rec['plain_seconds']:.4f}s, qhybrid reconstruct "
        f"{rec['qhybrid_seconds']:.4f}s (each the median of {RECONSTRUCT_REPEATS} after a warm-up)"
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
        console.rule("4. qhybrid exact mode, 24 qubits, reps 4 (run_local, workers=1)")
        wide_spec = RunSpec(scenario="cutting", qubits=24, reps=4, seed=SEED)
        # As every timed side here: one untimed run first (this size's first arrays, matrices
        # and statevector), then the median of the timed ones; the first run is printed too.
        first_wall, _ = timed_run(wide_spec)
        timed = [timed_run(wide_spec) for _ in range(3)]
        wall = statistics.median(w for w, _ in timed)
        wide = sorted(timed, key=lambda item: item[0])[1][1]
        counts = wide["counts"]
        say(f"first run (untimed warm-up) {first_wall:.3f}s; median of 3 after it {wall:.3f}s")
        say(f"run_local wall {wall:.3f}s; report timings of the median run: {fmt(wide['timings'])}")
        say(
            f"error {wide['error']:+.2e}; {wide['problem']['num_cuts']} cuts; {counts['unique']} "
            f"unique of {counts['subexperiments']} subexperiments"
        )
        figures["exact_24"] = summary(wide, wall)
        check("24q exact: run_local wall", wall, "{:.1f}s", "<= 3s", wall <= 3)
        error = abs(wide["error"])
        check("24q exact: |estimate - exact|", error, "{:.2e}", "<= 1e-9", error <= 1e-9)
        runs.append(("24q", wide))

    if not args.skip_40:
        console.rule("4b. qhybrid exact mode, 40 qubits in 4 pieces of 10 (3 cuts), MPS reference")
        forty = run_in_child(FORTY_QUBITS)
        say(
            f"run_local wall {forty['wall_s']:.3f}s, peak memory {forty['peak_rss_mib']} MiB (a fresh "
            f"process: imports included); error {forty['error']:+.2e} against the "
            f"{forty['exact_reference']['method']} reference (bond dimension "
            f"{forty['exact_reference'].get('max_bond_dimension')}); {forty['unique']} unique of "
            f"{forty['subexperiments']} subexperiments; timings {fmt(forty['timings'])}"
        )
        figures["exact_40"] = forty
        check("40q exact: run_local wall", forty["wall_s"], "{:.2f}s", "< 60s", forty["wall_s"] < 60)
        check(
            "40q exact: |estimate - MPS exact|",
            abs(forty["error"]),
            "{:.2e}",
            "<= 1e-8",
            abs(forty["error"]) <= 1e-8,
        )

    console.rule("5. local orchestration overhead, relative to time inside the backends")
    say(
        "simulation = summed time inside Backend.run (the branching engine up to "
        f"{BRANCHING_MAX_WIDTH} qubits, Aer on the deferred-measurement circuit above); the execute "
        "step adds batching, QPY shards, result files and progress on top: that is the "
        "orchestration overhead."
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
