"""Parameter sweeps: one command runs a problem at N settings of one partition's angles.

``--sweep B=0:1:20`` adds 20 evenly spaced offsets from 0 to 1 (inclusive) to the angle
of every one-angle rotation whose qubits all lie in partition B, and runs each point as its
own run (``points/NN``): a plain circuit spec, reproducible alone, that shares the cache
with the others. What only partition B changes leaves every other partition's
subexperiments the same, so the cache serves them after the first point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from qiskit import QuantumCircuit, qasm3
from qiskit.circuit import CircuitInstruction

from qhybrid import atomic
from qhybrid.backends import GatewaySettings
from qhybrid.cache.session import OFF, CacheSettings
from qhybrid.cost import PriceTable
from qhybrid.cutting.observables import format_pauli_sum
from qhybrid.errors import InputError
from qhybrid.pipeline.runner import run_local
from qhybrid.spec import RunSpec, load_problem_inputs

_ONE_ANGLE = frozenset({"rx", "ry", "rz", "p", "u1", "rxx", "ryy", "rzz", "rzx", "crx", "cry", "crz", "cp"})
MAX_POINTS = 1000


@dataclass(frozen=True)
class Sweep:
    """Offsets ``linspace(start, stop, points)`` added to partition ``label``'s rotation angles."""

    label: str
    start: float
    stop: float
    points: int

    @classmethod
    def parse(cls, text: str) -> Sweep:
        """Read ``LABEL=START:STOP:N``; one line naming --sweep when it is not that."""
        label, equals, rest = text.partition("=")
        fields = rest.split(":")
        try:
            if not equals or len(fields) != 3 or len(label) != 1:
                raise ValueError
            sweep = cls(label, float(fields[0]), float(fields[1]), int(fields[2]))
        except ValueError:
            raise InputError("--sweep", f"{text!r}: write LABEL=START:STOP:N, e.g. B=0:1:20") from None
        if not 2 <= sweep.points <= MAX_POINTS or not (
            math.isfinite(sweep.start) and math.isfinite(sweep.stop)
        ):
            raise InputError("--sweep", f"{text!r}: N must be 2 to {MAX_POINTS}, START and STOP finite")
        return sweep

    def offsets(self) -> list[float]:
        """The offsets, first to last."""
        return [float(v) for v in np.linspace(self.start, self.stop, self.points)]


def shifted(circuit: QuantumCircuit, qubits: set[int], offset: float) -> QuantumCircuit:
    """Return a copy with ``offset`` added to each one-angle rotation acting only on ``qubits``."""
    out = circuit.copy_empty_like()
    index = {bit: i for i, bit in enumerate(circuit.qubits)}
    for instruction in circuit.data:
        operation = instruction.operation
        on = {index[q] for q in instruction.qubits}
        if operation.name in _ONE_ANGLE and on <= qubits and offset != 0.0:
            operation = type(operation)(float(operation.params[0]) + offset)
        out._append(CircuitInstruction(operation, instruction.qubits, instruction.clbits))
    return out


def sweep_specs(spec: RunSpec, sweep: Sweep) -> list[RunSpec]:
    """Return one circuit spec per point: the spec's problem with partition ``label``'s angles shifted."""
    circuit, observable, partition = load_problem_inputs(spec)
    if partition is None:
        raise InputError("--sweep", "needs partition labels (--partition, or a scenario), not --max-width")
    qubits = {q for q, label in enumerate(partition) if label == sweep.label}
    if not qubits:
        raise InputError("--sweep", f"partition {partition!r} has no qubit labelled {sweep.label!r}")
    source = spec.circuit_source or spec.scenario or "circuit"
    return [
        RunSpec(
            circuit_qasm=qasm3.dumps(shifted(circuit, qubits, offset)),
            circuit_source=f"{source} sweep {sweep.label}+{offset!r}",
            observable=format_pauli_sum(observable),
            partition=partition,
            mode=spec.mode,
            shots=spec.shots,
            seed=spec.seed,
            policy=spec.policy,
            max_qpd_terms=spec.max_qpd_terms,
        )
        for offset in sweep.offsets()
    ]


def run_sweep(
    spec: RunSpec,
    sweep: Sweep,
    out: Path,
    *,
    cache: CacheSettings = OFF,
    gateway: GatewaySettings | None = None,
    workers: int = 1,
    prices: PriceTable | None = None,
) -> dict[str, Any]:
    """Run every point (resuming finished ones); write sweep.json and sweep.png; return the table.

    ``prices`` prices each point's usage in its report.
    """
    specs = sweep_specs(spec, sweep)
    rows = []
    for number, (offset, point) in enumerate(zip(sweep.offsets(), specs, strict=True)):
        report = run_local(point, out / "points" / f"{number:03d}", cache=cache, gateway=gateway,
                           workers=workers, progress=False, prices=prices)  # fmt: skip
        hits = (report.get("cache") or {}).get("hits") or {}
        rows.append(
            {
                "point": number,
                "offset": offset,
                "estimate": report["estimate"],
                "standard_error": report["standard_error"],
                "exact": report["exact"],
                "error": report["error"],
                "unique": report["counts"]["unique"],
                "served": sum(hits.values()),
                "spec_hash": report["provenance"]["spec_hash"],
            }
        )
    unique = sum(r["unique"] for r in rows)
    served = sum(r["served"] for r in rows)
    result = {
        "sweep": {"label": sweep.label, "start": sweep.start, "stop": sweep.stop, "points": sweep.points},
        "base_spec_hash": spec.spec_hash(),
        "rows": rows,
        "unique": unique,
        "served_from_cache": served,
        "share_served": served / unique if unique else 0.0,
    }
    atomic.write_json(out / "sweep.json", result)
    atomic.write_bytes(out / "sweep.png", _plot(result))
    return result


def _plot(result: dict[str, Any]) -> bytes:
    import io

    from matplotlib.figure import Figure

    rows = result["rows"]
    figure = Figure(figsize=(8, 4))
    axes = figure.subplots()
    offsets = [r["offset"] for r in rows]
    axes.errorbar(offsets, [r["estimate"] for r in rows], yerr=[r["standard_error"] for r in rows],
                  marker=".", label="estimate (cut and reconstructed)")  # fmt: skip
    if all(r["exact"] is not None for r in rows):
        axes.plot(offsets, [r["exact"] for r in rows], color="black", linestyle="--", label="exact")
    label = result["sweep"]["label"]
    axes.set_xlabel(f"offset added to partition {label}'s rotation angles")
    axes.set_ylabel("expectation value")
    share = result["share_served"]
    axes.set_title(f"sweep of partition {label}: {share:.1%} of subexperiments from the cache", fontsize=9)
    axes.legend(fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()
