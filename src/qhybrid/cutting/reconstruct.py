"""Vectorised reconstruction of expectation values from subexperiment distributions.

Mirrors qiskit-addon-cutting's ``reconstruct_expectation_values`` term for term
(same products, same coefficient order) but computes each subexperiment's
expectation values with array operations over its distinct outcomes instead of
a Python loop over shots, and adds a delta-method standard error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from qiskit.quantum_info import Pauli
from qiskit_addon_cutting.utils.observable_grouping import ObservableCollection

from qhybrid.cutting.outcomes import OutcomeDistribution
from qhybrid.cutting.plan import CuttingPlan, observable_collection


@dataclass(frozen=True)
class Reconstruction:
    """Per-term expectation values, their combination, and standard errors (sampled mode)."""

    term_values: np.ndarray  # one per term of the original observable
    term_standard_errors: np.ndarray | None
    estimate: float
    standard_error: float | None


def _signs(distribution: OutcomeDistribution, masks: np.ndarray) -> np.ndarray:
    """Return +-1 of each (outcome, commuting term), QPD parity included."""
    n_obs = np.uint64(distribution.num_observable_bits)
    outcomes = distribution.outcomes
    observable_bits = outcomes & ((np.uint64(1) << n_obs) - np.uint64(1))
    qpd_sign = 1.0 - 2.0 * ((outcomes >> n_obs) & np.uint64(1)).astype(np.float64)
    term_parity = np.bitwise_count(observable_bits[:, None] & masks[None, :]) & np.uint8(1)
    return qpd_sign[:, None] * (1.0 - 2.0 * term_parity.astype(np.float64))


# Values per Walsh-Hadamard call: 512 KiB of float64.
_CHUNK_VALUES = 1 << 16


def walsh_hadamard(vectors: np.ndarray) -> np.ndarray:
    """Return s[m] = sum_x vector[x] * (-1)**popcount(x & m) for length-2**n vectors (the last axis).

    Rows are independent: a stack of vectors gets, row for row, the bits each would get alone.
    """
    size = vectors.shape[-1]
    spectrum = vectors.astype(np.float64, copy=True)
    half = 1
    while half < size:
        pairs = spectrum.reshape(*vectors.shape[:-1], -1, 2, half)
        first, second = pairs[..., 0, :], pairs[..., 1, :]
        spectrum = np.stack((first + second, first - second), axis=-2).reshape(vectors.shape)
        half *= 2
    return spectrum


def _exact_term_values(distributions: Sequence[OutcomeDistribution], masks: np.ndarray) -> np.ndarray:
    """Term values of exact distributions (one row each): every parity expectation by one transform.

    Folding the QPD parity into a signed vector over observable bits, its
    Walsh-Hadamard spectrum at a term's bitmask is that term's expectation value.
    O(n 2**n) per subexperiment instead of O(outcomes x terms); the distributions of one
    observable group (one width of observable bits) are transformed together.
    """
    n_obs = distributions[0].num_observable_bits
    dense = np.zeros((len(distributions), 2 << n_obs))
    for row, distribution in enumerate(distributions):
        if distribution.num_observable_bits != n_obs:
            raise ValueError(f"observable bits {distribution.num_observable_bits} and {n_obs} in one group")
        dense[row] = distribution.to_dense()
    signed = dense[:, : 1 << n_obs] - dense[:, 1 << n_obs :]
    # A few rows per transform keep its temporaries in a core's cache (the bits are the same).
    step = max(1, _CHUNK_VALUES >> n_obs)
    columns = masks.astype(np.intp)
    return np.concatenate(
        [walsh_hadamard(signed[start : start + step])[:, columns] for start in range(0, len(signed), step)]
    )


def _norm(distribution: OutcomeDistribution) -> float:
    return float(distribution.shots) if distribution.shots is not None else 1.0


def reconstruct(
    plan: CuttingPlan,
    distributions: Sequence[OutcomeDistribution],
    observable_coeffs: np.ndarray,
) -> Reconstruction:
    """Combine unique-subexperiment distributions into the observable's estimate."""
    if len(distributions) != len(plan.unique):
        raise ValueError(f"{len(distributions)} results for {len(plan.unique)} unique subexperiments")
    num_samples = len(plan.coefficients)
    num_terms = len(observable_coeffs)
    collections = {label: observable_collection(plan.subobservables[label]) for label in plan.labels}
    # values[label][g]: (num_samples, terms in group g) expectation values.
    values: dict[str, list[np.ndarray]] = {}
    signs_cache: dict[tuple[int, str, int], np.ndarray] = {}
    for label, collection in collections.items():
        per_group = []
        for g, group in enumerate(collection.groups):
            masks = np.asarray(group.pauli_bitmasks, dtype=np.uint64)
            ids = plan.index[label][:, g]
            distinct, inverse = np.unique(ids, return_inverse=True)
            rows = np.empty((len(distinct), len(masks)))
            exact = [row for row, uid in enumerate(distinct) if distributions[int(uid)].shots is None]
            if exact:
                rows[exact] = _exact_term_values([distributions[int(distinct[row])] for row in exact], masks)
            for row, uid in enumerate(distinct):
                distribution = distributions[int(uid)]
                if distribution.shots is None:
                    continue
                # Sampled: keep the per-outcome signs, which the standard error needs too.
                signs = _signs(distribution, masks)
                signs_cache[(int(uid), label, g)] = signs
                rows[row] = (distribution.weights @ signs) / _norm(distribution)
            per_group.append(rows[inverse])
        values[label] = per_group

    # per_label[label]: (num_samples, num_terms), the factor this partition contributes.
    per_label: dict[str, np.ndarray] = {}
    for label, collection in collections.items():
        factor = np.empty((num_samples, num_terms))
        for k, pauli in enumerate(plan.subobservables[label]):
            lookups = collection.lookup[Pauli(pauli)]
            columns = [values[label][m][:, n] for m, n in lookups]
            factor[:, k] = columns[0] if len(columns) == 1 else np.mean(columns, axis=0)
        per_label[label] = factor
    products = np.ones((num_samples, num_terms))
    for label in plan.labels:
        products *= per_label[label]
    term_values = np.zeros(num_terms)
    for i in range(num_samples):  # the plain flow's summation order, for agreement to rounding
        term_values += plan.coefficients[i] * products[i]
    estimate = float(np.dot(term_values, observable_coeffs))

    if all(d.shots is None for d in distributions):
        return Reconstruction(term_values, None, estimate, None)
    term_var, total_var = _delta_method_variance(
        plan, distributions, collections, per_label, signs_cache, observable_coeffs
    )
    return Reconstruction(term_values, np.sqrt(term_var), estimate, float(np.sqrt(total_var)))


