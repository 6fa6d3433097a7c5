"""Make a circuit cuttable: drop barriers, name standard gates, decompose what the cutter cannot take.

The cutter (qiskit-addon-cutting) cuts one- and two-qubit gates it knows. People's
circuits also hold barriers, gates on three qubits (``ccx``), and custom gates,
some of them (as an OpenQASM 3 file defines ``rzz``) standard gates under another
definition. Each change here keeps the circuit's unitary, and the run's provenance
records what was changed.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import Instruction
from qiskit.circuit.library.standard_gates import get_standard_gate_name_mapping
from qiskit.quantum_info import Operator
from qiskit.transpiler.passes import RemoveBarriers

from qhybrid.errors import InputError

_STANDARD = get_standard_gate_name_mapping()
_MAX_DECOMPOSE_ROUNDS = 8


def prepare_for_cutting(circuit: QuantumCircuit) -> tuple[QuantumCircuit, dict[str, Any]]:
    """Return ``circuit`` as the cutter can take it, and what was changed.

    Unused classical bits are dropped. Barriers only order scheduling, so they are
    dropped too (a full-width barrier would otherwise join every partition). A custom
    gate whose matrix is the standard gate of its name is replaced by that gate. Other
    gates on three or more qubits, or outside Qiskit's standard library, are decomposed
    by their definitions, round by round, into standard one- and two-qubit gates.
    """
    changes: dict[str, Any] = {}
    if circuit.num_clbits and not any(i.clbits for i in circuit.data):
        # Classical bits no instruction writes (a register left after final measurements
        # were dropped): the cutter refuses any classical bit, so they go.
        changes["classical_bits_dropped"] = circuit.num_clbits
        bare = QuantumCircuit(*circuit.qregs, global_phase=circuit.global_phase)
        for instruction in circuit.data:
            bare.append(instruction)
        circuit = bare
    barriers = sum(1 for instruction in circuit.data if instruction.operation.name == "barrier")
    if barriers:
        circuit = RemoveBarriers()(circuit)
        changes["barriers_removed"] = barriers
    circuit, recognised = _standardise(circuit)
    if recognised:
        changes["recognised_standard_gates"] = dict(sorted(recognised.items()))
    decomposed: Counter[str] = Counter()
    for _ in range(_MAX_DECOMPOSE_ROUNDS):
        names = {i.operation.name for i in circuit.data if not _cuttable(i.operation)}
        if not names:
            break
        decomposed.update(i.operation.name for i in circuit.data if i.operation.name in names)
        before = circuit
        circuit = circuit.decompose(gates_to_decompose=sorted(names))
        if circuit == before:
            break
    stuck = sorted(
        {
            f"{i.operation.name} ({i.operation.num_qubits} qubits)"
            for i in circuit.data
            if not _cuttable(i.operation)
        }
    )
    if stuck:
        raise InputError(
            "--circuit",
            f"gates {stuck} have no definition in standard one- and two-qubit gates; define them in the "
            "OpenQASM file, or transpile to basis gates such as ['rz', 'sx', 'x', 'cx'] before cutting",
        )
    if decomposed:
        changes["decomposed_gates"] = dict(sorted(decomposed.items()))
    return circuit, changes


def _is_standard(operation: Instruction) -> bool:
    """Return whether ``operation`` is Qiskit's own standard gate of its name (not a look-alike)."""
    template = _STANDARD.get(operation.name)
    return template is not None and isinstance(operation, type(template))


def _cuttable(operation: Instruction) -> bool:
    """Return whether the cutter takes ``operation`` as it is: a standard gate on at most two qubits."""
    return operation.num_qubits <= 2 and _is_standard(operation)


def _standardise(circuit: QuantumCircuit) -> tuple[QuantumCircuit, Counter[str]]:
    """Replace custom gates that equal the standard gate of their name (same matrix) by that gate."""
    recognised: Counter[str] = Counter()
    if all(_is_standard(i.operation) or i.operation.name not in _STANDARD for i in circuit.data):
        return circuit, recognised
    out = circuit.copy_empty_like()
    for instruction in circuit.data:
        operation = instruction.operation
        standard = None if _is_standard(operation) else _standard_equivalent(operation)
        if standard is not None:
            recognised[operation.name] += 1
            instruction = instruction.replace(operation=standard)
        out.append(instruction)
    return out, recognised


def _standard_equivalent(operation: Instruction) -> Instruction | None:
    template = _STANDARD.get(operation.name)
    if template is None or operation.num_qubits != template.num_qubits or operation.definition is None:
        return None
    try:
        candidate = type(template)(*operation.params)
        same = np.allclose(Operator(candidate).data, Operator(operation.definition).data, rtol=0, atol=1e-12)
    except Exception:  # a constructor or definition that does not fit: not this standard gate
        return None
    return candidate if same else None
