"""The drift report: the committed baseline against a fresh run here, and the comparison logic."""

from __future__ import annotations

import copy
import json
import shutil
import warnings

import numpy as np
import pytest

from qhybrid import atomic
from qhybrid.errors import QhybridError
from qhybrid.ops.drift import (
    EXIT_DRIFT,
    EXIT_INPUT,
    EXIT_OK,
    REFERENCE_SPECS,
    baseline,
    compare,
    exit_code,
    load,
    render,
    report_fingerprint,
    run_fingerprint,
)
from qhybrid.pipeline.rundir import read_result_file, write_result_file
from tests.conftest import REPO, invoke, regenerating

BASELINE = REPO / "tests" / "reproducibility" / "baseline.json"


def test_committed_baseline_matches_a_fresh_run_here(fingerprints):
    # The drift check CI runs. REGENERATE=1 pytest tests/reproducibility rewrites the baseline
    # (after reviewing why it moved: `qhybrid drift --check` prints it).
    fresh = {mode: fingerprints(mode, "reference") for mode in REFERENCE_SPECS}
    if regenerating():
        atomic.write_text(BASELINE, json.dumps(baseline(fresh), indent=1) + "\n")
    committed = load(BASELINE)
    assert set(committed) == set(REFERENCE_SPECS)
    drifts = compare(committed, fresh)
    report = render(drifts)
    assert exit_code(drifts) == EXIT_OK, report
    if any(d.moved for d in drifts):
        warnings.warn(f"expected drift against {BASELINE.name}, review it:\n{report}", stacklevel=1)
    assert all(d.distributions_compared for d in drifts)


# --------------------------------------------------------------------------- synthetic reports


@pytest.fixture(scope="module")
def reference_report(variant_run):
    run_dir, _ = variant_run("sampled", "reference")
    return json.loads((run_dir / "report.json").read_text())


def changed(report: dict, *, version: str | None = None, estimate_ulps: int = 0, term_delta: float = 0.0):
    report = copy.deepcopy(report)
    if version is not None:
        report["provenance"]["environment"]["packages"]["qiskit-aer"] = version
    for _ in range(estimate_ulps):
        report["estimate"] = float(np.nextafter(report["estimate"], np.inf))
    report["terms"][3]["value"] += term_delta
    return report


def drifts_between(old: dict, new: dict):
    return compare({"old": report_fingerprint(old)}, {"new": report_fingerprint(new)})


def test_same_report_is_bitwise_equal(reference_report):
    drifts = drifts_between(reference_report, copy.deepcopy(reference_report))
    assert exit_code(drifts) == EXIT_OK and not drifts[0].moved
    assert "bitwise equal" in render(drifts)


def test_numbers_moved_with_the_same_versions_is_a_failure(reference_report):
    drifts = drifts_between(reference_report, changed(reference_report, estimate_ulps=1))
    assert exit_code(drifts) == EXIT_DRIFT
    text = render(drifts)
    assert "versions: unchanged" in text and "FAILURE" in text
    assert "estimate: within 1e-12" in text
    assert [c.name for c in drifts[0].numbers] == ["estimate"]


def test_numbers_moved_with_a_changed_version_is_a_warning(reference_report):
    new = changed(reference_report, version="9.9.9", term_delta=3e-5)
    drifts = drifts_between(reference_report, new)
    assert exit_code(drifts) == EXIT_OK
    text = render(drifts)
    assert "qiskit-aer: 0." in text and "-> 9.9.9" in text and "WARNING" in text
    pauli = reference_report["terms"][3]["pauli"]
    assert f"term {pauli} value: differs, by +3.000e-05" in text


def test_numbers_moved_on_another_cpu_with_the_same_packages_is_still_a_failure(reference_report):
    # Given the same package versions on another machine's CPU,
    new = changed(reference_report, estimate_ulps=1)
    new["provenance"]["environment"]["cpu"] = "Another CPU model [avx2 fma]"
    drifts = drifts_between(reference_report, new)
    # then moved numbers fail the gate, and the CPU is shown as information only.
    assert exit_code(drifts) == EXIT_DRIFT
    assert drifts[0].versions == {} and "cpu" in drifts[0].information
    text = render(drifts)
    assert "cpu (information only):" in text and "FAILURE" in text


def test_a_changed_version_alone_is_no_drift(reference_report):
    drifts = drifts_between(reference_report, changed(reference_report, version="9.9.9"))
    assert exit_code(drifts) == EXIT_OK and not drifts[0].moved and drifts[0].versions


