"""Shared fixtures: the reference problem, run directories, and the CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``python -m qhybrid ARGS`` in a fresh process."""
    env = {**os.environ, "PYTHONHASHSEED": "random", "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "qhybrid", *args],
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"qhybrid {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def cli():
    return run_cli
