"""The generate step: partition the problem, deduplicate its subexperiments, write them and the plan.

Like every step it is an entry point over a run directory (``qhybrid step
generate``), called in-process by the local runner and in a workflow's first pod,
and idempotent: running it again on a generated directory changes nothing.
"""

from __future__ import annotations

import time
from typing import Any

from qiskit import qasm3

from qhybrid import atomic
from qhybrid.backends import SIMULATOR_BACKENDS, GatewaySettings, get_backend
from qhybrid.cutting.fingerprint import circuit_fingerprint, observable_fingerprint
from qhybrid.cutting.observables import format_pauli_sum
from qhybrid.cutting.plan import build_plan, generate_subexperiments
from qhybrid.cutting.policies import get_policy
from qhybrid.errors import InputError, RunDirError
from qhybrid.pipeline.rundir import SHARD_SIZE, RunDir, write_shards
from qhybrid.provenance import environment
from qhybrid.spec import RunSpec, problem_of


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


def generate(
    run_dir: RunDir,
    spec: RunSpec,
    *,
    check_backends: bool = True,
    gateway: GatewaySettings | None = None,
) -> dict[str, Any]:
    """Partition, generate and deduplicate subexperiments; write shards and the manifest.

    Everything is validated in memory first (input, cut width, backend availability),
    so a bad input leaves no directory behind. ``check_backends=False`` skips only the
    availability check, for a workflow whose generate pod is not where the backends
    run (each branch's pod checks its own backend when it starts). ``gateway`` is
    where the qpu backend would run, for that check.
    """
    if run_dir.manifest_file.is_file():
        claim_run_dir(run_dir, spec)  # checks that it is this run
        return run_dir.generated().manifest
    timings: dict[str, float] = {}
    started = time.perf_counter()
    problem = problem_of(spec)
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
        get_backend(name, gateway)  # fails now, before any file, if a backend cannot run here
    timings["generate"] = time.perf_counter() - started

    claim_run_dir(run_dir, spec)
    write_started = time.perf_counter()
    atomic.write_text(run_dir.circuit_file, qasm3.dumps(problem.circuit))
    shard_hashes = write_shards(run_dir, circuits)
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
    run_dir.generated().hold_circuits(circuits)
    return manifest
