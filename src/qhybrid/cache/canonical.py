"""Canonical forms of subexperiments: what the result cache keys on, and what the simulators run.

Two subexperiments that differ only in how they are written (register and gate names,
barriers, the order of operations on disjoint qubits, trivial identities, which qubit is
called which) get one canonical form. The simulator path always runs the canonical
circuit and maps its outcome bits back, with or without a cache, so a result served from
the cache is bitwise what computing it would have given.

Stages, cheapest first:
1. operations as content tokens (custom gates by what they do, names dropped), barriers,
   delays and identities dropped, classical bits by role (observable or QPD bit), and the
   order of commuting operations (disjoint qubits, or diagonal in the computational basis)
   left out: ops are written in a canonical topological order of the commutation DAG;
2. trivial identities: zero-angle rotations, adjacent self-inverse pairs, adjacent
   rotations about one axis merged into one (a float sum, the same on every machine),
   a reset of a wire still in |0>;
3. qubit relabelling: Weisfeiler-Leman colour refinement of the circuit's wire graph
   sorts the qubits into classes; every labelling that keeps the classes in colour order
   is tried, and the smallest serialisation (operations in a canonical topological
   order) is the canonical form. When the classes allow more than
   :data:`MAX_LABELLINGS` labellings (a very symmetric circuit), ties keep the circuit's
   own order: still deterministic and correct, only fewer relabelled circuits meet.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
from qiskit.circuit import CircuitInstruction

from qhybrid.cache.canonical_ref import CanonicalRef
from qhybrid.cache.gate_sets import DIAGONAL, DROPPED, ROTATIONS, SELF_INVERSE, SYMMETRIC, slot_order
from qhybrid.cutting.deferred import OBSERVABLE_REGISTER, QPD_REGISTER
from qhybrid.cutting.fingerprint import UNTOKENISED, instruction_token
from qhybrid.cutting.listing import Record

SCHEMA = "qhybrid-canonical-v1"
# The most labellings tried per circuit: 6! covers a 6-qubit ring's reflections with room.
MAX_LABELLINGS = 720


class NotCanonicalisable(ValueError):
    """The circuit has something canonical forms do not cover (another register, control flow)."""


class Operation(NamedTuple):
    """One operation as canonical forms read it (a tuple: over 100,000 are made for a 24-qubit plan)."""

    name: str
    token: str
    qubits: tuple[int, ...]
    clbits: tuple[tuple[str, int], ...]  # ("o", i): observable bit i; ("p", j): QPD bit j
    # The circuit's instruction (its wires are rewritten when the canonical circuit is built):
    # reading a standard gate's name and parameters from it builds no Python gate object.
    source: CircuitInstruction


class FormRegisters:
    """The classical bits of a form's circuit: the observable register's, then the QPD register's."""

    observable_bits: tuple[int, ...]
    _num_qpd: int

    @property
    def num_clbits(self) -> int:
        """Classical bits of the circuit."""
        return len(self.observable_bits) + self._num_qpd

    @property
    def observable_clbits(self) -> tuple[int, ...]:
        """Clbit indices of the observable register."""
        return tuple(range(len(self.observable_bits)))

    @property
    def qpd_clbits(self) -> tuple[int, ...]:
        """Clbit indices of the QPD register (it comes after the observable's; none without QPD bits)."""
        return tuple(range(len(self.observable_bits), self.num_clbits))


