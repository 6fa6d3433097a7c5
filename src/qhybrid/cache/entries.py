"""Cache entries as bytes: a JSON header and two little-endian arrays, never pickle.

An entry is written once under a key that covers the canonical form and the backend's
identity; it carries the canonical form's independent digest (compared on every hit),
the writer's provenance, and the canonical circuit's exact outcome distribution.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from qiskit import QuantumCircuit, qpy

from qhybrid.cutting.outcomes import OutcomeDistribution

_MAGIC = b"QHC1"
_HEAD = struct.Struct("<4sI")
RESULT_PREFIX = "qhybrid:r1:"
PLAN_PREFIX = "qhybrid:p1:"
REFERENCE_PREFIX = "qhybrid:x1:"


class CorruptEntry(ValueError):
    """Stored bytes that are not a whole entry: treated as a miss and counted as an error."""


@dataclass(frozen=True, kw_only=True)
class ResultEntry:
    """A canonical circuit's exact distribution, with what a hit is checked against."""

    check: str  # the canonical form's BLAKE2b digest
    normal: str  # the writer's stages 1-2 digest (a hit with the same one is a "canonical" hit)
    fingerprint: str  # the writer's own circuit fingerprint (same one: an "exact" hit)
    identity: str  # digest of the backend identity it was computed on
    qubits: str  # the writer's qubits in its original circuit ("6,7,8"), "" when not known
    provenance: dict[str, Any]
    distribution: OutcomeDistribution
    circuit_qpy: bytes  # the canonical circuit (QPY), so `cache verify` can recompute it


def identity_digest(identity: dict[str, Any]) -> str:
    """Return a digest of a backend's identity (simulator, method, device, versions, CPU kernels)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def result_key(identity: str, canonical_key: str) -> bytes:
    """Return the store key of a canonical form's result on the backend with this identity digest."""
    digest = hashlib.sha256(f"{identity}:{canonical_key}".encode()).hexdigest()
    return f"{RESULT_PREFIX}{digest}".encode()


def qpy_bytes(circuit: QuantumCircuit) -> bytes:
    """Serialise a circuit as QPY (Qiskit's own format; no pickle)."""
    buffer = io.BytesIO()
    qpy.dump(circuit, buffer)
    return buffer.getvalue()


def circuit_from_qpy(data: bytes) -> QuantumCircuit:
    """Read a circuit written by :func:`qpy_bytes`."""
    try:
        (circuit,) = qpy.load(io.BytesIO(data))
    except Exception as error:  # noqa: BLE001 - QPY raises many kinds on damaged input
        raise CorruptEntry(f"entry's circuit is not QPY: {error}") from None
    return circuit


def _pack(header: dict[str, Any], *arrays: np.ndarray) -> bytes:
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    return _HEAD.pack(_MAGIC, len(head)) + head + b"".join(a.tobytes() for a in arrays)


def _unpack(data: bytes) -> tuple[dict[str, Any], memoryview]:
    if len(data) < _HEAD.size:
        raise CorruptEntry("entry shorter than its header")
    magic, length = _HEAD.unpack_from(data)
    if magic != _MAGIC or _HEAD.size + length > len(data):
        raise CorruptEntry("entry has a bad magic number or header length")
    try:
        header = json.loads(data[_HEAD.size : _HEAD.size + length])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorruptEntry(f"entry header is not JSON: {error}") from None
    if not isinstance(header, dict):
        raise CorruptEntry("entry header is not an object")
    return header, memoryview(data)[_HEAD.size + length :]


def encode_result(entry: ResultEntry) -> bytes:
    """Serialise a result entry."""
    distribution = entry.distribution
    header = {
        "kind": "result",
        "check": entry.check,
        "normal": entry.normal,
        "fingerprint": entry.fingerprint,
        "identity": entry.identity,
        "qubits": entry.qubits,
        "provenance": entry.provenance,
        "num_observable_bits": distribution.num_observable_bits,
        "size": int(distribution.outcomes.size),
        "qpy_size": len(entry.circuit_qpy),
    }
    return _pack(
        header,
        np.ascontiguousarray(distribution.outcomes, dtype="<u8"),
        np.ascontiguousarray(distribution.weights, dtype="<f8"),
        np.frombuffer(entry.circuit_qpy, dtype=np.uint8),
    )


def decode_result(data: bytes) -> ResultEntry:
    """Read a result entry; :class:`CorruptEntry` when the bytes are not one."""
    header, body = _unpack(data)
    try:
        size, qpy_size = int(header["size"]), int(header["qpy_size"])
        if header.get("kind") != "result" or len(body) != 16 * size + qpy_size:
            raise CorruptEntry("result entry has the wrong length")
        outcomes = np.frombuffer(body[: 8 * size], dtype="<u8").astype(np.uint64)
        weights = np.frombuffer(body[8 * size : 16 * size], dtype="<f8").astype(np.float64)
        if size and not (np.all(np.diff(outcomes.astype(np.int64)) > 0) and np.all(np.isfinite(weights))):
            raise CorruptEntry("result entry's outcomes are not increasing or its weights not finite")
        distribution = OutcomeDistribution(outcomes, weights, int(header["num_observable_bits"]), None)
        return ResultEntry(
            check=str(header["check"]),
            normal=str(header["normal"]),
            fingerprint=str(header["fingerprint"]),
            identity=str(header["identity"]),
            qubits=str(header.get("qubits", "")),
            provenance=dict(header["provenance"]),
            distribution=distribution,
            circuit_qpy=bytes(body[16 * size :]),
        )
    except (KeyError, TypeError, ValueError) as error:
        if isinstance(error, CorruptEntry):
            raise
        raise CorruptEntry(f"result entry is incomplete: {error}") from None


def encode_document(kind: str, check: str, document: Any, provenance: dict[str, Any]) -> bytes:
    """Serialise a JSON document entry (a run's plan, an exact reference) with its own check."""
    return _pack({"kind": kind, "check": check, "provenance": provenance, "document": document})


def decode_document(data: bytes, kind: str) -> tuple[str, Any, dict[str, Any]]:
    """Return (check, document, provenance) of a document entry of ``kind``."""
    header, body = _unpack(data)
    if header.get("kind") != kind or len(body) or "document" not in header:
        raise CorruptEntry(f"not a {kind} entry")
    return str(header.get("check")), header["document"], dict(header.get("provenance") or {})
