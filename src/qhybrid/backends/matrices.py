"""The matrices the branching engine applies, each computed once per key, and their structure.

A gate's matrix is keyed by its name, width and parameters; a monomial matrix (one
nonzero per row and column: X, CX, S, CZ, ...) is applied by moving and scaling blocks
instead of summing products.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np


class NoMatrix(ValueError):
    """The instruction has no matrix (an opaque or parameterised instruction)."""


def matrix_key(inst: Any, num_qubits: int) -> tuple[Any, ...]:
    """Return the key of an instruction's matrix (kept in MATRICES), computing the matrix once per key."""
    key: tuple[Any, ...] = (inst.name, num_qubits, *inst.params)
    try:
        known = key in MATRICES
    except TypeError:  # an unhashable parameter (a unitary gate's matrix): key it by its text
        key = (inst.name, num_qubits, repr(inst.params))
        known = key in MATRICES
    if not known:
        matrix = inst.matrix if inst.is_standard_gate() else None
        if matrix is None:
            try:
                matrix = inst.operation.to_matrix()
            except Exception as error:  # no matrix: an opaque or parameterised instruction
                raise NoMatrix(f"{inst.name!r} has no matrix: {error}") from None
        MATRICES[key] = np.asarray(matrix, dtype=np.complex128)
    return key


# Matrix key -> matrix. The reset's X is there from the start, under the key an x gate gets.
X_KEY: tuple[Any, ...] = ("x", 1)
MATRICES: dict[tuple[Any, ...], np.ndarray] = {X_KEY: np.array([[0, 1], [1, 0]], dtype=np.complex128)}


@cache
def monomial(key: tuple[Any, ...]) -> tuple[np.ndarray, np.ndarray] | None:
    """Return (source column, factor) per row when the matrix has one nonzero per row, else None."""
    matrix = MATRICES[key]
    nonzero = matrix != 0
    if not (nonzero.sum(axis=1) == 1).all() or not (nonzero.sum(axis=0) == 1).all():
        return None
    columns = np.argmax(nonzero, axis=1)
    return columns, matrix[np.arange(len(columns)), columns]


@cache
def moved_rows(key: tuple[Any, ...]) -> tuple[int, ...]:
    """Rows of a monomial matrix that are not the identity's (their block moves or is scaled)."""
    found = monomial(key)
    assert found is not None
    columns, factors = found
    return tuple(row for row in range(len(columns)) if columns[row] != row or factors[row] != 1)
