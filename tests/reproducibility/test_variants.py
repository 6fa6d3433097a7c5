"""One workload, every way of running it, all bitwise equal.

For each reference spec (exact and sampled mode: ``qhybrid.ops.drift.REFERENCE_SPECS``,
the runs the committed baseline holds), the run is made once per variant:

- ``reference``: ``run_local`` in this process, one worker, default batches;
- ``workers-2``: two worker processes;
- ``batch-size-7``: 36 ranges of 7 instead of 4 of 64;
- ``process``: ``python -m qhybrid run cutting`` in a separate process (random hash seed);
- ``killed-resumed``: a separate process SIGKILLed mid-execute, then ``--resume`` with two workers;
- ``workflow-replay``: ``qhybrid workflow render`` to YAML, then ``qhybrid workflow replay --file``
  (the pods' commands in DAG order, one result file per batch of the cpu branch).

Each variant's fingerprint (``qhybrid.ops.drift.run_fingerprint``: estimate, standard
error and exact value as float.hex, every term's value and standard error, the
SHA-256 of every unique subexperiment's outcomes and weights, the spec hash) must
equal the reference's, so a difference anywhere shows, not only in the estimate.
"""

from __future__ import annotations

import pytest

from qhybrid.ops.drift import REFERENCE_SPECS, compare_runs, render, run_fingerprint
from qhybrid.spec import RunSpec
from tests.reproducibility.variants import VARIANTS, in_process, replayed_from_yaml


def assert_same(name: str, reference: dict, other: dict) -> None:
    drift = compare_runs(name, reference, other)
    assert not drift.moved and not drift.versions, render([drift])
    assert drift.distributions_compared
    assert other == reference  # everything else too (spec, versions, the combined digest)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("mode", sorted(REFERENCE_SPECS))
def test_variant_is_bitwise_equal_to_the_reference(fingerprints, mode, variant):
    reference = fingerprints(mode, "reference")
    assert len(reference["distributions"]["per_subexperiment"]) == 250
    assert_same(f"{mode}: {variant}", reference, fingerprints(mode, variant))


def test_the_modes_differ_where_they_should(fingerprints):
    # The fingerprint sees the difference between the two reference runs everywhere.
    exact, sampled = fingerprints("exact", "reference"), fingerprints("sampled", "reference")
    assert exact["estimate"] != sampled["estimate"]
    assert float.fromhex(exact["standard_error"]) == 0.0 < float.fromhex(sampled["standard_error"])
    assert exact["distributions"]["all"] != sampled["distributions"]["all"]


@pytest.mark.slow  # 24 qubits, 4 cuts: about a minute
def test_four_cuts_workload_is_bitwise_equal_across_workers_batches_and_replay(tmp_path):
    spec = RunSpec(scenario="cutting", qubits=24, reps=4, mode="sampled", shots=1000, seed=11)
    reference = run_fingerprint(in_process(spec, tmp_path / "reference"))
    others = {
        "workers-2, batch-size 100": run_fingerprint(
            in_process(spec, tmp_path / "workers", workers=2, batch_size=100)
        ),
        "workflow-replay": run_fingerprint(replayed_from_yaml(spec, tmp_path / "replay")),
    }
    assert len(reference["distributions"]["per_subexperiment"]) == 1250
    for name, fingerprint in others.items():
        assert_same(name, reference, fingerprint)
