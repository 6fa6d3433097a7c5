"""Decode and check the circuits of a job: QPY (base64) or OpenQASM 3 text.

Every problem is raised as :class:`PayloadError` with the HTTP status it maps
to (400 malformed, 413 too large) and a message naming the circuit and what is
wrong, so a client can fix its request without reading the gateway's logs.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from typing import Protocol

from qiskit import QuantumCircuit

from qhybrid.cutting.qasm_guard import (
    DEFAULT_MAX_OPERATIONS,
    DEFAULT_MAX_QUBITS,
    QasmTooCostly,
    check_qasm_cost,
)
from qhybrid.gateway.config import Limits

FORMATS = ("qpy", "qasm3")


class Qasm3Parser(Protocol):
    """What parses OpenQASM 3 texts for admission (the gateway's parse pool)."""

    def __call__(self, texts: list[str], *, max_qubits: int, max_operations: int) -> list[QuantumCircuit]:
        """Return the parsed circuits or raise PayloadError."""
        ...


@dataclass
class PayloadError(Exception):
    """A request the gateway refuses; ``status`` is 400, 413, or 503 (the parsers are busy)."""

    status: int
    code: str
    message: str

    def __str__(self) -> str:
        """Return the message."""
        return self.message


def encode_qpy(circuits: list[QuantumCircuit]) -> str:
    """Return circuits as base64 QPY, the gateway's preferred wire format."""
    from qiskit import qpy

    buffer = io.BytesIO()
    qpy.dump(circuits, buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_circuits(
    fmt: str,
    circuits: object,
    *,
    max_qubits: int = DEFAULT_MAX_QUBITS,
    max_operations: int = DEFAULT_MAX_OPERATIONS,
    qasm3_parser: Qasm3Parser | None = None,
) -> list[QuantumCircuit]:
    """Parse the ``circuits`` field of a job in format ``fmt``.

    OpenQASM texts are first checked for what their parse would cost (qasm_guard):
    a register wider than ``max_qubits``, an expansion over ``max_operations`` or deep
    nesting is refused with 413, naming the limit, before the parser runs. The
    gateway passes ``qasm3_parser`` (its worker processes, under a time and memory
    budget); without it the texts are parsed here.
    """
    if fmt == "qpy":
        if not isinstance(circuits, str):
            raise PayloadError(400, "malformed_circuits", "circuits: QPY must be one base64 string")
        try:
            data = base64.b64decode(circuits, validate=True)
        except (binascii.Error, ValueError):
            raise PayloadError(400, "malformed_circuits", "circuits: not valid base64") from None
        from qiskit import qpy

        try:
            loaded = qpy.load(io.BytesIO(data))
        except Exception as error:  # noqa: BLE001 - QPY raises many types on bad bytes
            raise PayloadError(
                400,
                "malformed_circuits",
                f"circuits: QPY could not be read ({type(error).__name__}: {error})",
            ) from None
        parsed = []
        for position, item in enumerate(loaded):
            if not isinstance(item, QuantumCircuit):
                raise PayloadError(400, "malformed_circuits", f"circuits[{position}]: not a circuit")
            parsed.append(item)
        return parsed
    if fmt == "qasm3":
        if not isinstance(circuits, list) or not all(isinstance(text, str) for text in circuits):
            raise PayloadError(400, "malformed_circuits", "circuits: OpenQASM 3 must be a list of strings")
        if qasm3_parser is None:
            return parse_qasm3_texts(circuits, max_qubits=max_qubits, max_operations=max_operations)
        _prescan(circuits, max_qubits=max_qubits, max_operations=max_operations)  # refusals need no worker
        return qasm3_parser(circuits, max_qubits=max_qubits, max_operations=max_operations)
    raise PayloadError(400, "bad_format", f"format: must be one of {list(FORMATS)}, got {fmt!r}")


def _prescan(texts: list[str], *, max_qubits: int, max_operations: int) -> None:
    for position, text in enumerate(texts):
        try:
            check_qasm_cost(text, max_qubits=max_qubits, max_operations=max_operations)
        except QasmTooCostly as error:
            raise PayloadError(413, "circuit_too_costly", f"circuits[{position}]: {error}") from None


def parse_qasm3_texts(texts: list[str], *, max_qubits: int, max_operations: int) -> list[QuantumCircuit]:
    """Pre-scan every text for its cost (413 naming the limit), then parse each (400 on a syntax error)."""
    from qiskit import qasm3

    _prescan(texts, max_qubits=max_qubits, max_operations=max_operations)
    parsed = []
    for position, text in enumerate(texts):
        try:
            parsed.append(qasm3.loads(text))
        except MemoryError:
            raise  # a budget, not a syntax error: the parse worker answers 413 for it
        except Exception as error:  # noqa: BLE001 - the importer raises several types
            detail = " ".join(str(error).split())[:300]
            raise PayloadError(
                400, "malformed_circuits", f"circuits[{position}]: OpenQASM 3 could not be parsed: {detail}"
            ) from None
    return parsed


def check_circuits(circuits: list[QuantumCircuit], limits: Limits, max_qubits: int | None) -> None:
    """Refuse circuits that no backend can run as given, or that exceed the limits."""
    if not circuits:
        raise PayloadError(400, "malformed_circuits", "circuits: a job needs at least one circuit")
    if len(circuits) > limits.max_circuits_per_job:
        raise PayloadError(
            413,
            "too_many_circuits",
            f"circuits: {len(circuits)} circuits exceed the limit of {limits.max_circuits_per_job} per job",
        )
    for position, circuit in enumerate(circuits):
        if circuit.num_clbits == 0:
            raise PayloadError(
                400, "malformed_circuits", f"circuits[{position}]: measures nothing (no classical bits)"
            )
        if circuit.num_parameters:
            names = sorted(p.name for p in circuit.parameters)[:5]
            raise PayloadError(400, "malformed_circuits", f"circuits[{position}]: unbound parameters {names}")
        if len(circuit.data) > limits.max_operations_per_circuit:
            raise PayloadError(
                413,
                "circuit_too_large",
                f"circuits[{position}]: {len(circuit.data)} operations exceed the limit of "
                f"{limits.max_operations_per_circuit}",
            )
        if max_qubits is not None and circuit.num_qubits > max_qubits:
            raise PayloadError(
                400,
                "too_many_qubits",
                f"circuits[{position}]: {circuit.num_qubits} qubits, but the backend has {max_qubits}",
            )
