"""Where Aer should take over from the branching statevector engine: time per subexperiment by width.

For each width 4..20 it builds a few subexperiment-like circuits (an ``efficient_su2``
layer pattern with seeded angles, a mid-circuit measurement and a reset on qubit 0 as a
cut's local operations, then every qubit measured into the observable register) and
times, in this process, both engines on the same circuits, exact mode, each warmed up
first: qiskit-aer's statevector (its deferred-measurement circuit, as the cpu backend
runs it) and :mod:`qhybrid.backends.branching`. The circuits differ in their angles, so
the branching engine shares nothing between them: this is its worst case, per circuit.

Then, per width, it times both engines on what the cpu backend really gets: one execute
batch (``DEFAULT_BATCH_SIZE`` unique subexperiments, fewer above 18 qubits) of the cutting
scenario on ``2 * width`` qubits cut in halves (reps 2: two cuts), as their leaf forms
(:mod:`qhybrid.cache.leaves`), which is what the simulate step hands a backend: the
branching engine runs them segment by segment, stacked, and Aer gets each leaf's circuit
built (inside the timer, as in a run). Their bodies are shared, as in every real run.

Run: ``.venv/bin/python benchmarks/bench_branching.py [--widths 4-20] [--circuits N]``.
It prints both tables and, for each, the widest width at which the branching engine is
at least 5% faster at that width and every narrower one (within 5% is a tie, and a tie
stays with Aer). ``BRANCHING_MAX_WIDTH`` in qhybrid.backends comes from the
partition-batch table, the one real runs see. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

import numpy as np
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister

from qhybrid.backends.aer import AerBackend
from qhybrid.backends.branching import branching_distributions
from qhybrid.cache.leaves import LeafForm
from qhybrid.cutting.deferred import OBSERVABLE_REGISTER, QPD_REGISTER
from qhybrid.pipeline.forms import problem_leaves
from qhybrid.pipeline.generate import plan_with_origins
from qhybrid.pipeline.runner import DEFAULT_BATCH_SIZE
from qhybrid.spec import RunSpec


def subexperiment_like(width: int, seed: int, reps: int = 2) -> QuantumCircuit:
    """An efficient_su2-shaped circuit with a QPD measurement and a reset mid-way, all qubits read."""
    rng = np.random.default_rng(seed)
    qubits = QuantumRegister(width, "q")
    observable = ClassicalRegister(width, OBSERVABLE_REGISTER)
    qpd = ClassicalRegister(1, QPD_REGISTER)
    circuit = QuantumCircuit(qubits, observable, qpd)
    for layer in range(reps + 1):
        for q in range(width):
            circuit.ry(float(rng.uniform(0, 2 * np.pi)), q)
            circuit.rz(float(rng.uniform(0, 2 * np.pi)), q)
        if layer == reps:
            break
        for q in range(width - 1):
            circuit.cx(q, q + 1)
        if layer == 0:
            circuit.h(0)
            circuit.measure(0, qpd[0])
            circuit.reset(0)
    circuit.measure(qubits, observable)
    return circuit


def per_circuit_seconds(run, circuits: Sequence[QuantumCircuit | LeafForm], repeats: int) -> float:
    run(circuits[:1])  # warm-up: imports, simulator set-up, matrix caches
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run(circuits)
        times.append(time.perf_counter() - started)
    return statistics.median(times) / len(circuits)


# Aer over branching at which the branching engine counts as faster: closer is a tie (noise).
FASTER_BY = 1.05


def partition_batch(width: int, count: int) -> list[LeafForm]:
    """The first ``count`` unique subexperiments of a 2*width-qubit cutting run, as their leaves.

    What a run hands the cpu backend: the engine runs them segment by segment, and Aer gets
    each leaf's circuit built inside its timer.
    """
    spec = RunSpec(scenario="cutting", qubits=2 * width, reps=2, seed=0)
    _, _, _, origins = plan_with_origins(spec, build_circuits=False)
    leaves = problem_leaves(spec)
    found = [leaves.leaf(origin) for origin in origins[:count]]
    return [leaf for leaf in found if leaf is not None]  # every one: the scenario has gate cuts only


def max_difference(aer: AerBackend, circuits: Sequence[QuantumCircuit | LeafForm]) -> float:
    worst = 0.0
    for a, b in zip(aer.exact_distributions(circuits), branching_distributions(circuits), strict=True):
        worst = max(worst, float(np.abs(a.to_dense() - b.to_dense()).max()))
    return worst


def table(title: str, widths: range, circuits_of, aer: AerBackend) -> int:
    """Print one table; return the widest width up to which the branching engine is faster by a margin."""
    print(title)
    print(f"{'width':>5}  {'circuits':>8}  {'aer ms':>9}  {'branching ms':>12}  ", end="")
    print(f"{'aer / branching':>15}  max |difference|")
    faster_up_to = widths.start - 1
    still_faster = True
    for width in widths:
        circuits, repeats = circuits_of(width)
        aer_s = per_circuit_seconds(aer.exact_distributions, circuits, repeats)
        ours_s = per_circuit_seconds(branching_distributions, circuits, repeats)
        ratio = aer_s / ours_s
        still_faster = still_faster and ratio >= FASTER_BY
        if still_faster:
            faster_up_to = width
        print(
            f"{width:>5}  {len(circuits):>8}  {aer_s * 1e3:>9.3f}  {ours_s * 1e3:>12.3f}  {ratio:>14.2f}x  "
            f"{max_difference(aer, circuits):.1e}",
            flush=True,
        )
    print(f"the branching engine is at least {FASTER_BY:.2f}x faster at every width up to {faster_up_to}")
    return faster_up_to


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="4-20", help="first-last width")
    parser.add_argument("--circuits", type=int, default=8, help="circuits per width (fewer above 16)")
    args = parser.parse_args()
    first, last = (int(w) for w in args.widths.split("-"))
    widths = range(first, last + 1)
    aer = AerBackend("cpu", "CPU")

    def unshared(width: int) -> tuple[list[QuantumCircuit], int]:
        count = args.circuits if width <= 16 else max(2, args.circuits // 4)
        return [subexperiment_like(width, seed) for seed in range(count)], 3 if width <= 16 else 1

    def partition(width: int) -> tuple[list[LeafForm], int]:
        # A whole batch wherever the bound could fall: the first few subexperiments of a
        # partition share more of their prefixes than a batch does, which flatters the engine.
        count = DEFAULT_BATCH_SIZE if width <= 18 else DEFAULT_BATCH_SIZE // 8
        return partition_batch(width, count), 3 if width <= 14 else 1

    table("nothing shared (the engine's worst case), ms per circuit:", widths, unshared, aer)
    print()
    table(
        "one execute batch of a partition (leaf forms, bodies shared), ms per circuit:",
        widths,
        partition,
        aer,
    )


if __name__ == "__main__":
    main()
