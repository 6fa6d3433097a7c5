"""What to run: the RunSpec, its defaults, and the problem flags that describe it.

This is the one place that knows how the problem flags (``--qubits``,
``--circuit``, ``--mode``, ...) map to a :class:`RunSpec` and back:
:func:`spec_from_flags` reads them (files included) into a spec, and
:func:`spec_to_args` writes a spec as the flags that rebuild it exactly (same
spec hash), which is how a workflow's generate pod receives its problem. The
command-line declarations of these flags (``qhybrid.cli.options``) are built
from :data:`PROBLEM_FLAGS` and the defaults here, so a flag and its default are written once.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp

from qhybrid.cutting.observables import format_pauli_sum, load_observable, parse_pauli_sum
from qhybrid.cutting.policies import POLICIES
from qhybrid.cutting.problem import (
    MAX_QPD_TERMS,
    CuttingProblem,
    build_problem,
    parse_qasm,
    read_circuit_text,
)
from qhybrid.errors import InputError
from qhybrid.scenarios import SCENARIOS

Mode = Literal["exact", "sampled"]
MODES: tuple[str, ...] = ("exact", "sampled")
# The reference workload a spec names when no --circuit is given.
SCENARIO_NAME = "cutting"
DEFAULT_MODE: Mode = "exact"
DEFAULT_SEED = 0
DEFAULT_POLICY = "cpu"
# Shots per subexperiment when sampled mode is asked for without --shots.
DEFAULT_SHOTS = 4096


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
    mode: Mode = DEFAULT_MODE
    shots: int | None = None
    seed: int = DEFAULT_SEED
    policy: str = DEFAULT_POLICY
    # A safety limit, not an input: it decides whether a run may start, never its numbers,
    # so the spec hash leaves it out. None means the default, MAX_QPD_TERMS.
    max_qpd_terms: int | None = None

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
        for name in ("qubits", "reps", "max_qpd_terms"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"--{name.replace('_', '-')}", f"must be a positive integer, got {value}")
        if self.scenario is not None and self.qubits is not None and self.qubits < 2:
            raise InputError(
                "--qubits", f"the reference circuit is cut in two, so it needs at least 2, got {self.qubits}"
            )

    def to_json(self) -> dict[str, Any]:
        """Return the spec as plain JSON data."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunSpec:
        """Rebuild a spec written by :meth:`to_json`."""
        return cls(**data)

    def spec_hash(self) -> str:
        """Return a hash of every field but the human-facing circuit_source and the limits."""
        data = self.to_json()
        data.pop("circuit_source")
        data.pop("max_qpd_terms")
        encoded = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(encoded).hexdigest()


@dataclass(frozen=True)
class ProblemFlag:
    """One problem flag: its name (``max_width`` is ``--max-width``), value type, help, shown default."""

    name: str
    type: type
    help: str
    shown_default: str | None = None  # what --help says the default is; None: no default

    @property
    def flag(self) -> str:
        """Return the flag as typed on a command line."""
        return "--" + self.name.replace("_", "-")


# The problem flags, declared once: qhybrid.cli.options builds the options from this table.
PROBLEM_FLAGS: tuple[ProblemFlag, ...] = (
    ProblemFlag(
        "qubits", int, "Qubits of the reference circuit.", str(SCENARIOS[SCENARIO_NAME].default_qubits)
    ),
    ProblemFlag(
        "reps", int, "Repetitions of the reference ansatz.", str(SCENARIOS[SCENARIO_NAME].default_reps)
    ),
    ProblemFlag("circuit", Path, "Your circuit, OpenQASM 2 or 3 (instead of the reference circuit)."),
    ProblemFlag(
        "observable",
        str,
        'Pauli sum such as "0.5*ZZII + XIXI" (Qiskit order), or a file holding one.',
        "the scenario's",
    ),
    ProblemFlag(
        "partition", str, "One partition label per qubit, qubit 0 first, e.g. AAAAABBBBB.", "the scenario's"
    ),
    ProblemFlag(
        "max_width", int, "Find cuts automatically so no subcircuit is wider (instead of --partition)."
    ),
    ProblemFlag("mode", str, f"{' | '.join(MODES)}.", DEFAULT_MODE),
    ProblemFlag("shots", int, "Shots per subexperiment in sampled mode.", str(DEFAULT_SHOTS)),
    ProblemFlag("seed", int, "Run seed; every random choice derives from it.", str(DEFAULT_SEED)),
    ProblemFlag("policy", str, f"Backend policy: {' | '.join(POLICIES)}.", DEFAULT_POLICY),
    ProblemFlag(
        "max_qpd_terms",
        int,
        "Refuse cuts whose full decomposition has more QPD terms (a safety limit).",
        str(MAX_QPD_TERMS),
    ),
)
_FLAGS_BY_NAME = {flag.name: flag for flag in PROBLEM_FLAGS}


