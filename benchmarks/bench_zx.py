"""Does a ZX-calculus reduction (pyzx) add cache hits beyond qhybrid's canonical forms? At what cost?

For the cache benchmark's workloads, every unique subexperiment is reduced two ways:

- qhybrid's canonical form (``qhybrid.cache.canonical``): names, commuting order,
  trivial identities, qubit relabelling;
- pyzx: the subexperiment with its measurements deferred (a unitary circuit, which is
  what ZX handles), converted to a ZX graph and ``full_reduce``d; the reduced graph is then
  keyed by a Weisfeiler-Leman hash (networkx) over vertex types, phases and which boundary
  holds an observable or QPD bit.

A ZX key shared by circuits with *different* canonical forms is a candidate extra hit. Each
candidate is checked: the two circuits' exact distributions (Aer) must agree to 1e-12 after
mapping their observable bits, else the ZX key merged circuits that differ (a false merge).
The script prints, per workload, the distinct canonical forms, the distinct ZX keys, the
confirmed extra hits, the false merges, and the time per circuit of each reduction (one
process, the same circuits, each timed once after a warm-up).

Usage:
    .venv/bin/python benchmarks/bench_zx.py
"""

from __future__ import annotations

import tempfile
import time
from fractions import Fraction
from pathlib import Path

import networkx as nx
import numpy as np
import pyzx as zx
from qiskit import QuantumCircuit, qasm2, transpile

from qhybrid.backends.aer import AerBackend
from qhybrid.cache.canonical import canonical_form
from qhybrid.cutting.deferred import defer_measurements
from qhybrid.pipeline.generate import generate
from qhybrid.pipeline.rundir import RunDir
from qhybrid.spec import RunSpec

# pyzx reads this gate set from OpenQASM 2.
_ZX_BASIS = ["rz", "rx", "h", "cx", "cz", "x", "z", "s", "sdg", "t", "tdg"]


def subexperiments(spec: RunSpec, folder: Path) -> list[QuantumCircuit]:
    run_dir = RunDir(folder)
    manifest = generate(run_dir, spec)
    return run_dir.generated().circuits_for(list(range(manifest["counts"]["unique"])))


def workloads(folder: Path) -> dict[str, list[QuantumCircuit]]:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_cache import ring_spec, sweep_spec

    sweep: list[QuantumCircuit] = []
    for i, shift in enumerate(np.linspace(0.0, 1.0, 5)):
        sweep += subexperiments(sweep_spec(float(shift)), folder / f"sweep-{i}")
    return {
        "default workload": subexperiments(RunSpec(scenario="cutting"), folder / "default"),
        "sweep of B (5 points)": sweep,
        "QAOA ring 12, p=1": subexperiments(ring_spec(), folder / "ring"),
    }


def zx_key(circuit: QuantumCircuit) -> str:
    deferred = defer_measurements(circuit)
    unitary = transpile(deferred.circuit, basis_gates=_ZX_BASIS, optimization_level=0, seed_transpiler=0)
    graph = zx.Circuit.from_qasm(qasm2.dumps(unitary)).to_graph()
    zx.full_reduce(graph)
    roles = {q: "o" for q in deferred.observable_qubits} | {q: "p" for q in deferred.qpd_qubits}
    outputs = list(graph.outputs())
    g = nx.Graph()
    for v in graph.vertices():
        phase = graph.phase(v)
        label = f"{graph.type(v)}:{Fraction(phase).limit_denominator(10**6) if phase else 0}"
        if v in outputs:
            label += ":out:" + roles.get(outputs.index(v), "-")
        g.add_node(v, label=label)
    for edge in graph.edges():
        a, b = graph.edge_st(edge)
        g.add_edge(a, b, label=str(graph.edge_type(edge)))
    return str(nx.weisfeiler_lehman_graph_hash(g, node_attr="label", edge_attr="label", iterations=4))


def dense_canonical(circuit: QuantumCircuit, backend: AerBackend) -> np.ndarray:
    form = canonical_form(circuit)
    (distribution,) = backend.exact_distributions([form.circuit()])
    return distribution.to_dense()


def main() -> None:
    backend = AerBackend("cpu", "CPU")
    with tempfile.TemporaryDirectory(prefix="bench-zx-") as folder:
        for name, circuits in workloads(Path(folder)).items():
            canonical_form(circuits[0])  # warm-up
            zx_key(circuits[0])
            started = time.perf_counter()
            forms = [canonical_form(c).key for c in circuits]
            ours = (time.perf_counter() - started) / len(circuits)
            started = time.perf_counter()
            keys = [zx_key(c) for c in circuits]
            theirs = (time.perf_counter() - started) / len(circuits)
            groups: dict[str, set[str]] = {}
            example: dict[tuple[str, str], QuantumCircuit] = {}
            for key, form, circuit in zip(keys, forms, circuits, strict=True):
                groups.setdefault(key, set()).add(form)
                example.setdefault((key, form), circuit)
            extra = false = 0
            for key, members in groups.items():
                if len(members) < 2:
                    continue
                first, *rest = sorted(members)
                reference = dense_canonical(example[(key, first)], backend)
                for form in rest:
                    other = dense_canonical(example[(key, form)], backend)
                    same = reference.shape == other.shape and np.allclose(
                        reference, other, atol=1e-12, rtol=0
                    )
                    extra += same
                    false += not same
            print(
                f"{name}: {len(circuits)} unique subexperiments, {len(set(forms))} canonical forms, "
                f"{len(set(keys))} ZX keys; ZX adds {extra} confirmed hits and makes {false} false merges; "
                f"canonical form {ours * 1e3:.2f} ms/circuit, pyzx {theirs * 1e3:.2f} ms/circuit "
                f"({theirs / ours:.1f}x)"
            )


if __name__ == "__main__":
    main()
