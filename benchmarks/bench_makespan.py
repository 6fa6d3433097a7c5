"""Makespan model: the paper's one pod per subexperiment vs qhybrid's batches per quota slot.

Simulation time per subexperiment is measured here, by the engine's own steps
(generate, then execute in batches; each subexperiment gets its batch's mean).
Per-pod cost = Argo's overhead (``--overhead``, default 10 s: argo-workflows
issues 6262 and 12381) + the measured start-up of a ``qhybrid step`` process
(imports) + the pod's simulations. Pods of a branch run on ``--slots`` at once
(greedy list scheduling, which is what Kueue's FIFO admission does); generate,
reconstruct and report (and our batches step) are one pod each, in series.

    python benchmarks/bench_makespan.py                     # default workload and 4 cuts
    python benchmarks/bench_makespan.py --overhead 10 --slots 4 --only default

Prints, per workload: the paper's plan (a pod per subexperiment, duplicates
included: 216 per partition on the default workload), a pod per unique
subexperiment, and ours (min(slots, n) batches), with the speed-up of ours.
"""

from __future__ import annotations

import argparse
import heapq
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from qhybrid.pipeline.generate import execute, generate, reconstruct_run
from qhybrid.pipeline.rundir import RunDir
from qhybrid.spec import RunSpec
from qhybrid.workflow.batching import split_batches

WORKLOADS = {
    "default": {"qubits": None, "reps": None},  # 10 qubits, 3 cuts
    "4 cuts": {"qubits": 24, "reps": 4},  # 12-qubit halves
}
MEASURE_BATCH = 32


def list_schedule(durations: list[float], slots: int) -> float:
    """Return the makespan of running ``durations`` in order on ``slots`` parallel slots."""
    free = [0.0] * max(1, slots)
    heapq.heapify(free)
    end = 0.0
    for duration in durations:
        start = heapq.heappop(free)
        heapq.heappush(free, start + duration)
        end = max(end, start + duration)
    return end


def startup_seconds(repeats: int = 3) -> float:
    """Return the median wall time of a process that imports what a ``qhybrid step`` pod imports."""
    times = []
    imports = "import qhybrid.cli, qhybrid.pipeline.generate, qhybrid.pipeline.report, qhybrid.backends.aer"
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", imports], capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(spec: RunSpec, root: Path) -> dict:
    """Run the engine's steps; return step times and per-unique simulation seconds."""
    run_dir = RunDir(root)
    started = time.perf_counter()
    manifest = generate(run_dir, spec)
    generate_s = time.perf_counter() - started
    unique = manifest["counts"]["unique"]
    per_unique = [0.0] * unique
    for start in range(0, unique, MEASURE_BATCH):
        stop = min(unique, start + MEASURE_BATCH)
        reply = execute(run_dir, start, stop)
        per_unique[start:stop] = [reply["simulation_seconds"] / (stop - start)] * (stop - start)
    started = time.perf_counter()
    reconstruct_run(run_dir)
    reconstruct_s = time.perf_counter() - started
    plan = manifest["plan"]
    # Every (partition, sample, group) position the plain flow runs, duplicates included.
    positions = [uid for label in plan["labels"] for row in plan["index"][label] for uid in row]
    return {
        "generate": generate_s,
        "reconstruct": reconstruct_s,
        "per_unique": per_unique,
        "positions": positions,
        "backends": [u["backend"] for u in plan["unique"]],
    }


def model(measured: dict, overhead: float, startup: float, slots: int) -> dict[str, float]:
    """Return makespans (seconds) of the three plans for one branch with ``slots`` slots."""
    pod = overhead + startup
    serial = 3 * pod + measured["generate"] + measured["reconstruct"] + 0.5  # generate, reconstruct, report
    per_unique = measured["per_unique"]
    paper = list_schedule([pod + per_unique[uid] for uid in measured["positions"]], slots)
    unique = list_schedule([pod + t for t in per_unique], slots)
    batches = split_batches(measured["backends"], {"cpu": slots})["cpu"]
    on_cpu = [backend == "cpu" for backend in measured["backends"]]
    durations = [pod + sum(per_unique[u] for u in range(b["start"], b["stop"]) if on_cpu[u]) for b in batches]
    ours = list_schedule(durations, slots)
    return {
        "paper": serial + paper,
        "unique": serial + unique,
        "ours": serial + pod + ours,  # + the batches step's pod
        "paper_execute": paper,
        "ours_execute": ours,
        "pods_paper": len(measured["positions"]),
        "pods_unique": len(per_unique),
        "pods_ours": len(batches),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--overhead", type=float, default=10.0, help="Argo's per-pod overhead, seconds")
    parser.add_argument("--slots", type=int, nargs="+", default=[4, 64], help="pods a branch runs at once")
    parser.add_argument("--only", choices=sorted(WORKLOADS), help="one workload")
    args = parser.parse_args()
    startup = startup_seconds()
    print(f"per-pod overhead {args.overhead:.1f} s (Argo) + {startup:.2f} s (qhybrid start-up, measured)")
    for name, shape in WORKLOADS.items():
        if args.only and name != args.only:
            continue
        spec = RunSpec(scenario="cutting", **shape)
        with tempfile.TemporaryDirectory() as folder:
            measured = measure(spec, Path(folder) / "run")
        sim = sum(measured["per_unique"])
        print(
            f"\n{name}: {len(measured['positions'])} subexperiments, {len(measured['per_unique'])} unique, "
            f"simulation {sim:.2f} s in all ({1000 * sim / len(measured['per_unique']):.2f} ms each), "
            f"generate {measured['generate']:.2f} s, reconstruct {measured['reconstruct']:.2f} s"
        )
        for slots in args.slots:
            m = model(measured, args.overhead, startup, slots)
            print(
                f"  {slots:>3} slots  paper (pod per subexperiment: {m['pods_paper']}) {m['paper']:8.1f} s"
                f" | pod per unique ({m['pods_unique']}) {m['unique']:8.1f} s"
                f" | ours ({m['pods_ours']} batch pods) {m['ours']:6.1f} s"
                f" | {m['paper'] / m['ours']:5.1f}x shorter (execute phase {m['paper_execute']:.1f} s"
                f" -> {m['ours_execute']:.1f} s)"
            )


if __name__ == "__main__":
    main()
