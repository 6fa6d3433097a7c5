"""Whole-step memos in the result cache: a spec's plan, and a circuit's exact reference.

A run of a spec that ran before (same spec, same package versions) need not partition
the circuit and build its subexperiments again when every result is cached: generate
reads the plan back (:func:`recall_plan`) and writes no circuits; execute then reads
only results. The exact reference of the uncut circuit is kept the same way. Each memo
is checked against what it claims to be (the spec, the fingerprints) before it is used.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from qhybrid.backends import SIMULATOR_BACKENDS, get_backend
from qhybrid.backends.aer import AerBackend
from qhybrid.cache.canonical_ref import CanonicalRef
from qhybrid.cache.entries import PLAN_PREFIX, REFERENCE_PREFIX, identity_digest, result_key
from qhybrid.cache.leaves import LEAF_SCHEMA
from qhybrid.cache.session import CacheSession, writer_provenance
from qhybrid.provenance import cpu_description, package_versions
from qhybrid.spec import RunSpec


def _plan_key(spec: RunSpec) -> tuple[bytes, str]:
    # The forms a plan's results are keyed by are part of what the plan is.
    check = json.dumps(
        {"spec": spec.to_json(), "versions": package_versions(), "forms": LEAF_SCHEMA}, sort_keys=True
    )
    return (PLAN_PREFIX + hashlib.sha256(check.encode()).hexdigest()).encode(), check


def remember_plan(session: CacheSession, spec: RunSpec, manifest: dict[str, Any], circuit_qasm: str) -> None:
    """Keep a generated run's manifest (with its canonical forms) and circuit for later runs of the spec."""
    key, check = _plan_key(spec)
    kept = {k: v for k, v in manifest.items() if k not in ("timings", "shard_sha256", "shards_written")}
    document = {"manifest": kept, "circuit_qasm": circuit_qasm}
    session.put_document(key, "plan", check, document, writer_provenance(spec.spec_hash()[:12], {}))


def recall_plan(session: CacheSession, spec: RunSpec) -> dict[str, Any] | None:
    """Return a remembered plan of ``spec`` when every one of its results is in the cache, else None.

    Only plans whose subexperiments all run on simulators qualify (QPU results are not cached).
    """
    key, check = _plan_key(spec)
    found = session.get_document(key, "plan")
    if found is None or found[0] != check:
        return None
    document: dict[str, Any] = found[1]
    manifest = document["manifest"]
    refs = manifest.get("canonical")
    unique = manifest["plan"]["unique"]
    if refs is None or any(u["backend"] not in SIMULATOR_BACKENDS for u in unique) or None in refs:
        return None
    identities: dict[str, str] = {}
    for name in {u["backend"] for u in unique}:
        backend = get_backend(name)
        assert isinstance(backend, AerBackend)
        identities[name] = identity_digest(backend.identity())
    wanted = [CanonicalRef.from_json(r) for r in refs]
    keys = [result_key(identities[u["backend"]], ref.key) for u, ref in zip(unique, wanted, strict=True)]
    entries = session.get_many(keys, peek=True)
    if any(e is None or e.check != ref.check for e, ref in zip(entries, wanted, strict=True)):
        return None
    return document


def _reference_key(circuit_fingerprint: str, observable_fingerprint: str) -> tuple[bytes, str]:
    versions = package_versions()
    check = json.dumps(
        {
            "circuit": circuit_fingerprint,
            "observable": observable_fingerprint,
            "versions": {k: versions[k] for k in ("qhybrid", "qiskit", "qiskit-aer", "numpy")},
            "cpu": cpu_description().rpartition("[")[2],
        },
        sort_keys=True,
    )
    return (REFERENCE_PREFIX + hashlib.sha256(check.encode()).hexdigest()).encode(), check


def recall_reference(session: CacheSession, problem: dict[str, Any]) -> dict[str, Any] | None:
    """Return the remembered exact reference of a manifest's problem, or None."""
    key, check = _reference_key(problem["circuit_fingerprint"], problem["observable_fingerprint"])
    found = session.get_document(key, "reference")
    if found is None or found[0] != check:
        return None
    return {**found[1], "cached": True}


def remember_reference(session: CacheSession, problem: dict[str, Any], exact: dict[str, Any]) -> None:
    """Keep a computed exact reference for later runs of the same circuit and observable."""
    key, check = _reference_key(problem["circuit_fingerprint"], problem["observable_fingerprint"])
    session.put_document(
        key, "reference", check, exact, writer_provenance(problem["circuit_fingerprint"][:12], {})
    )
