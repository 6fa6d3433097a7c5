"""The cutting plan: every subexperiment, deduplicated, with its backend and seed.

The plan is the contract between steps: generate writes it, execute runs its
unique subexperiments by index range, reconstruct combines their results with
its coefficients. It is plain JSON plus QPY circuits, readable by any pod.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeAlias, overload

import numpy as np
from qiskit import QuantumCircuit
from qiskit.quantum_info import PauliList
from qiskit_addon_cutting.cutting_experiments import (  # upstream's own building blocks, pinned to 0.10
    _append_measurement_circuit,
    _append_measurement_register,
    _consolidate_resets,
    _get_bases_by_partition,
    _get_mapping_ids_by_partition,
    _remove_final_resets,
    _remove_resets_in_zero_state,
)
from qiskit_addon_cutting.qpd import decompose_qpd_instructions, generate_qpd_weights
from qiskit_addon_cutting.utils.observable_grouping import CommutingObservableGroup, ObservableCollection

from qhybrid.cutting.assemble import SubcircuitTemplate
from qhybrid.cutting.fingerprint import circuit_fingerprint, derive_seed
from qhybrid.cutting.policies import WidthPolicy


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


def observable_collection(paulis: PauliList | Sequence[str]) -> ObservableCollection:
    """Upstream's commuting groups of a partition's terms, made once per list of terms.

    Generation, planning and reconstruction each need them (about 4 ms a partition on the
    default workload); the grouping depends only on the terms. Callers only read it.
    """
    labels = tuple(paulis.to_labels()) if isinstance(paulis, PauliList) else tuple(paulis)
    return _collection(labels)


@lru_cache(maxsize=32)
def _collection(labels: tuple[str, ...]) -> ObservableCollection:
    return ObservableCollection(PauliList(list(labels)))


def generate_subexperiments(
    subcircuits: Mapping[str, QuantumCircuit], subobservables: Mapping[str, PauliList]
) -> tuple[dict[str, list[QuantumCircuit]], list[tuple[float, Any]]]:
    """Generate every subexperiment of the full (unsampled) QPD, building each distinct one once.

    This is qiskit-addon-cutting's ``generate_cutting_experiments(num_samples=inf)``
    loop, with the same coefficients, order and circuits (a test compares them),
    except that subexperiments whose QPD gates map to the same local operations
    are built once and the same circuit object is listed at each of their
    positions. On the reference workload that builds 250 circuits instead of 432.
    """
    experiments, coefficients, _ = generate_fingerprinted_subexperiments(subcircuits, subobservables)
    return experiments, coefficients  # build_circuits: every one is a QuantumCircuit


@dataclass(frozen=True, eq=False)
class UnbuiltSubexperiment:
    """A subexperiment known by its fingerprint and origin, its circuit not built (yet)."""

    label: str
    group_index: int
    local_ids: tuple[int, ...]
    num_qubits: int


Subexperiment: TypeAlias = QuantumCircuit | UnbuiltSubexperiment


def generate_fingerprinted_subexperiments(
    subcircuits: Mapping[str, QuantumCircuit],
    subobservables: Mapping[str, PauliList],
    *,
    origins: dict[int, tuple[str, int, tuple[int, ...]]] | None = None,
    templates: Mapping[str, SubcircuitTemplate] | None = None,
    build_circuits: bool = True,
) -> tuple[dict[str, list[Subexperiment]], list[tuple[float, Any]], dict[int, str]]:
    """:func:`generate_subexperiments`, plus each built circuit's fingerprint by ``id(circuit)``.

    The fingerprints come from the subcircuit templates, the same :func:`circuit_fingerprint`
    gives without reading every circuit back; a circuit built by upstream's decomposition
    has none here (:func:`build_plan` computes it). ``origins``, when given, receives each
    built circuit's (partition label, observable group index, local map ids) by ``id``.
    ``templates``: :func:`partition_templates` of ``subcircuits``, when already made.
    ``build_circuits=False`` lists an :class:`UnbuiltSubexperiment` instead of a circuit
    wherever the template gives the fingerprint without one (:meth:`SubcircuitTemplate.fingerprint`).
    """
    templates = templates if templates is not None else partition_templates(subcircuits)
    build = subexperiment_builder(subcircuits, templates)
    built: dict[tuple[Any, ...], Subexperiment] = {}
    fingerprints: dict[int, str] = {}
    experiments: dict[str, list[Subexperiment]] = {str(label): [] for label in subcircuits}
    coefficients: list[tuple[float, Any]] = []
    for coefficient, weight_type, positions in walk_qpd(subcircuits, subobservables):
        coefficients.append((coefficient, weight_type))
        for label, group, local_ids, key in positions:
            if key not in built:
                template = templates[label]
                known = (
                    None
                    if build_circuits or not template.supported
                    else template.fingerprint(group, local_ids)
                )
                item: Subexperiment
                if known is not None:
                    item = UnbuiltSubexperiment(str(label), key[1], local_ids, template.subcircuit.num_qubits)
                    fingerprint: str | None = known
                else:
                    item, fingerprint = build(label, group, local_ids)
                built[key] = circuit = item
                if origins is not None:
                    origins[id(circuit)] = (str(label), key[1], local_ids)
                if fingerprint is not None:
                    fingerprints[id(circuit)] = fingerprint
            experiments[str(label)].append(built[key])
    return experiments, coefficients, fingerprints


class CircuitsOnDemand(Sequence[QuantumCircuit]):
    """A plan's unique subexperiments as circuits, each unbuilt one built when first read.

    A run that computes every subexperiment in its leaf form, in this process, and writes
    no QPY shards never reads them: no circuit is built.
    """

    def __init__(
        self,
        items: Sequence[Subexperiment],
        subcircuits: Mapping[str, QuantumCircuit],
        subobservables: Mapping[str, PauliList],
        templates: Mapping[str, SubcircuitTemplate],
    ) -> None:
        """``items``: :func:`build_plan`'s unique subexperiments, built or not."""
        self._items = list(items)
        self._build = subexperiment_builder(subcircuits, templates)
        self._subobservables = subobservables

    def __len__(self) -> int:
        """How many unique subexperiments."""
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> QuantumCircuit: ...
    @overload
    def __getitem__(self, index: slice) -> list[QuantumCircuit]: ...
    def __getitem__(self, index: int | slice) -> QuantumCircuit | list[QuantumCircuit]:
        """The circuit at ``index`` (built now, once, if it was not)."""
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self._items)))]
        item = self._items[index]
        if isinstance(item, UnbuiltSubexperiment):
            group = observable_collection(self._subobservables[item.label]).groups[item.group_index]
            item = self._items[index] = self._build(item.label, group, item.local_ids)[0]
        return item


