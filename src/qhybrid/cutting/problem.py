"""The cutting problem: a circuit and observable, and the partitioned circuit they become.

All validation happens here, in memory, before a step writes anything, so bad
input costs nothing on disk and names the flag or file at fault. What to run is
described by :class:`qhybrid.spec.RunSpec`; this module knows nothing of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from qiskit import QuantumCircuit, qasm2, qasm3
from qiskit.quantum_info import SparsePauliOp
from qiskit_addon_cutting import (
    DeviceConstraints,
    OptimizationParameters,
    cut_wires,
    expand_observables,
    find_cuts,
    partition_problem,
)

from qhybrid.cutting.qasm_guard import QasmTooCostly, check_qasm_cost
from qhybrid.errors import InputError

# Widest circuit whose exact statevector (2**26 amplitudes, 1 GiB) we compute for comparison.
EXACT_REFERENCE_MAX_QUBITS = 26
# Beyond this many QPD terms the full (unsampled) decomposition is too large to run.
MAX_QPD_TERMS = 200_000


@dataclass(frozen=True)
class CuttingProblem:
    """A circuit and observable, partitioned into subcircuits joined by QPD gates."""

    circuit: QuantumCircuit
    observable: SparsePauliOp
    subcircuits: dict[str, QuantumCircuit]
    subobservables: dict[str, Any]  # label -> PauliList
    bases: list[Any]  # one QPDBasis per cut

    @property
    def num_cuts(self) -> int:
        """Return the number of cut gates and wires."""
        return len(self.bases)

    @property
    def sampling_overhead(self) -> float:
        """Return the product of each cut's gamma squared (the shot-count multiplier)."""
        return float(np.prod([basis.overhead for basis in self.bases])) if self.bases else 1.0


def read_circuit_file(path: Path) -> tuple[str, QuantumCircuit]:
    """Read an OpenQASM 2 or 3 file; return its text and the circuit without final measurements."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(
            "--circuit", f"cannot read {path}: {getattr(error, 'strerror', None) or error}"
        ) from error
    return text, parse_qasm(text, source=str(path))


def parse_qasm(text: str, *, source: str = "<qasm>") -> QuantumCircuit:
    """Parse OpenQASM 2 or 3 text, check it is a unitary circuit, drop final measurements."""
    version = "3" if "OPENQASM 3" in text else "2" if "OPENQASM 2" in text else None
    if version is None:
        raise InputError("--circuit", f"{source} has no 'OPENQASM 2.0;' or 'OPENQASM 3.0;' header")
    try:
        check_qasm_cost(text)  # before the parser, whose cost a tiny text can blow up
    except QasmTooCostly as error:
        raise InputError("--circuit", f"{source}: {error}") from None
    try:
        circuit = (
            qasm3.loads(text)
            if version == "3"
            else qasm2.loads(text, custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS)
        )
    except Exception as error:  # the parsers raise several unrelated types
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError("--circuit", f"cannot parse {source} as OpenQASM {version}: {first_line}") from error
    circuit.remove_final_measurements(inplace=True)
    for instruction in circuit.data:
        name = instruction.operation.name
        if name in ("measure", "reset") or getattr(instruction.operation, "blocks", None):
            raise InputError("--circuit", f"{source} has a mid-circuit {name!r}; give a unitary circuit")
    if circuit.parameters:
        raise InputError(
            "--circuit", f"{source} has unbound parameters {sorted(p.name for p in circuit.parameters)}"
        )
    if circuit.num_qubits < 1:
        raise InputError("--circuit", f"{source} has no qubits")
    return circuit


def build_problem(
    circuit: QuantumCircuit,
    observable: SparsePauliOp,
    *,
    partition: str | None,
    max_width: int | None,
    seed: int,
) -> CuttingProblem:
    """Partition ``circuit`` by explicit labels, or by automatic cut finding under ``max_width``.

    ``seed`` drives the cut finder's search; explicit labels use no randomness.
    """
    if any(abs(c.imag) > 0 for c in observable.coeffs):
        raise InputError("--observable", "coefficients must be real")
    paulis = observable.paulis
    if partition is not None:
        if len(partition) != circuit.num_qubits:
            raise InputError(
                "--partition",
                f"{len(partition)} labels for a {circuit.num_qubits}-qubit circuit (one label per qubit)",
            )
        try:
            problem = partition_problem(circuit, list(partition), observables=paulis)
        except ValueError as error:
            raise InputError("--partition", str(error)) from error
    else:
        if max_width is None:
            raise InputError("--partition", "give --partition LABELS or --max-width N")
        problem = _find_cuts_problem(circuit, paulis, max_width, seed)
    subcircuits = {str(label): sub for label, sub in problem.subcircuits.items()}
    subobservables = {str(label): obs for label, obs in problem.subobservables.items()}
    terms = math.prod(len(basis.maps) for basis in problem.bases)
    if terms > MAX_QPD_TERMS:
        raise InputError(
            "--partition" if partition is not None else "--max-width",
            f"{len(problem.bases)} cuts give {terms} QPD terms (limit {MAX_QPD_TERMS}); cut fewer gates",
        )
    return CuttingProblem(circuit, observable, subcircuits, subobservables, list(problem.bases))


def _find_cuts_problem(circuit: QuantumCircuit, paulis: Any, max_width: int, seed: int) -> Any:
    if max_width >= circuit.num_qubits:
        raise InputError(
            "--max-width",
            f"{max_width} is not below the circuit's {circuit.num_qubits} qubits; nothing to cut",
        )
    try:
        cut_circuit, _metadata = find_cuts(
            circuit,
            OptimizationParameters(seed=seed),
            DeviceConstraints(qubits_per_subcircuit=max_width),
        )
    except ValueError as error:
        raise InputError("--max-width", f"no cut meets a width of {max_width}: {error}") from error
    with_ancillas = cut_wires(cut_circuit)
    expanded = expand_observables(paulis, circuit, with_ancillas)
    problem = partition_problem(circuit=with_ancillas, observables=expanded)
    widest = max(sub.num_qubits for sub in problem.subcircuits.values())
    if widest > max_width:
        raise InputError("--max-width", f"no cut meets a width of {max_width} (widest piece: {widest})")
    terms = math.prod(len(basis.maps) for basis in problem.bases)
    if terms > MAX_QPD_TERMS:
        raise InputError(
            "--max-width",
            f"no cut meets a width of {max_width} within {MAX_QPD_TERMS} QPD terms "
            f"(the best found needs {len(problem.bases)} cuts, {terms:.3g} terms)",
        )
    return problem
