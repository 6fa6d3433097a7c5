"""The report step: one JSON with provenance, a short summary, and a per-term plot."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from qhybrid import atomic
from qhybrid.pipeline.rundir import RunDir
from qhybrid.provenance import environment

_MAX_PLOTTED_TERMS = 60


def build_report(run_dir: RunDir, *, timings: dict[str, float] | None = None) -> dict[str, Any]:
    """Write report.json, summary.txt and terms.png; return the report."""
    spec = atomic.read_json(run_dir.spec_file)
    manifest = run_dir.generated().manifest
    reconstruction = atomic.read_json(run_dir.reconstruction_file)
    execution = reconstruction["execution"]
    step_timings = {**manifest["timings"], **reconstruction["timings"]}
    if reconstruction["exact"].get("computed"):
        step_timings["exact_reference"] = reconstruction["exact"]["seconds"]
    step_timings["simulation"] = sum(execution["simulation_seconds"].values())
    step_timings.update(timings or {})
    report = {
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
            "environment": environment(),
            "generated_with": spec["created_with"],
        },
        "timings": step_timings,
    }
    qpu = _qpu_section(report)
    if qpu is not None:
        report["qpu"] = qpu
    atomic.write_json(run_dir.report_file, report)
    atomic.write_text(run_dir.summary_file, summary_text(report))
    _plot_terms(run_dir, report)
    return report


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
        lines.append("exact           not computed (circuit too wide for a statevector)")
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
    lines += [
        "timings         " + ", ".join(f"{k} {v:.3f}s" for k, v in report["timings"].items()),
    ]
    return "\n".join(lines) + "\n"


def _plot_terms(run_dir: RunDir, report: dict[str, Any]) -> None:
    import io

    # A bare Figure on the Agg canvas: no pyplot state, no GUI backend lookup.
    from matplotlib.figure import Figure

    terms = report["terms"][:_MAX_PLOTTED_TERMS]
    positions = np.arange(len(terms))
    figure = Figure(figsize=(max(6.0, 0.4 * len(terms) + 2), 4))
    axis = figure.add_subplot()
    axis.bar(
        positions - 0.2,
        [t["value"] for t in terms],
        width=0.4,
        label="reconstructed",
        yerr=[t["standard_error"] for t in terms],
    )
    if report["exact"] is not None:
        axis.bar(positions + 0.2, [t["exact"] for t in terms], width=0.4, label="exact")
    axis.set_xticks(positions, [t["pauli"] for t in terms], rotation=90, fontsize=7, family="monospace")
    axis.set_ylabel("<P>")
    shown = (
        f" (first {_MAX_PLOTTED_TERMS} of {len(report['terms'])})"
        if len(report["terms"]) > len(terms)
        else ""
    )
    axis.set_title(f"Per-term expectation values{shown}, {report['provenance']['mode']} mode")
    axis.legend()
    # Fixed margins instead of tight_layout, which draws the whole figure an extra time;
    # the bottom margin fits rotated Pauli labels up to ~40 characters at 7 pt.
    label_inches = 0.08 * max(len(t["pauli"]) for t in terms) + 0.3
    figure.subplots_adjust(left=0.1, right=0.98, top=0.9, bottom=min(0.6, label_inches / 4))
    figure.set_figheight(4 + max(0.0, label_inches - 1.2))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    atomic.write_bytes(run_dir.terms_plot_file, buffer.getvalue())
