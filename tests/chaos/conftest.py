"""Fixtures for the game-day probes and actions: a workspace and small real runs."""

from __future__ import annotations

import pytest

SMALL = ["--qubits", "4", "--reps", "1", "--seed", "3"]


@pytest.fixture
def workspace(tmp_path):
    from qhybrid_chaos.cleanup import cleanup

    path = tmp_path / "ws"
    path.mkdir()
    yield str(path)
    cleanup(str(path))
