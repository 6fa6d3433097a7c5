"""Simulator subexperiments through their canonical forms and the result cache.

Every subexperiment that runs on a simulator (cpu, gpu) is computed in a canonical form:
its leaf (:mod:`qhybrid.cache.leaves`, made from its partition, canonicalised once) when it
has one, else its own (:mod:`qhybrid.cache.canonical`); the simulator computes that
circuit's exact distribution once per form; its outcome bits are mapped back to each
circuit's own; sampled mode then draws the circuit's shots from it with the circuit's own
seed. The cache only decides whether that exact distribution is computed now or read back,
so a run with the cache, without it, cold or warm, gives the same bits.

A stored entry is used only when its canonical form's independent digest equals the
query's (a colliding key is a miss and is counted), and the hit is counted by kind:
``exact`` (the writer's circuit was this very circuit), ``canonical`` (same circuit up to
stages 1-2), ``relabelled`` (same circuit up to a qubit relabelling).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

from qiskit import QuantumCircuit

from qhybrid.backends.aer import AerBackend, draw_shots
from qhybrid.cache.canonical import CanonicalForm, NotCanonicalisable, canonical_form
from qhybrid.cache.canonical_ref import CanonicalRef
from qhybrid.cache.entries import ResultEntry, identity_digest, qpy_bytes, result_key
from qhybrid.cache.leaves import LeafForm
from qhybrid.cache.session import CacheSession, writer_provenance
from qhybrid.cutting.fingerprint import known_instruction_tokens
from qhybrid.cutting.outcomes import OutcomeDistribution


def _hit_kind(entry: ResultEntry, fingerprint: str, ref: CanonicalRef, place: str) -> str:
    """Say how a hit relates to its writer: the very circuit, the same one, or one relabelled.

    ``place`` is which qubits of its original circuit the subexperiment acts on ("" when not
    known): the same local circuit on other qubits (one half of a symmetric circuit serving
    the other) is a relabelled hit.
    """
    if entry.fingerprint == fingerprint:
        return "hit_exact"
    same_place = not place or not entry.qubits or place == entry.qubits
    return "hit_canonical" if entry.normal == ref.normal and same_place else "hit_relabelled"


# Canonical forms this process computed, by circuit fingerprint: generate computes them for
# the plan and an in-process execute needs them again for what it must compute.
_FORMS: OrderedDict[str, CanonicalForm] = OrderedDict()
_FORMS_KEPT = 4096


def form_of(circuit: QuantumCircuit, fingerprint: str) -> CanonicalForm:
    """Return the circuit's canonical form (kept for the last few thousand fingerprints)."""
    form = _FORMS.get(fingerprint)
    if form is None:
        form = _FORMS[fingerprint] = canonical_form(circuit, known_instruction_tokens(fingerprint))
        while len(_FORMS) > _FORMS_KEPT:
            _FORMS.popitem(last=False)
    return form


def forget_canonical_forms() -> None:
    """Drop the canonical forms this process kept (benchmarks time a cold process's work)."""
    _FORMS.clear()


def canonical_refs(
    circuits: Sequence[QuantumCircuit], fingerprints: Sequence[str]
) -> list[CanonicalRef | None]:
    """Return each circuit's canonical form as plain data (None: not canonicalisable, run as is)."""
    refs: list[CanonicalRef | None] = []
    for circuit, fingerprint in zip(circuits, fingerprints, strict=True):
        try:
            refs.append(form_of(circuit, fingerprint).ref())
        except NotCanonicalisable:
            refs.append(None)
    return refs


