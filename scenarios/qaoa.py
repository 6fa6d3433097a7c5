"""A QAOA MaxCut circuit on the Petersen graph (10 nodes, 3-regular), the example for cost previews.

The Petersen graph has no small balanced cut (every 5/5 split cuts at least 5 edges),
so cutting its QAOA circuit is expensive: it shows what ``qhybrid plan`` is for.
``python -m qhybrid.scenarios.qaoa OUT_DIR`` writes the OpenQASM 3 file and the
observable (the MaxCut cost, sum over edges of 0.5*(I - Z_i Z_j)) that ``examples/`` holds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from qiskit import QuantumCircuit, qasm3
from qiskit.quantum_info import SparsePauliOp

# Outer 5-cycle, inner pentagram, and the spokes between them.
PETERSEN_EDGES: tuple[tuple[int, int], ...] = (
    *((i, (i + 1) % 5) for i in range(5)),
    *((5 + i, 5 + (i + 2) % 5) for i in range(5)),
    *((i, i + 5) for i in range(5)),
)
# Two 5-node halves (K5 less three edges) joined by one edge, 3-regular: its QAOA circuit
# crosses the halves with one rzz per layer, so it cuts cheaply (the round-trip tests use it).
BRIDGED_EDGES: tuple[tuple[int, int], ...] = tuple(
    (offset + a, offset + b)
    for offset in (0, 5)
    for a, b in ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 4), (3, 4))
) + ((4, 9),)
EXAMPLE_STEM = "qaoa-maxcut-petersen-p2"


def qaoa_maxcut_circuit(
    edges: tuple[tuple[int, int], ...] = PETERSEN_EDGES, layers: int = 2, seed: int = 7
) -> QuantumCircuit:
    """Return the QAOA circuit with angles drawn from a seeded RNG (gamma in [0, pi), beta in [0, pi/2))."""
    rng = np.random.default_rng(seed)
    angles = [(rng.uniform(0, np.pi), rng.uniform(0, np.pi / 2)) for _ in range(layers)]
    return qaoa_circuit(edges, [g for g, _ in angles], [b for _, b in angles])


def qaoa_circuit(
    edges: tuple[tuple[int, int], ...], gammas: list[float], betas: list[float]
) -> QuantumCircuit:
    """Return the QAOA MaxCut circuit for the given angles.

    H on every node, then per layer ``rzz(2*gamma)`` on every edge and ``rx(2*beta)`` on every node.
    """
    if len(gammas) != len(betas):
        raise ValueError(f"{len(gammas)} gammas but {len(betas)} betas")
    num_nodes = 1 + max(max(edge) for edge in edges)
    circuit = QuantumCircuit(num_nodes)
    circuit.h(range(num_nodes))
    for gamma, beta in zip(gammas, betas, strict=True):
        for a, b in edges:
            circuit.rzz(2 * gamma, a, b)
        circuit.rx(2 * beta, range(num_nodes))
    return circuit


def ring_edges(nodes: int) -> tuple[tuple[int, int], ...]:
    """Return the edges of the ring 0-1-...-(nodes-1)-0."""
    if nodes < 3:
        raise ValueError(f"a ring needs at least 3 nodes, got {nodes}")
    return tuple((i, (i + 1) % nodes) for i in range(nodes))


def regular_edges(nodes: int, seed: int, degree: int = 3) -> tuple[tuple[int, int], ...]:
    """Return a random ``degree``-regular graph's edges (networkx's generator, seeded), sorted."""
    import networkx as nx

    if nodes <= degree or (nodes * degree) % 2:
        raise ValueError(f"no {degree}-regular graph on {nodes} nodes")
    graph = nx.random_regular_graph(degree, nodes, seed=seed)
    return tuple(sorted((min(a, b), max(a, b)) for a, b in graph.edges()))


def max_cut(edges: tuple[tuple[int, int], ...]) -> tuple[int, str]:
    """Return the maximum cut size and one assignment reaching it (node 0 first), by brute force."""
    num_nodes = 1 + max(max(edge) for edge in edges)
    if num_nodes > 24:
        raise ValueError(f"brute force over 2**{num_nodes} assignments is too slow")
    nodes = np.arange(1 << num_nodes, dtype=np.int64)
    sizes = np.zeros(1 << num_nodes, dtype=np.int64)
    for a, b in edges:
        sizes += ((nodes >> a) ^ (nodes >> b)) & 1
    best = int(np.argmax(sizes))
    return int(sizes[best]), "".join(str((best >> i) & 1) for i in range(num_nodes))


def maxcut_observable(edges: tuple[tuple[int, int], ...] = PETERSEN_EDGES) -> SparsePauliOp:
    """Return the cut size operator, sum over edges of 0.5*(I - Z_a Z_b)."""
    num_nodes = 1 + max(max(edge) for edge in edges)
    terms: list[tuple[str, list[int], float]] = [("", [], 0.5 * len(edges))]
    terms += [("ZZ", [a, b], -0.5) for a, b in edges]
    return SparsePauliOp.from_sparse_list(terms, num_qubits=num_nodes).simplify()


def pauli_sum_text(observable: SparsePauliOp) -> str:
    """Write a real Pauli sum as ``--observable`` reads it: ``7.5*IIII - 0.5*IIZZ ...`` (exact floats)."""
    text = ""
    for label, coeff in observable.to_list():
        value = float(coeff.real)
        term = f"{abs(value)!r}*{label}"
        text += (("-" if value < 0 else "") + term) if not text else (" - " if value < 0 else " + ") + term
    return text


def write_example(directory: Path) -> tuple[Path, Path]:
    """Write the example's ``.qasm`` and ``.observable`` files into ``directory``; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    circuit_file = directory / f"{EXAMPLE_STEM}.qasm"
    observable_file = directory / f"{EXAMPLE_STEM}.observable"
    circuit_file.write_text(qasm3.dumps(qaoa_maxcut_circuit()) + "\n", encoding="utf-8")
    observable_file.write_text(pauli_sum_text(maxcut_observable()) + "\n", encoding="utf-8")
    return circuit_file, observable_file


if __name__ == "__main__":
    for path in write_example(Path(sys.argv[1])):
        print(path)
