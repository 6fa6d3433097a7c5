"""Content fingerprints of circuits and observables.

Dedup keys, cache keys and per-subexperiment seeds come from these hashes, so
they must depend only on what a circuit does: not on Qiskit's version (which QPY
headers embed), not on object identity, and not on the order of execution.
"""

from __future__ import annotations

import functools
import hashlib
import struct
import sys
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
from qiskit.circuit import CircuitInstruction, Instruction, ParameterExpression, QuantumCircuit
from qiskit.circuit.library import UnitaryGate
from qiskit.quantum_info import SparsePauliOp

_FINGERPRINT_SCHEMA = b"qhybrid-circuit-v1"
# Instructions that get no token (barriers change nothing a backend computes). Canonical forms
# read a fingerprint's tokens back in order, so they skip exactly these too.
UNTOKENISED = frozenset({"barrier"})


def _param_token(param: object) -> str:
    if isinstance(param, ParameterExpression):
        if param.parameters:
            names = sorted(p.name for p in param.parameters)
            raise ValueError(f"circuit has unbound parameters {names}; bind them first")
        param = complex(param)
    if isinstance(param, bool):
        return f"b{int(param)}"
    if isinstance(param, int):
        return f"i{param}"
    if isinstance(param, float):
        return f"f{param.hex()}"
    if isinstance(param, complex):
        return f"c{param.real.hex()},{param.imag.hex()}"
    raise ValueError(f"cannot fingerprint instruction parameter of type {type(param).__name__}")


@functools.cache
def _standard_operations() -> dict[str, type]:
    """Return name -> class of the operations whose meaning their name fixes (Qiskit's standard set)."""
    from qiskit.circuit.library import get_standard_gate_name_mapping

    return {name: type(operation) for name, operation in get_standard_gate_name_mapping().items()}


def operation_token(operation: Instruction) -> str:
    """Return what an operation does, as text: its name when that fixes its meaning, else its content.

    A standard gate (``cx``, ``ry``, ``measure``, ...) is its name and parameters. Anything
    else (a custom gate from an OpenQASM ``gate`` definition, a ``UnitaryGate``) is hashed
    by what it does: its matrix, or its definition, recursively. Its name is left out, so
    two definitions of one operation under different names agree, and one name with two
    definitions does not.
    """
    params = ",".join(_param_token(p) for p in operation.params if not isinstance(p, np.ndarray))
    name, kind = operation.name, type(operation)
    if _standard_operations().get(name) is kind:
        return f"{name}({params})"
    if getattr(operation, "blocks", None):
        raise ValueError(f"control-flow instruction {operation.name!r} is not supported")
    shape = f"{operation.num_qubits},{operation.num_clbits}"
    if isinstance(operation, UnitaryGate):
        matrix = np.asarray(operation.to_matrix(), dtype=complex)
        entries = ",".join(f"{z.real.hex()}:{z.imag.hex()}" for z in matrix.ravel())
        return f"unitary[{shape}]({entries})"
    definition = operation.definition
    if definition is not None:
        return f"def[{shape}]{{{''.join(_body_tokens(definition))}}}"
    raise ValueError(f"cannot fingerprint operation {operation.name!r}: not standard and has no definition")


def instruction_token(instruction: CircuitInstruction) -> str:
    """Return :func:`operation_token` of an instruction's operation, reading a standard gate in place.

    Qiskit keeps a standard gate as a compact record and builds a new Python gate object
    each time ``.operation`` is read; its name and parameters say all the token needs.
    """
    if instruction.is_standard_gate():
        return f"{instruction.name}({','.join(_param_token(p) for p in instruction.params)})"
    return operation_token(instruction.operation)


def placed_token(token: str, qubits: Sequence[int], clbits: Sequence[int]) -> str:
    """Return an instruction's entry in a fingerprint: its token on its qubit and clbit indices."""
    return f"{token}[{','.join(map(str, qubits))}][{','.join(map(str, clbits))}];"


