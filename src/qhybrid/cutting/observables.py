"""Parsing Pauli-sum observables such as ``"0.5*ZZII + XIXI - 2 * IIYY"``.

Labels follow Qiskit's order: the leftmost character acts on the highest qubit.
"""

from __future__ import annotations

import re
from pathlib import Path

from qiskit.quantum_info import SparsePauliOp

from qhybrid.errors import InputError

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_TERM = re.compile(rf"\s*(?P<sign>[+-])?\s*(?:(?P<coeff>{_NUMBER})\s*\*?\s*)?(?P<pauli>[IXYZ]+)\s*")


def parse_pauli_sum(text: str, *, field: str = "--observable") -> SparsePauliOp:
    """Parse a real-coefficient Pauli sum; terms are separated by + or - (or newlines)."""
    expression = " ".join(line.split("#", 1)[0] for line in text.splitlines()).strip()
    if not expression:
        raise InputError(field, "empty observable")
    terms: list[tuple[str, float]] = []
    position = 0
    while position < len(expression):
        match = _TERM.match(expression, position)
        if match is None or match.end() == position:
            raise InputError(field, f"cannot parse {expression[position : position + 20]!r}")
        if terms and match.group("sign") is None:
            raise InputError(field, f"missing + or - before {match.group('pauli')!r}")
        coeff = float(match.group("coeff")) if match.group("coeff") else 1.0
        terms.append((match.group("pauli"), -coeff if match.group("sign") == "-" else coeff))
        position = match.end()
    widths = {len(label) for label, _ in terms}
    if len(widths) != 1:
        raise InputError(field, f"terms have different widths {sorted(widths)}")
    return SparsePauliOp.from_list(terms)


def load_observable(value: str, num_qubits: int, *, field: str = "--observable") -> SparsePauliOp:
    """Read an observable from an expression or from a file holding one, and check its width."""
    path = Path(value)
    if len(value) < 4096 and path.is_file():
        try:
            value = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(field, f"cannot read {path}: {error}") from error
    elif _looks_like_a_path(value):
        raise InputError(field, f"{value}: no such file (and not a Pauli sum)")
    observable = parse_pauli_sum(value, field=field)
    if observable.num_qubits != num_qubits:
        raise InputError(
            field,
            f"acts on {observable.num_qubits} qubits but the circuit has {num_qubits}",
        )
    return observable


def format_pauli_sum(observable: SparsePauliOp) -> str:
    """Render a real Pauli sum in the syntax :func:`parse_pauli_sum` reads (exactly)."""
    parts = []
    for label, coeff in observable.to_list():
        parts.append(f"{float(coeff.real)!r}*{label}")
    return " + ".join(parts).replace("+ -", "- ")


def _looks_like_a_path(value: str) -> bool:
    """Return whether ``value`` was meant as a file: one word with a slash or a file extension."""
    word = value.strip()
    if not word or any(ch.isspace() for ch in word) or any(ch in word for ch in "*+"):
        return False
    return "/" in word or bool(re.fullmatch(r"[^.]+\.[A-Za-z][A-Za-z0-9]*", word))