@dataclass(frozen=True)
class ProblemFlags:
    """The problem flags as given on a command line, by name; None (or absent) means "not given"."""

    values: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuse names that are not problem flags (a typo would otherwise be ignored)."""
        unknown = sorted(set(self.values) - set(_FLAGS_BY_NAME))
        if unknown:
            raise ValueError(f"not problem flags: {unknown}")

    def get(self, name: str) -> Any:
        """Return the value given for flag ``name``, or None."""
        if name not in _FLAGS_BY_NAME:
            raise KeyError(name)
        return self.values.get(name)

    def given(self) -> bool:
        """Return whether any flag was given."""
        return any(value is not None for value in self.values.values())


def spec_from_flags(flags: ProblemFlags) -> RunSpec:
    """Build a spec from problem flags, reading files and filling defaults."""
    path = flags.get("circuit")
    circuit = None if path is None else (read_circuit_text(Path(path)), str(path))
    return spec_from_problem(flags, circuit)


def spec_from_problem(flags: ProblemFlags, circuit: tuple[str, str] | None = None) -> RunSpec:
    """Build a spec from problem flags whose circuit, if any, is given as (OpenQASM text, its source).

    A QuantumJob's circuit comes inline or from a ConfigMap, not from a file: the operator
    calls this; ``spec_from_flags`` reads ``--circuit`` and calls it too, so both agree.
    """
    given = flags.get
    mode = given("mode") or DEFAULT_MODE
    shots = DEFAULT_SHOTS if mode == "sampled" and given("shots") is None else given("shots")
    common: dict[str, Any] = {
        "partition": given("partition"),
        "max_width": given("max_width"),
        "mode": mode,
        "shots": shots,
        "seed": DEFAULT_SEED if given("seed") is None else given("seed"),
        "policy": given("policy") or DEFAULT_POLICY,
        "max_qpd_terms": given("max_qpd_terms"),
    }
    if circuit is not None:
        if given("qubits") is not None or given("reps") is not None:
            raise InputError("--qubits/--reps", "shape only the reference circuit; drop them with --circuit")
        text, source = circuit
        parsed = parse_qasm(text, source=source)
        observable = _observable_text(given("observable"), parsed.num_qubits)
        return RunSpec(circuit_qasm=text, circuit_source=source, observable=observable, **common)
    width = given("qubits") or SCENARIOS[SCENARIO_NAME].default_qubits
    return RunSpec(
        scenario=SCENARIO_NAME,
        qubits=given("qubits"),
        reps=given("reps"),
        observable=_observable_text(given("observable"), width),
        **common,
    )


def _observable_text(value: str | None, num_qubits: int) -> str | None:
    """Read an observable flag (expression or file) into the exact text a spec stores."""
    if value is None:
        return None
    return format_pauli_sum(load_observable(value, num_qubits))


def spec_to_args(spec: RunSpec, *, circuit_path: str | None = None) -> list[str]:
    """Return the problem flags that rebuild ``spec`` exactly (same spec hash).

    A spec holding its own circuit text refers to it as ``circuit_path``, where the
    caller puts that text (a workflow's generate pod gets it as a raw artifact).
    """
    args: list[str] = []
    for flag in PROBLEM_FLAGS:
        if flag.name == "circuit":
            if spec.circuit_qasm is not None:
                if circuit_path is None:
                    raise ValueError("this spec holds its own circuit: give the path where its text will be")
                args += [flag.flag, circuit_path]
        elif (value := getattr(spec, flag.name)) is not None:
            args += [flag.flag, str(value)]
    return args


def load_problem_inputs(spec: RunSpec) -> tuple[QuantumCircuit, SparsePauliOp, str | None]:
    """Return the circuit, observable and explicit partition labels a spec names."""
    if spec.scenario is not None:
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


@functools.lru_cache(maxsize=2)
def problem_of(spec: RunSpec) -> CuttingProblem:
    """Return the partitioned problem a spec describes (explicit labels, or cuts found under its width).

    Cut finding can take seconds, and ``run`` needs the problem to count, preview and
    generate, so the last two problems are kept (callers only read them).
    """
    circuit, observable, partition = load_problem_inputs(spec)
    return build_problem(
        circuit,
        observable,
        partition=partition,
        max_width=spec.max_width,
        seed=spec.seed,
        max_qpd_terms=spec.max_qpd_terms or MAX_QPD_TERMS,
    )