def partition_templates(subcircuits: Mapping[str, QuantumCircuit]) -> dict[str, SubcircuitTemplate]:
    """Each partition's subcircuit read once, with where its QPD gates sit."""
    gate_ids, _ = _get_mapping_ids_by_partition(dict(subcircuits))
    return {label: SubcircuitTemplate(subcircuits[label], gate_ids[label]) for label in subcircuits}


def subexperiment_builder(
    subcircuits: Mapping[str, QuantumCircuit], templates: Mapping[str, SubcircuitTemplate] | None = None
) -> Callable[[str, CommutingObservableGroup, tuple[int, ...]], tuple[QuantumCircuit, str | None]]:
    """Return ``build(label, group, local_ids)``: the subexperiment at one :func:`walk_qpd` position.

    It comes with its fingerprint when its template computed one (else None).
    """
    gate_ids, _ = _get_mapping_ids_by_partition(dict(subcircuits))
    templates = templates if templates is not None else partition_templates(subcircuits)

    def build(
        label: str, group: CommutingObservableGroup, local_ids: tuple[int, ...]
    ) -> tuple[QuantumCircuit, str | None]:
        template = templates[label]
        if template.supported:
            return template.build_fingerprinted(group, local_ids)
        return _build_subexperiment(subcircuits[label], group, gate_ids[label], local_ids), None

    return build


def count_subexperiments(
    subcircuits: Mapping[str, QuantumCircuit], subobservables: Mapping[str, PauliList]
) -> tuple[int, int]:
    """Return (subexperiments, distinct ones) of the full QPD without building a circuit.

    Distinct means distinct local operations per partition and observable group: the
    circuits :func:`generate_subexperiments` builds. The plan's content deduplication
    may merge a few more (equal circuits from different operations), never fewer.
    """
    total, keys = 0, set[tuple[Any, ...]]()
    for _coefficient, _weight_type, positions in walk_qpd(subcircuits, subobservables):
        total += len(positions)
        keys.update(key for _label, _group, _ids, key in positions)
    return total, len(keys)


QpdPosition = tuple[str, CommutingObservableGroup, tuple[int, ...], tuple[Any, ...]]


