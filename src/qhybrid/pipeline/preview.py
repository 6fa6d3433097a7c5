"""What a run will cost, before it runs: the cuts, the subexperiment counts, memory, disk and time.

``qhybrid plan`` (and ``run --dry-run``) print this; ``run`` shows it when it refuses
a problem over ``--max-subexperiments``. Counting needs no circuit: the QPD is walked
and each subexperiment's local operations compared. The costs come from a small
calibration on this machine: a sample of the distinct subexperiments is built,
fingerprinted, serialised and (on a simulator) run, and each figure is scaled from it.
"""

from __future__ import annotations

import io
import resource
import time
import tracemalloc
from typing import Any

from qiskit import qpy

from qhybrid.backends import SIMULATOR_BACKENDS, get_backend
from qhybrid.cutting.fingerprint import circuit_fingerprint, derive_seed
from qhybrid.cutting.plan import count_subexperiments, subexperiment_builder, walk_qpd
from qhybrid.cutting.policies import get_policy
from qhybrid.spec import RunSpec, problem_of

# Distinct subexperiments built and run to calibrate the estimates.
CALIBRATION_SAMPLE = 12
# Bytes a manifest spends per subexperiment (its index entry) and per distinct one (its plan entry).
_MANIFEST_BYTES_PER_POSITION = 8
_MANIFEST_BYTES_PER_UNIQUE = 190
# Every distinct circuit stays in memory while the plan is built: the generate step keeps
# the built circuits, the deduplicated list and the in-process shard cache, which share the
# objects; this factor covers the lists, fingerprints and the manifest's JSON on top
# (calibrated against measured runs: see the README's cost-preview section).
_MEMORY_OVERHEAD = 1.6


def preview(spec: RunSpec, *, workers: int = 1) -> dict[str, Any]:
    """Return the plan's facts and its estimated memory, disk and time, running no subexperiment."""
    started = time.perf_counter()
    problem = problem_of(spec)
    cut_seconds = time.perf_counter() - started
    count_started = time.perf_counter()
    total, distinct = count_subexperiments(problem.subcircuits, problem.subobservables)
    count_seconds = time.perf_counter() - count_started
    facts: dict[str, Any] = {
        "num_qubits": problem.circuit.num_qubits,
        "cuts": problem.cut_descriptions(),
        "partition_widths": {label: c.num_qubits for label, c in problem.subcircuits.items()},
        "sampling_overhead": problem.sampling_overhead,
        "preprocessing": problem.preprocessing,
        "subexperiments": total,
        "unique": distinct,
        "mode": spec.mode,
        "policy": spec.policy,
    }
    sample = _calibrate(spec, problem, distinct)
    per = sample["per_circuit"]
    simulated = sample["simulated_share"]
    seconds = (
        cut_seconds
        + count_seconds
        + distinct * (per["build_s"] + per["fingerprint_s"] + per["qpy_s"])
        + distinct * simulated * per["simulate_s"] / max(1, workers)
    )
    manifest_bytes = total * _MANIFEST_BYTES_PER_POSITION + distinct * _MANIFEST_BYTES_PER_UNIQUE
    facts["estimate"] = {
        "memory_bytes": int(
            sample["baseline_rss_bytes"]
            + _MEMORY_OVERHEAD * distinct * per["memory_bytes"]
            + 4 * manifest_bytes
        ),
        "disk_bytes": int(distinct * (per["qpy_bytes"] + per["result_bytes"]) + manifest_bytes),
        "disk_bytes_without_shards": int(distinct * per["result_bytes"] + manifest_bytes),
        "seconds": seconds,
        "seconds_not_estimated": "qpu subexperiments (their time is the device's queue)"
        if simulated < 1
        else None,
        "calibration": {"sample": sample["size"], "per_circuit": per, "cut_finding_s": cut_seconds},
    }
    return facts