def _delta_method_variance(
    plan: CuttingPlan,
    distributions: Sequence[OutcomeDistribution],
    collections: dict[str, ObservableCollection],
    per_label: dict[str, np.ndarray],
    signs_cache: dict[tuple[int, str, int], np.ndarray],
    observable_coeffs: np.ndarray,
) -> tuple[np.ndarray, float]:
    """First-order variance of the estimate, counting each shared subexperiment's sample once.

    The estimate is a smooth function of each unique subexperiment's sample means.
    Its gradient with respect to subexperiment u, applied to u's per-shot signs,
    gives per-shot values whose variance over u's outcomes, divided by u's shots,
    is u's contribution; independent subexperiments add.
    """
    num_terms = len(observable_coeffs)
    # per_shot[uid]: (outcomes of uid, num_terms) accumulated gradient-weighted signs.
    per_shot: dict[int, np.ndarray] = {}
    for label, collection in collections.items():
        others = np.ones_like(per_label[label])
        for other in plan.labels:
            if other != label:
                others *= per_label[other]
        weighted = plan.coefficients[:, None] * others  # d(term k)/d(factor_label[i, k])
        for g, group in enumerate(collection.groups):
            ids = plan.index[label][:, g]
            distinct, inverse = np.unique(ids, return_inverse=True)
            gradient = np.zeros((len(distinct), len(group.pauli_bitmasks), num_terms))
            for k, pauli in enumerate(plan.subobservables[label]):
                lookups = collection.lookup[Pauli(pauli)]
                for m, n in lookups:
                    if m == g:
                        np.add.at(gradient[:, n, k], inverse, weighted[:, k] / len(lookups))
            for row, uid in enumerate(distinct):
                contribution = signs_cache[(int(uid), label, g)] @ gradient[row]
                key = int(uid)
                per_shot[key] = per_shot[key] + contribution if key in per_shot else contribution
    term_var = np.zeros(num_terms)
    total_var = 0.0
    for uid, y in per_shot.items():
        distribution = distributions[uid]
        shots = _norm(distribution)
        p = distribution.weights / shots
        mean = p @ y
        term_var += (p @ (y * y) - mean * mean) / shots
        total = y @ observable_coeffs
        total_mean = p @ total
        total_var += float((p @ (total * total) - total_mean * total_mean) / shots)
    return np.clip(term_var, 0.0, None), max(total_var, 0.0)


def distribution_from_sampler_pub(data: object) -> OutcomeDistribution:
    """Turn one SamplerV2 pub's ``observable_measurements``/``qpd_measurements`` into counts."""
    observable_bits = data.observable_measurements  # type: ignore[attr-defined]
    qpd_bits = data.qpd_measurements  # type: ignore[attr-defined]
    num_bits = observable_bits.num_bits
    raw = observable_bits.array.astype(np.uint64)  # (shots, bytes), big-endian
    weights = np.uint64(1) << (np.uint64(8) * np.arange(raw.shape[1] - 1, -1, -1, dtype=np.uint64))
    observable_ints = (raw * weights).sum(axis=1, dtype=np.uint64)
    parity = (np.bitwise_count(qpd_bits.array).sum(axis=1) & 1).astype(np.uint64)
    reduced = observable_ints | (parity << np.uint64(num_bits))
    outcomes, counts = np.unique(reduced, return_counts=True)
    return OutcomeDistribution(outcomes, counts.astype(np.float64), num_bits, int(raw.shape[0]))