def walk_qpd(
    subcircuits: Mapping[str, QuantumCircuit], subobservables: Mapping[str, PauliList]
) -> Iterator[tuple[float, Any, list[QpdPosition]]]:
    """Yield each QPD sample in upstream's order: its coefficient, weight type and subexperiments.

    Each subexperiment is (partition label, observable group, local map ids, key); equal
    keys mean equal circuits (the same local operations at every cut).
    """
    gate_ids, map_positions = _get_mapping_ids_by_partition(dict(subcircuits))
    bases = _get_bases_by_partition(dict(subcircuits), gate_ids)
    groups = {label: observable_collection(subobservables[label]).groups for label in subcircuits}
    samples = generate_qpd_weights(bases, num_samples=np.inf)
    kappa = np.prod([basis.kappa for basis in bases])
    total = sum(redundancy for redundancy, _ in samples.values())
    # Upstream's order: descending frequency (a stable sort, so ties keep insertion order).
    ordered = sorted(samples.items(), key=lambda item: item[1][0], reverse=True)
    for map_ids, (redundancy, weight_type) in ordered:
        actual = np.prod([basis.coeffs[map_id] for basis, map_id in zip(bases, map_ids, strict=True)])
        positions = []
        for label, subcircuit in subcircuits.items():
            local_ids = tuple(map_ids[j] for j in map_positions[label])
            local_ops = _local_operations(subcircuit, gate_ids[label], local_ids)
            for group_index, group in enumerate(groups[label]):
                positions.append((label, group, local_ids, (label, group_index, local_ops)))
        yield (redundancy / total) * (kappa * np.sign(actual)), weight_type, positions


def _local_operations(
    subcircuit: QuantumCircuit, gate_ids: Sequence[Sequence[int]], map_ids: Sequence[int]
) -> tuple[tuple[tuple[str, tuple[str, ...]], ...], ...]:
    """Return what each QPD gate of ``subcircuit`` becomes under ``map_ids``, as comparable data."""
    result = []
    for (gate_id,), map_id in zip(gate_ids, map_ids, strict=True):
        gate = subcircuit.data[gate_id].operation
        operations = gate.basis.maps[map_id][gate.qubit_id]
        result.append(tuple((op.name, tuple(repr(p) for p in op.params)) for op in operations))
    return tuple(result)


def _build_subexperiment(
    subcircuit: QuantumCircuit,
    group: CommutingObservableGroup,
    gate_ids: Sequence[Sequence[int]],
    map_ids: Sequence[int],
) -> QuantumCircuit:
    """Build one subexperiment exactly as ``generate_cutting_experiments`` does."""
    circuit = _append_measurement_register(subcircuit, group)
    decompose_qpd_instructions(circuit, gate_ids, map_ids, inplace=True)
    _append_measurement_circuit(circuit, group, inplace=True)
    # Upstream then drops initial and final resets and merges runs of resets.
    _remove_resets_in_zero_state(circuit)
    _remove_final_resets(circuit)
    _consolidate_resets(circuit)
    return circuit


def build_plan(
    subexperiments: Mapping[str, Sequence[Subexperiment]],
    coefficients: Sequence[tuple[float, Any]],
    subobservables: Mapping[str, PauliList],
    *,
    policy: WidthPolicy,
    run_seed: int,
    dedupe: bool = True,
    known_fingerprints: Mapping[int, str] | None = None,
) -> tuple[CuttingPlan, list[Subexperiment]]:
    """Deduplicate subexperiments by content and assign each a backend and a seed.

    Returns the plan and the unique circuits in plan order. ``dedupe=False``
    keeps every subexperiment separate (used to compare with the plain flow).
    ``known_fingerprints``: circuits' fingerprints by ``id(circuit)``, already computed
    (:func:`generate_fingerprinted_subexperiments`); the rest are computed here.
    """
    labels = tuple(str(label) for label in subobservables)
    seen: dict[str, int] = {}
    fingerprints: dict[int, str] = dict(known_fingerprints or {})
    unique: list[UniqueSubexperiment] = []
    circuits: list[Subexperiment] = []
    index: dict[str, np.ndarray] = {}
    for label in labels:
        num_groups = len(observable_collection(subobservables[label]).groups)
        experiments = subexperiments[label]
        if len(experiments) != len(coefficients) * num_groups:
            raise ValueError(
                f"partition {label!r}: {len(experiments)} subexperiments for "
                f"{len(coefficients)} samples x {num_groups} groups"
            )
        ids = np.empty(len(experiments), dtype=np.int64)
        for position, circuit in enumerate(experiments):
            if id(circuit) not in fingerprints:  # generate_subexperiments lists shared circuits
                assert isinstance(circuit, QuantumCircuit)  # an unbuilt one comes with its fingerprint
                fingerprints[id(circuit)] = circuit_fingerprint(circuit)
            fingerprint = fingerprints[id(circuit)]
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
