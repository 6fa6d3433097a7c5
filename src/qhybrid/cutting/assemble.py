"""Assemble one subexperiment from its subcircuit's instructions, as ``generate_cutting_experiments`` would.

qiskit-addon-cutting builds a subexperiment by copying its subcircuit, decomposing the
QPD gates in place (``decompose_qpd_instructions``), appending the observable
measurements, then dropping resets that change nothing. Every pass reads each
instruction's ``.operation``, and Qiskit builds a fresh Python gate object for a standard
gate on each such read: on the 24-qubit reference that is over 400,000 gate objects for
1,250 circuits. Here the subcircuit's own instructions are appended as they are (Qiskit
keeps standard gates as compact records), each QPD gate is replaced by its map's local
operations, and the reset passes run on plain indices. The circuit is the same,
instruction for instruction and register for register; ``tests/unit/test_plan_generation``
compares every round-trip problem's subexperiments with upstream's.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from qiskit import ClassicalRegister, QuantumCircuit
from qiskit.circuit import CircuitInstruction, Clbit, Measure, Qubit
from qiskit.circuit.library import HGate, SXGate
from qiskit_addon_cutting.qpd import BaseQPDGate, SingleQubitQPDGate
from qiskit_addon_cutting.utils.observable_grouping import CommutingObservableGroup

from qhybrid.cutting.deferred import OBSERVABLE_REGISTER, QPD_REGISTER
from qhybrid.cutting.fingerprint import UNTOKENISED, fingerprint_of_tokens, instruction_token, placed_token

_MEASURE_TOKEN = sys.intern(instruction_token(CircuitInstruction(Measure())))
_H_TOKEN = sys.intern(instruction_token(CircuitInstruction(HGate())))
_SX_TOKEN = sys.intern(instruction_token(CircuitInstruction(SXGate())))
_UNREAD: list[tuple[str, bool]] = []  # a marker: the local tokens of this gate and map are not read yet


class SubcircuitTemplate:
    """One subcircuit read once: its instructions and where its single-qubit QPD gates sit.

    ``supported`` is False when the subcircuit holds a QPD gate this assembler does not
    place (a two-qubit QPD gate, which partitioned subcircuits do not have): the caller
    then uses upstream's decomposition.
    """

    def __init__(self, subcircuit: QuantumCircuit, gate_ids: Sequence[Sequence[int]]) -> None:
        """Read ``subcircuit`` once; ``gate_ids`` are upstream's positions of its QPD gates."""
        self.subcircuit = subcircuit
        self.instructions = list(subcircuit.data)
        self.qubit_index = {bit: i for i, bit in enumerate(subcircuit.qubits)}
        self.cut_at: dict[int, int] = {}  # data position -> which of the subcircuit's QPD gates
        for number, ids in enumerate(gate_ids):
            if len(ids) == 1:
                self.cut_at[ids[0]] = number
        self.gates: dict[int, SingleQubitQPDGate] = {}
        qpd_positions = []
        for position, instruction in enumerate(self.instructions):
            if instruction.is_standard_gate():
                continue
            operation = instruction.operation
            if isinstance(operation, BaseQPDGate):
                qpd_positions.append(position)
                if isinstance(operation, SingleQubitQPDGate):
                    self.gates[position] = operation
        self.supported = set(qpd_positions) == set(self.cut_at) == set(self.gates)
        # Each instruction's fingerprint entry (bare token, placed token), read once here: every
        # subexperiment built from this template repeats them. Only for a subcircuit without
        # classical bits of its own, so that the registers a subexperiment adds are its only ones.
        self.fingerprinted = self.supported and self.subcircuit.num_clbits == 0
        self.entries: dict[int, tuple[str, str]] = {}
        self.has_resets = any(instruction.name == "reset" for instruction in self.instructions)
        # Each (QPD gate position, map id)'s local operations as (bare token, qubit, measures?).
        self._local_tokens: dict[tuple[int, int], list[tuple[str, bool]] | None] = {}
        if self.fingerprinted:
            for position, instruction in enumerate(self.instructions):
                if position not in self.gates and instruction.name not in UNTOKENISED:
                    self.entries[position] = _entry(instruction, self.qubit_index, {})

    def build_fingerprinted(
        self, group: CommutingObservableGroup, map_ids: Sequence[int]
    ) -> tuple[QuantumCircuit, str | None]:
        """Return the subexperiment for one observable group and one local map per QPD gate.

        It comes with its :func:`circuit_fingerprint`, computed from the template's entries and
        those of the operations added, not by reading the circuit back (None when the
        subcircuit has classical bits of its own: then the caller fingerprints the circuit).
        """
        circuit = self.subcircuit.copy_empty_like()
        observable_qubits = group.pauli_indices or [0]  # upstream measures one qubit at least
        observable = ClassicalRegister(len(observable_qubits), name=OBSERVABLE_REGISTER)
        circuit.add_register(observable)
        body: list[tuple[CircuitInstruction | None, str, tuple[Qubit, ...]]] = []
        positions: list[int | None] = []  # the template position of each body entry (None: a local op)
        measured: list[Qubit] = []  # the qubit of each QPD measurement, in order
        for position, instruction in enumerate(self.instructions):
            gate = self.gates.get(position)
            if gate is None:
                body.append((instruction, instruction.name, instruction.qubits))
                positions.append(position)
                continue
            (qubit,) = instruction.qubits
            for operation in gate.basis.maps[map_ids[self.cut_at[position]]][gate.qubit_id]:
                positions.append(None)
                if operation.name.lower() == "qpd_measure":
                    measured.append(qubit)
                    body.append((None, "measure", (qubit,)))
                else:
                    body.append((CircuitInstruction(operation, (qubit,)), operation.name, (qubit,)))
        qpd = ClassicalRegister(max(1, len(measured)), name=QPD_REGISTER)
        circuit.add_register(qpd)
        qubits = circuit.qubits
        x, z = group.general_observable.x, group.general_observable.z
        tail: list[CircuitInstruction] = []
        for clbit, q in enumerate(observable_qubits):
            if x[q]:
                tail.append(CircuitInstruction(SXGate() if z[q] else HGate(), (qubits[q],)))
            tail.append(CircuitInstruction(Measure(), (qubits[q],), (observable[clbit],)))
        kept = _without_idle_resets([(name, wires) for _, name, wires in body], self.qubit_index, tail)
        clbit_index = {bit: i for i, bit in enumerate(circuit.clbits)}
        entries: list[tuple[str, str]] = []
        measure_number = 0
        for source, keep, (instruction, name, wires) in zip(positions, kept, body, strict=True):
            if name == "measure" and instruction is None:
                if keep:
                    measure = CircuitInstruction(Measure(), wires, (qpd[measure_number],))
                    circuit._append(measure)
                    if self.fingerprinted:
                        entries.append(_entry(measure, self.qubit_index, clbit_index))
                measure_number += 1
            elif keep:
                assert instruction is not None
                circuit._append(instruction)
                if self.fingerprinted and name not in UNTOKENISED:
                    known = self.entries.get(source) if source is not None else None
                    entries.append(known or _entry(instruction, self.qubit_index, clbit_index))
        for instruction in tail:
            circuit._append(instruction)
            if self.fingerprinted:
                entries.append(_entry(instruction, self.qubit_index, clbit_index))
        if not self.fingerprinted:
            return circuit, None
        fingerprint = fingerprint_of_tokens(
            circuit.num_qubits,
            circuit.num_clbits,
            [(register.name, register.size) for register in circuit.cregs],
            [placed for _, placed in entries],
            [bare for bare, _ in entries],
        )
        return circuit, fingerprint

    def fingerprint(self, group: CommutingObservableGroup, map_ids: Sequence[int]) -> str | None:
        """:meth:`build_fingerprinted`'s fingerprint without building the circuit.

        None when the circuit must be built to know it: a template without fingerprint
        entries, or one whose resets upstream's passes may drop.
        """
        if not self.fingerprinted or self.has_resets:
            return None
        observable_qubits = group.pauli_indices or [0]
        num_observable = len(observable_qubits)
        placed: list[str] = []
        bare: list[str] = []
        measured = 0
        for position in range(len(self.instructions)):
            gate = self.gates.get(position)
            if gate is None:
                entry = self.entries.get(position)
                if entry is not None:  # None: a barrier, which fingerprints leave out
                    bare.append(entry[0])
                    placed.append(entry[1])
                continue
            map_id = map_ids[self.cut_at[position]]
            local = self._local_tokens.get((position, map_id), _UNREAD)
            if local is _UNREAD:
                local = self._local_tokens[(position, map_id)] = _local_tokens(
                    gate.basis.maps[map_id][gate.qubit_id]
                )
            if local is None:
                return None
            qubit = [self.qubit_index[self.instructions[position].qubits[0]]]
            for token, measure in local:
                bare.append(token)
                if measure:
                    placed.append(placed_token(token, qubit, [num_observable + measured]))
                    measured += 1
                else:
                    placed.append(placed_token(token, qubit, []))
        x, z = group.general_observable.x, group.general_observable.z
        for clbit, q in enumerate(observable_qubits):
            if x[q]:
                token = _SX_TOKEN if z[q] else _H_TOKEN
                bare.append(token)
                placed.append(placed_token(token, [q], []))
            bare.append(_MEASURE_TOKEN)
            placed.append(placed_token(_MEASURE_TOKEN, [q], [clbit]))
        registers = [(OBSERVABLE_REGISTER, num_observable), (QPD_REGISTER, max(1, measured))]
        num_clbits = num_observable + max(1, measured)
        return fingerprint_of_tokens(self.subcircuit.num_qubits, num_clbits, registers, placed, bare)


