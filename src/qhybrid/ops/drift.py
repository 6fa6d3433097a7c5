"""Numeric fingerprints of runs, and a drift report between two of them.

A *fingerprint* holds what a run computed, bit for bit, and what it was computed
with: the estimate, its standard error and the exact value as ``float.hex``, every
term's value and standard error, a SHA-256 of every unique subexperiment's outcome
distribution (outcomes and weights arrays, wherever they sit in the result files,
so runs batched differently still compare), the run's spec hash, and the package
versions, Python and machine from the report's provenance.

The *drift report* compares two sets of fingerprints (report.json files, run
directories, or a baseline file holding several) and says which versions changed
and how each number moved: bitwise equal, within 1e-12, or differs by X. Exit
status: 0 when nothing moved, or when numbers moved *and* package versions changed
(expected drift: review it, then regenerate the baseline); 1 when numbers moved
with the same package versions (a reproducibility bug); 2 on unusable input. The
CPU model is shown as information only: it is no excuse for numbers that move
with the same packages, so the gate fails on any machine.

    qhybrid drift OLD NEW                 # each: report.json, run dir or baseline file
    qhybrid drift --check BASELINE        # run the reference workloads here, compare
    qhybrid drift --write-baseline FILE   # run them and write a new baseline
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qhybrid import atomic
from qhybrid.errors import InputError, QhybridError
from qhybrid.pipeline.rundir import RunDir
from qhybrid.spec import RunSpec

FORMAT = 1
TOLERANCE = 1e-12
EXIT_OK, EXIT_DRIFT, EXIT_INPUT = 0, 1, 2

# The reference runs a baseline holds: small enough for CI, one per mode.
REFERENCE_SPECS: dict[str, RunSpec] = {
    "exact": RunSpec(scenario="cutting", seed=3),
    "sampled": RunSpec(scenario="cutting", mode="sampled", shots=2000, seed=7),
}
# The scalar numbers of a fingerprint, in report order.
SCALARS = ("estimate", "standard_error", "exact")
# Recorded with the versions but shown as information only: another CPU may select other
# SIMD kernels, but the pinned packages compute single-threaded sums in a fixed order, so
# numbers that move with the same packages are a bug whatever the machine.
INFORMATION_ONLY = ("cpu",)


def _hex(value: float | None) -> str | None:
    return None if value is None else float(value).hex()


def distribution_digests(run_dir: Path) -> list[str]:
    """Return a SHA-256 per unique subexperiment of its outcome distribution, in plan order.

    Each digest covers the subexperiment's outcomes and weights arrays (their dtype
    and bytes), its observable bit count and its shots, read from whichever result
    file holds it, so differently batched runs of one plan give the same list.
    """
    directory = RunDir(run_dir)
    total = directory.read_manifest()["counts"]["unique"]
    digests: list[str | None] = [None] * total
    for start, stop, backend in directory.result_files():
        distributions, meta = directory.read_results(start, stop, backend)
        for uid, distribution in zip(meta["ids"], distributions, strict=True):
            digest = hashlib.sha256()
            for array in (distribution.outcomes, distribution.weights):
                digest.update(array.dtype.str.encode() + np.ascontiguousarray(array).tobytes())
            shots = -1 if distribution.shots is None else distribution.shots
            digest.update(f"{distribution.num_observable_bits}/{shots}".encode())
            if digests[uid] not in (None, digest.hexdigest()):
                raise QhybridError(f"{run_dir}: two result files disagree on subexperiment {uid}")
            digests[uid] = digest.hexdigest()
    missing = [uid for uid, digest in enumerate(digests) if digest is None]
    if missing:
        raise QhybridError(
            f"{run_dir}: {len(missing)} unique subexperiments have no result (first {missing[0]})"
        )
    return [d for d in digests if d is not None]


def report_fingerprint(report: Mapping[str, Any]) -> dict[str, Any]:
    """Return the fingerprint of a report (no distributions: a report alone does not hold them)."""
    provenance = report["provenance"]
    environment = provenance["environment"]
    return {
        "spec": provenance["spec"],
        "spec_hash": provenance["spec_hash"],
        "versions": {
            **environment["packages"],
            "python": environment["python"],
            "machine": environment["machine"],
            # Information only (INFORMATION_ONLY): never excuses a number that moved.
            "cpu": environment.get("cpu", "unknown"),
        },
        "estimate": _hex(report["estimate"]),
        "standard_error": _hex(report["standard_error"]),
        "exact": _hex(report["exact"]),
        "terms": [
            {"pauli": t["pauli"], "value": _hex(t["value"]), "standard_error": _hex(t["standard_error"])}
            for t in report["terms"]
        ],
    }


def run_fingerprint(run_dir: Path) -> dict[str, Any]:
    """Return the fingerprint of a finished run directory, its distributions included."""
    fingerprint = report_fingerprint(atomic.read_json(RunDir(run_dir).report_file))
    digests = distribution_digests(run_dir)
    fingerprint["distributions"] = {
        "all": hashlib.sha256("".join(digests).encode()).hexdigest(),
        "per_subexperiment": digests,
    }
    return fingerprint


def load(path: Path) -> dict[str, dict[str, Any]]:
    """Read fingerprints by name from a baseline file, a report.json or a run directory."""
    try:
        if path.is_dir():
            return {path.name: run_fingerprint(path)}
        data = atomic.read_json(path)
    except (OSError, ValueError, KeyError) as error:
        raise QhybridError(f"{path}: not a report, run directory or baseline ({error})") from None
    if isinstance(data, dict) and "runs" in data:
        if data.get("format") != FORMAT:
            raise QhybridError(f"{path}: baseline format {data.get('format')!r}, expected {FORMAT}")
        return dict(data["runs"])
    try:
        return {path.parent.name or "report": report_fingerprint(data)}
    except (KeyError, TypeError) as error:
        raise QhybridError(f"{path}: not a report.json (no {error})") from None


# --------------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class NumberChange:
    """One number that is not bitwise equal between the two sides."""

    name: str
    old: str | None
    new: str | None

    def describe(self) -> str:
        """Say how it moved: within the tolerance, or by how much."""
        if self.old is None or self.new is None:
            return f"{self.name}: {self.old} -> {self.new}"
        old, new = float.fromhex(self.old), float.fromhex(self.new)
        delta = new - old
        how = f"within {TOLERANCE:g}" if abs(delta) <= TOLERANCE else "differs"
        return f"{self.name}: {how}, by {delta:+.3e} ({old!r} -> {new!r})"


@dataclass
class RunDrift:
    """How one run's fingerprint moved."""

    name: str
    versions: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    information: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    numbers: list[NumberChange] = field(default_factory=list)
    distributions: list[int] = field(default_factory=list)  # unique ids whose distribution changed
    distributions_compared: bool = False

    @property
    def moved(self) -> bool:
        """Whether any number or distribution is not bitwise equal."""
        return bool(self.numbers or self.distributions)


