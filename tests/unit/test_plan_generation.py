"""Our subexperiment generation must equal qiskit-addon-cutting's, circuit for circuit."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit_addon_cutting import generate_cutting_experiments

from qhybrid.cutting.assemble import SubcircuitTemplate
from qhybrid.cutting.fingerprint import circuit_fingerprint, known_instruction_tokens
from qhybrid.cutting.plan import (
    generate_fingerprinted_subexperiments,
    generate_subexperiments,
    partition_templates,
    walk_qpd,
)
from qhybrid.pipeline.runner import run_local
from qhybrid.spec import RunSpec, problem_of
from tests.scenarios.helpers import round_trip_problems

PROBLEMS = round_trip_problems()


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_same_circuits_and_coefficients_as_upstream(name):
    problem = problem_of(PROBLEMS[name])
    ours, our_coefficients = generate_subexperiments(problem.subcircuits, problem.subobservables)
    theirs, their_coefficients = generate_cutting_experiments(
        circuits=problem.subcircuits, observables=problem.subobservables, num_samples=np.inf
    )
    assert [(float(c), w) for c, w in our_coefficients] == [(float(c), w) for c, w in their_coefficients]
    assert sorted(ours) == sorted(str(label) for label in theirs)
    for label, circuits in theirs.items():
        ours_fingerprints = [circuit_fingerprint(c) for c in ours[str(label)]]
        assert ours_fingerprints == [circuit_fingerprint(c) for c in circuits]
        # Same registers too: reconstruction reads bits by register.
        assert [[(r.name, r.size) for r in c.cregs] for c in ours[str(label)]] == [
            [(r.name, r.size) for r in c.cregs] for c in circuits
        ]
        # And the same circuits as Qiskit compares them (operations, wires, registers, phase),
        # with the same name: cutting.assemble builds them without upstream's passes.
        for mine, upstream in zip(ours[str(label)], circuits, strict=True):
            assert mine == upstream
            assert (mine.name, mine.qregs, mine.global_phase) == (
                upstream.name,
                upstream.qregs,
                upstream.global_phase,
            )


def test_each_distinct_subexperiment_is_built_once():
    problem = problem_of(PROBLEMS["default"])
    ours, _ = generate_subexperiments(problem.subcircuits, problem.subobservables)
    listed = sum(len(circuits) for circuits in ours.values())
    built = len({id(c) for circuits in ours.values() for c in circuits})
    assert listed == 432
    assert built == 250  # every distinct circuit once, and nothing more to deduplicate


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_fingerprints_from_the_templates_are_the_circuits_own(name):
    """A template's fingerprint, and the tokens canonical forms read back, are the circuit's own."""
    problem = problem_of(PROBLEMS[name])
    experiments, _, fingerprints = generate_fingerprinted_subexperiments(
        problem.subcircuits, problem.subobservables
    )
    circuits = {id(c): c for listed in experiments.values() for c in listed}
    if name != "automatic_cuts":  # wire cuts put two-qubit QPD gates in a template: upstream builds those
        assert set(fingerprints) == set(circuits)
    assert fingerprints
    for key, fingerprint in fingerprints.items():
        tokens = known_instruction_tokens(fingerprint)
        assert circuit_fingerprint(circuits[key]) == fingerprint
        assert known_instruction_tokens(fingerprint) == tokens


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_a_template_gives_the_fingerprint_without_building_the_circuit(name):
    problem = problem_of(PROBLEMS[name])
    templates = partition_templates(problem.subcircuits)
    checked = 0
    for _, _, positions in walk_qpd(problem.subcircuits, problem.subobservables):
        for label, group, local_ids, _ in positions:
            template = templates[label]
            if not template.supported:
                continue
            _, built = template.build_fingerprinted(group, local_ids)
            assert template.fingerprint(group, local_ids) == built
            checked += 1
    assert checked


def test_a_run_without_shards_builds_no_subexperiment_circuit(tmp_path, monkeypatch):
    # Every subexperiment of the default workload is computed in its leaf form, in this
    # process, and nothing writes QPY: not one circuit is built (generate's fingerprints come
    # from the templates). A resume, a worker process or a shard still builds them on demand.
    def refuse(*args, **kwargs):
        raise AssertionError("a subexperiment circuit was built")

    monkeypatch.setattr(SubcircuitTemplate, "build_fingerprinted", refuse)
    report = run_local(RunSpec(scenario="cutting"), tmp_path / "run", workers=1, progress=False)
    assert abs(report["estimate"] - report["exact"]) <= 1e-12
    assert report["counts"]["unique"] == 250