def _local_tokens(operations: Sequence[Any]) -> list[tuple[str, bool]] | None:
    """Local operations' bare tokens, and which are QPD measurements (None: a reset is among them)."""
    out = []
    for operation in operations:
        if operation.name.lower() == "qpd_measure":
            out.append((_MEASURE_TOKEN, True))
        elif operation.name == "reset":
            return None
        elif operation.name not in UNTOKENISED:
            out.append((sys.intern(instruction_token(CircuitInstruction(operation))), False))
    return out


def _entry(
    instruction: CircuitInstruction, qubit_index: dict[Qubit, int], clbit_index: dict[Clbit, int]
) -> tuple[str, str]:
    """An instruction's bare fingerprint token (interned) and its placed token."""
    token = sys.intern(instruction_token(instruction))
    qubits = [qubit_index[q] for q in instruction.qubits]
    return token, placed_token(token, qubits, [clbit_index[c] for c in instruction.clbits])


def _without_idle_resets(
    body: list[tuple[str, tuple[Qubit, ...]]], index: dict[Qubit, int], tail: list[CircuitInstruction]
) -> list[bool]:
    """Return which body instructions to keep after upstream's three reset passes, in its order.

    Upstream drops (1) resets before anything else acts on their qubit, (2) resets after
    everything else on their qubit (the observable measurements that follow count), and
    (3) a reset right after a reset on its qubit. Only resets are ever dropped.
    """
    wires = [tuple(index[q] for q in qubits) for _, qubits in body]
    keep = [True] * len(body)
    active: set[int] = set()
    for i, (name, _) in enumerate(body):
        if name == "reset":
            if wires[i][0] not in active:
                keep[i] = False
        else:
            active.update(wires[i])
    ended = set(range(len(index))) - {index[q] for inst in tail for q in inst.qubits}
    for i in range(len(body) - 1, -1, -1):
        if not keep[i]:
            continue
        if body[i][0] == "reset":
            if wires[i][0] in ended:
                keep[i] = False
        else:
            ended.difference_update(wires[i])
    previous_reset = [False] * len(index)
    for i, (name, _) in enumerate(body):
        if not keep[i]:
            continue
        if name == "reset":
            if previous_reset[wires[i][0]]:
                keep[i] = False
            else:
                previous_reset[wires[i][0]] = True
        else:
            for q in wires[i]:
                previous_reset[q] = False
    return keep
