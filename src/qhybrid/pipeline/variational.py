"""The variational scenario: QAOA MaxCut whose every energy evaluation is a cutting run.

SciPy's COBYLA (deterministic: no random choice of its own) maximises the expected cut
size from a seeded starting point. Each evaluation is a whole ``run_local`` of the QAOA
circuit at those angles, cut by the problem's partition, with the same modes, backends,
policies and result cache as ``run cutting``, in its own run directory
(``evaluations/NNN``): so a loop that is interrupted resumes where it stopped, finished
evaluations are read back, and each evaluation has its full report and provenance.

The output (``qaoa.json``, ``qaoa.png``) is the energy trace, the best angles, the
cache's share of the work, and, for graphs small enough, the exact optimum by brute force.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from qiskit import qasm3

from qhybrid import atomic
from qhybrid.backends import GatewaySettings
from qhybrid.cache.session import OFF, CacheSettings
from qhybrid.cost import PriceTable
from qhybrid.errors import InputError
from qhybrid.pipeline.runner import run_local
from qhybrid.scenarios.qaoa import (
    max_cut,
    maxcut_observable,
    pauli_sum_text,
    qaoa_circuit,
    regular_edges,
    ring_edges,
)
from qhybrid.spec import RunSpec

GRAPHS = ("ring", "regular3")
# Brute force (2**n assignments, vectorised) for the exact optimum up to this many nodes.
MAX_BRUTE_FORCE_NODES = 22


@dataclass(frozen=True, kw_only=True)
class QaoaSpec:
    """Everything that determines a QAOA optimisation's numbers."""

    graph: str = "ring"
    nodes: int = 12
    layers: int = 1
    graph_seed: int = 0
    mode: str = "exact"
    shots: int | None = None
    seed: int = 0
    policy: str = "cpu"
    partition: str | None = None
    max_width: int | None = None
    max_evaluations: int = 40

    def __post_init__(self) -> None:
        """Check each field; the cutting spec of each evaluation checks the rest."""
        if self.graph not in GRAPHS:
            raise InputError("--graph", f"unknown graph {self.graph!r}; choose one of {list(GRAPHS)}")
        if self.layers < 1:
            raise InputError("--layers", f"must be at least 1, got {self.layers}")
        if self.max_evaluations < 2 * self.layers + 2:
            raise InputError("--max-evaluations", f"COBYLA needs at least {2 * self.layers + 2}")
        if self.partition is not None and len(self.partition) != self.nodes:
            raise InputError("--partition", f"has {len(self.partition)} labels for {self.nodes} nodes")

    def edges(self) -> tuple[tuple[int, int], ...]:
        """The graph's edges."""
        try:
            if self.graph == "ring":
                return ring_edges(self.nodes)
            return regular_edges(self.nodes, self.graph_seed)
        except ValueError as error:
            raise InputError("--nodes", str(error)) from None

    def evaluation(self, gammas: list[float], betas: list[float], index: int) -> RunSpec:
        """The cutting run of one energy evaluation."""
        edges = self.edges()
        partition = self.partition
        if partition is None and self.max_width is None:
            half = self.nodes // 2
            partition = "A" * half + "B" * (self.nodes - half)
        return RunSpec(
            circuit_qasm=qasm3.dumps(qaoa_circuit(edges, gammas, betas)),
            circuit_source=f"qaoa {self.graph} {self.nodes} p{self.layers} evaluation {index}",
            observable=pauli_sum_text(maxcut_observable(edges)),
            partition=partition,
            max_width=self.max_width,
            mode=self.mode,  # type: ignore[arg-type]
            shots=self.shots,
            seed=self.seed,
            policy=self.policy,
        )


