"""The generate step: partition the problem, deduplicate its subexperiments, write them and the plan.

Like every step it is an entry point over a run directory (``qhybrid step
generate``), called in-process by the local runner and in a workflow's first pod,
and idempotent: running it again on a generated directory changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from qiskit import QuantumCircuit, qasm3

from qhybrid import atomic
from qhybrid.backends import SIMULATOR_BACKENDS, GatewaySettings
from qhybrid.backends import check_backends as check_backend_configs
from qhybrid.cache.leaves import Origin
from qhybrid.cache.session import OFF, CacheSettings, session_for
from qhybrid.cost import PriceTable
from qhybrid.cutting.fingerprint import circuit_fingerprint, observable_fingerprint
from qhybrid.cutting.observables import format_pauli_sum
from qhybrid.cutting.plan import (
    CircuitsOnDemand,
    CuttingPlan,
    build_plan,
    generate_fingerprinted_subexperiments,
    partition_templates,
)
from qhybrid.cutting.policies import get_policy
from qhybrid.cutting.problem import CuttingProblem
from qhybrid.errors import InputError, RunDirError
from qhybrid.pipeline.forms import keep_problem_leaves, run_refs
from qhybrid.pipeline.memo import recall_plan, remember_plan
from qhybrid.pipeline.prefill import serve_cached
from qhybrid.pipeline.rundir import SHARD_SIZE, RunDir, write_shards
from qhybrid.provenance import environment
from qhybrid.spec import RunSpec, load_problem_inputs, problem_of


def claim_run_dir(run_dir: RunDir, spec: RunSpec, *, label: str | None = None) -> bool:
    """Make ``run_dir`` hold ``spec``; return True when it already did (a resume).

    Refuses a directory holding another run, or any non-empty directory that holds no
    run. ``label`` is the person's name for the run, kept in run.json for ``runs list``.
    """
    root = run_dir.root
    if run_dir.spec_file.is_file():
        existing = atomic.read_json(run_dir.spec_file)
        if existing.get("spec_hash") != spec.spec_hash():
            raise RunDirError(
                f"{root}: holds another run (spec {existing.get('spec_hash', '?')[:12]}, "
                f"not {spec.spec_hash()[:12]}); choose another --out or --resume {root}"
            )
        return True
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise RunDirError(f"{root}: exists and is not an empty directory; choose another --out")
    atomic.write_json(
        run_dir.spec_file,
        {
            "spec": spec.to_json(),
            "spec_hash": spec.spec_hash(),
            "label": label,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "created_with": environment(),
        },
    )
    return False


def check_shot_budget(spec: RunSpec, by_backend: dict[str, int], budget: int | None) -> None:
    """Refuse a plan whose QPU subexperiments would draw more than ``budget`` shots in all."""
    if budget is None:
        return
    if budget < 1:
        raise InputError("--shot-budget", f"must be at least 1, got {budget}")
    on_qpu = by_backend.get("qpu", 0)
    needed = on_qpu * (spec.shots or 0)
    if needed > budget:
        raise InputError(
            "--shot-budget",
            f"the plan sends {on_qpu} unique subexperiments x {spec.shots} shots = {needed} shots "
            f"to the QPU, over the budget of {budget}",
        )


def generate(
    run_dir: RunDir,
    spec: RunSpec,
    *,
    check_backends: bool = True,
    gateway: GatewaySettings | None = None,
    write_circuits: bool = True,
    label: str | None = None,
    cache: CacheSettings = OFF,
    shot_budget: int | None = None,
    prices: PriceTable | None = None,
) -> dict[str, Any]:
    """Partition, generate and deduplicate subexperiments; write shards and the manifest.

    Everything is validated in memory first (input, cut width, backend availability),
    so a bad input leaves no directory behind. ``check_backends=False`` skips only the
    availability check, for a workflow whose generate pod is not where the backends
    run (each branch's pod checks its own backend when it starts). ``gateway`` is
    where the qpu backend would run, for that check (one cheap call to the gateway).
    ``write_circuits=False`` writes no QPY shards: only for a run that executes in this
    process, which holds the circuits (a resume rebuilds them: :func:`regenerate_circuits`).
    With a ``cache``, the manifest carries each subexperiment's canonical form, and a spec
    whose plan and results are all cached is not partitioned again: its plan is read back
    and no circuit is built (:mod:`qhybrid.pipeline.memo`). ``shot_budget`` refuses a plan
    whose QPU subexperiments would draw more shots than that (a QuantumJob's ``shotBudget``).
    ``prices`` is the table the report prices the run's usage with (kept in the manifest).
    """
    if run_dir.manifest_file.is_file():
        claim_run_dir(run_dir, spec)  # checks that it is this run
        return run_dir.generated().manifest
    timings: dict[str, float] = {}
    started = time.perf_counter()
    cpu_started = time.process_time()
    priced = prices.to_json() if prices is not None else None
    session = session_for(cache) if cache.enabled else None
    memo = recall_plan(session, spec) if session is not None else None
    if memo is not None:
        check_shot_budget(spec, memo["manifest"]["counts"]["by_backend"], shot_budget)
        if check_backends:
            check_backend_configs(list(memo["manifest"]["counts"]["by_backend"]), gateway)
        claim_run_dir(run_dir, spec, label=label)
        atomic.write_text(run_dir.circuit_file, memo["circuit_qasm"])
        timings["generate"] = time.perf_counter() - started
        remembered = {
            **memo["manifest"],
            "shards_written": False,
            "shard_sha256": [],
            "timings": timings,
            "plan_from_cache": True,
            "prices": priced,
            "cpu_seconds": time.process_time() - cpu_started,
        }
        atomic.write_json(run_dir.manifest_file, remembered, compact=True)
        assert session is not None  # a memo comes only from a cache
        served = serve_cached(run_dir, session)
        return {**run_dir.generated().manifest, "cached_before_execute": served}
    # A run that writes no shards builds a circuit only when something reads it.
    problem, plan, circuits, origins = plan_with_origins(spec, build_circuits=write_circuits)
    backends = plan.backend_counts()
    if spec.mode == "exact" and set(backends) - SIMULATOR_BACKENDS:
        raise InputError(
            "--mode",
            f"exact mode needs simulators, but policy {spec.policy!r} sends "
            f"{backends.get('qpu', 0)} subexperiments to the QPU; use --mode sampled",
        )
    check_shot_budget(spec, backends, shot_budget)
    if check_backends:  # fails now, before any file, if a backend cannot run as configured
        check_backend_configs(list(backends), gateway)
    timings["generate"] = time.perf_counter() - started

    claim_run_dir(run_dir, spec, label=label)
    write_started = time.perf_counter()
    circuit_qasm = qasm3.dumps(problem.circuit)
    atomic.write_text(run_dir.circuit_file, circuit_qasm)
    shard_hashes = write_shards(run_dir, circuits) if write_circuits else []
    timings["write_subexperiments"] = time.perf_counter() - write_started
    manifest = {
        "problem": {
            "num_qubits": problem.circuit.num_qubits,
            "circuit_fingerprint": circuit_fingerprint(problem.circuit),
            "observable": format_pauli_sum(problem.observable),
            "observable_fingerprint": observable_fingerprint(problem.observable),
            "observable_coeffs": [float(c.real) for c in problem.observable.coeffs],
            "observable_paulis": [p.to_label() for p in problem.observable.paulis],
            "partition_widths": {label: c.num_qubits for label, c in problem.subcircuits.items()},
            "num_cuts": problem.num_cuts,
            "cuts": problem.cut_descriptions(),
            "preprocessing": problem.preprocessing,
            "sampling_overhead": problem.sampling_overhead,
        },
        "counts": {
            "subexperiments": plan.num_subexperiments,
            "unique": len(plan.unique),
            "duplicates": plan.num_subexperiments - len(plan.unique),
            "by_backend": backends,
        },
        "shard_size": SHARD_SIZE,
        "shards_written": write_circuits,
        # Checked when a shard is read: a damaged or swapped file fails loudly.
        "shard_sha256": shard_hashes,
        "plan": plan.to_json(),
        # Where each unique subexperiment comes from, so any process can make its leaf form.
        "origins": [None if o is None else [o[0], o[1], list(o[2])] for o in origins],
        "timings": timings,
        "prices": priced,
    }
    if session is not None:
        canonical_started = time.perf_counter()
        refs = run_refs(spec, origins, circuits, [u.fingerprint for u in plan.unique])
        manifest["canonical"] = [None if r is None else r.to_json() for r in refs]
        manifest["qubits"] = original_qubits(spec, plan)
        timings["canonical_forms"] = time.perf_counter() - canonical_started
    manifest["cpu_seconds"] = time.process_time() - cpu_started
    atomic.write_json(run_dir.manifest_file, manifest, compact=True)  # last: its presence means "generated"
    if session is not None:
        remember_plan(session, spec, manifest, circuit_qasm)
    # An in-process execute then uses these circuits instead of reading back the QPY
    # just written; worker processes and pods read the shards.
    run_dir.generated().hold_circuits(circuits)
    if session is not None:  # hits are served now, so execute (and a workflow's batches) see only misses
        return {**manifest, "cached_before_execute": serve_cached(run_dir, session)}
    return manifest


def plan_of(spec: RunSpec) -> tuple[CuttingProblem, CuttingPlan, list[QuantumCircuit]]:
    """Partition the spec's problem and build its deduplicated plan and unique circuits."""
    problem, plan, circuits, _ = plan_with_origins(spec)
    return problem, plan, list(circuits)


def plan_with_origins(
    spec: RunSpec, *, build_circuits: bool = True
) -> tuple[CuttingProblem, CuttingPlan, Sequence[QuantumCircuit], list[Origin | None]]:
    """:func:`plan_of`, plus where each unique subexperiment comes from (None: no template built it).

    ``build_circuits=False`` builds a circuit only when it is first read. The problem's
    leaves (:mod:`qhybrid.cache.leaves`) are made from the same templates and kept for this
    process (:func:`~qhybrid.pipeline.forms.problem_leaves`).
    """
    problem = problem_of(spec)
    templates = partition_templates(problem.subcircuits)
    by_item: dict[int, Origin] = {}
    subexperiments, coefficients, fingerprints = generate_fingerprinted_subexperiments(
        problem.subcircuits,
        problem.subobservables,
        origins=by_item,
        templates=templates,
        build_circuits=build_circuits,
    )
    plan, items = build_plan(
        subexperiments,
        coefficients,
        problem.subobservables,
        policy=get_policy(spec.policy),
        run_seed=spec.seed,
        known_fingerprints=fingerprints,
    )
    keep_problem_leaves(spec, problem, templates)
    origins = [by_item.get(id(item)) for item in items]
    circuits = CircuitsOnDemand(items, problem.subcircuits, problem.subobservables, templates)
    return problem, plan, circuits, origins


def original_qubits(spec: RunSpec, plan: CuttingPlan) -> list[str]:
    """Return, per unique subexperiment, the qubits of the original circuit it acts on ("6,7,8").

    Known for explicit partitions (a subcircuit keeps its qubits' order); "" with automatic
    cuts, whose wire cuts add qubits. A subexperiment shared by two partitions gets the first's.
    """
    _, _, partition = load_problem_inputs(spec)
    places = [""] * len(plan.unique)
    if partition is None:
        return places
    for label in plan.labels:
        qubits = ",".join(str(q) for q, owner in enumerate(partition) if owner == label)
        for uid in sorted({int(u) for u in plan.index[label].ravel()}):
            places[uid] = places[uid] or qubits
    return places


def write_missing_shards(run_dir: RunDir) -> None:
    """Give a run generated without QPY shards its shards, for worker processes to read.

    Its circuits are rebuilt from the spec (and checked against the plan) unless this
    process holds them; the shards are written first, then the manifest that names their
    SHA-256s, each atomically, so a kill in between leaves a run that still resumes.
    """
    run = run_dir.generated()
    if not run.holds_all_circuits():
        regenerate_circuits(run_dir)
    circuits = run.circuits_for(range(len(run.plan.unique)))
    hashes = write_shards(run_dir, circuits)
    atomic.write_json(
        run_dir.manifest_file, {**run.manifest, "shards_written": True, "shard_sha256": hashes}, compact=True
    )
    run_dir.generated().hold_circuits(circuits)


def regenerate_circuits(run_dir: RunDir) -> None:
    """Rebuild the unique circuits of a run generated without shards, checking them against its plan.

    Generation is deterministic (same spec, same seed), so the rebuilt circuits are the
    ones the plan names; their fingerprints are checked one by one all the same.
    """
    run = run_dir.generated()
    _, plan, circuits = plan_of(run.spec)
    if [u.fingerprint for u in plan.unique] != [u.fingerprint for u in run.plan.unique]:
        raise RunDirError(f"{run_dir.root}: rebuilt subexperiments differ from the plan; generate again")
    run.hold_circuits(circuits)
