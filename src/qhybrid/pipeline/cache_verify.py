"""``qhybrid cache verify``: recompute a random sample of cached results and compare them bitwise.

A shared cache can be poisoned by one bad writer. Each sampled entry is checked three
ways: its stored circuit must be the form its digest says (a partition's leaf, written
out as it was keyed, or a subexperiment's own canonical form), the entry must sit under
the key that form and its backend identity give, and simulating the circuit here must
give the stored distribution bit for bit. Entries written on
another backend identity (another simulator version, device or CPU kernel set) cannot
be recomputed here and are counted as skipped, with the identities seen.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from qiskit import QuantumCircuit

from qhybrid.backends import get_backend
from qhybrid.backends.aer import AerBackend
from qhybrid.cache.canonical import NotCanonicalisable, canonical_form, form_digests
from qhybrid.cache.entries import (
    RESULT_PREFIX,
    CorruptEntry,
    circuit_from_qpy,
    decode_result,
    identity_digest,
    result_key,
)
from qhybrid.cache.leaves import leaf_text
from qhybrid.cache.stores import ResultStore, sample_keys

_OUTCOMES = ("match", "mismatch", "corrupt", "skipped_other_identity", "gone")


def _names(circuit: QuantumCircuit, check: str, identity: str, key: bytes) -> bool:
    """Whether ``circuit`` is the form that ``check`` and ``key`` name: a leaf's, or a canonical form's.

    The leaf reading (writing the circuit out) is tried first; only a circuit that is not the
    leaf its entry names is canonicalised again.
    """
    for text_of in (leaf_text, lambda c: canonical_form(c).text):
        try:
            text = text_of(circuit)
        except NotCanonicalisable:
            continue
        text_key, text_check = form_digests(text)
        if text_check == check and result_key(identity, text_key) == key:
            return True
    return False


def verify_sample(store: ResultStore, sample: int, *, seed: int = 0, backend: str = "cpu") -> dict[str, Any]:
    """Recompute up to ``sample`` entries chosen with ``seed``; return counts and each mismatch."""
    simulator = get_backend(backend)
    assert isinstance(simulator, AerBackend)
    identity = identity_digest(simulator.identity())
    keys = sample_keys(store, RESULT_PREFIX.encode(), sample, seed)
    outcome: Counter[str] = Counter()
    problems: list[dict[str, Any]] = []
    for key, value in zip(keys, store.get_many(keys), strict=True):
        if value is None:
            outcome["gone"] += 1  # evicted between listing and reading
            continue
        try:
            entry = decode_result(bytes(value))
            circuit = circuit_from_qpy(entry.circuit_qpy)
        except CorruptEntry as error:
            outcome["corrupt"] += 1
            problems.append({"key": key.decode(), "problem": str(error)})
            continue
        if entry.identity != identity:
            outcome["skipped_other_identity"] += 1
            continue
        if not _names(circuit, entry.check, identity, key):
            outcome["mismatch"] += 1
            problems.append(
                {
                    "key": key.decode(),
                    "problem": "stored circuit is not the form its key and digest name",
                    "writer": entry.provenance,
                }
            )
            continue
        (recomputed,) = simulator.exact_distributions([circuit])
        stored = entry.distribution
        same = (
            recomputed.outcomes.shape == stored.outcomes.shape
            and np.array_equal(recomputed.outcomes, stored.outcomes)
            and recomputed.weights.tobytes() == stored.weights.tobytes()
        )
        if same:
            outcome["match"] += 1
        else:
            outcome["mismatch"] += 1
            problems.append(
                {
                    "key": key.decode(),
                    "problem": "recomputed distribution differs",
                    "writer": entry.provenance,
                }
            )
    return {
        "store": store.location,
        "sampled": len(keys),
        "backend": backend,
        **{name: outcome.get(name, 0) for name in _OUTCOMES},
        "problems": problems,
    }