def _calibrate(spec: RunSpec, problem: Any, distinct: int) -> dict[str, Any]:
    """Build, fingerprint, serialise and simulate a spread sample of the distinct subexperiments."""
    build = subexperiment_builder(problem.subcircuits)
    step = max(1, distinct // CALIBRATION_SAMPLE)
    chosen: list[tuple[str, Any, tuple[int, ...]]] = []
    seen: set[Any] = set()
    for _c, _w, positions in walk_qpd(problem.subcircuits, problem.subobservables):
        for label, group, local_ids, key in positions:
            if key in seen:
                continue
            if len(seen) % step == 0 and len(chosen) < CALIBRATION_SAMPLE:
                chosen.append((label, group, local_ids))
            seen.add(key)
        if len(chosen) >= CALIBRATION_SAMPLE:
            break
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    began = time.perf_counter()
    built = [build(label, group, ids) for label, group, ids in chosen]  # with fingerprints, as a run
    build_s = time.perf_counter() - began
    memory = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    circuits = [circuit for circuit, _ in built]
    began = time.perf_counter()  # what a run fingerprints by reading the circuit back
    fingerprints = [known or circuit_fingerprint(circuit) for circuit, known in built]
    fingerprint_s = time.perf_counter() - began
    began = time.perf_counter()
    buffer = io.BytesIO()
    qpy.dump(circuits, buffer)
    qpy_s = time.perf_counter() - began
    policy = get_policy(spec.policy)
    on_simulator = [c for c in circuits if policy.backend_for(c.num_qubits) in SIMULATOR_BACKENDS]
    simulate_s, result_bytes = 0.0, 0
    if on_simulator:
        backend = get_backend(policy.backend_for(on_simulator[0].num_qubits))
        shots = spec.shots if spec.mode == "sampled" else None
        seeds = [derive_seed(spec.seed, f) for f in fingerprints[: len(on_simulator)]]
        began = time.perf_counter()
        results = backend.run(on_simulator, shots=shots, seeds=seeds)
        simulate_s = (time.perf_counter() - began) / len(on_simulator)
        result_bytes = sum(16 * len(r.outcomes) for r in results) // len(results)
    n = max(1, len(circuits))
    return {
        "size": len(circuits),
        "baseline_rss_bytes": baseline,
        "simulated_share": len(on_simulator) / n,
        "per_circuit": {
            "build_s": build_s / n,
            "fingerprint_s": fingerprint_s / n,
            "qpy_s": qpy_s / n,
            "simulate_s": simulate_s,
            "memory_bytes": memory / n,
            "qpy_bytes": len(buffer.getvalue()) / n,
            "result_bytes": result_bytes,
        },
    }


def preview_text(facts: dict[str, Any]) -> str:
    """Return the preview as the lines ``qhybrid plan`` prints."""
    estimate = facts["estimate"]
    cuts = facts["cuts"]
    kinds = ", ".join(f"{c['kind']} cut of {c['gate']} ({'|'.join(c['partitions'])})" for c in cuts[:6])
    if len(cuts) > 6:
        kinds += f", ... ({len(cuts) - 6} more)"
    lines = [
        f"circuit         {facts['num_qubits']} qubits"
        + (f"; before cutting: {facts['preprocessing']}" if facts["preprocessing"] else ""),
        f"cuts            {len(cuts)}" + (f": {kinds}" if cuts else ""),
        f"pieces          {len(facts['partition_widths'])}, widths {facts['partition_widths']}",
        f"subexperiments  {facts['subexperiments']}, at most {facts['unique']} unique "
        "(equal circuits from different cut operations merge further)",
        f"sampling        overhead {facts['sampling_overhead']:.4g} (shots multiplier vs. an uncut run)",
        f"estimate        memory {_size(estimate['memory_bytes'])}, disk {_size(estimate['disk_bytes'])} "
        f"({_size(estimate['disk_bytes_without_shards'])} without QPY shards, as --workers 1 runs), "
        f"time {estimate['seconds']:.0f} s"
        + (f" + {estimate['seconds_not_estimated']}" if estimate["seconds_not_estimated"] else ""),
        f"calibration     {estimate['calibration']['sample']} subexperiments built and run here, "
        f"mode {facts['mode']}, policy {facts['policy']}",
    ]
    return "\n".join(lines) + "\n"


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")
