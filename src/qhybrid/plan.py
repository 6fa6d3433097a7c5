"""The cutting plan: every subexperiment, deduplicated, with its backend and seed.

The plan is the contract between steps: generate writes it, execute runs its
unique subexperiments by index range, reconstruct combines their results with
its coefficients. It is plain JSON plus QPY circuits, readable by any pod.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from qiskit import QuantumCircuit
from qiskit.quantum_info import PauliList
from qiskit_addon_cutting import generate_cutting_experiments
from qiskit_addon_cutting.utils.observable_grouping import ObservableCollection

from qhybrid.fingerprint import circuit_fingerprint, derive_seed
from qhybrid.policies import WidthPolicy


@dataclass(frozen=True)
class UniqueSubexperiment:
    """One distinct circuit to execute."""

    fingerprint: str
    width: int
    backend: str
    seed: int


@dataclass(frozen=True)
class CuttingPlan:
    """Which unique subexperiment serves each (partition, QPD sample, observable group)."""

    labels: tuple[str, ...]
    coefficients: np.ndarray  # float64, one per QPD sample
    weight_types: tuple[str, ...]
    subobservables: Mapping[str, tuple[str, ...]]  # label -> Pauli labels, one per original term
    index: Mapping[str, np.ndarray]  # label -> int64 array (num samples, num groups) of unique ids
    unique: tuple[UniqueSubexperiment, ...]

    @property
    def num_subexperiments(self) -> int:
        """Return how many subexperiments the plain flow would run (duplicates included)."""
        return sum(int(array.size) for array in self.index.values())

    def backend_counts(self) -> dict[str, int]:
        """Return how many unique subexperiments each backend runs."""
        counts: dict[str, int] = {}
        for item in self.unique:
            counts[item.backend] = counts.get(item.backend, 0) + 1
        return dict(sorted(counts.items()))

    def to_json(self) -> dict[str, Any]:
        """Return the plan as JSON data (floats are written exactly by repr)."""
        return {
            "labels": list(self.labels),
            "coefficients": [float(c) for c in self.coefficients],
            "weight_types": list(self.weight_types),
            "subobservables": {label: list(paulis) for label, paulis in self.subobservables.items()},
            "index": {label: array.tolist() for label, array in self.index.items()},
            "unique": [
                {"fingerprint": u.fingerprint, "width": u.width, "backend": u.backend, "seed": u.seed}
                for u in self.unique
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CuttingPlan:
        """Rebuild a plan from :meth:`to_json` data."""
        return cls(
            labels=tuple(data["labels"]),
            coefficients=np.asarray(data["coefficients"], dtype=np.float64),
            weight_types=tuple(data["weight_types"]),
            subobservables={label: tuple(p) for label, p in data["subobservables"].items()},
            index={
                label: np.asarray(rows, dtype=np.int64).reshape(len(data["coefficients"]), -1)
                for label, rows in data["index"].items()
            },
            unique=tuple(UniqueSubexperiment(**item) for item in data["unique"]),
        )


def generate_subexperiments(
    subcircuits: Mapping[str, QuantumCircuit], subobservables: Mapping[str, PauliList]
) -> tuple[dict[str, list[QuantumCircuit]], list[tuple[float, Any]]]:
    """Generate every subexperiment of the full (unsampled) QPD with qiskit-addon-cutting."""
    experiments, coefficients = generate_cutting_experiments(
        circuits=dict(subcircuits), observables=dict(subobservables), num_samples=np.inf
    )
    assert isinstance(experiments, dict)
    return {str(k): v for k, v in experiments.items()}, list(coefficients)


def build_plan(
    subexperiments: Mapping[str, Sequence[QuantumCircuit]],
    coefficients: Sequence[tuple[float, Any]],
    subobservables: Mapping[str, PauliList],
    *,
    policy: WidthPolicy,
    run_seed: int,
    dedupe: bool = True,
) -> tuple[CuttingPlan, list[QuantumCircuit]]:
    """Deduplicate subexperiments by content and assign each a backend and a seed.

    Returns the plan and the unique circuits in plan order. ``dedupe=False``
    keeps every subexperiment separate (used to compare with the plain flow).
    """
    labels = tuple(str(label) for label in subobservables)
    seen: dict[str, int] = {}
    unique: list[UniqueSubexperiment] = []
    circuits: list[QuantumCircuit] = []
    index: dict[str, np.ndarray] = {}
    for label in labels:
        num_groups = len(ObservableCollection(subobservables[label]).groups)
        experiments = subexperiments[label]
        if len(experiments) != len(coefficients) * num_groups:
            raise ValueError(
                f"partition {label!r}: {len(experiments)} subexperiments for "
                f"{len(coefficients)} samples x {num_groups} groups"
            )
        ids = np.empty(len(experiments), dtype=np.int64)
        for position, circuit in enumerate(experiments):
            fingerprint = circuit_fingerprint(circuit)
            key = fingerprint if dedupe else f"{fingerprint}:{label}:{position}"
            if key not in seen:
                seen[key] = len(unique)
                unique.append(
                    UniqueSubexperiment(
                        fingerprint=fingerprint,
                        width=circuit.num_qubits,
                        backend=policy.backend_for(circuit.num_qubits),
                        seed=derive_seed(run_seed, fingerprint),
                    )
                )
                circuits.append(circuit)
            ids[position] = seen[key]
        index[label] = ids.reshape(len(coefficients), num_groups)
    plan = CuttingPlan(
        labels=labels,
        coefficients=np.asarray([c for c, _ in coefficients], dtype=np.float64),
        weight_types=tuple(getattr(w, "name", str(w)) for _, w in coefficients),
        subobservables={label: tuple(p.to_label() for p in subobservables[label]) for label in labels},
        index=index,
        unique=tuple(unique),
    )
    return plan, circuits
