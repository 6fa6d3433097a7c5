"""The report step: one JSON with provenance and a short summary (terms.png: :mod:`terms_plot`)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from qhybrid import atomic
from qhybrid.cost import PriceTable, Usage, estimate
from qhybrid.errors import InputError
from qhybrid.pipeline.report_schema import SCHEMA_VERSION, check_report
from qhybrid.pipeline.rundir import RunDir
from qhybrid.provenance import environment


def build_report(run_dir: RunDir, *, timings: dict[str, float] | None = None) -> dict[str, Any]:
    """Write report.json and summary.txt; return the report.

    terms.png is drawn apart, when asked (:func:`qhybrid.pipeline.terms_plot.write_terms_plot`).
    """
    cpu_started = time.process_time()
    run_dir.read_spec()  # a directory holding no run fails here, in one line
    spec = atomic.read_json(run_dir.spec_file)
    manifest = run_dir.generated().manifest
    if not run_dir.reconstruction_file.is_file():
        raise InputError(
            "--run-dir",
            f"{run_dir.root}: reconstruct has not finished (no {run_dir.reconstruction_file.name}); "
            f"run qhybrid step reconstruct --run-dir {run_dir.root} first",
        )
    reconstruction = atomic.read_json(run_dir.reconstruction_file)
    execution = reconstruction["execution"]
    step_timings = {**manifest["timings"], **reconstruction["timings"]}
    if reconstruction["exact"].get("computed"):
        step_timings["exact_reference"] = reconstruction["exact"]["seconds"]
    step_timings["simulation"] = sum(execution["simulation_seconds"].values())
    step_timings.update(timings or {})
    report = {
        "schema_version": SCHEMA_VERSION,
        "estimate": reconstruction["estimate"],
        "standard_error": reconstruction["standard_error"],
        "exact": reconstruction["exact"].get("value"),
        "error": reconstruction["error"],
        "terms": [
            {"pauli": pauli, "coeff": coeff, "value": value, "standard_error": se, "exact": exact}
            for pauli, coeff, value, se, exact in zip(
                manifest["problem"]["observable_paulis"],
                manifest["problem"]["observable_coeffs"],
                reconstruction["term_values"],
                reconstruction["term_standard_errors"],
                reconstruction["exact"].get("term_values") or [None] * len(reconstruction["term_values"]),
                strict=True,
            )
        ],
        "problem": manifest["problem"],
        "counts": manifest["counts"],
        "provenance": {
            "spec": spec["spec"],
            "spec_hash": spec["spec_hash"],
            "seed": spec["spec"]["seed"],
            "shots": spec["spec"]["shots"],
            "mode": spec["spec"]["mode"],
            "policy": spec["spec"]["policy"],
            "circuit_fingerprint": manifest["problem"]["circuit_fingerprint"],
            "observable_fingerprint": manifest["problem"]["observable_fingerprint"],
            "backends": execution["backend_descriptions"],
            "backend_per_subexperiment": execution["backends"],
            # Subexperiments the policy moved off a failing backend, each with the reason.
            "failovers": execution.get("failovers", []),
            # The gateway job and backend behind every subexperiment the QPU branch ran.
            "gateway_jobs": execution.get("gateway_jobs", []),
            "environment": environment(),
            "generated_with": spec["created_with"],
            # How the exact reference was computed (statevector or MPS, its bond dimension), or why not.
            "exact_reference": {
                "computed": bool(reconstruction["exact"].get("computed")),
                **{
                    k: reconstruction["exact"][k]
                    for k in ("method", "max_bond_dimension", "truncation", "reason")
                    if k in reconstruction["exact"]
                },
            },
            # What the run used and, priced with the stack's table, what it cost.
            "cost": cost_section(manifest, reconstruction, spec["spec"], time.process_time() - cpu_started),
        },
        "timings": step_timings,
        "cache": cache_section(execution.get("cache") or {}),
    }
    qpu = _qpu_section(report)
    if qpu is not None:
        report["qpu"] = qpu
    check_report(report)  # a report that breaks its documented schema is a bug: fail before writing
    atomic.write_json(run_dir.report_file, report)
    atomic.write_text(run_dir.summary_file, summary_text(report))
    return report


def cost_section(
    manifest: dict[str, Any], reconstruction: dict[str, Any], spec: dict[str, Any], report_cpu: float
) -> dict[str, Any]:
    """Return the run's usage and its price from the manifest's table, or why there is none.

    Usage is the CPU seconds of every step's work, the seconds in the GPU backend, and
    the QPU shots per gateway backend. CPU seconds are each step's own work
    (``time.process_time``, all its threads), not the start-up of the process running it:
    the cluster's recording rules, which read the containers' CPU from cAdvisor, also
    count that start-up, so they read a little more.
    """
    execution = reconstruction["execution"]
    shots = spec["shots"] if spec["mode"] == "sampled" else 0
    qpu_shots: dict[str, int] = {}
    for job in execution.get("gateway_jobs", []):
        qpu_shots[job["backend"]] = qpu_shots.get(job["backend"], 0) + shots
    usage = Usage(
        cpu_seconds=float(manifest.get("cpu_seconds", 0.0))
        + float(execution.get("cpu_seconds", 0.0))
        + float(reconstruction.get("cpu_seconds", 0.0))
        + report_cpu,
        gpu_seconds=float(execution["simulation_seconds"].get("gpu", 0.0)),
        qpu_shots=qpu_shots,
    )
    prices = manifest.get("prices")
    section: dict[str, Any] = {"usage": usage.to_json(), "prices": prices}
    if prices is None:
        section["estimate"] = None
        section["reason"] = "no price table was given to the run"
    else:
        section["estimate"] = estimate(usage, PriceTable.from_json(prices))
    return section


def cache_section(counts: dict[str, Any]) -> dict[str, Any]:
    """Summarise what the result cache did for the simulator subexperiments of this run.

    ``hits`` counts subexperiments served without simulating, by kind: ``exact`` (the very
    circuit was computed before), ``canonical`` (the same circuit up to names, order of
    independent gates and trivial identities), ``relabelled`` (the same up to renaming qubits).
    Hits come ``from_store`` (LMDB or Redis) or ``from_memory`` (this process computed the form
    earlier, in this run or one before it in the same process). ``errors`` counts failed store
    calls and corrupt entries; ``unavailable`` the lookups skipped while a failing store rests.
    """
    hits = {kind: int(counts.get(f"hit_{kind}", 0)) for kind in ("exact", "canonical", "relabelled")}
    return {
        "stores": list(counts.get("stores", [])),
        "hits": hits,
        "from_store": int(counts.get("from_store", 0)),
        "from_memory": int(counts.get("from_memory", 0)),
        "computed": int(counts.get("computed", 0)),
        "collisions": int(counts.get("collision", 0)),
        "uncacheable": int(counts.get("uncacheable", 0)),
        "errors": int(counts.get("errors", 0)),
        "unavailable": int(counts.get("unavailable", 0)),
        "written": int(counts.get("written", 0)),
        "bytes_read": int(counts.get("bytes_read", 0)),
        "bytes_written": int(counts.get("bytes_written", 0)),
    }


def _qpu_section(report: dict[str, Any]) -> dict[str, Any] | None:
    """Summarise the QPU branch: what ran where, what failed over, and the noise-induced error.

    With a noiseless simulator the estimate differs from the exact value only by
    shot noise, whose size the standard error predicts; on a (real or emulated)
    device the rest of the difference is noise-induced. ``noise_induced_error``
    is the estimate minus the exact value, reported with that standard error and
    their ratio, which says whether the difference is beyond shot noise.
    """
    provenance = report["provenance"]
    ran = Counter(provenance["backend_per_subexperiment"])
    planned = report["counts"].get("by_backend", {})
    if not planned.get("qpu") and not ran.get("qpu"):
        return None
    failovers = provenance["failovers"]
    reasons = Counter(f["reason"] for f in failovers)
    section: dict[str, Any] = {
        "planned": planned,
        "ran": dict(sorted(ran.items())),
        "failed_over": len(failovers),
        "failover_reasons": dict(reasons.most_common()),
        "device": provenance["backends"].get("qpu"),
    }
    if report["error"] is not None:
        se = report["standard_error"]
        section["noise_induced_error"] = report["error"]
        section["shot_noise_standard_error"] = se
        section["error_in_standard_errors"] = abs(report["error"]) / se if se else None
    return section


def summary_text(report: dict[str, Any]) -> str:
    """Return the short human summary of a report."""
    provenance = report["provenance"]
    counts = report["counts"]
    lines = [
        f"estimate        {report['estimate']:+.12f}"
        + (f"  (standard error {report['standard_error']:.2e})" if provenance["mode"] == "sampled" else ""),
    ]
    if report["exact"] is not None:
        lines.append(f"exact           {report['exact']:+.12f}")
        lines.append(f"error           {report['error']:+.3e}")
    else:
        reason = (report["provenance"].get("exact_reference") or {}).get("reason", "circuit too wide")
        lines.append(f"exact           not computed ({reason})")
    backends = Counter(provenance["backend_per_subexperiment"])
    problem = report["problem"]
    lines += [
        f"problem         {problem['num_qubits']} qubits, {problem['num_cuts']} cuts, "
        f"partitions {problem['partition_widths']}, sampling overhead {problem['sampling_overhead']:.1f}",
        f"subexperiments  {counts['subexperiments']} ({counts['unique']} unique, "
        f"{counts['duplicates']} duplicates executed once), backends {dict(sorted(backends.items()))}",
        f"mode            {provenance['mode']}"
        + (f", {provenance['shots']} shots" if provenance["shots"] else "")
        + f", seed {provenance['seed']}, policy {provenance['policy']}",
    ]
    cache = report.get("cache") or {}
    hits = cache.get("hits") or {}
    if cache.get("stores") or sum(hits.values()):
        kinds = ", ".join(f"{kind} {n}" for kind, n in hits.items() if n)
        lines.append(
            f"cache           {sum(hits.values())} served ({kinds or 'none'}), "
            f"{cache.get('computed', 0)} computed"
            + (f", {cache['errors']} errors" if cache.get("errors") else "")
            + (f"; {', '.join(cache['stores'])}" if cache.get("stores") else "; no store")
        )
    qpu = report.get("qpu")
    if qpu:
        device = qpu.get("device") or {}
        lines.append(
            f"qpu branch      planned {qpu['planned']}, ran {qpu['ran']}"
            + (f", device {device.get('device')} via {device.get('gateway')}" if device else "")
        )
        if qpu["failed_over"]:
            reason, count = next(iter(qpu["failover_reasons"].items()))
            lines.append(
                f"failovers       {qpu['failed_over']} subexperiments "
                f"(most common reason, {count}x: {reason})"
            )
        if "noise_induced_error" in qpu:
            ratio = qpu["error_in_standard_errors"]
            lines.append(
                f"noise error     {qpu['noise_induced_error']:+.3e} (estimate - exact; shot noise alone "
                f"{qpu['shot_noise_standard_error']:.2e}"
                + (f", {ratio:.1f} standard errors)" if ratio is not None else ")")
            )
    lines.append(_cost_line(provenance.get("cost")))
    lines += [
        "timings         " + ", ".join(f"{k} {v:.3f}s" for k, v in report["timings"].items()),
    ]
    return "\n".join(lines) + "\n"


def _cost_line(cost: dict[str, Any] | None) -> str:
    """One summary line: the run's cost estimate and the usage it prices."""
    if cost is None:
        return "cost            not recorded (a report older than schema 1.3)"
    usage = cost["usage"]
    shots = sum(usage["qpu_shots"].values())
    used = f"{usage['cpu_seconds']:.2f} CPU s, {usage['gpu_seconds']:.2f} GPU s, {shots} QPU shots"
    estimate = cost.get("estimate")
    if estimate is None:
        return f"cost            not priced ({cost.get('reason', 'no price table')}); used {used}"
    unpriced = estimate["unpriced_qpu_backends"]
    return (
        f"cost            {estimate['total']:.6g} {estimate['currency']} (cpu {estimate['cpu']:.3g}, gpu "
        f"{estimate['gpu']:.3g}, qpu {estimate['qpu']:.3g}) for {used}"
        + (f"; no price for {', '.join(unpriced)}" if unpriced else "")
    )
