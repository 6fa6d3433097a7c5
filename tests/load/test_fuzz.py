"""schemathesis against the gateway's served OpenAPI (marker ``fuzz``): no 5xx, no answer slower than 1 s.

The gateway runs as a process on 127.0.0.1 (``qhybrid.gateway.loopback``); the example
count and the seed are fixed, so the run is bounded and repeatable. schemathesis's
``coverage`` phase is left out: on Python 3.11 it stops with an internal error
(hypothesis fails to describe one of its own lambdas) before sending anything.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qhybrid.gateway.loopback import start_gateway

pytestmark = pytest.mark.fuzz
MAX_EXAMPLES = 30
SEED = 20261129


def test_the_served_contract_holds_under_fuzzing(tmp_path):
    st = Path(sys.executable).with_name("st")
    if not st.exists() and shutil.which("st") is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[dev]')")
    gateway = start_gateway(tmp_path, max_queued=1000, seconds_per_job=0.0, concurrency=1)
    token = gateway.token_file.read_text().strip()
    try:
        result = subprocess.run(
            [
                str(st if st.exists() else shutil.which("st")), "run", f"{gateway.url}/openapi.json",
                "--header", f"Authorization: Bearer {token}",
                "--checks", "not_a_server_error", "--max-response-time", "1",
                "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", "1",
                "--phases", "examples,fuzzing,stateful",
            ],
            capture_output=True, text=True, timeout=600,
            cwd=tmp_path,  # schemathesis keeps a cache of failures in ./.schemathesis
        )  # fmt: skip
    finally:
        gateway.stop()
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    summary = [line for line in result.stdout.splitlines() if " generated, " in line]
    assert summary and "passed" in summary[-1] and "failed" not in summary[-1], summary
