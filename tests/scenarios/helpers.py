"""Circuits and runs shared by the scenario tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qhybrid.scenarios import CUTTING
from qiskit import QuantumCircuit, qasm2, qasm3
from qiskit.quantum_info import SparsePauliOp, Statevector

from qhybrid.pipeline.runner import run_local
from qhybrid.spec import RunSpec


def rotations_circuit(num_qubits: int, layers: int, seed: int) -> QuantumCircuit:
    """Rx/Ry/Rz layers with linear CX ladders, so X, Y and Z terms all have nonzero values."""
    rng = np.random.default_rng(seed)
    circuit = QuantumCircuit(num_qubits)
    for _ in range(layers):
        for q in range(num_qubits):
            circuit.rx(rng.uniform(-np.pi, np.pi), q)
            circuit.ry(rng.uniform(-np.pi, np.pi), q)
            circuit.rz(rng.uniform(-np.pi, np.pi), q)
        for q in range(num_qubits - 1):
            circuit.cx(q, q + 1)
    return circuit


def write_qasm(path: Path, circuit: QuantumCircuit, version: int = 3) -> Path:
    path.write_text(qasm3.dumps(circuit) if version == 3 else qasm2.dumps(circuit))
    return path


def statevector_value(circuit: QuantumCircuit, observable: SparsePauliOp) -> float:
    return float(np.real(Statevector(circuit).expectation_value(observable)))


def run(tmp_path: Path, name: str = "run", workers: int = 1, **spec_fields) -> dict:
    return run_local(RunSpec(**spec_fields), tmp_path / name, workers=workers)


def round_trip_problems() -> dict[str, RunSpec]:
    """The round-trip problems: the default workload, X/Y terms, automatic cuts, 3 partitions."""
    return {
        "default": RunSpec(scenario="cutting"),
        "x_and_y_terms": RunSpec(
            circuit_qasm=qasm3.dumps(rotations_circuit(6, 2, seed=11)),
            observable="0.5*XXIIII - 1.0*IIIYYI + 0.75*ZIIIIX + 1.25*IYIZII",
            partition="AAABBB",
        ),
        "automatic_cuts": RunSpec(
            circuit_qasm=qasm3.dumps(CUTTING.circuit(6, 2, 5)),
            observable="ZZIIII + 0.5*IIIZZI + IIXIIZ",
            max_width=3,
            seed=5,
        ),
        "three_partitions": RunSpec(scenario="cutting", qubits=9, reps=1, partition="AAABBBCCC", seed=3),
    }
