"""The execute step: run a range of unique subexperiments on their planned backends, write the results.

One call runs unique subexperiments [start, stop) (or only those of them that the
plan puts on one backend: a workflow branch's batch) and writes one result file.
A file that exists is complete, so running the same range again does nothing.
What a backend cannot run fails over as the policy says, with the same seeds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from qiskit import QuantumCircuit

from qhybrid.backends import EventSink, GatewaySettings, OutcomeDistribution, QpuFailures, get_backend
from qhybrid.backends.aer import AerBackend
from qhybrid.cache.canonical_ref import CanonicalRef
from qhybrid.cache.leaves import LeafForm
from qhybrid.cache.session import OFF, CacheSettings, session_for
from qhybrid.cutting.policies import get_policy
from qhybrid.errors import BackendUnavailable, InputError, RunFailed
from qhybrid.pipeline.forms import origin_from_json, problem_leaves
from qhybrid.pipeline.generate import regenerate_circuits
from qhybrid.pipeline.rundir import RunDir
from qhybrid.pipeline.simulate import simulate


def execute(
    run_dir: RunDir,
    start: int,
    stop: int,
    backend: str | None = None,
    *,
    gateway: GatewaySettings | None = None,
    events: EventSink | None = None,
    cache: CacheSettings = OFF,
) -> dict[str, Any]:
    """Run unique subexperiments [start, stop) and write their distributions.

    With ``backend``, run only those of [start, stop) that the plan puts on that
    backend (one batch of a workflow branch) into their own file, so branches whose
    ids interleave never write the same file. ``gateway`` is where the qpu backend
    runs, and its ``failover`` mode says what may move to the policy's fallback when the
    gateway fails (otherwise :class:`RunFailed`). ``events`` hears a remote backend's
    progress. Simulators run through canonical forms and ``cache``
    (:mod:`qhybrid.pipeline.simulate`): the same bits with the cache on or off.
    Returns timings: ``simulation_seconds`` is time inside backends only.
    """
    wall_started = time.perf_counter()
    cpu_started = time.process_time()  # this process's CPU, every thread: the cost's cpu usage
    run = run_dir.generated()
    total = len(run.plan.unique)
    if not 0 <= start < stop <= total:
        raise InputError("--start/--stop", f"range [{start}, {stop}) is outside [0, {total})")
    ids = [uid for uid in range(start, stop) if backend is None or run.plan.unique[uid].backend == backend]
    if not ids:
        raise InputError("--backend", f"no unique subexperiment of [{start}, {stop}) runs on {backend!r}")
    skipped = {"start": start, "stop": stop, "skipped": True, "simulation_seconds": 0.0, "wall_seconds": 0.0}
    if run_dir.result_file(start, stop, backend).is_file():
        return skipped
    if backend is not None:
        # A branch's batch skips what generate already served from the cache (its own file).
        served = run_dir.done_ids([entry.backend for entry in run.plan.unique])
        ids = [uid for uid in ids if uid not in served]
        if not ids:
            return skipped
    entries = [run.plan.unique[uid] for uid in ids]
    # The plan carries canonical forms when generate had a cache: then only the
    # subexperiments that must be computed are read (or rebuilt, for a run without shards).
    planned = run.manifest.get("canonical")
    refs = None if planned is None else [None if r is None else CanonicalRef.from_json(r) for r in planned]
    refs = None if refs is None else [refs[uid] for uid in ids]
    known = run.manifest.get("qubits")
    places = None if known is None else [str(known[uid]) for uid in ids]
    shots = run.spec.shots if run.spec.mode == "sampled" else None
    policy = get_policy(run.spec.policy)
    results: list[OutcomeDistribution | None] = [None] * len(ids)
    ran_on = [e.backend for e in entries]
    failovers: list[dict[str, Any]] = []
    simulation_seconds: dict[str, float] = {}
    descriptions: dict[str, dict[str, str]] = {}

    gateway_jobs: list[dict[str, Any]] = []
    settings = gateway or GatewaySettings()
    session = session_for(cache)
    counts_before = session.counts.copy()

    def load(uids: list[int]) -> list[QuantumCircuit]:
        if uids and not run.manifest.get("shards_written", True) and not run.holds_all_circuits():
            # Generated without shards (--no-shards, or every result was cached when it was
            # planned): what must be computed now is rebuilt, deterministically, and checked.
            regenerate_circuits(run_dir)
        return run.circuits_for(uids)

    origins = run.manifest.get("origins")

    def leaves_of(uids: list[int]) -> list[LeafForm | None]:
        assert origins is not None
        found = problem_leaves(run.spec)
        return [found.leaf(origin_from_json(origins[uid])) for uid in uids]

    def leaves_among(positions: list[int]) -> Callable[[list[int]], list[LeafForm | None]]:
        return lambda chosen: leaves_of([ids[positions[k]] for k in chosen])

    def run_on(name: str, positions: list[int]) -> list[OutcomeDistribution]:
        backend = get_backend(name, gateway)
        sim_started = time.perf_counter()
        try:
            if isinstance(backend, AerBackend):
                return simulate(
                    backend,
                    lambda chosen: load([ids[positions[k]] for k in chosen]),
                    fingerprints=[entries[i].fingerprint for i in positions],
                    shots=shots,
                    seeds=[entries[i].seed for i in positions],
                    session=session,
                    run=f"{run_dir.root.name} spec {run.spec.spec_hash()[:12]}",
                    refs=None if refs is None else [refs[i] for i in positions],
                    places=None if places is None else [places[i] for i in positions],
                    leaves=None if origins is None else leaves_among(positions),
                )
            circuits = load([ids[i] for i in positions])
            return backend.run(
                circuits,
                shots=shots,
                seeds=[entries[i].seed for i in positions],
                events=events,
            )
        finally:
            simulation_seconds[name] = simulation_seconds.get(name, 0.0) + time.perf_counter() - sim_started
            descriptions[name] = backend.description()
            # Which gateway job ran each subexperiment, so QPU usage can be matched to runs.
            for position, job in zip(positions, getattr(backend, "last_jobs", ()), strict=False):
                if job is not None:
                    gateway_jobs.append({"subexperiment": ids[position], **job})

    for backend_name in sorted({e.backend for e in entries}):
        positions = [i for i, e in enumerate(entries) if e.backend == backend_name]
        fallback = policy.failover_for(backend_name)
        try:
            distributions: list[OutcomeDistribution | None] = list(run_on(backend_name, positions))
        except (QpuFailures, BackendUnavailable) as failure:
            if fallback is None and isinstance(failure, BackendUnavailable):
                raise  # a simulator that cannot run here: a configuration error
            if isinstance(failure, QpuFailures):
                distributions, reasons, transient = list(failure.results), failure.reasons, failure.transient
            else:
                distributions, reasons = (
                    [None] * len(positions),
                    dict.fromkeys(range(len(positions)), str(failure)),
                )
                transient = frozenset()
            kept = [k for k in sorted(reasons) if not settings.allows_failover(k in transient)]
            if fallback is None or kept:
                # Not allowed to move (policy or --failover): the run stops; the files of
                # ranges already done stay, and the gateway's job keys make --resume reuse
                # the jobs that did finish rather than pay for them twice.
                first = reasons[kept[0] if kept else min(reasons)]
                why = "its policy has no failover" if fallback is None else f"--failover {settings.failover}"
                raise RunFailed(
                    f"{backend_name} backend: {len(reasons)} of {len(positions)} subexperiments of "
                    f"[{start}, {stop}) failed ({first}) and {why} keeps them from moving; "
                    f"finished results are kept: --resume {run_dir.root}"
                ) from None
            # Per the policy, what the backend could not run goes to the fallback simulator
            # with the same seeds; the report lists each such subexperiment and the reason.
            failed = sorted(reasons)
            for k, distribution in zip(failed, run_on(fallback, [positions[k] for k in failed]), strict=True):
                distributions[k] = distribution
                ran_on[positions[k]] = fallback
                failovers.append(
                    {
                        "subexperiment": ids[positions[k]],
                        "from": backend_name,
                        "to": fallback,
                        "reason": reasons[k],
                        "transient": k in transient,
                    }
                )
        for i, outcome in zip(positions, distributions, strict=True):
            results[i] = outcome
    done = [r for r in results if r is not None]
    assert len(done) == len(results)
    meta = {
        "start": start,
        "stop": stop,
        "ids": ids,
        "backends": ran_on,
        "backend_descriptions": descriptions,
        "simulation_seconds": simulation_seconds,
        "failovers": failovers,
        "gateway_jobs": sorted(gateway_jobs, key=lambda job: job["subexperiment"]),
        "cache": {"store": session.location, **dict(session.counts - counts_before)},
        "cpu_seconds": time.process_time() - cpu_started,
    }
    run_dir.write_results(start, stop, backend, done, meta)
    return {
        "start": start,
        "stop": stop,
        "skipped": False,
        "simulation_seconds": sum(simulation_seconds.values()),
        "wall_seconds": time.perf_counter() - wall_started,
    }
