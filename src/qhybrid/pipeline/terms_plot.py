"""terms.png, drawn when asked: each term's contribution beside its residual against the exact value.

A run does not draw it by default: matplotlib's Agg takes about 0.17 s, more than half
as long as a whole default run (0.31 s), and QAOA loops and sweeps make hundreds of runs
nobody looks at one by one. ``qhybrid run --plot`` draws it at the end of a run,
``qhybrid runs plot DIR`` for a finished one, a workflow's report pod draws it, and
``--track`` draws it before logging it as an MLflow artifact. It is a pure function of
the plotted numbers: with a ``cache`` it is kept under their digest, and a later run with
the same numbers copies it.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
from pathlib import Path
from typing import Any

import numpy as np

from qhybrid import atomic
from qhybrid.cache.session import OFF, CacheSettings, session_for
from qhybrid.errors import InputError
from qhybrid.pipeline.rundir import RunDir

# terms.png draws at most this many terms, the largest contributions.
_MAX_PLOTTED_TERMS = 40


def write_terms_plot(run_dir: RunDir, cache: CacheSettings = OFF) -> Path:
    """Draw the finished run's terms.png from its report.json (or copy it from the cache); return its path."""
    if not run_dir.report_file.is_file():
        raise InputError(
            "RUN_DIR",
            f"{run_dir.root}: no {run_dir.report_file.name}; the run has not finished "
            f"(--resume {run_dir.root})",
        )
    report = atomic.read_json(run_dir.report_file)
    session = session_for(cache) if cache.enabled else None
    plotted = json.dumps(
        {k: report[k] for k in ("terms", "estimate", "standard_error", "exact", "error")}
        | {"mode": report["provenance"]["mode"], "matplotlib": importlib.metadata.version("matplotlib")},
        sort_keys=True,
    )
    key = ("qhybrid:png1:" + hashlib.sha256(plotted.encode()).hexdigest()).encode()
    found = session.get_document(key, "plot") if session is not None else None
    if found is not None and found[0] == plotted:
        atomic.write_bytes(run_dir.terms_plot_file, base64.b64decode(found[1]))
    else:
        png = draw_terms(report)
        atomic.write_bytes(run_dir.terms_plot_file, png)
        if session is not None:
            session.put_document(key, "plot", plotted, base64.b64encode(png).decode(), {})
    return run_dir.terms_plot_file


def draw_terms(report: dict[str, Any]) -> bytes:
    """Draw terms.png as PNG bytes: each term's contribution (coefficient x value) as a bar, and its residual.

    Terms are ordered by the size of their contribution, largest on top; past
    _MAX_PLOTTED_TERMS only the largest are drawn and the title says how many. The right
    panel is the residual against the exact value: in standard errors in sampled mode,
    as an absolute error (log scale) in exact mode.
    """
    import io

    # A bare Figure on the Agg canvas: no pyplot state, no GUI backend lookup.
    from matplotlib.figure import Figure

    sampled = report["provenance"]["mode"] == "sampled"
    terms = sorted(report["terms"], key=lambda t: abs(t["coeff"] * t["value"]), reverse=True)
    shown = terms[:_MAX_PLOTTED_TERMS]
    rows = np.arange(len(shown))[::-1]  # the largest contribution on top
    contributions = np.asarray([t["coeff"] * t["value"] for t in shown])
    figure = Figure(figsize=(11, 1.6 + 0.28 * len(shown)))
    bars, residual = figure.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [3, 1.4]})
    bars.barh(
        rows,
        contributions,
        xerr=[abs(t["coeff"]) * t["standard_error"] for t in shown] if sampled else None,
        color="#4c72b0",
        label="reconstructed",
    )
    has_exact = report["exact"] is not None
    if has_exact:
        bars.scatter(
            [t["coeff"] * t["exact"] for t in shown],
            rows,
            marker="|",
            s=160,
            color="black",
            label="exact",
            zorder=3,
        )
    labels = [f"{t['pauli']}  c={t['coeff']:+.3g}" for t in shown]
    bars.set_yticks(rows, labels, fontsize=7, family="monospace")
    bars.axvline(0, color="grey", linewidth=0.6)
    bars.set_xlabel("contribution  c * <P>")
    bars.legend(loc="lower right", fontsize=7)
    if has_exact and sampled:
        values = [
            (t["value"] - t["exact"]) / t["standard_error"] if t["standard_error"] else 0.0 for t in shown
        ]
        residual.barh(rows, values, color="#dd8452")
        for bound in (-2, 2):
            residual.axvline(bound, color="grey", linestyle="--", linewidth=0.6)
        residual.set_xlabel("(estimate - exact) / SE")
    elif has_exact:
        errors = [max(abs(t["value"] - t["exact"]), 1e-18) for t in shown]
        residual.barh(rows, errors, color="#dd8452")
        residual.set_xscale("log")
        residual.set_xlabel("|estimate - exact|")
    else:
        residual.text(0.5, 0.5, "no exact value", ha="center", va="center", transform=residual.transAxes)
    total = f"estimate {report['estimate']:+.6f}"
    if sampled:
        total += f" +/- {report['standard_error']:.2g}"
    if has_exact:
        total += f"   exact {report['exact']:+.6f}   error {report['error']:+.2e}"
    subset = (
        f"the {len(shown)} largest of {len(terms)} terms"
        if len(terms) > len(shown)
        else f"all {len(terms)} terms"
    )
    figure.suptitle(f"{total}\n{subset}, {report['provenance']['mode']} mode", fontsize=9)
    figure.subplots_adjust(
        left=0.3,
        right=0.98,
        top=1 - 0.75 / figure.get_figheight(),
        bottom=0.55 / figure.get_figheight(),
        wspace=0.05,
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()