def run_qaoa(
    spec: QaoaSpec,
    out: Path,
    *,
    cache: CacheSettings = OFF,
    gateway: GatewaySettings | None = None,
    workers: int = 1,
    on_evaluation: Callable[[dict[str, Any]], None] | None = None,
    prices: PriceTable | None = None,
) -> dict[str, Any]:
    """Maximise the expected cut with COBYLA; write and return qaoa.json's content.

    ``prices`` prices each evaluation's usage in its report.
    """
    from scipy.optimize import minimize

    started = time.perf_counter()
    edges = spec.edges()
    marker = out / "qaoa-spec.json"
    if marker.is_file() and atomic.read_json(marker) != asdict(spec):
        raise InputError("--out", f"{out} holds another QAOA optimisation; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_json(marker, asdict(spec))
    rng = np.random.default_rng(spec.seed)
    start = np.concatenate([rng.uniform(0, np.pi, spec.layers), rng.uniform(0, np.pi / 2, spec.layers)])
    trace: list[dict[str, Any]] = []

    def negative_energy(angles: np.ndarray) -> float:
        gammas = [float(a) for a in angles[: spec.layers]]
        betas = [float(a) for a in angles[spec.layers :]]
        index = len(trace)
        report = run_local(
            spec.evaluation(gammas, betas, index),
            out / "evaluations" / f"{index:03d}",
            cache=cache,
            gateway=gateway,
            workers=workers,
            progress=False,
            prices=prices,
        )
        cache_counts = report.get("cache") or {}
        entry = {
            "evaluation": index,
            "gammas": gammas,
            "betas": betas,
            "energy": report["estimate"],
            "standard_error": report["standard_error"],
            "exact": report["exact"],
            "unique": report["counts"]["unique"],
            "served": sum((cache_counts.get("hits") or {}).values()),
            "hits": cache_counts.get("hits"),
            "computed": cache_counts.get("computed", report["counts"]["unique"]),
            "wall_seconds": report["timings"].get("total_wall"),
        }
        trace.append(entry)
        if on_evaluation is not None:
            on_evaluation(entry)
        return -float(report["estimate"])

    minimize(
        negative_energy,
        start,
        method="COBYLA",
        options={"maxiter": spec.max_evaluations, "rhobeg": 0.4},
    )
    best = max(trace, key=lambda e: e["energy"])
    unique = sum(e["unique"] for e in trace)
    served = sum(e["served"] for e in trace)
    result: dict[str, Any] = {
        "spec": asdict(spec),
        "edges": [list(e) for e in edges],
        "evaluations": len(trace),
        "best": best,
        "trace": trace,
        "subexperiments": {
            "unique": unique,
            "served_from_cache": served,
            "fraction_avoided": served / unique if unique else 0.0,
            "evaluations_fully_served": sum(1 for e in trace if e["served"] == e["unique"]),
        },
        "wall_seconds": time.perf_counter() - started,
    }
    if spec.nodes <= MAX_BRUTE_FORCE_NODES:
        optimum, assignment = max_cut(edges)
        result["optimum"] = {
            "max_cut": optimum,
            "assignment": assignment,
            "approximation_ratio": best["energy"] / optimum,
        }
    atomic.write_json(out / "qaoa.json", result)
    atomic.write_bytes(out / "qaoa.png", _plot(result))
    return result


def _plot(result: dict[str, Any]) -> bytes:
    """The energy trace, the best energy so far, and the optimum when known, as PNG bytes."""
    import io

    from matplotlib.figure import Figure

    energies = [e["energy"] for e in result["trace"]]
    figure = Figure(figsize=(8, 4))
    axes = figure.subplots()
    axes.plot(range(len(energies)), energies, marker=".", label="expected cut (cut and reconstructed)")
    axes.plot(range(len(energies)), np.maximum.accumulate(energies), label="best so far")
    if "optimum" in result:
        axes.axhline(
            result["optimum"]["max_cut"], color="black", linestyle="--", label="maximum cut (brute force)"
        )
    axes.set_xlabel("energy evaluation (COBYLA)")
    axes.set_ylabel("expected cut size")
    spec = result["spec"]
    avoided = result["subexperiments"]["fraction_avoided"]
    axes.set_title(
        f"QAOA MaxCut, {spec['graph']} of {spec['nodes']}, p={spec['layers']}, {spec['mode']} mode: "
        f"{avoided:.1%} of subexperiments served from the cache",
        fontsize=9,
    )
    axes.legend(fontsize=8, loc="lower right")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def summary_lines(result: dict[str, Any]) -> list[str]:
    """The optimisation's summary as text lines."""
    best = result["best"]
    lines = [
        f"evaluations     {result['evaluations']}",
        f"best energy     {best['energy']:+.12f}  (evaluation {best['evaluation']})",
        f"best gammas     {json.dumps(best['gammas'])}",
        f"best betas      {json.dumps(best['betas'])}",
    ]
    if "optimum" in result:
        optimum = result["optimum"]
        lines.append(
            f"maximum cut     {optimum['max_cut']} ({optimum['assignment']}), "
            f"approximation ratio {optimum['approximation_ratio']:.4f}"
        )
    share = result["subexperiments"]
    lines.append(
        f"cache           {share['served_from_cache']} of {share['unique']} unique subexperiments served "
        f"({share['fraction_avoided']:.1%}), {share['evaluations_fully_served']} evaluations fully served"
    )
    return lines
