"""Leaf forms: a partition's subexperiments in one canonical order, canonicalised once per partition.

Every subexperiment of a partition is the partition's subcircuit (its *body*) with each QPD
gate replaced by one map's local operations, followed by one observable group's basis
changes and measurements (its *tail*). Canonicalising each subexperiment on its own
(:mod:`qhybrid.cache.canonical`) costs about as much as simulating it, and gives siblings
different orders, so a simulator cannot share their common prefix.

Here the body is canonicalised once, each QPD gate an opaque placeholder that orders like
any non-diagonal gate on its wire, or like a diagonal one when every local operation it may
become is diagonal (a CZ or RZZ cut's), so nothing moves across a cut that its operations
would not let pass. A leaf is
the body in that canonical order and labelling, each placeholder replaced in place by the
leaf's local operations, then its group's tail in the same labels, measured qubits in label
order. Its text is that circuit written out instruction by instruction, so:

- two subexperiments with the same text are the same circuit up to a relabelling, and the
  text, its key and its check say exactly which circuit is computed (``cache verify`` writes
  a stored circuit out again the same way: :func:`leaf_text`);
- all leaves of a partition share the body's order, so the branching engine walks them as
  one tree: the body once up to the first cut, one branch per local operation at each cut;
- a relabelled or rewritten copy of the partition gets the same body form and so the same
  leaves (within the labellings :data:`~qhybrid.cache.canonical.MAX_LABELLINGS` allows).

Leaf texts carry their own schema, so they never meet the per-circuit forms' keys. A
partition whose body has measurements, resets or classical bits of its own (wire cuts) has
no leaves: its subexperiments are canonicalised one by one as before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qiskit import QuantumCircuit
from qiskit.circuit import CircuitInstruction, Measure
from qiskit.circuit.library import HGate, SXGate
from qiskit_addon_cutting.utils.observable_grouping import CommutingObservableGroup

from qhybrid.cache.canonical import (
    FormRegisters,
    NotCanonicalisable,
    Operation,
    canonical_order,
    form_digests,
    labelled_digest,
    listing_circuit,
    simplify_operations,
)
from qhybrid.cache.canonical_ref import CanonicalRef
from qhybrid.cache.gate_sets import DIAGONAL, DROPPED, slot_order
from qhybrid.cutting.assemble import SubcircuitTemplate
from qhybrid.cutting.deferred import OBSERVABLE_REGISTER, QPD_REGISTER
from qhybrid.cutting.fingerprint import instruction_token
from qhybrid.cutting.listing import Record

LEAF_SCHEMA = "qhybrid-leaf-v1"
_PLACEHOLDER = "qpd_cut"
_DIAGONAL_PLACEHOLDER = "qpd_cut_diagonal"  # in gate_sets.DIAGONAL
_MEASURE = CircuitInstruction(Measure())
_MEASURE_TOKEN = instruction_token(_MEASURE)

# Where a subexperiment comes from: (partition label, observable group index, local map id per cut).
Origin = tuple[str, int, tuple[int, ...]]


@dataclass(frozen=True)
class LeafForm(FormRegisters):
    """One subexperiment's leaf: what the cache keys on and the simulators run (a Listing)."""

    text: str
    key: str  # SHA-256 of the text
    check: str  # BLAKE2b of the text, compared on every hit
    normal: str  # SHA-256 of the key and the body's labelling (tells hit kinds apart)
    observable_bits: tuple[int, ...]  # circuit's observable bit i is the leaf's bit observable_bits[i]
    _records: tuple[Record, ...]
    _num_qubits: int
    _num_qpd: int
    # Records per segment: body, then each cut's local operations and the body after it, then
    # the tail. Leaves of a partition with equal segments at one place run them together.
    _segments: tuple[int, ...]

    @property
    def num_qubits(self) -> int:
        """Qubits of the leaf (the partition's)."""
        return self._num_qubits

    def records(self) -> list[Record]:
        """The leaf's instructions in order, on qubit and clbit indices."""
        return list(self._records)

    def segment_lengths(self) -> tuple[int, ...]:
        """How many of :meth:`records` each segment holds (the branching engine stacks by segment)."""
        return self._segments

    def circuit(self) -> QuantumCircuit:
        """Build the leaf's circuit (for Aer, and for the stored entry that ``cache verify`` reads)."""
        return listing_circuit(self._num_qubits, len(self.observable_bits), self._num_qpd, self.records())

    def ref(self) -> CanonicalRef:
        """The form as plain data (no circuit)."""
        return CanonicalRef(self.key, self.check, self.normal, self.observable_bits)


@dataclass(frozen=True)
class _Tail:
    records: tuple[Record, ...]
    text: str
    observable_bits: tuple[int, ...]


