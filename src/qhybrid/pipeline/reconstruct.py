"""The reconstruct step: combine every unique subexperiment's result into the estimate.

It also computes the exact reference value (a statevector of the full circuit that
generate wrote to the run directory) when the circuit is narrow enough, once: a
rerun reads ``exact.json`` back.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import numpy as np
from qiskit.quantum_info import SparsePauliOp

from qhybrid import atomic
from qhybrid.backends import OutcomeDistribution
from qhybrid.cache.session import OFF, CacheSettings, session_for
from qhybrid.cutting.exact import NotExact, reference_term_values
from qhybrid.cutting.prepare import prepare_for_cutting
from qhybrid.cutting.problem import EXACT_REFERENCE_MAX_QUBITS, parse_qasm
from qhybrid.cutting.reconstruct import reconstruct
from qhybrid.errors import RunDirError
from qhybrid.pipeline.memo import recall_reference, remember_reference
from qhybrid.pipeline.rundir import RunDir


def collect_distributions(run_dir: RunDir, total: int) -> tuple[list[OutcomeDistribution], dict[str, Any]]:
    """Gather one distribution per unique subexperiment from the result files."""
    found: list[OutcomeDistribution | None] = [None] * total
    simulation_seconds: dict[str, float] = {}
    backends: list[str | None] = [None] * total
    descriptions: dict[str, Any] = {}
    failovers: list[dict[str, Any]] = []
    gateway_jobs: list[dict[str, Any]] = []
    cache_counts: Counter[str] = Counter()
    stores: set[str] = set()
    cpu_seconds = 0.0
    for start, stop, backend in run_dir.result_files():
        distributions, meta = run_dir.read_results(start, stop, backend)
        cpu_seconds += float(meta.get("cpu_seconds", 0.0))
        cache_meta = dict(meta.get("cache") or {})
        if cache_meta.get("store"):
            stores.add(str(cache_meta["store"]))
        cache_counts.update({k: int(v) for k, v in cache_meta.items() if k != "store"})
        failovers += [f for f in meta["failovers"] if f["subexperiment"] < total]
        gateway_jobs += [j for j in meta.get("gateway_jobs", []) if j["subexperiment"] < total]
        for name, seconds in meta["simulation_seconds"].items():
            simulation_seconds[name] = simulation_seconds.get(name, 0.0) + seconds
        descriptions.update(meta["backend_descriptions"])
        for offset, (uid, distribution) in enumerate(zip(meta["ids"], distributions, strict=True)):
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
        "gateway_jobs": sorted(gateway_jobs, key=lambda j: j["subexperiment"]),
        "cache": {"stores": sorted(stores), **dict(sorted(cache_counts.items()))},
        "cpu_seconds": cpu_seconds,
    }


def exact_reference(run_dir: RunDir, cache: CacheSettings = OFF) -> dict[str, Any]:
    """Return the exact value of the run's observable, computing and saving it once when feasible.

    The circuit is the one generate wrote (``problem/circuit.qasm``) and the
    observable the manifest's terms: what was cut, not a rebuild from the spec. With a
    ``cache``, a reference computed before for the same circuit and observable is reused.
    """
    if run_dir.exact_file.is_file():
        return dict(atomic.read_json(run_dir.exact_file))
    problem = run_dir.generated().manifest["problem"]
    num_qubits = problem["num_qubits"]
    session = session_for(cache) if cache.enabled else None
    started = time.perf_counter()
    remembered = recall_reference(session, problem) if session is not None else None
    if remembered is not None:
        remembered["seconds"] = time.perf_counter() - started  # this run's cost: the lookup
        atomic.write_json(run_dir.exact_file, remembered)
        return remembered
    started = time.perf_counter()
    circuit = parse_qasm(run_dir.circuit_file.read_text(encoding="utf-8"), source=str(run_dir.circuit_file))
    # OpenQASM 3 has no rzz (and other) standard gates: they come back as custom gates, which
    # the statevector simulator cannot run, so they are named standard again (same matrix).
    circuit, _ = prepare_for_cutting(circuit)
    coeffs = np.asarray(problem["observable_coeffs"], dtype=np.float64)
    observable = SparsePauliOp(problem["observable_paulis"], coeffs)
    try:
        term_values, how = reference_term_values(
            circuit, observable, statevector_max_qubits=EXACT_REFERENCE_MAX_QUBITS
        )
    except NotExact as why:
        # Too wide for a statevector and too entangled for an exact MPS: the report says so.
        reason = f"{num_qubits} qubits: {why}, and a statevector stops at {EXACT_REFERENCE_MAX_QUBITS}"
        return {"computed": False, "reason": reason}
    exact = {
        "computed": True,
        "value": float(np.dot(term_values, coeffs)),
        "term_values": [float(v) for v in term_values],
        "seconds": time.perf_counter() - started,
        **how,
    }
    atomic.write_json(run_dir.exact_file, exact)
    if session is not None:
        remember_reference(session, problem, exact)
    return exact


def reconstruct_run(run_dir: RunDir, cache: CacheSettings = OFF) -> dict[str, Any]:
    """Combine all results into the estimate and compare with the exact value when feasible."""
    started = time.perf_counter()
    cpu_started = time.process_time()
    run = run_dir.generated()
    distributions, execution = collect_distributions(run_dir, len(run.plan.unique))
    coeffs = np.asarray(run.manifest["problem"]["observable_coeffs"], dtype=np.float64)
    result = reconstruct(run.plan, distributions, coeffs)
    reconstruct_seconds = time.perf_counter() - started
    exact = exact_reference(run_dir, cache)
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
        "cpu_seconds": time.process_time() - cpu_started,
    }
    atomic.write_json(run_dir.reconstruction_file, reconstruction)
    return reconstruction