def form_refs(
    leaves: Sequence[LeafForm | None],
    load: Callable[[list[int]], Sequence[QuantumCircuit]],
    fingerprints: Sequence[str],
) -> tuple[list[CanonicalRef | None], dict[int, QuantumCircuit]]:
    """Each subexperiment's canonical form as plain data: its leaf's, else its own circuit's.

    ``load(positions)`` gives the circuits of those without a leaf, which are canonicalised
    (and returned, by position, for whoever computes them next).
    """
    own = [i for i, leaf in enumerate(leaves) if leaf is None]
    loaded = dict(zip(own, load(own), strict=True))
    own_refs = dict(
        zip(own, canonical_refs([loaded[i] for i in own], [fingerprints[i] for i in own]), strict=True)
    )
    return [own_refs[i] if leaf is None else leaf.ref() for i, leaf in enumerate(leaves)], loaded


def _simulate(
    backend: AerBackend,
    load: Callable[[list[int]], list[QuantumCircuit]],
    *,
    fingerprints: Sequence[str],
    shots: int | None,
    seeds: Sequence[int],
    session: CacheSession,
    run: str,
    refs: Sequence[CanonicalRef | None] | None = None,
    compute: bool = True,
    places: Sequence[str] | None = None,
    leaves: Callable[[list[int]], list[LeafForm | None]] | None = None,
) -> list[OutcomeDistribution | None]:
    """Return each subexperiment's distribution, computing each distinct canonical form at most once.

    ``load(positions)`` returns the circuits at those positions: it is called for all of
    them when ``refs`` (their canonical forms, from the plan) are not given, else only for
    those that must be computed, so a fully cached batch reads no circuit. ``leaves(positions)``
    gives the leaf forms of those positions (None where a subexperiment has none): a
    subexperiment with a leaf is computed in it and its circuit is never read. ``run`` names
    the writer in the provenance of entries written. ``compute=False`` only looks up: what
    is not cached comes back as None (generate serves hits before any pod starts).
    """
    count = len(fingerprints)
    where = list(places) if places is not None else [""] * count
    if len(seeds) != count:
        raise ValueError(f"{count} subexperiments but {len(seeds)} seeds")
    loaded: dict[int, QuantumCircuit] = {}
    leaf_at: dict[int, LeafForm | None] = {}
    if refs is None:
        if leaves is not None:
            leaf_at = dict(enumerate(leaves(list(range(count)))))
        refs, loaded = form_refs([leaf_at.get(i) for i in range(count)], load, fingerprints)
    identity = identity_digest(backend.identity())
    keys = [result_key(identity, ref.key) if ref else b"" for ref in refs]
    found: dict[bytes, ResultEntry] = {}
    asked = sorted({k for k, ref in zip(keys, refs, strict=True) if ref and session.remembered(k) is None})
    for key, entry in zip(asked, session.get_many(asked), strict=True):
        if entry is not None:
            found[key] = entry
    canonical: list[OutcomeDistribution | None] = [None] * count
    to_compute: dict[bytes, int] = {}  # key -> position of the subexperiment that computes it
    direct: list[int] = []
    for i, (ref, key) in enumerate(zip(refs, keys, strict=True)):
        if ref is None:
            direct.append(i)
            session.count("uncacheable")
            continue
        entry = session.remembered(key)
        source = "from_memory"
        if entry is None and key in found:
            entry, source = found.pop(key), "from_store"
            if entry.check != ref.check:  # the key collided: never trust the hash alone
                session.count("collision")
                entry = None
            else:
                session.remember(key, entry)
        if entry is None:
            if key not in to_compute:
                to_compute[key] = i
                session.count("miss")
            continue
        session.count(_hit_kind(entry, fingerprints[i], ref, where[i]))
        session.count(source)
        canonical[i] = entry.distribution
    if not compute:
        return [
            None if ref is None or c is None else _finish(ref.to_circuit_labels(c), shots, seeds[i])
            for i, (ref, c) in enumerate(zip(refs, canonical, strict=True))
        ]
    positions = list(to_compute.values())
    unknown = [i for i in positions if i not in leaf_at]
    if leaves is not None and unknown:
        leaf_at.update(zip(unknown, leaves(unknown), strict=True))
    needed = [i for i in positions + direct if i not in loaded and leaf_at.get(i) is None]
    loaded.update(zip(needed, load(needed), strict=True))
    forms: list[CanonicalForm | LeafForm] = [
        leaf_at.get(i) or form_of(loaded[i], fingerprints[i]) for i in positions
    ]
    for i, form in zip(positions, forms, strict=True):
        if form.ref() != refs[i]:
            raise RuntimeError(
                f"subexperiment at position {i}: its circuit's canonical form is not the plan's"
            )
    # The forms themselves go to the backend: the branching engine reads their records, and
    # only a circuit Aer must run is built.
    computed = backend.exact_distributions(forms)
    provenance = writer_provenance(run, backend.description())
    fresh: dict[bytes, ResultEntry] = {}  # computed in this call: serves its other circuits of the form
    for i, form, distribution in zip(positions, forms, computed, strict=True):
        entry = ResultEntry(
            check=form.check,
            normal=form.normal,
            fingerprint=fingerprints[i],
            identity=identity,
            qubits=where[i],
            provenance=provenance,
            distribution=distribution,
            # Only a stored entry needs its circuit (for `cache verify`).
            circuit_qpy=qpy_bytes(form.circuit()) if session.location is not None else b"",
        )
        fresh[keys[i]] = entry
        session.remember(keys[i], entry)
    session.put_many(list(fresh.items()))
    for i, (ref, key) in enumerate(zip(refs, keys, strict=True)):
        if ref is not None and canonical[i] is None:
            entry = fresh[key]  # every form not served above was computed in this call
            canonical[i] = entry.distribution
            if to_compute[key] != i:
                session.count(_hit_kind(entry, fingerprints[i], ref, where[i]))
                session.count("from_memory")
    session.count("computed", len(positions) + len(direct))
    direct_results = dict(zip(direct, backend.exact_distributions([loaded[i] for i in direct]), strict=True))
    return [
        _finish(direct_results[i] if ref is None else ref.to_circuit_labels(canonical[i]), shots, seeds[i])  # type: ignore[arg-type]
        for i, ref in enumerate(refs)
    ]