class PartitionLeaves:
    """A partition's body canonicalised once; :meth:`leaf` gives any of its subexperiments' forms."""

    def __init__(self, template: SubcircuitTemplate, groups: Sequence[CommutingObservableGroup]) -> None:
        """Canonicalise ``template``'s body; raise NotCanonicalisable when it has no leaves."""
        if not template.supported or template.subcircuit.num_clbits:
            raise NotCanonicalisable("the partition has QPD gates or classical bits leaves do not take")
        self.num_qubits = n = template.subcircuit.num_qubits
        index = template.qubit_index
        ops = []
        for position, instruction in enumerate(template.instructions):
            name = instruction.name
            wires = tuple(index[q] for q in instruction.qubits)
            gate = template.gates.get(position)
            if gate is not None:
                name, token = _placeholder_name(gate), _placeholder_token(gate)
                ops.append(Operation(name, token, wires, (), instruction))
            elif name in ("measure", "reset") or instruction.clbits:
                raise NotCanonicalisable(f"the partition's body has a {name}")
            elif name not in DROPPED:
                try:
                    token = instruction_token(instruction)
                except ValueError as error:
                    raise NotCanonicalisable(str(error)) from None
                ops.append(Operation(name, token, wires, (), instruction))
        _, ordered, self.labels = canonical_order(simplify_operations(ops, n), n)
        cut_of = {id(template.instructions[p]): p for p in template.gates}
        # The body between placeholders: records and text; and each placeholder's cut and wire.
        segments: list[tuple[list[Record], list[str]]] = [([], [])]
        self._cuts: list[tuple[int, int, Any]] = []  # (template cut number, canonical wire, QPD gate)
        for op in ordered:
            wires = tuple(slot_order(op.name, [self.labels[q] for q in op.qubits]))
            if op.name in (_PLACEHOLDER, _DIAGONAL_PLACEHOLDER):
                position = cut_of[id(op.source)]
                self._cuts.append((template.cut_at[position], wires[0], template.gates[position]))
                segments.append(([], []))
                continue
            segments[-1][0].append((op.source, wires, ()))
            segments[-1][1].append(f"{op.token}[{','.join(map(str, wires))}][];")
        self._segments = [(records, "".join(parts)) for records, parts in segments]
        self._expansions: dict[tuple[int, int], list[tuple[CircuitInstruction, str, bool]]] = {}
        self._tails = [self._tail(group) for group in groups]
        self._made: dict[tuple[int, tuple[int, ...]], LeafForm] = {}

    def _tail(self, group: CommutingObservableGroup) -> _Tail:
        measured = group.pauli_indices or [0]  # upstream measures one qubit at least
        x, z = group.general_observable.x, group.general_observable.z
        in_label_order = sorted(measured, key=lambda q: self.labels[q])
        rank = {q: r for r, q in enumerate(in_label_order)}
        records: list[Record] = []
        parts = []
        for q in in_label_order:
            label = self.labels[q]
            if x[q]:
                change = CircuitInstruction(SXGate() if z[q] else HGate())
                records.append((change, (label,), ()))
                parts.append(f"{instruction_token(change)}[{label}][];")
            records.append((_MEASURE, (label,), (rank[q],)))
            parts.append(f"{_MEASURE_TOKEN}[{label}][o{rank[q]}];")
        return _Tail(tuple(records), "".join(parts), tuple(rank[q] for q in measured))

    def _expansion(self, cut: int, map_id: int) -> list[tuple[CircuitInstruction, str, bool]]:
        """Canonical cut ``cut``'s local operations under map ``map_id``: (instruction, token, measure?)."""
        found = self._expansions.get((cut, map_id))
        if found is None:
            _, _, gate = self._cuts[cut]
            found = []
            for operation in gate.basis.maps[map_id][gate.qubit_id]:
                if operation.name.lower() == "qpd_measure":
                    found.append((_MEASURE, _MEASURE_TOKEN, True))
                else:
                    instruction = CircuitInstruction(operation)
                    found.append((instruction, instruction_token(instruction), False))
            self._expansions[(cut, map_id)] = found
        return found

    def leaf(self, group_index: int, local_ids: Sequence[int]) -> LeafForm:
        """The leaf of observable group ``group_index`` with map ``local_ids[c]`` at template cut c.

        Made once: generate asks for every leaf's key, and execute for the same leaves again.
        """
        found = self._made.get((group_index, tuple(local_ids)))
        if found is not None:
            return found
        tail = self._tails[group_index]
        num_observable = len(tail.observable_bits)
        records: list[Record] = []
        parts: list[str] = []
        lengths: list[int] = []
        num_qpd = 0
        for position, (segment, text) in enumerate(self._segments):
            records.extend(segment)
            parts.append(text)
            lengths.append(len(segment))
            if position == len(self._cuts):
                break
            number, wire, _ = self._cuts[position]
            expansion = self._expansion(position, local_ids[number])
            lengths.append(len(expansion))
            for instruction, token, measure in expansion:
                if measure:
                    records.append((instruction, (wire,), (num_observable + num_qpd,)))
                    parts.append(f"{token}[{wire}][p{num_qpd}];")
                    num_qpd += 1
                else:
                    records.append((instruction, (wire,), ()))
                    parts.append(f"{token}[{wire}][];")
        records.extend(tail.records)
        parts.append(tail.text)
        lengths.append(len(tail.records))
        text = f"{LEAF_SCHEMA};q{self.num_qubits};o{num_observable};p{num_qpd};{''.join(parts)}"
        key, check = form_digests(text)
        made = self._made[(group_index, tuple(local_ids))] = LeafForm(
            text=text,
            key=key,
            check=check,
            normal=labelled_digest(key, self.labels),
            observable_bits=tail.observable_bits,
            _records=tuple(records),
            _num_qubits=self.num_qubits,
            _num_qpd=num_qpd,
            _segments=tuple(lengths),
        )
        return made


