"""CPU and GPU backends: qiskit-aer's statevector simulator, and the branching engine for narrow circuits.

The cpu backend runs subexperiments up to ``BRANCHING_MAX_WIDTH`` qubits on
:mod:`qhybrid.backends.branching` (exact, no ancillas, prefixes shared) and wider ones
on Aer; the gpu backend runs everything on Aer's GPU device.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from qiskit import QuantumCircuit

from qhybrid.backends.branching import Unsupported, branching_distributions
from qhybrid.cutting.deferred import defer_measurements, reduce_to_parity
from qhybrid.cutting.listing import Listing
from qhybrid.cutting.outcomes import OutcomeDistribution
from qhybrid.errors import BackendUnavailable
from qhybrid.provenance import cpu_description, package_versions

# The widest subexperiment the cpu backend gives the branching engine. Measured with
# benchmarks/bench_branching.py on a 2-core machine, on one execute batch of a partition
# given as leaf forms, as the simulate step gives them (the engine runs them segment by
# segment, stacked; Aer gets each leaf's circuit built): 1.12x faster than Aer at 15, 0.76x
# at 16. Four runs of the earlier engine on canonical forms had also put the bound at 15
# (1.12x-1.64x at 15, a tie to 1.39x at 16); whole run_locals at 18 qubits per partition
# were behind Aer (4.4-4.9 s against 3.5-4.5 s). With nothing shared, its worst case, the
# engine is that much faster only up to 13.
BRANCHING_MAX_WIDTH = 15


def _aer_simulator(device: str):
    try:
        from qiskit_aer import AerSimulator
    except ImportError as error:
        raise BackendUnavailable(f"{device.lower()} backend needs the qiskit-aer package") from error
    available = AerSimulator().available_devices()
    if device not in available:
        hint = (
            " (install qiskit-aer-gpu on a machine with an NVIDIA GPU and CUDA driver)"
            if device == "GPU"
            else ""
        )
        raise BackendUnavailable(
            f"{device.lower()} backend: qiskit-aer offers devices {list(available)}, not {device!r}{hint}"
        )
    # Each simulation runs on one thread (the parallel threshold is above any
    # width we simulate), so its sums happen in a fixed order and its result is
    # bitwise identical on any machine; independent experiments still run in parallel.
    return AerSimulator(
        method="statevector",
        device=device,
        max_parallel_experiments=0,
        max_parallel_shots=1,
        statevector_parallel_threshold=64,
    )


class AerBackend:
    """Exact distributions from Aer; shots drawn from them with a per-subexperiment seed.

    Drawing shots from the exact distribution is what Aer's own measurement
    sampling does for a noiseless circuit; doing it here with a seed per
    subexperiment (not Aer's seed-plus-position) keeps results independent of batching.
    """

    def __init__(self, name: str, device: str, *, branching_max_width: int = 0) -> None:
        """Create the simulator now so a missing device fails before any work.

        Circuits of at most ``branching_max_width`` qubits run on the branching engine
        (0: none do); the others, and any it does not support, on Aer.
        """
        self.name = name
        self.device = device
        self.branching_max_width = branching_max_width
        self._simulator = _aer_simulator(device)

    def check(self) -> None:
        """Nothing to check: the constructor already built the simulator on its device."""

    def description(self) -> dict[str, str]:
        """Return the simulator, method, device, qiskit-aer version, and where the branching engine ends."""
        described = {
            "simulator": "qiskit-aer AerSimulator",
            "method": "statevector",
            "device": self.device,
            "qiskit-aer": package_versions()["qiskit-aer"],
        }
        if self.branching_max_width:
            described["branching"] = f"qhybrid branching statevector up to {self.branching_max_width} qubits"
        return described

    def exact_probabilities(self, circuits: Sequence[QuantumCircuit]) -> list[tuple[np.ndarray, int]]:
        """Return, per circuit, the dense parity-reduced distribution and its observable-bit count."""
        deferred = [defer_measurements(circuit) for circuit in circuits]
        runnable = []
        for item in deferred:
            circuit = item.circuit.copy()
            circuit.save_probabilities(qubits=list(item.observable_qubits + item.qpd_qubits))
            runnable.append(circuit)
        result = self._simulator.run(runnable, shots=1).result()
        if not result.success:
            raise RuntimeError(f"qiskit-aer failed: {result.status}")
        reduced = []
        for position, item in enumerate(deferred):
            probabilities = np.asarray(result.data(position)["probabilities"], dtype=np.float64)
            reduced.append(
                (reduce_to_parity(probabilities, len(item.observable_qubits)), len(item.observable_qubits))
            )
        return reduced

    def identity(self) -> dict[str, str]:
        """Return everything that can change a result's bits: the cache keys results on it.

        The simulator, its method, device and version, NumPy (which folds the QPD bits),
        qhybrid (which defers measurements), and the CPU's kernel-selecting features.
        """
        versions = package_versions()
        return {
            **self.description(),
            "numpy": versions["numpy"],
            "qiskit": versions["qiskit"],
            "qhybrid": versions["qhybrid"],
            "machine": platform.machine(),
            "cpu_features": cpu_description().rpartition("[")[2].rstrip("]"),
        }

    def exact_distributions(self, circuits: Sequence[QuantumCircuit | Listing]) -> list[OutcomeDistribution]:
        """Return each circuit's exact distribution over (observable bits | QPD parity).

        Narrow circuits go to the branching engine (all of them in one call, so those of a
        partition share their prefixes), the rest to Aer. Which engine runs a circuit
        depends only on that circuit, so its result does not depend on its batch. A circuit
        given as a :class:`Listing` (a canonical form) is built only if Aer must run it.
        """
        if not circuits:
            return []
        narrow = [i for i, c in enumerate(circuits) if c.num_qubits <= self.branching_max_width]
        results: dict[int, OutcomeDistribution] = {}
        if narrow:
            try:
                results.update(
                    zip(narrow, branching_distributions([circuits[i] for i in narrow]), strict=True)
                )
            except Unsupported:
                # One circuit the engine does not take: run each narrow one alone, so every
                # circuit the engine takes still runs on it whatever its batch.
                for i in narrow:
                    try:
                        results[i] = branching_distributions([circuits[i]])[0]
                    except Unsupported:
                        pass
        wide = [i for i in range(len(circuits)) if i not in results]
        if wide:
            built = [c if isinstance(c, QuantumCircuit) else c.circuit() for c in (circuits[i] for i in wide)]
            computed = self.exact_probabilities(built)
            for i, (dense, num_bits) in zip(wide, computed, strict=True):
                results[i] = OutcomeDistribution.from_dense(dense, num_bits, None)
        return [results[i] for i in range(len(circuits))]

    def run(
        self,
        circuits: Sequence[QuantumCircuit],
        *,
        shots: int | None,
        seeds: Sequence[int],
        events: Callable[[dict[str, Any]], None] | None = None,
    ) -> list[OutcomeDistribution]:
        """Run circuits exactly, or draw ``shots`` samples from each exact distribution.

        A simulator runs in this process, so it has no progress events to report. The
        pipeline runs simulators through canonical forms and the cache
        (:mod:`qhybrid.pipeline.simulate`); this is the plain path (cost calibration).
        """
        if len(seeds) != len(circuits):
            raise ValueError(f"{len(circuits)} circuits but {len(seeds)} seeds")
        exact = self.exact_distributions(circuits)
        if shots is None:
            return exact
        return [
            draw_shots(distribution, shots, seed) for distribution, seed in zip(exact, seeds, strict=True)
        ]


def draw_shots(exact: OutcomeDistribution, shots: int, seed: int) -> OutcomeDistribution:
    """Draw ``shots`` outcomes from an exact distribution with the subexperiment's own seed.

    Drawing shots from the exact distribution is what Aer's own measurement sampling
    does for a noiseless circuit; a seed per subexperiment (not Aer's seed-plus-position)
    keeps results independent of batching.
    """
    probabilities = exact.to_dense()
    np.clip(probabilities, 0.0, None, out=probabilities)
    probabilities /= probabilities.sum()
    rng = np.random.Generator(np.random.PCG64(seed))
    counts = rng.multinomial(shots, probabilities).astype(np.float64)
    return OutcomeDistribution.from_dense(counts, exact.num_observable_bits, shots)
