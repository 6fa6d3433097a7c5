"""The cutting problem: what to run (spec) and the partitioned circuit it becomes.

All validation happens here, in memory, before a step writes anything, so bad
input costs nothing on disk and names the flag or file at fault.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

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

from qhybrid.errors import InputError
from qhybrid.observables import format_pauli_sum, load_observable, parse_pauli_sum
from qhybrid.policies import POLICIES

Mode = Literal["exact", "sampled"]
MODES: tuple[str, ...] = ("exact", "sampled")
# Widest circuit whose exact statevector (2**26 amplitudes, 1 GiB) we compute for comparison.
EXACT_REFERENCE_MAX_QUBITS = 26
# Beyond this many QPD terms the full (unsampled) decomposition is too large to run.
MAX_QPD_TERMS = 200_000


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """Everything that determines a run's numbers. Two runs with equal specs agree bitwise.

    Either ``scenario`` (with ``qubits``/``reps``) or ``circuit_qasm`` gives the circuit.
    Either ``partition`` (one label per qubit) or ``max_width`` (automatic cuts) splits it.
    """

    scenario: str | None = None
    qubits: int | None = None
    reps: int | None = None
    circuit_qasm: str | None = None
    circuit_source: str | None = None
    observable: str | None = None
    partition: str | None = None
    max_width: int | None = None
    mode: Mode = "exact"
    shots: int | None = None
    seed: int = 0
    policy: str = "cpu"

    def __post_init__(self) -> None:
        """Check each field on its own; cross-field checks that need the circuit come later."""
        if (self.scenario is None) == (self.circuit_qasm is None):
            raise InputError("--circuit", "give exactly one of a scenario or --circuit FILE")
        if self.mode not in MODES:
            raise InputError("--mode", f"unknown mode {self.mode!r}; choose one of {list(MODES)}")
        if self.mode == "sampled":
            if self.shots is None:
                raise InputError("--shots", "sampled mode needs --shots")
            if self.shots <= 0:
                raise InputError("--shots", f"must be a positive integer, got {self.shots}")
        elif self.shots is not None:
            raise InputError("--shots", "exact mode draws no shots; drop --shots or use sampled")
        if self.seed < 0:
            raise InputError("--seed", f"must be a non-negative integer, got {self.seed}")
        if self.policy not in POLICIES:
            raise InputError("--policy", f"unknown policy {self.policy!r}; choose one of {sorted(POLICIES)}")
        if self.partition is not None and self.max_width is not None:
            raise InputError("--max-width", "give either --partition or --max-width, not both")
        if self.max_width is not None and self.max_width < 1:
            raise InputError("--max-width", f"must be at least 1, got {self.max_width}")
        for name in ("qubits", "reps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"--{name}", f"must be a positive integer, got {value}")

    def to_json(self) -> dict[str, Any]:
        """Return the spec as plain JSON data."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunSpec:
        """Rebuild a spec written by :meth:`to_json`."""
        return cls(**data)

    def spec_hash(self) -> str:
        """Return a hash of every field but the human-facing circuit_source."""
        data = self.to_json()
        data.pop("circuit_source")
        encoded = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(encoded).hexdigest()


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


def load_problem_inputs(spec: RunSpec) -> tuple[QuantumCircuit, SparsePauliOp, str | None]:
    """Return the circuit, observable and explicit partition labels a spec names."""
    if spec.scenario is not None:
        from qhybrid.scenarios import SCENARIOS

        if spec.scenario not in SCENARIOS:
            raise InputError(
                "scenario", f"unknown scenario {spec.scenario!r}; choose one of {sorted(SCENARIOS)}"
            )
        scenario = SCENARIOS[spec.scenario]
        qubits = spec.qubits or scenario.default_qubits
        circuit = scenario.circuit(qubits, spec.reps or scenario.default_reps, spec.seed)
        observable = parse_pauli_sum(spec.observable) if spec.observable else scenario.observable(qubits)
        if observable.num_qubits != qubits:
            raise InputError(
                "--observable", f"acts on {observable.num_qubits} qubits but the circuit has {qubits}"
            )
        if spec.max_width is not None:
            return circuit, observable, None
        return circuit, observable, spec.partition or scenario.partition(qubits)
    assert spec.circuit_qasm is not None
    circuit = parse_qasm(spec.circuit_qasm, source=spec.circuit_source or "<qasm>")
    if spec.observable is None:
        raise InputError("--observable", "a --circuit needs an --observable")
    observable = parse_pauli_sum(spec.observable)
    if observable.num_qubits != circuit.num_qubits:
        raise InputError(
            "--observable",
            f"acts on {observable.num_qubits} qubits but the circuit has {circuit.num_qubits}",
        )
    if spec.partition is None and spec.max_width is None:
        raise InputError("--partition", "a --circuit needs --partition LABELS or --max-width N")
    return circuit, observable, spec.partition


def build_problem(spec: RunSpec) -> CuttingProblem:
    """Partition the spec's circuit by explicit labels or by automatic cut finding."""
    circuit, observable, partition = load_problem_inputs(spec)
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
        assert spec.max_width is not None
        problem = _find_cuts_problem(circuit, paulis, spec.max_width, spec.seed)
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


def normalised_observable(spec: RunSpec) -> str:
    """Return the observable expression a spec resolves to, for display."""
    _circuit, observable, _partition = load_problem_inputs(spec)
    return format_pauli_sum(observable)


__all__ = [
    "EXACT_REFERENCE_MAX_QUBITS",
    "MODES",
    "CuttingProblem",
    "RunSpec",
    "build_problem",
    "load_observable",
    "load_problem_inputs",
    "normalised_observable",
    "parse_qasm",
    "read_circuit_file",
]