class ProblemLeaves:
    """Every partition's leaves (those that have them), from one problem's templates and groups."""

    def __init__(
        self,
        templates: Mapping[str, SubcircuitTemplate],
        groups: Mapping[str, Sequence[CommutingObservableGroup]],
    ) -> None:
        """Canonicalise each partition's body once."""
        self._partitions: dict[str, PartitionLeaves | None] = {}
        for label, template in templates.items():
            try:
                self._partitions[label] = PartitionLeaves(template, groups[label])
            except NotCanonicalisable:
                self._partitions[label] = None

    def leaf(self, origin: Origin | None) -> LeafForm | None:
        """The leaf of the subexperiment at ``origin`` (None: its partition has no leaves)."""
        if origin is None:
            return None
        label, group_index, local_ids = origin
        partition = self._partitions.get(label)
        return None if partition is None else partition.leaf(group_index, local_ids)


def leaf_text(circuit: QuantumCircuit) -> str:
    """Write a leaf's circuit out as its text (what :meth:`PartitionLeaves.leaf` keyed it by)."""
    role: dict[Any, str] = {}
    sizes = {OBSERVABLE_REGISTER: 0, QPD_REGISTER: 0}
    for register in circuit.cregs:
        kind = {OBSERVABLE_REGISTER: "o", QPD_REGISTER: "p"}.get(register.name)
        if kind is None:
            raise NotCanonicalisable(f"classical register {register.name!r} is not a leaf's")
        sizes[register.name] = register.size
        for position, bit in enumerate(register):
            role[bit] = f"{kind}{position}"
    index = {bit: i for i, bit in enumerate(circuit.qubits)}
    parts = []
    for instruction in circuit.data:
        wires = slot_order(instruction.name, [index[q] for q in instruction.qubits])
        names = ",".join(role[c] for c in instruction.clbits)
        parts.append(f"{instruction_token(instruction)}[{','.join(map(str, wires))}][{names}];")
    head = f"{LEAF_SCHEMA};q{circuit.num_qubits};o{sizes[OBSERVABLE_REGISTER]};p{sizes[QPD_REGISTER]};"
    return head + "".join(parts)


def _placeholder_name(gate: Any) -> str:
    """Diagonal when every local operation the gate's maps may put on its side is (or measures in Z).

    Then the placeholder commutes with the body's diagonal gates as its operations do, so
    two halves of a symmetric circuit that apply their diagonal gates in another order
    still get one body form.
    """
    side = gate.qubit_id
    names = {op.name.lower() for ops in gate.basis.maps for op in ops[side]}
    return _DIAGONAL_PLACEHOLDER if names <= DIAGONAL | {"qpd_measure"} else _PLACEHOLDER


def _placeholder_token(gate: Any) -> str:
    """A QPD gate's placeholder: the set of local operations its maps may put on its side of the cut.

    A set, not the maps' order: the two sides of a symmetric gate's cut (an RZZ) list the
    same operations in another order, and a relabelled partition may hold either side.
    """
    side = gate.qubit_id
    choices = sorted(
        {repr([(op.name, tuple(repr(p) for p in op.params)) for op in ops[side]]) for ops in gate.basis.maps}
    )
    return f"{_PLACEHOLDER}:{hashlib.blake2b(repr(choices).encode(), digest_size=8).hexdigest()}"
