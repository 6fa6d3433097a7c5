"""Which gates canonical forms treat specially: dropped, self-inverse, rotations, symmetric, diagonal.

Shared by the canonical forms of whole subexperiments (:mod:`qhybrid.cache.canonical`) and
of partition bodies (:mod:`qhybrid.cache.leaves`), so both read a circuit by one set of rules.
"""

from __future__ import annotations

DROPPED = frozenset({"barrier", "delay", "id"})
SELF_INVERSE = frozenset({"h", "x", "y", "z", "cx", "cy", "cz", "ch", "swap", "ccx", "ccz", "cswap"})
# One-angle rotations: a zero angle is the identity, and two in a row on the same qubits add.
ROTATIONS = frozenset(
    {"rx", "ry", "rz", "p", "rxx", "ryy", "rzz", "rzx", "crx", "cry", "crz", "cp", "cu1", "u1"}
)
# Gates whose qubits can be swapped without changing the unitary: their slots are one slot.
SYMMETRIC = frozenset({"cz", "swap", "iswap", "rxx", "ryy", "rzz", "cp", "cu1", "ccz"})
# Operations diagonal in the computational basis (a Z-basis measurement's projectors are too):
# any two of them commute, so their order on a wire is not part of a circuit's meaning.
DIAGONAL = frozenset(
    {
        "z",
        "s",
        "sdg",
        "t",
        "tdg",
        "rz",
        "p",
        "u1",
        "cz",
        "ccz",
        "cp",
        "cu1",
        "crz",
        "rzz",
        "cs",
        "csdg",
        "measure",
        # A QPD gate's placeholder in a partition's body (qhybrid.cache.leaves) when every
        # local operation its maps may put there is diagonal, as a CZ or RZZ cut's are.
        "qpd_cut_diagonal",
    }
)


def slot_order(name: str, labels: list[int]) -> list[int]:
    """A gate's qubit labels in slot order: sorted for a gate whose qubits can be swapped."""
    return sorted(labels) if name in SYMMETRIC else labels
