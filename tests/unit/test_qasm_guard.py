"""Tiny OpenQASM texts whose parse would cost seconds or gigabytes are refused before any parser runs."""

from __future__ import annotations

import pytest

from qhybrid.cutting.problem import parse_qasm
from qhybrid.cutting.qasm_guard import QasmTooCostly, check_qasm_cost
from qhybrid.errors import InputError

HEADER = 'OPENQASM 3.0;\ninclude "stdgates.inc";\n'


def huge_register() -> str:
    return HEADER + "qubit[3000000] q;\n"


def deep_expression(depth: int = 20_000) -> str:
    return HEADER + "qubit[1] q;\nrx(" + "(" * depth + "0.1" + ")" * depth + ") q[0];\n"


def doubling_gates(levels: int = 20) -> str:
    lines = [HEADER, "gate g0 a { x a; }\n"]
    lines += [f"gate g{i} a {{ g{i - 1} a; g{i - 1} a; }}\n" for i in range(1, levels + 1)]
    lines.append(f"qubit[1] q;\ng{levels} q[0];\n")
    return "".join(lines)


@pytest.mark.parametrize(
    ("text", "limit", "words"),
    [
        (huge_register(), "qubits", "a register of 3000000 qubits exceeds the limit of 1024"),
        (deep_expression(), "nesting", "brackets nested more than 64 deep"),
        (doubling_gates(), "operations", "expand to more than 1000000 operations"),
        (HEADER + "bit[999999999999999999999] c;\n", "bits", "exceeds the limit of 4096"),
    ],
)
def test_each_costly_text_is_refused_naming_its_limit(text, limit, words):
    assert len(text) < 200_000
    with pytest.raises(QasmTooCostly, match=words) as raised:
        check_qasm_cost(text)
    assert raised.value.limit == limit


def test_ordinary_texts_pass_and_expansion_is_counted_not_guessed():
    # Twenty doublings exceed a million; nine stay under a gateway-sized limit of 20,000.
    check_qasm_cost(doubling_gates(9), max_operations=20_000)
    with pytest.raises(QasmTooCostly, match="20000 operations"):
        check_qasm_cost(doubling_gates(15), max_operations=20_000)
    modified = HEADER + "gate g a { x a; x a; }\nqubit[2] q;\nctrl @ inv @ g q[0], q[1];\n"
    check_qasm_cost(modified, max_operations=10)
    with pytest.raises(QasmTooCostly):
        check_qasm_cost(modified + "ctrl @ g q[0], q[1];\n" * 4, max_operations=10)
    # Comments are not code.
    check_qasm_cost(HEADER + "// qubit[3000000] q;\n/* (((((((((( */ qubit[2] q;\n")


def test_the_engine_refuses_them_as_one_input_error_before_parsing():
    for text in (huge_register(), deep_expression(), doubling_gates()):
        with pytest.raises(InputError, match=r"^--circuit: mine.qasm: .*limit"):
            parse_qasm(text, source="mine.qasm")