def _body_tokens(circuit: QuantumCircuit, operations: list[str] | None = None) -> list[str]:
    """Return each instruction's token with its wires; ``operations`` gets the bare tokens, in order."""
    qubit_index = {bit: i for i, bit in enumerate(circuit.qubits)}
    clbit_index = {bit: i for i, bit in enumerate(circuit.clbits)}
    tokens = []
    for instruction in circuit.data:
        if instruction.name in UNTOKENISED:
            continue
        token = instruction_token(instruction)
        if operations is not None:
            operations.append(sys.intern(token))
        qubits = [qubit_index[q] for q in instruction.qubits]
        tokens.append(placed_token(token, qubits, [clbit_index[c] for c in instruction.clbits]))
    return tokens


# The bare instruction tokens of the circuits this process fingerprinted last, by fingerprint.
# Canonical forms read the same tokens; a circuit's fingerprint digests them, so one
# fingerprint always has the same tokens. Interned: the subexperiments of a plan repeat them.
_TOKENS: OrderedDict[str, tuple[str, ...]] = OrderedDict()
_TOKENS_KEPT = 4096


def known_instruction_tokens(fingerprint: str) -> tuple[str, ...] | None:
    """Return the tokens of a circuit fingerprinted here (barriers left out, in order), if still kept."""
    return _TOKENS.get(fingerprint)


def circuit_fingerprint(circuit: QuantumCircuit) -> str:
    """Return a SHA-256 hex digest of a circuit's operations, qubits, clbits and registers.

    Floats are hashed by their exact binary value (``float.hex``), so two circuits
    share a fingerprint exactly when a simulator would treat them identically.
    Operations that are not standard gates are hashed by their definition or matrix
    (see :func:`operation_token`). Classical register names stay in the hash: the
    backends read outcomes by register (observable bits, QPD bits), so two circuits
    that differ only there are run differently.
    """
    operations: list[str] = []
    body = _body_tokens(circuit, operations)
    registers = [(creg.name, creg.size) for creg in circuit.cregs]
    return fingerprint_of_tokens(circuit.num_qubits, circuit.num_clbits, registers, body, operations)


def fingerprint_of_tokens(
    num_qubits: int,
    num_clbits: int,
    registers: Sequence[tuple[str, int]],
    body: Sequence[str],
    operations: Sequence[str],
) -> str:
    """Return :func:`circuit_fingerprint` of a circuit given as its parts, and keep its bare tokens.

    ``registers``: the classical registers' (name, size), in order; ``body``: each
    instruction's :func:`placed_token`, barriers left out; ``operations``: the same
    instructions' bare tokens (interned), for :func:`known_instruction_tokens`. A builder
    that knows these for the circuit it builds spares reading every instruction back.
    """
    digest = hashlib.sha256(_FINGERPRINT_SCHEMA)
    digest.update(struct.pack("<II", num_qubits, num_clbits))
    tokens = [f"creg:{name}:{size};" for name, size in registers]
    digest.update("".join([*tokens, *body]).encode())
    fingerprint = digest.hexdigest()
    _TOKENS[fingerprint] = tuple(operations)
    while len(_TOKENS) > _TOKENS_KEPT:
        _TOKENS.popitem(last=False)
    return fingerprint


def observable_fingerprint(observable: SparsePauliOp) -> str:
    """Return a SHA-256 hex digest of a Pauli sum (labels and exact coefficients, in order)."""
    digest = hashlib.sha256(b"qhybrid-observable-v1")
    for label, coeff in observable.to_list():
        digest.update(f"{label}:{_param_token(complex(coeff))};".encode())
    return digest.hexdigest()


def derive_seed(run_seed: int, fingerprint: str) -> int:
    """Derive a subexperiment's 63-bit seed from the run seed and its content fingerprint.

    The seed depends on what is run, never on where or when, so results are
    bitwise identical across worker counts, batch sizes and resumed runs.
    """
    material = f"qhybrid-seed-v1:{run_seed}:{fingerprint}".encode()
    return int.from_bytes(hashlib.sha256(material).digest()[:8], "little") >> 1
