"""Exact outcome distributions of cutting subexperiments by deferring measurements.

A subexperiment measures some qubits mid-circuit (the QPD measurements) and may
reset wires (wire cuts). By the principle of deferred measurement, a mid-circuit
measurement of qubit q equals a CX from q onto a fresh ancilla that is read at
the end; a reset equals moving the wire onto a fresh ancilla in |0> and never
looking at the old one. The result is one unitary circuit whose final
probabilities give the joint distribution of all classical bits exactly, with no
branching and no shots, which a statevector simulator computes in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import CircuitInstruction
from qiskit.circuit.library import CXGate

OBSERVABLE_REGISTER = "observable_measurements"
QPD_REGISTER = "qpd_measurements"
_IGNORED = frozenset({"barrier", "delay"})
_CX = CXGate()


@dataclass(frozen=True)
class DeferredCircuit:
    """A unitary circuit plus which of its qubits hold each classical bit at the end."""

    circuit: QuantumCircuit
    observable_qubits: tuple[int, ...]  # one per observable_measurements bit, in bit order
    qpd_qubits: tuple[int, ...]  # one per QPD bit that was measured (unmeasured bits read 0)


def _next_use(data: list[CircuitInstruction], circuit: QuantumCircuit) -> list[dict[int, str | None]]:
    """For each instruction and each of its qubits, the name of the next op on that qubit."""
    index = {bit: i for i, bit in enumerate(circuit.qubits)}
    following: dict[int, str | None] = {}
    result: list[dict[int, str | None]] = [{}] * len(data)
    for position in range(len(data) - 1, -1, -1):
        instruction = data[position]
        name = instruction.operation.name
        if name in _IGNORED:
            continue
        qubits = [index[q] for q in instruction.qubits]
        result[position] = {q: following.get(q) for q in qubits}
        for q in qubits:
            following[q] = name
    return result


def defer_measurements(circuit: QuantumCircuit) -> DeferredCircuit:
    """Rewrite a subexperiment into a measurement-free circuit on extra ancilla qubits."""
    registers = {creg.name: creg for creg in circuit.cregs}
    if OBSERVABLE_REGISTER not in registers:
        raise ValueError(f"subexperiment has no {OBSERVABLE_REGISTER!r} register")
    data = list(circuit.data)
    next_use = _next_use(data, circuit)
    qubit_index = {bit: i for i, bit in enumerate(circuit.qubits)}
    # Count the ancillas first so the output circuit is built once.
    extra = 0
    touched: set[int] = set()
    for position, instruction in enumerate(data):
        name = instruction.operation.name
        if name in _IGNORED:
            continue
        qubits = [qubit_index[q] for q in instruction.qubits]
        if name == "measure" and next_use[position][qubits[0]] not in (None, "reset"):
            extra += 1
        elif name == "reset" and qubits[0] in touched and next_use[position][qubits[0]] is not None:
            extra += 1
        touched.update(qubits)

    out = QuantumCircuit(circuit.num_qubits + extra)
    out_qubits = out.qubits  # the property builds a new list on each access
    wire = list(range(circuit.num_qubits))
    fresh = circuit.num_qubits
    holder: dict[object, int] = {}  # clbit -> qubit of `out` that holds its value at the end
    touched.clear()
    for position, instruction in enumerate(data):
        operation = instruction.operation
        name = operation.name
        if name in _IGNORED:
            continue
        if getattr(operation, "blocks", None) or getattr(operation, "condition", None):
            raise ValueError(f"classically controlled {name!r} cannot be deferred")
        qubits = [qubit_index[q] for q in instruction.qubits]
        if name == "measure":
            q = qubits[0]
            if next_use[position][q] in (None, "reset"):
                holder[instruction.clbits[0]] = wire[q]
            else:
                out._append(CircuitInstruction(_CX, (out_qubits[wire[q]], out_qubits[fresh])))
                holder[instruction.clbits[0]] = fresh
                fresh += 1
        elif name == "reset":
            q = qubits[0]
            if q in touched and next_use[position][q] is not None:
                wire[q] = fresh
                fresh += 1
        elif instruction.clbits:
            raise ValueError(f"instruction {name!r} writes classical bits and cannot be deferred")
        else:
            # _append skips re-validating an instruction that was valid in the input.
            out._append(CircuitInstruction(operation, tuple(out_qubits[wire[q]] for q in qubits)))
        touched.update(qubits)

    missing = [i for i, bit in enumerate(registers[OBSERVABLE_REGISTER]) if bit not in holder]
    if missing:
        raise ValueError(f"observable bits {missing} are never measured")
    observable_qubits = tuple(holder[bit] for bit in registers[OBSERVABLE_REGISTER])
    qpd_bits = registers[QPD_REGISTER] if QPD_REGISTER in registers else []
    qpd_qubits = tuple(holder[bit] for bit in qpd_bits if bit in holder)
    return DeferredCircuit(out, observable_qubits, qpd_qubits)


def reduce_to_parity(probabilities: np.ndarray, num_observable_bits: int) -> np.ndarray:
    """Fold the QPD bits of a joint distribution into their parity.

    ``probabilities`` is indexed by (observable bits | qpd bits << n_obs); the
    result is dense over (observable bits | qpd parity << n_obs), the sufficient
    statistic for reconstruction.
    """
    size = probabilities.shape[0]
    indices = np.arange(size, dtype=np.uint64)
    low_mask = np.uint64((1 << num_observable_bits) - 1)
    parity = np.bitwise_count(indices >> np.uint64(num_observable_bits)) & np.uint8(1)
    reduced = (indices & low_mask) | (parity.astype(np.uint64) << np.uint64(num_observable_bits))
    return np.bincount(reduced.astype(np.intp), weights=probabilities, minlength=2 << num_observable_bits)
