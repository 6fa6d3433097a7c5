"""CPU and GPU backends on qiskit-aer's statevector simulator."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from qiskit import QuantumCircuit

from qhybrid.cutting.deferred import defer_measurements, reduce_to_parity
from qhybrid.cutting.outcomes import OutcomeDistribution
from qhybrid.errors import BackendUnavailable


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

    def __init__(self, name: str, device: str) -> None:
        """Create the simulator now so a missing device fails before any work."""
        self.name = name
        self.device = device
        self._simulator = _aer_simulator(device)

    def check(self) -> None:
        """Nothing to check: the constructor already built the simulator on its device."""

    def description(self) -> dict[str, str]:
        """Return the simulator, method, device and qiskit-aer version."""
        return {
            "simulator": "qiskit-aer AerSimulator",
            "method": "statevector",
            "device": self.device,
            "qiskit-aer": importlib.metadata.version("qiskit-aer"),
        }

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

    def run(
        self,
        circuits: Sequence[QuantumCircuit],
        *,
        shots: int | None,
        seeds: Sequence[int],
        events: Callable[[dict[str, Any]], None] | None = None,
    ) -> list[OutcomeDistribution]:
        """Run circuits exactly, or draw ``shots`` samples from each exact distribution.

        A simulator runs in this process, so it has no progress events to report.
        """
        if len(seeds) != len(circuits):
            raise ValueError(f"{len(circuits)} circuits but {len(seeds)} seeds")
        if not circuits:
            return []
        distributions = []
        for (dense, num_bits), seed in zip(self.exact_probabilities(circuits), seeds, strict=True):
            if shots is None:
                distributions.append(OutcomeDistribution.from_dense(dense, num_bits, None))
                continue
            probabilities = np.clip(dense, 0.0, None)
            probabilities /= probabilities.sum()
            rng = np.random.Generator(np.random.PCG64(seed))
            counts = rng.multinomial(shots, probabilities).astype(np.float64)
            distributions.append(OutcomeDistribution.from_dense(counts, num_bits, shots))
        return distributions
