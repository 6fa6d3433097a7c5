"""Each (mode, variant) run of the reference workload is made once per session and shared."""

from __future__ import annotations

from pathlib import Path

import pytest

from qhybrid.ops.drift import REFERENCE_SPECS, run_fingerprint
from tests.reproducibility.variants import make


@pytest.fixture(scope="session")
def variant_run(tmp_path_factory):
    """``variant_run(mode, variant)`` -> (run directory, fingerprint), made on first use."""
    made: dict[tuple[str, str], tuple[Path, dict]] = {}

    def get(mode: str, variant: str) -> tuple[Path, dict]:
        if (mode, variant) not in made:
            root = tmp_path_factory.mktemp(f"{mode}-{variant}")
            run_dir = make(variant, REFERENCE_SPECS[mode], root)
            made[mode, variant] = (run_dir, run_fingerprint(run_dir))
        return made[mode, variant]

    return get


@pytest.fixture(scope="session")
def fingerprints(variant_run):
    return lambda mode, variant: variant_run(mode, variant)[1]