def test_runs_of_other_inputs_are_not_compared(reference_report):
    other = copy.deepcopy(reference_report)
    other["provenance"]["spec_hash"] = "0" * 64
    with pytest.raises(QhybridError, match="different inputs"):
        drifts_between(reference_report, other)


def test_command_line_exit_codes_and_json(tmp_path, reference_report):
    paths = {}
    for name, report in {
        "old": reference_report,
        "same-versions": changed(reference_report, estimate_ulps=2),
        "new-versions": changed(reference_report, version="9.9.9", estimate_ulps=2),
    }.items():
        paths[name] = tmp_path / name / "report.json"
        atomic.write_json(paths[name], report)
    assert invoke("drift", str(paths["old"]), str(paths["new-versions"])).exit_code == EXIT_OK
    out = tmp_path / "drift.json"
    drifted = invoke("drift", str(paths["old"]), str(paths["same-versions"]), "--json", str(out))
    assert drifted.exit_code == EXIT_DRIFT
    written = json.loads(out.read_text())
    assert written["exit_code"] == EXIT_DRIFT
    assert [c["name"] for c in written["runs"][0]["numbers_changed"]] == ["estimate"]
    missing = invoke("drift", str(paths["old"]), str(tmp_path / "missing.json"))
    assert missing.exit_code == EXIT_INPUT
    assert missing.stderr.startswith("qhybrid: error: ") and "missing.json" in missing.stderr


def test_drift_usage_errors_are_one_line_and_exit_2(tmp_path):
    both = invoke("drift", "a", "b", "--check", str(tmp_path / "baseline.json"))
    assert both.exit_code == EXIT_INPUT
    assert both.stderr.splitlines() == [
        "qhybrid: error: OLD NEW: give either OLD NEW or --check/--write-baseline"
    ]
    neither = invoke("drift")
    assert neither.exit_code == EXIT_INPUT and "give OLD NEW" in neither.stderr
    absent = invoke("drift", "--check", str(tmp_path / "nowhere.json"))
    assert (
        absent.exit_code == EXIT_INPUT and "--check" in absent.stderr and "no such baseline" in absent.stderr
    )
    usage = invoke("drift", "--help")
    assert usage.exit_code == 0 and "Usage: qhybrid drift [OPTIONS] [OLD] [NEW]" in usage.stdout


def test_qhybrid_drift_command_passes_arguments_and_exit_code_through(tmp_path, reference_report):
    from tests.conftest import run_cli

    old, moved = tmp_path / "old" / "report.json", tmp_path / "moved" / "report.json"
    atomic.write_json(old, reference_report)
    atomic.write_json(moved, changed(reference_report, estimate_ulps=1))
    same = run_cli("drift", str(old), str(old))
    assert same.returncode == EXIT_OK, same.stderr
    drifted = run_cli("drift", str(old), str(moved))
    assert drifted.returncode == EXIT_DRIFT
    assert "FAILURE: numbers moved with the same versions" in drifted.stdout


def test_drift_command_against_a_baseline_outside_a_checkout(tmp_path, variant_run):
    from tests.conftest import run_cli

    run_dir, _ = variant_run("exact", "reference")
    copied = tmp_path / "baseline.json"
    shutil.copyfile(BASELINE, copied)
    result = run_cli("drift", str(copied), str(run_dir), cwd=tmp_path)
    assert result.returncode == EXIT_OK, result.stdout + result.stderr
    assert "== exact" in result.stdout and "bitwise equal" in result.stdout


# --------------------------------------------------------------------------- result-file sensitivity


def test_one_ulp_in_one_distribution_is_seen(tmp_path, variant_run):
    run_dir, fingerprint = variant_run("exact", "reference")
    copied = tmp_path / "copy"
    shutil.copytree(run_dir, copied)
    target = sorted((copied / "results").iterdir())[1]
    distributions, meta = read_result_file(target)
    distributions[5].weights[0] = np.nextafter(distributions[5].weights[0], np.inf)
    write_result_file(target, distributions, meta)
    moved = run_fingerprint(copied)
    drifts = compare({"exact": fingerprint}, {"exact": moved})
    assert drifts[0].distributions == [meta["ids"][5]]
    assert drifts[0].numbers == []  # the report was not rebuilt: only the distribution moved
    assert exit_code(drifts) == EXIT_DRIFT
