"""Sampled mode against its predicted standard error, and agreement with the plain flow's reconstruction."""

from __future__ import annotations

import numpy as np
from qhybrid.scenarios import CUTTING
from qiskit_addon_cutting import (
    generate_cutting_experiments,
    partition_problem,
    reconstruct_expectation_values,
)
from qiskit_aer.primitives import SamplerV2

from qhybrid.cutting.plan import build_plan
from qhybrid.cutting.policies import get_policy
from qhybrid.cutting.reconstruct import distribution_from_sampler_pub, reconstruct
from tests.scenarios.helpers import run


def test_sampled_estimate_is_within_four_predicted_standard_errors(tmp_path):
    for seed in (0, 1, 2):
        report = run(tmp_path, name=f"s{seed}", scenario="cutting", mode="sampled", shots=4096, seed=seed)
        assert report["standard_error"] > 0
        assert abs(report["error"]) <= 4 * report["standard_error"], (
            seed,
            report["error"],
            report["standard_error"],
        )
        for term in report["terms"]:
            assert abs(term["value"] - term["exact"]) <= 4 * term["standard_error"] + 1e-12


def test_predicted_standard_error_matches_spread_over_seeds():
    # Given one cut problem, run sampled reconstructions for many seeds in memory
    circuit = CUTTING.circuit(4, 1, 9)
    observable = CUTTING.observable(4)
    problem = partition_problem(circuit, "AABB", observables=observable.paulis)
    experiments, coefficients = generate_cutting_experiments(
        problem.subcircuits, problem.subobservables, np.inf
    )
    from qhybrid.backends import get_backend

    estimates, errors = [], []
    for seed in range(60):
        plan, circuits = build_plan(
            experiments, coefficients, problem.subobservables, policy=get_policy("cpu"), run_seed=seed
        )
        distributions = get_backend("cpu").run(circuits, shots=256, seeds=[u.seed for u in plan.unique])
        result = reconstruct(plan, distributions, observable.coeffs.real)
        estimates.append(result.estimate)
        errors.append(result.standard_error)
    # Then the empirical spread matches the delta-method prediction (sampling noise ~10% at 60 seeds).
    ratio = np.std(estimates, ddof=1) / np.mean(errors)
    assert 0.75 < ratio < 1.3, ratio


def test_vectorised_reconstruction_agrees_with_qiskit_addon_cutting_on_same_counts():
    # Given SamplerV2 counts for every subexperiment of the default workload (few shots keeps it quick)
    circuit = CUTTING.circuit(10, 3, 0)
    observable = CUTTING.observable(10)
    problem = partition_problem(circuit, CUTTING.partition(10), observables=observable.paulis)
    experiments, coefficients = generate_cutting_experiments(
        problem.subcircuits, problem.subobservables, np.inf
    )
    sampler = SamplerV2(default_shots=64, seed=123)
    results = {label: sampler.run(circuits).result() for label, circuits in experiments.items()}
    reference = reconstruct_expectation_values(results, coefficients, problem.subobservables)
    # When the same counts go through the vectorised path (no dedup: one result per subexperiment)
    plan, _ = build_plan(
        experiments, coefficients, problem.subobservables, policy=get_policy("cpu"), run_seed=0, dedupe=False
    )
    distributions = [
        distribution_from_sampler_pub(results[label][i].data)
        for label in plan.labels
        for i in range(len(experiments[label]))
    ]
    ours = reconstruct(plan, distributions, observable.coeffs.real)
    # Then every term agrees to 1e-12
    np.testing.assert_allclose(ours.term_values, reference, rtol=0, atol=1e-12)
    assert abs(ours.estimate - float(np.dot(reference, observable.coeffs.real))) <= 1e-12
