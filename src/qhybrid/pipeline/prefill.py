"""Serve cached results before execute: generate writes them, so batches hold only misses.

In a workflow this is what makes a warm cache start fewer pods: the ``batches`` step
counts only unique subexperiments that have no result yet, and a branch's execute pod
skips ids that already have one. Locally the runner's pending ranges skip them the same
way. Results served here are exactly what execute would have served (the same lookup,
the same mapping of bits, the same seeded sampling).
"""

from __future__ import annotations

from typing import Any

from qhybrid.backends import SIMULATOR_BACKENDS, get_backend
from qhybrid.backends.aer import AerBackend
from qhybrid.cache.canonical_ref import CanonicalRef
from qhybrid.cache.session import CacheSession
from qhybrid.cutting.outcomes import OutcomeDistribution
from qhybrid.errors import BackendUnavailable
from qhybrid.pipeline.rundir import RunDir, contiguous_runs
from qhybrid.pipeline.simulate import cached_results


def serve_cached(run_dir: RunDir, session: CacheSession) -> int:
    """Write result files for every unique subexperiment the cache holds; return how many."""
    run = run_dir.generated()
    planned = run.manifest.get("canonical")
    if planned is None:
        return 0
    refs = [None if r is None else CanonicalRef.from_json(r) for r in planned]
    known = run.manifest.get("qubits")
    unique = run.plan.unique
    shots = run.spec.shots if run.spec.mode == "sampled" else None
    before = session.counts.copy()
    served: dict[int, OutcomeDistribution] = {}
    descriptions: dict[str, dict[str, str]] = {}
    for name in sorted({u.backend for u in unique} & SIMULATOR_BACKENDS):
        try:
            backend = get_backend(name)
        except BackendUnavailable:
            continue  # a gpu branch planned from a cpu pod: its own pods look it up
        assert isinstance(backend, AerBackend)
        ids = [uid for uid, entry in enumerate(unique) if entry.backend == name and refs[uid] is not None]
        results = cached_results(
            backend,
            [refs[uid] for uid in ids],
            fingerprints=[unique[uid].fingerprint for uid in ids],
            shots=shots,
            seeds=[unique[uid].seed for uid in ids],
            session=session,
            places=None if known is None else [str(known[uid]) for uid in ids],
        )
        found = {uid: r for uid, r in zip(ids, results, strict=True) if r is not None}
        if found:
            served.update(found)
            descriptions[name] = backend.description()
    counts = {k: v for k, v in (session.counts - before).items() if k not in ("miss", "unavailable")}
    first = True
    for start, stop in contiguous_runs(sorted(served)):
        ids = list(range(start, stop))
        meta: dict[str, Any] = {
            "start": start,
            "stop": stop,
            "ids": ids,
            "backends": [unique[uid].backend for uid in ids],
            "backend_descriptions": descriptions,
            "simulation_seconds": {},
            "failovers": [],
            "gateway_jobs": [],
            "served_by": "generate",
            # The lookups' counts go with the first file only: reconstruct sums every file's.
            "cache": {"store": session.location, **(counts if first else {})},
        }
        run_dir.write_results(start, stop, None, [served[uid] for uid in ids], meta)
        first = False
    return len(served)
