"""The workflow's steps. Each is an entry point over a run directory.

The local runner calls these in-process or through worker processes; a
Kubernetes pod calls the same functions through ``qhybrid step ...``. Each step
is idempotent: running it again rewrites identical files or does nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from qiskit import QuantumCircuit, qasm3, qpy

from qhybrid import atomic
from qhybrid.backends import SIMULATOR_BACKENDS, OutcomeDistribution, QpuFailures, get_backend
from qhybrid.errors import BackendUnavailable, InputError, RunDirError
from qhybrid.fingerprint import circuit_fingerprint, observable_fingerprint
from qhybrid.observables import format_pauli_sum
from qhybrid.plan import CuttingPlan, build_plan, generate_subexperiments
from qhybrid.policies import get_policy
from qhybrid.problem import RunSpec, build_problem
from qhybrid.provenance import environment
from qhybrid.rundir import SHARD_SIZE, RunDir


def claim_run_dir(run_dir: RunDir, spec: RunSpec) -> bool:
    """Make ``run_dir`` hold ``spec``; return True when it already did (a resume).

    Refuses a directory holding another run, or any non-empty directory that holds no run.
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
        {"spec": spec.to_json(), "spec_hash": spec.spec_hash(), "created_with": environment()},
    )
    return False


def generate(run_dir: RunDir, spec: RunSpec, *, check_backends: bool = True) -> dict[str, Any]:
    """Partition, generate and deduplicate subexperiments; write shards and the manifest.

    Everything is validated in memory first (input, cut width, backend availability),
    so a bad input leaves no directory behind. ``check_backends=False`` skips only the
    availability check, for a workflow whose generate pod is not where the backends
    run (each branch's pod checks its own backend when it starts).
    """
    if run_dir.manifest_file.is_file():
        claim_run_dir(run_dir, spec)  # checks that it is this run
        return run_dir.read_manifest()
    timings: dict[str, float] = {}
    started = time.perf_counter()
    problem = build_problem(spec)
    subexperiments, coefficients = generate_subexperiments(problem.subcircuits, problem.subobservables)
    plan, circuits = build_plan(
        subexperiments,
        coefficients,
        problem.subobservables,
        policy=get_policy(spec.policy),
        run_seed=spec.seed,
    )
    backends = plan.backend_counts()
    if spec.mode == "exact" and set(backends) - SIMULATOR_BACKENDS:
        raise InputError(
            "--mode",
            f"exact mode needs simulators, but policy {spec.policy!r} sends "
            f"{backends.get('qpu', 0)} subexperiments to the QPU; use --mode sampled",
        )
    for name in backends if check_backends else ():
        get_backend(name)  # fails now, before any file, if a backend cannot run here
    timings["generate"] = time.perf_counter() - started

    claim_run_dir(run_dir, spec)
    write_started = time.perf_counter()
    atomic.write_text(run_dir.root / "problem" / "circuit.qasm", qasm3.dumps(problem.circuit))
    shard_hashes = []
    for shard_start in range(0, len(circuits), SHARD_SIZE):
        buffer = io.BytesIO()
        qpy.dump(circuits[shard_start : shard_start + SHARD_SIZE], buffer)
        atomic.write_bytes(run_dir.shard_file(shard_start // SHARD_SIZE), buffer.getvalue())
        shard_hashes.append(hashlib.sha256(buffer.getvalue()).hexdigest())
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
            "sampling_overhead": problem.sampling_overhead,
        },
        "counts": {
            "subexperiments": plan.num_subexperiments,
            "unique": len(plan.unique),
            "duplicates": plan.num_subexperiments - len(plan.unique),
            "by_backend": backends,
        },
        "shard_size": SHARD_SIZE,
        # Checked when a shard is read: a damaged or swapped file fails loudly.
        "shard_sha256": shard_hashes,
        "plan": plan.to_json(),
        "timings": timings,
    }
    atomic.write_json(run_dir.manifest_file, manifest)  # last: its presence means "generated"
    # An in-process execute then uses these circuits instead of reading back the QPY
    # just written; worker processes and pods read the shards.
    cache = _cache_for(run_dir)
    for shard_start in range(0, len(circuits), SHARD_SIZE):
        cache.prime(shard_start // SHARD_SIZE, circuits[shard_start : shard_start + SHARD_SIZE])
    return manifest


class _ManifestCache:
    """Keeps the parsed plan and loaded shards of one run for repeated execute calls."""

    def __init__(self, run_dir: RunDir, stamp: tuple[int, int, int]) -> None:
        self.run_dir = run_dir
        self.stamp = stamp
        self.spec = run_dir.read_spec()
        self.manifest = run_dir.read_manifest()
        self.plan = CuttingPlan.from_json(self.manifest["plan"])
        self._shards: dict[int, list[QuantumCircuit]] = {}

    def prime(self, shard: int, circuits: Sequence[QuantumCircuit]) -> None:
        """Hold circuits that were just written to ``shard``."""
        self._shards[shard] = list(circuits)

    def circuits_for(self, ids: Sequence[int]) -> list[QuantumCircuit]:
        """Return the circuits of unique subexperiments ``ids``, reading (and checking) their shards."""
        out = []
        for uid in ids:
            shard = uid // SHARD_SIZE
            if shard not in self._shards:
                path = self.run_dir.shard_file(shard)
                if not path.is_file():
                    raise RunDirError(f"{path}: missing; rerun generate")
                data = path.read_bytes()
                if hashlib.sha256(data).hexdigest() != self.manifest["shard_sha256"][shard]:
                    raise RunDirError(f"{path}: content does not match the manifest; rerun generate")
                self._shards[shard] = list(qpy.load(io.BytesIO(data)))
            out.append(self._shards[shard][uid % SHARD_SIZE])
        return out


_caches: dict[Path, _ManifestCache] = {}


def _cache_for(run_dir: RunDir) -> _ManifestCache:
    # Reparse only when the manifest was replaced, not on every batch.
    key = run_dir.root.resolve()
    stamp = run_dir.manifest_stamp()
    cached = _caches.get(key)
    if cached is None or cached.stamp != stamp:
        cached = _caches[key] = _ManifestCache(run_dir, stamp)
    return cached


def execute(run_dir: RunDir, start: int, stop: int, backend: str | None = None) -> dict[str, Any]:
    """Run unique subexperiments [start, stop) and write their distributions.

    With ``backend``, run only those of [start, stop) that the plan puts on that
    backend (one batch of a workflow branch) into their own file, so branches whose
    ids interleave never write the same file. Returns timings: ``simulation_seconds``
    is time inside backends only.
    """
    wall_started = time.perf_counter()
    cache = _cache_for(run_dir)
    total = len(cache.plan.unique)
    if not 0 <= start < stop <= total:
        raise InputError("--start/--stop", f"range [{start}, {stop}) is outside [0, {total})")
    ids = [uid for uid in range(start, stop) if backend is None or cache.plan.unique[uid].backend == backend]
    if not ids:
        raise InputError("--backend", f"no unique subexperiment of [{start}, {stop}) runs on {backend!r}")
    target = run_dir.result_file(start, stop, backend)
    if target.is_file():
        return {"start": start, "stop": stop, "skipped": True, "simulation_seconds": 0.0, "wall_seconds": 0.0}
    circuits = cache.circuits_for(ids)
    entries = [cache.plan.unique[uid] for uid in ids]
    shots = cache.spec.shots if cache.spec.mode == "sampled" else None
    policy = get_policy(cache.spec.policy)
    results: list[OutcomeDistribution | None] = [None] * len(circuits)
    ran_on = [e.backend for e in entries]
    failovers: list[dict[str, Any]] = []
    simulation_seconds: dict[str, float] = {}
    descriptions: dict[str, dict[str, str]] = {}

    def run_on(name: str, positions: list[int]) -> list[OutcomeDistribution]:
        backend = get_backend(name)
        sim_started = time.perf_counter()
        try:
            return backend.run(
                [circuits[i] for i in positions], shots=shots, seeds=[entries[i].seed for i in positions]
            )
        finally:
            simulation_seconds[name] = simulation_seconds.get(name, 0.0) + time.perf_counter() - sim_started
            descriptions[name] = backend.description()

    for backend_name in sorted({e.backend for e in entries}):
        positions = [i for i, e in enumerate(entries) if e.backend == backend_name]
        fallback = policy.failover_for(backend_name)
        try:
            distributions: list[OutcomeDistribution | None] = list(run_on(backend_name, positions))
        except (QpuFailures, BackendUnavailable) as failure:
            if fallback is None:
                raise
            # Per the policy, what the backend could not run goes to the fallback simulator
            # with the same seeds; the report lists each such subexperiment and the reason.
            if isinstance(failure, QpuFailures):
                distributions, reasons = list(failure.results), failure.reasons
            else:
                distributions, reasons = (
                    [None] * len(positions),
                    dict.fromkeys(range(len(positions)), str(failure)),
                )
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
    }
    write_distributions(target, done, meta)
    return {
        "start": start,
        "stop": stop,
        "skipped": False,
        "simulation_seconds": sum(simulation_seconds.values()),
        "wall_seconds": time.perf_counter() - wall_started,
    }