@dataclass(frozen=True)
class CanonicalForm(FormRegisters):
    """A subexperiment's canonical form, and how its outcome bits map to the circuit's own."""

    text: str
    key: str  # SHA-256 of the text: where the result is stored
    check: str  # BLAKE2b of the text: compared on every hit, so a key collision is caught
    normal: str  # SHA-256 of the key and the labelling that reached it: equal exactly for circuits
    # that are the same up to stages 1-2 in their own labelling (tells hit kinds apart)
    observable_bits: tuple[int, ...]  # circuit's observable bit i is canonical bit observable_bits[i]
    _ops: tuple[Operation, ...] = field(repr=False, compare=False)
    _labels: tuple[int, ...] = field(repr=False, compare=False)
    _num_qpd: int = field(repr=False, compare=False)

    @property
    def num_qubits(self) -> int:
        """Qubits of the canonical circuit (those of the original, unused ones included)."""
        return len(self._labels)

    def records(self) -> list[Record]:
        """The canonical circuit's instructions, in order, on qubit and clbit indices (no circuit built).

        :meth:`circuit` appends exactly these, so an engine reading them runs the canonical circuit.
        """
        num_observable = len(self.observable_bits)
        qpd_order: dict[int, int] = {}
        out = []
        for op in self._ops:
            clbits = tuple(
                self.observable_bits[index]
                if kind == "o"
                else num_observable + qpd_order.setdefault(index, len(qpd_order))
                for kind, index in op.clbits
            )
            wires = slot_order(op.name, [self._labels[q] for q in op.qubits])
            out.append((op.source, tuple(wires), clbits))
        return out

    def circuit(self) -> QuantumCircuit:
        """Build the canonical circuit: the one the simulators run for every circuit of this form."""
        return listing_circuit(self.num_qubits, len(self.observable_bits), self._num_qpd, self.records())

    def ref(self) -> CanonicalRef:
        """The form as plain data (no circuit)."""
        return CanonicalRef(self.key, self.check, self.normal, self.observable_bits)


def listing_circuit(
    num_qubits: int, num_observable: int, num_qpd: int, records: list[Record]
) -> QuantumCircuit:
    """Build a canonical circuit from its records: the observable register, then the QPD one (if any)."""
    registers = [ClassicalRegister(num_observable, OBSERVABLE_REGISTER)]
    if num_qpd:
        registers.append(ClassicalRegister(num_qpd, QPD_REGISTER))
    out = QuantumCircuit(QuantumRegister(num_qubits, "q"), *registers)
    qubits, clbits = out.qubits, out.clbits
    for source, wires, bits in records:
        wired = source.replace(qubits=tuple(qubits[w] for w in wires), clbits=tuple(clbits[c] for c in bits))
        out._append(wired)
    return out


