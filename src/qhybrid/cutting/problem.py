"""The cutting problem: a circuit and observable, and the partitioned circuit they become.

All validation happens here, in memory, before a step writes anything, so bad
input costs nothing on disk and names the flag or file at fault. What to run is
described by :class:`qhybrid.spec.RunSpec`; this module knows nothing of it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
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

from qhybrid.cutting.prepare import prepare_for_cutting
from qhybrid.cutting.qasm_guard import QasmTooCostly, check_qasm_cost
from qhybrid.errors import InputError

# Widest circuit whose exact statevector (2**26 amplitudes, 1 GiB) we compute for comparison.
EXACT_REFERENCE_MAX_QUBITS = 26
# Beyond this many QPD terms (the product over cuts of each cut's term count) the full,
# unsampled decomposition is refused unless --max-qpd-terms raises the limit.
MAX_QPD_TERMS = 200_000


@dataclass(frozen=True)
class CuttingProblem:
    """A circuit and observable, partitioned into subcircuits joined by QPD gates."""

    circuit: QuantumCircuit
    observable: SparsePauliOp
    subcircuits: dict[str, QuantumCircuit]
    subobservables: dict[str, Any]  # label -> PauliList
    bases: list[Any]  # one QPDBasis per cut
    # What was done to the circuit before cutting (barriers removed, gates decomposed).
    preprocessing: dict[str, Any] = field(default_factory=dict)

    @property
    def num_cuts(self) -> int:
        """Return the number of cut gates and wires."""
        return len(self.bases)

    def cut_descriptions(self) -> list[dict[str, Any]]:
        """Return each cut: its kind (gate or wire), the gate cut, the partitions joined, its overhead."""
        found: dict[int, dict[str, Any]] = {}
        for label, subcircuit in self.subcircuits.items():
            for instruction in subcircuit.data:
                match = re.fullmatch(r"cut_(.+)_(\d+)", instruction.operation.label or "")
                if match is None or "qpd" not in instruction.operation.name:
                    continue
                cut = found.setdefault(
                    int(match.group(2)),
                    {
                        "gate": match.group(1),
                        "partitions": [],
                        "overhead": instruction.operation.basis.overhead,
                    },
                )
                if label not in cut["partitions"]:
                    cut["partitions"].append(label)
        return [
            {"index": index, "kind": "wire" if cut["gate"] == "move" else "gate", **cut}
            for index, cut in sorted(found.items())
        ]

    @property
    def sampling_overhead(self) -> float:
        """Return the product of each cut's gamma squared (the shot-count multiplier)."""
        return float(np.prod([basis.overhead for basis in self.bases])) if self.bases else 1.0


def read_circuit_text(path: Path) -> str:
    """Read an OpenQASM file's text (a user error if it cannot be read)."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(
            "--circuit", f"cannot read {path}: {getattr(error, 'strerror', None) or error}"
        ) from error


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
        construct = _CONTROL_FLOW.search(text)
        if construct is not None:
            raise InputError("--circuit", _control_flow_message(source, construct.group(1))) from None
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError("--circuit", f"cannot parse {source} as OpenQASM {version}: {first_line}") from error
    circuit.remove_final_measurements(inplace=True)
    for instruction in circuit.data:
        name = instruction.operation.name
        if getattr(instruction.operation, "blocks", None):
            raise InputError(
                "--circuit", _control_flow_message(source, name.removesuffix("_loop").split("_")[0])
            )
        if name in ("measure", "reset"):
            raise InputError("--circuit", f"{source} has a mid-circuit {name!r}; give a unitary circuit")
    if circuit.parameters:
        raise InputError(
            "--circuit", f"{source} has unbound parameters {sorted(p.name for p in circuit.parameters)}"
        )
    if circuit.num_qubits < 1:
        raise InputError("--circuit", f"{source} has no qubits")
    return circuit


_CONTROL_FLOW = re.compile(r"^\s*(for|while|if|switch)\b", re.MULTILINE)


def _control_flow_message(source: str, construct: str) -> str:
    return (
        f"{source} uses an OpenQASM {construct!r} statement; cutting takes a plain sequence of gates, "
        "so unroll it (write out each iteration or branch)"
    )


def build_problem(
    circuit: QuantumCircuit,
    observable: SparsePauliOp,
    *,
    partition: str | None,
    max_width: int | None,
    seed: int,
    max_qpd_terms: int = MAX_QPD_TERMS,
) -> CuttingProblem:
    """Partition ``circuit`` by explicit labels, or by automatic cut finding under ``max_width``.

    ``seed`` drives the cut finder's search; explicit labels use no randomness. Barriers
    are dropped and gates the cutter cannot take (3+ qubits, custom) are decomposed first:
    see :func:`prepare_for_cutting`. Partitions are labelled A, B, C, ... either way.
    """
    if any(abs(c.imag) > 0 for c in observable.coeffs):
        raise InputError("--observable", "coefficients must be real")
    circuit, preprocessing = prepare_for_cutting(circuit)
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
        problem = _find_cuts_problem(circuit, paulis, max_width, seed, max_qpd_terms)
    subcircuits = {_letter(label): sub for label, sub in problem.subcircuits.items()}
    subobservables = {_letter(label): obs for label, obs in problem.subobservables.items()}
    terms = math.prod(len(basis.maps) for basis in problem.bases)
    if terms > max_qpd_terms:
        raise InputError(
            "--max-qpd-terms",
            f"{_cuts(len(problem.bases))} give {terms} QPD terms, over the limit of {max_qpd_terms}; "
            "cut fewer gates or raise --max-qpd-terms",
        )
    return CuttingProblem(
        circuit, observable, subcircuits, subobservables, list(problem.bases), preprocessing
    )


def _letter(label: Any) -> str:
    """Return a partition's label: the cut finder numbers partitions 0, 1, ...; people write A, B, ..."""
    if isinstance(label, int) and 0 <= label < 26:
        return chr(ord("A") + label)
    return str(label)


def _cuts(count: int) -> str:
    return f"{count} cut" if count == 1 else f"{count} cuts"


def _find_cuts_problem(
    circuit: QuantumCircuit, paulis: Any, max_width: int, seed: int, max_qpd_terms: int
) -> Any:
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
    if terms > max_qpd_terms:
        raise InputError(
            "--max-qpd-terms",
            f"no cut meets a width of {max_width} within {max_qpd_terms} QPD terms "
            f"(the best found needs {_cuts(len(problem.bases))}, {terms:.3g} terms); "
            "raise --max-qpd-terms or --max-width",
        )
    return problem