def write_distributions(
    path: Path, distributions: Sequence[OutcomeDistribution], meta: dict[str, Any]
) -> None:
    """Write distributions as flat NumPy arrays plus JSON metadata, atomically."""
    offsets = np.cumsum([0] + [len(d.outcomes) for d in distributions]).astype(np.int64)
    atomic.write_npz(
        path,
        {
            "outcomes": np.concatenate([d.outcomes for d in distributions]).astype(np.uint64),
            "weights": np.concatenate([d.weights for d in distributions]).astype(np.float64),
            "offsets": offsets,
            "num_observable_bits": np.asarray([d.num_observable_bits for d in distributions], dtype=np.int64),
            "shots": np.asarray([-1 if d.shots is None else d.shots for d in distributions], dtype=np.int64),
            "meta": np.asarray(json.dumps(meta, sort_keys=True)),
        },
    )


def read_distributions(path: Path) -> tuple[list[OutcomeDistribution], dict[str, Any]]:
    """Read a file written by :func:`write_distributions`."""
    arrays = atomic.read_npz(path)
    offsets = arrays["offsets"]
    distributions = []
    for i in range(len(offsets) - 1):
        shots = int(arrays["shots"][i])
        distributions.append(
            OutcomeDistribution(
                arrays["outcomes"][offsets[i] : offsets[i + 1]],
                arrays["weights"][offsets[i] : offsets[i + 1]],
                int(arrays["num_observable_bits"][i]),
                None if shots < 0 else shots,
            )
        )
    return distributions, json.loads(str(arrays["meta"]))