def _digest8(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _operations(circuit: QuantumCircuit, tokens: Sequence[str] | None) -> tuple[list[Operation], int, int]:
    """Stage 1: the circuit's operations as tokens on qubit indices and role-named classical bits.

    ``tokens``: each non-barrier instruction's token, in order, when already known (the
    circuit's fingerprint computed them); else they are computed here.
    """
    roles: dict[object, tuple[str, int]] = {}
    sizes = {"o": 0, "p": 0}
    for register in circuit.cregs:
        if register.name not in (OBSERVABLE_REGISTER, QPD_REGISTER):
            raise NotCanonicalisable(f"classical register {register.name!r} is not a subexperiment's")
        kind = "o" if register.name == OBSERVABLE_REGISTER else "p"
        sizes[kind] = register.size
        for index, bit in enumerate(register):
            roles[bit] = (kind, index)
    if len(roles) != circuit.num_clbits:
        raise NotCanonicalisable("circuit has classical bits outside its registers")
    qubit_index = {bit: i for i, bit in enumerate(circuit.qubits)}
    known = iter(tokens) if tokens is not None else None
    ops = []
    for instruction in circuit.data:
        name = instruction.name
        token: str | None = None
        if known is not None and name not in UNTOKENISED:
            token = next(known, None)
            if token is None:
                raise ValueError(f"{len(tokens or ())} tokens for a longer circuit")
        if name in DROPPED:
            continue
        try:
            token = token if token is not None else instruction_token(instruction)
        except ValueError as error:
            raise NotCanonicalisable(str(error)) from None
        qubits = tuple(qubit_index[q] for q in instruction.qubits)
        ops.append(Operation(name, token, qubits, tuple(roles[c] for c in instruction.clbits), instruction))
    if known is not None and next(known, None) is not None:
        raise ValueError(f"{len(tokens or ())} tokens for a shorter circuit")
    return ops, sizes["o"], sizes["p"]


def _angle(op: Operation) -> float | None:
    params = op.source.params
    if op.name in ROTATIONS and len(params) == 1:
        try:
            return float(params[0])
        except TypeError:
            return None
    return None


def _partner(
    op: Operation, angle: float | None, out: list[Operation | None], wires: list[list[int]]
) -> int | None:
    """Return the index of an earlier op that ``op`` cancels or merges with, if any.

    A non-diagonal op pairs only with the op right before it on all its wires. A diagonal
    op may also reach back past diagonal ops (they commute), so the result does not depend
    on the order in which commuting operations were written. ``angle`` is the op's rotation
    angle (None when it is not a one-angle rotation).
    """
    if op.clbits or (op.name not in SELF_INVERSE and angle is None):
        return None
    shape = slot_order(op.name, list(op.qubits))
    first = wires[op.qubits[0]]
    if not first:
        return None
    reach = (
        range(len(first) - 1, -1, -1) if op.name in DIAGONAL else range(len(first) - 1, len(first) - 2, -1)
    )
    for position in reach:
        j = first[position]
        candidate = out[j]
        assert candidate is not None
        if candidate.name == op.name and slot_order(candidate.name, list(candidate.qubits)) == shape:
            if all(
                j in wires[q] and all(out[k].name in DIAGONAL for k in wires[q][wires[q].index(j) + 1 :])  # type: ignore[union-attr]
                for q in op.qubits
            ) and (op.name in DIAGONAL or all(wires[q][-1] == j for q in op.qubits)):
                return j
        if candidate.name not in DIAGONAL:
            return None
    return None


def _simplify(ops: list[Operation], num_qubits: int) -> list[Operation]:
    """Stage 2: drop trivial identities, cancelling and merging pairs as they meet.

    Merged rotation angles are summed with ``math.fsum`` (correctly rounded), so the merged
    angle does not depend on the order the parts came in.
    """
    out: list[Operation | None] = []
    parts: dict[int, list[float]] = {}  # merged rotation at index -> the angles it sums
    wires: list[list[int]] = [[] for _ in range(num_qubits)]  # indices into out, per qubit

    for op in ops:
        angle = _angle(op)
        if angle == 0.0:
            continue
        if op.name == "reset" and not wires[op.qubits[0]]:
            continue  # every wire starts in |0>
        j = _partner(op, angle, out, wires)
        if j is not None:
            previous = out[j]
            assert previous is not None
            if op.name in SELF_INVERSE:
                out[j] = None
                for q in previous.qubits:
                    wires[q].remove(j)
                continue
            assert angle is not None
            parts.setdefault(j, [_angle(previous) or 0.0]).append(angle)
            total = math.fsum(parts[j])
            if total == 0.0:
                out[j] = None
                for q in previous.qubits:
                    wires[q].remove(j)
                continue
            merged = CircuitInstruction(type(op.source.operation)(total))
            out[j] = Operation(op.name, instruction_token(merged), previous.qubits, (), merged)
            continue
        out.append(op)
        for q in op.qubits:
            wires[q].append(len(out) - 1)
    return [op for op in out if op is not None]


def _wire_graph(
    ops: list[Operation], num_qubits: int, *, labelled: bool = True
) -> tuple[list[list[int]], list[list[tuple[int, str]]], dict[tuple[str, int], int]]:
    """Return each op's predecessors (ordering), and the labelled adjacency of the colour graph.

    The graph is a commutation DAG: operations diagonal in the computational basis
    (``rz``, ``cz``, ``rzz``, Z-basis measurements, ...) commute with each other, so a run
    of them on a wire is unordered; each depends on the last non-diagonal operation before
    it, and the next non-diagonal operation depends on all of them. The QPD's local
    operations at a cut are diagonal, which is what makes two halves of a symmetric circuit
    one circuit relabelled. Nodes: ops 0..m-1, then one input node per qubit, then one node
    per classical bit. ``labelled=False`` computes only the predecessors (the colour graph,
    most of the cost, comes back empty): the graph is needed only when refinement runs.
    """
    m = len(ops)
    clbit_node: dict[tuple[str, int], int] = {}
    adjacency: list[list[tuple[int, str]]] = [[] for _ in range(m + num_qubits)] if labelled else []
    # Per wire: the last non-diagonal op (or the input node) and the diagonal ops since, as (node, slot).
    anchor: list[tuple[int, int]] = [(m + q, 0) for q in range(num_qubits)]
    block: list[list[tuple[int, int]]] = [[] for _ in range(num_qubits)]
    last_on_clbit: dict[tuple[str, int], int] = {}
    predecessors: list[list[int]] = [[] for _ in range(m)]
    for j, op in enumerate(ops):
        symmetric = op.name in SYMMETRIC
        diagonal = op.name in DIAGONAL
        for position, q in enumerate(op.qubits):
            slot = 0 if symmetric else position
            before = [anchor[q]] if diagonal or not block[q] else block[q]
            for node, their_slot in before:
                if labelled:
                    adjacency[j].append((node, f"P{slot}.{their_slot}"))
                    adjacency[node].append((j, f"S{their_slot}.{slot}"))
                if node < m:
                    predecessors[j].append(node)
            if diagonal:
                block[q].append((j, slot))
            else:
                anchor[q], block[q] = (j, slot), []
        for bit in op.clbits:
            if labelled:
                if bit not in clbit_node:
                    clbit_node[bit] = len(adjacency)
                    adjacency.append([])
                adjacency[j].append((clbit_node[bit], "C"))
                adjacency[clbit_node[bit]].append((j, "C"))
            if bit in last_on_clbit:
                predecessors[j].append(last_on_clbit[bit])
            last_on_clbit[bit] = j
    return predecessors, adjacency, clbit_node


def _refine(initial: list[str], adjacency: list[list[tuple[int, str]]]) -> list[str]:
    """1-dimensional Weisfeiler-Leman colour refinement until the partition stops splitting."""
    colour = [_digest8(c) for c in initial]
    classes = len(set(colour))
    for _ in range(len(colour)):
        refined = [
            _digest8(colour[v] + "|" + ",".join(sorted(f"{label}:{colour[u]}" for u, label in neighbours)))
            for v, neighbours in enumerate(adjacency)
        ]
        colour = refined
        if len(set(refined)) == classes:
            break
        classes = len(set(refined))
    return colour


def _successors(ops: list[Operation], predecessors: list[list[int]]) -> list[list[int]]:
    """Return each op's successors in the ordering DAG (the same for every labelling)."""
    successors: list[list[int]] = [[] for _ in ops]
    for j, before in enumerate(predecessors):
        for i in before:
            successors[i].append(j)
    return successors


def _serialise(
    ops: list[Operation], predecessors: list[list[int]], successors: list[list[int]], labels: tuple[int, ...]
) -> tuple[str, tuple[int, ...], dict[int, int]]:
    """Write ops in the canonical topological order for a labelling; return text and bit maps."""
    # Every op's sort key, all at once: (token, qubits under the labelling, classical roles).
    keys = [
        (
            op.token,
            tuple(slot_order(op.name, [labels[q] for q in op.qubits])),
            tuple(kind for kind, _ in op.clbits),
        )
        for op in ops
    ]
    waiting = [len(p) for p in predecessors]
    ready = [(keys[j], j) for j in range(len(ops)) if waiting[j] == 0]
    heapq.heapify(ready)
    observable: dict[int, int] = {}
    qpd: dict[int, int] = {}
    parts = []
    order = []
    while ready:
        (token, qubits, _), j = heapq.heappop(ready)
        order.append(j)
        names = []
        for kind, index in ops[j].clbits:
            table = observable if kind == "o" else qpd
            names.append(f"{kind}{table.setdefault(index, len(table))}")
        parts.append(f"{token}[{','.join(map(str, qubits))}][{','.join(names)}];")
        for s in successors[j]:
            waiting[s] -= 1
            if waiting[s] == 0:
                heapq.heappush(ready, (keys[s], s))
    return "".join(parts), tuple(order), observable | {-1 - k: v for k, v in qpd.items()}


def _wire_signatures(ops: list[Operation], num_qubits: int) -> list[str]:
    """Return, per qubit, a digest of the ops on its wire: tokens, slots, classical roles, in order."""
    parts: list[list[str]] = [[] for _ in range(num_qubits)]
    blocks: list[list[str]] = [[] for _ in range(num_qubits)]
    for op in ops:
        symmetric = op.name in SYMMETRIC
        roles = "".join(kind for kind, _ in op.clbits)
        for position, q in enumerate(op.qubits):
            item = f"{op.token}/{0 if symmetric else position}{roles}"
            if op.name in DIAGONAL:
                blocks[q].append(item)
            else:
                parts[q].append("{" + ",".join(sorted(blocks[q])) + "}" + item)
                blocks[q] = []
    return [_digest8(";".join(parts[q]) + "{" + ",".join(sorted(blocks[q])) + "}") for q in range(num_qubits)]


def canonical_form(circuit: QuantumCircuit, tokens: Sequence[str] | None = None) -> CanonicalForm:
    """Return the canonical form of a subexperiment (stages 1-3 of the module docstring).

    ``tokens``: the circuit's instruction tokens, barriers left out, when its fingerprint
    already computed them (:func:`qhybrid.cutting.fingerprint.known_instruction_tokens`).
    """
    raw, num_observable, _ = _operations(circuit, tokens)
    n = circuit.num_qubits
    ops = simplify_operations(raw, n)
    body, order, bits, labels = _canonicalise(ops, n)
    observable_bits = {i: k for i, k in bits.items() if i >= 0}
    if len(observable_bits) != num_observable:
        raise NotCanonicalisable("an observable bit is never measured")
    num_qpd = sum(1 for i in bits if i < 0)
    text = f"{SCHEMA};q{n};o{num_observable};p{num_qpd};{body}"
    key, check = form_digests(text)
    return CanonicalForm(
        text=text,
        key=key,
        check=check,
        # The labelling is chosen by the same deterministic search for every circuit that is
        # the same up to stages 1-2, so (form, labelling) tells those circuits apart from ones
        # relabelled, as a second serialisation in the circuit's own labelling would, for free.
        normal=labelled_digest(key, labels),
        observable_bits=tuple(observable_bits[i] for i in range(num_observable)),
        _ops=tuple(ops[j] for j in order),
        _labels=labels,
        _num_qpd=num_qpd,
    )


def form_digests(text: str) -> tuple[str, str]:
    """A form's (key, check) from its text: SHA-256, where it is stored, and BLAKE2b, compared on hits."""
    encoded = text.encode()
    return hashlib.sha256(encoded).hexdigest(), hashlib.blake2b(encoded, digest_size=32).hexdigest()


def labelled_digest(key: str, labels: Sequence[int]) -> str:
    """SHA-256 of a form's key and the labelling that reached it (a form's ``normal``)."""
    return hashlib.sha256(f"{key};{','.join(map(str, labels))}".encode()).hexdigest()


def simplify_operations(ops: list[Operation], num_qubits: int) -> list[Operation]:
    """Stages 1-2 on operations already read: trivial identities dropped, pairs cancelled or merged."""
    return _simplify(ops, num_qubits)


def canonical_order(ops: list[Operation], num_qubits: int) -> tuple[str, list[Operation], tuple[int, ...]]:
    """Stage 3 on simplified operations without classical bits: (text, ops in order, labelling).

    ``labelling[q]`` is qubit q's canonical label. An operation whose name no rule knows
    (an opaque placeholder, such as a QPD gate) orders like any non-diagonal gate on its wires.
    """
    if any(op.clbits for op in ops):
        raise ValueError("canonical_order takes operations without classical bits")
    body, order, _, labels = _canonicalise(ops, num_qubits)
    return body, [ops[j] for j in order], labels


def _canonicalise(
    ops: list[Operation], n: int
) -> tuple[str, tuple[int, ...], dict[int, int], tuple[int, ...]]:
    """Stage 3: the smallest serialisation over the labellings the qubits' colour classes allow."""
    # The labelled graph is only read when the wire signatures below leave ties: built then.
    predecessors, _, _ = _wire_graph(ops, n, labelled=False)
    successors = _successors(ops, predecessors)
    # What each wire sees, in order (runs of diagonal ops as multisets): label-invariant and
    # cheap. Usually it tells every qubit apart; only ties need colour refinement.
    qubit_colour = _wire_signatures(ops, n)
    if len(set(qubit_colour)) < n:
        _, adjacency, clbit_nodes = _wire_graph(ops, n)
        initial = [op.token for op in ops] + qubit_colour + [""] * len(clbit_nodes)
        for (kind, _), node in clbit_nodes.items():  # classical bits are coloured by their role
            initial[node] = kind
        colour = _refine(initial, adjacency)
        qubit_colour = colour[len(ops) : len(ops) + n]
    classes = [[q for q in range(n) if qubit_colour[q] == c] for c in sorted(set(qubit_colour))]
    tried = math.prod(math.factorial(len(members)) for members in classes)
    complete = tried <= MAX_LABELLINGS
    candidates = itertools.product(*(itertools.permutations(m) for m in classes)) if complete else [classes]
    best: tuple[str, tuple[int, ...], dict[int, int], tuple[int, ...]] | None = None
    for arrangement in candidates:
        labelling = [0] * n
        for position, q in enumerate(itertools.chain.from_iterable(arrangement)):
            labelling[q] = position
        text, order, bits = _serialise(ops, predecessors, successors, tuple(labelling))
        if best is None or text < best[0]:
            best = (text, order, bits, tuple(labelling))
    assert best is not None
    return best