def compare_runs(name: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> RunDrift:
    """Compare two fingerprints of one spec."""
    if old["spec_hash"] != new["spec_hash"]:
        raise QhybridError(f"{name}: the two runs have different inputs (spec hashes differ)")
    drift = RunDrift(name)
    for key in sorted(set(old["versions"]) | set(new["versions"])):
        before, after = old["versions"].get(key), new["versions"].get(key)
        if before != after:
            (drift.information if key in INFORMATION_ONLY else drift.versions)[key] = (before, after)
    for key in SCALARS:
        if old[key] != new[key]:
            drift.numbers.append(NumberChange(key, old[key], new[key]))
    if [t["pauli"] for t in old["terms"]] != [t["pauli"] for t in new["terms"]]:
        raise QhybridError(f"{name}: the two runs have different observable terms")
    for before, after in zip(old["terms"], new["terms"], strict=True):
        for key in ("value", "standard_error"):
            if before[key] != after[key]:
                drift.numbers.append(NumberChange(f"term {before['pauli']} {key}", before[key], after[key]))
    if "distributions" in old and "distributions" in new:
        drift.distributions_compared = True
        a, b = old["distributions"]["per_subexperiment"], new["distributions"]["per_subexperiment"]
        if len(a) != len(b):
            raise QhybridError(f"{name}: {len(a)} vs {len(b)} unique subexperiments")
        drift.distributions = [uid for uid, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    return drift


def compare(old: Mapping[str, Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]]) -> list[RunDrift]:
    """Pair runs by spec hash (names when both sides are baselines) and compare each pair."""
    by_hash = {fp["spec_hash"]: (name, fp) for name, fp in old.items()}
    pairs = []
    for name, fingerprint in new.items():
        if fingerprint["spec_hash"] in by_hash:
            old_name, old_fp = by_hash[fingerprint["spec_hash"]]
            pairs.append((old_name if old_name == name else f"{old_name} vs {name}", old_fp, fingerprint))
        elif len(old) == len(new) == 1:
            pairs.append((name, next(iter(old.values())), fingerprint))  # compare_runs says why not
    if not pairs:
        raise QhybridError("no run on one side has the inputs (spec hash) of a run on the other")
    return [compare_runs(name, a, b) for name, a, b in pairs]


def exit_code(drifts: list[RunDrift]) -> int:
    """0: nothing moved, or it moved with changed versions; 1: it moved with the same versions."""
    return EXIT_DRIFT if any(d.moved and not d.versions for d in drifts) else EXIT_OK


def render(drifts: list[RunDrift], *, limit: int = 20) -> str:
    """Return the human drift report."""
    lines = []
    for drift in drifts:
        lines.append(f"== {drift.name}")
        if drift.versions:
            lines.append("versions changed:")
            lines += [f"  {k}: {a} -> {b}" for k, (a, b) in sorted(drift.versions.items())]
        else:
            lines.append("versions: unchanged")
        for key, (before, after) in sorted(drift.information.items()):
            lines.append(f"{key} (information only): {before} -> {after}")
        if not drift.moved:
            checked = " and every subexperiment's distribution" if drift.distributions_compared else ""
            lines.append(f"numbers: bitwise equal (estimate, standard error, exact, terms{checked})")
        for change in drift.numbers[:limit]:
            lines.append(f"  {change.describe()}")
        if len(drift.numbers) > limit:
            lines.append(f"  ... and {len(drift.numbers) - limit} more numbers")
        if drift.distributions:
            shown = ", ".join(map(str, drift.distributions[:limit]))
            lines.append(
                f"  distributions of {len(drift.distributions)} unique subexperiments differ: {shown}"
            )
        if drift.moved and drift.versions:
            lines.append("WARNING: numbers moved with package versions: expected drift, review it")
        elif drift.moved:
            lines.append("FAILURE: numbers moved with the same versions: a reproducibility bug")
    return "\n".join(lines) + "\n"


def as_json(drifts: list[RunDrift]) -> dict[str, Any]:
    """Return the drift report as JSON data (for artefacts)."""
    return {
        "exit_code": exit_code(drifts),
        "runs": [
            {
                "name": d.name,
                "versions_changed": {k: list(v) for k, v in d.versions.items()},
                "information_changed": {k: list(v) for k, v in d.information.items()},
                "numbers_changed": [{"name": c.name, "old": c.old, "new": c.new} for c in d.numbers],
                "distributions_changed": d.distributions,
                "distributions_compared": d.distributions_compared,
            }
            for d in drifts
        ],
    }


# --------------------------------------------------------------------------- reference runs


def reference_fingerprints(work: Path) -> dict[str, dict[str, Any]]:
    """Run the reference workloads under ``work`` (in this process) and fingerprint each."""
    from rich.console import Console

    from qhybrid.pipeline.runner import run_local

    fingerprints = {}
    for name, spec in REFERENCE_SPECS.items():
        run_local(spec, work / name, console=Console(stderr=True, quiet=True))
        fingerprints[name] = run_fingerprint(work / name)
    return fingerprints


def baseline(fingerprints: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Return the content of a baseline file holding ``fingerprints``."""
    return {"format": FORMAT, "runs": dict(fingerprints)}


def run_drift(
    *,
    old: Path | None = None,
    new: Path | None = None,
    check: Path | None = None,
    write_baseline: Path | None = None,
    work: Path | None = None,
    json_out: Path | None = None,
    echo: Callable[[str], object] = print,
) -> int:
    """Compare OLD with NEW, or fresh reference runs with a baseline; print the report; return the exit code.

    Unusable input (a missing file, a wrong combination of arguments) raises
    :class:`QhybridError`, which the command line turns into exit code 2.
    """
    if check or write_baseline:
        if old or new:
            raise InputError("OLD NEW", "give either OLD NEW or --check/--write-baseline")
        if check is not None and not check.is_file():
            raise InputError("--check", f"{check}: no such baseline file")
        with tempfile.TemporaryDirectory(prefix="qhybrid-drift-") as scratch:
            fresh = reference_fingerprints(work or Path(scratch))
        if write_baseline:
            atomic.write_text(write_baseline, json.dumps(baseline(fresh), indent=1) + "\n")
            echo(f"wrote {write_baseline}")
            if not check:
                return EXIT_OK
        assert check is not None
        before, after = load(check), fresh
    elif old and new:
        before, after = load(old), load(new)
    else:
        raise InputError("OLD NEW", "give OLD NEW, --check BASELINE or --write-baseline FILE")
    drifts = compare(before, after)
    echo(render(drifts).rstrip("\n"))
    if json_out:
        atomic.write_json(json_out, as_json(drifts))
    return exit_code(drifts)