def collect_distributions(run_dir: RunDir, total: int) -> tuple[list[OutcomeDistribution], dict[str, Any]]:
    """Gather one distribution per unique subexperiment from the result files."""
    found: list[OutcomeDistribution | None] = [None] * total
    simulation_seconds: dict[str, float] = {}
    backends: list[str | None] = [None] * total
    descriptions: dict[str, Any] = {}
    failovers: list[dict[str, Any]] = []
    for start, stop, backend in run_dir.result_files():
        distributions, meta = read_distributions(run_dir.result_file(start, stop, backend))
        failovers += [f for f in meta.get("failovers", []) if f["subexperiment"] < total]
        for name, seconds in meta["simulation_seconds"].items():
            simulation_seconds[name] = simulation_seconds.get(name, 0.0) + seconds
        descriptions.update(meta["backend_descriptions"])
        ids = meta.get("ids") or range(start, stop)  # files written before ids were recorded
        for offset, (uid, distribution) in enumerate(zip(ids, distributions, strict=True)):
            if uid < total and found[uid] is None:
                found[uid] = distribution
                backends[uid] = meta["backends"][offset]
    missing = [uid for uid, d in enumerate(found) if d is None]
    if missing:
        raise RunDirError(
            f"{run_dir.root}: {len(missing)} of {total} unique subexperiments have no result "
            f"(first missing: {missing[0]}); run execute for them or --resume {run_dir.root}"
        )
    complete = [d for d in found if d is not None]
    return complete, {
        "simulation_seconds": simulation_seconds,
        "backend_descriptions": descriptions,
        "backends": backends,
        "failovers": sorted(failovers, key=lambda f: f["subexperiment"]),
    }


def reconstruct_run(run_dir: RunDir) -> dict[str, Any]:
    """Combine all results into the estimate and compare with the exact value when feasible."""
    from qhybrid.exact import exact_term_values
    from qhybrid.problem import EXACT_REFERENCE_MAX_QUBITS, load_problem_inputs
    from qhybrid.reconstruct import reconstruct

    started = time.perf_counter()
    spec = run_dir.read_spec()
    manifest = run_dir.read_manifest()
    plan = CuttingPlan.from_json(manifest["plan"])
    distributions, execution = collect_distributions(run_dir, len(plan.unique))
    coeffs = np.asarray(manifest["problem"]["observable_coeffs"], dtype=np.float64)
    result = reconstruct(plan, distributions, coeffs)
    reconstruct_seconds = time.perf_counter() - started

    num_qubits = manifest["problem"]["num_qubits"]
    exact: dict[str, Any] = {
        "computed": False,
        "reason": f"{num_qubits} qubits > {EXACT_REFERENCE_MAX_QUBITS}",
    }
    exact_file = run_dir.root / "exact.json"
    if exact_file.is_file():
        exact = atomic.read_json(exact_file)
    elif num_qubits <= EXACT_REFERENCE_MAX_QUBITS:
        exact_started = time.perf_counter()
        circuit, observable, _ = load_problem_inputs(spec)
        term_values = exact_term_values(circuit, observable)
        exact = {
            "computed": True,
            "value": float(np.dot(term_values, coeffs)),
            "term_values": [float(v) for v in term_values],
            "seconds": time.perf_counter() - exact_started,
        }
        atomic.write_json(exact_file, exact)
    reconstruction = {
        "estimate": result.estimate,
        "standard_error": result.standard_error if result.standard_error is not None else 0.0,
        "term_values": [float(v) for v in result.term_values],
        "term_standard_errors": (
            [float(v) for v in result.term_standard_errors]
            if result.term_standard_errors is not None
            else [0.0] * len(coeffs)
        ),
        "exact": exact,
        "error": result.estimate - exact["value"] if exact["computed"] else None,
        "execution": execution,
        "timings": {"reconstruct": reconstruct_seconds},
    }
    atomic.write_json(run_dir.reconstruction_file, reconstruction)
    return reconstruction
