"""A cheap look at OpenQASM text before any parser sees it, so a tiny text cannot cost seconds or gigabytes.

Parsing is where a hostile or mistaken text costs: ``qubit[3000000] q;`` allocates
millions of bits, a 20,000-deep expression recurses, and ten nested ``gate``
definitions that each call the previous one twice expand to a thousand times the
text. The checks here read the text once, in linear time and constant memory, and
refuse it naming the limit it breaks:

- brackets nested deeper than ``max_nesting``;
- a quantum register wider than ``max_qubits`` (a classical one wider than four times that);
- gate definitions and calls whose full expansion exceeds ``max_operations``.

The engine's ``--circuit`` and the gateway's OpenQASM jobs both pass through it.
"""

from __future__ import annotations

import re

MAX_NESTING = 64
# The engine cuts circuits wider than any simulator, but not this wide.
DEFAULT_MAX_QUBITS = 1024
DEFAULT_MAX_OPERATIONS = 1_000_000
_MAX_DIGITS = 12  # a register size with more digits is over any limit; never parse it

_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)
_QUANTUM_REGISTER = re.compile(r"\b(?:qubit\s*\[\s*(\d+)\s*\]|qreg\s+\w+\s*\[\s*(\d+)\s*\])")
_CLASSICAL_REGISTER = re.compile(r"\b(?:bit\s*\[\s*(\d+)\s*\]|creg\s+\w+\s*\[\s*(\d+)\s*\])")
_GATE = re.compile(r"\bgate\s+([A-Za-z_]\w*)[^{;]*\{([^{}]*)\}")
_MODIFIER = re.compile(r"^\s*(?:(?:inv|ctrl|negctrl|pow)\s*(?:\([^)]*\))?\s*@\s*)+")
_CALLEE = re.compile(r"^\s*([A-Za-z_]\w*)")


class QasmTooCostly(ValueError):
    """The text breaks a cost limit; ``limit`` names it (nesting, qubits, bits, operations)."""

    def __init__(self, limit: str, message: str) -> None:
        """Record which limit and why."""
        super().__init__(message)
        self.limit = limit


def _nesting_depth(text: str, max_nesting: int) -> None:
    depth = 0
    for char in text:
        if char in "([{":
            depth += 1
            if depth > max_nesting:
                raise QasmTooCostly(
                    "nesting", f"brackets nested more than {max_nesting} deep (limit {max_nesting})"
                )
        elif char in ")]}":
            depth = max(0, depth - 1)


def _register_sizes(text: str, pattern: re.Pattern[str], limit: int, what: str) -> None:
    for match in pattern.finditer(text):
        digits = match.group(1) or match.group(2)
        size = int(digits) if len(digits) <= _MAX_DIGITS else limit + 1
        if size > limit:
            raise QasmTooCostly(what, f"a register of {digits[:20]} {what} exceeds the limit of {limit}")


def _statement_cost(statement: str, costs: dict[str, int]) -> int:
    body = _MODIFIER.sub("", statement)
    match = _CALLEE.match(body)
    if match is None:
        return 0
    return costs.get(match.group(1), 1)


def _expanded_operations(text: str, max_operations: int) -> int:
    """Return (at most ``max_operations + 1``) how many operations the text expands to."""
    costs: dict[str, int] = {}
    cap = max_operations + 1
    for match in _GATE.finditer(text):
        name, body = match.groups()
        cost = sum(_statement_cost(s, costs) for s in body.split(";"))
        costs[name] = min(max(cost, 1), cap)
    top_level = _GATE.sub(";", text)
    total = 0
    for statement in top_level.split(";"):
        total += _statement_cost(statement, costs)
        if total > max_operations:
            return cap
    return total


def check_qasm_cost(
    text: str,
    *,
    max_qubits: int = DEFAULT_MAX_QUBITS,
    max_operations: int = DEFAULT_MAX_OPERATIONS,
    max_nesting: int = MAX_NESTING,
) -> None:
    """Refuse, naming the limit, an OpenQASM text whose parse would cost more than the limits allow."""
    text = _COMMENTS.sub(" ", text)
    _nesting_depth(text, max_nesting)
    _register_sizes(text, _QUANTUM_REGISTER, max_qubits, "qubits")
    _register_sizes(text, _CLASSICAL_REGISTER, 4 * max_qubits, "bits")
    operations = _expanded_operations(text, max_operations)
    if operations > max_operations:
        raise QasmTooCostly(
            "operations",
            f"its gate definitions and calls expand to more than {max_operations} operations "
            f"(limit {max_operations})",
        )