def simulate(
    backend: AerBackend,
    load: Callable[[list[int]], list[QuantumCircuit]],
    *,
    fingerprints: Sequence[str],
    shots: int | None,
    seeds: Sequence[int],
    session: CacheSession,
    run: str,
    refs: Sequence[CanonicalRef | None] | None = None,
    places: Sequence[str] | None = None,
    leaves: Callable[[list[int]], list[LeafForm | None]] | None = None,
) -> list[OutcomeDistribution]:
    """Return every subexperiment's distribution, computing what the cache does not hold (see _simulate)."""
    results = _simulate(
        backend,
        load,
        fingerprints=fingerprints,
        shots=shots,
        seeds=seeds,
        session=session,
        run=run,
        refs=refs,
        places=places,
        leaves=leaves,
    )
    done = [r for r in results if r is not None]
    assert len(done) == len(results)
    return done


def cached_results(
    backend: AerBackend,
    refs: Sequence[CanonicalRef | None],
    *,
    fingerprints: Sequence[str],
    shots: int | None,
    seeds: Sequence[int],
    session: CacheSession,
    places: Sequence[str] | None = None,
) -> list[OutcomeDistribution | None]:
    """Return the distributions the cache already holds (None for the rest); compute nothing."""

    def nothing(positions: list[int]) -> list[QuantumCircuit]:
        raise AssertionError("a lookup-only pass loads no circuit")

    return _simulate(
        backend, nothing, fingerprints=fingerprints, shots=shots, seeds=seeds, session=session, run="",
        refs=refs, compute=False, places=places,
    )  # fmt: skip


def _finish(exact: OutcomeDistribution, shots: int | None, seed: int) -> OutcomeDistribution:
    """The subexperiment's result: its exact distribution, or ``shots`` drawn from it with its seed."""
    return exact if shots is None else draw_shots(exact, shots, seed)
