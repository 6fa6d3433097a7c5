"""Shared fixtures: the reference problem, run directories, and the CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _private_result_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """CLI runs in tests use a result cache of their own, never the user's ~/.cache/qhybrid."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))


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


def regenerating() -> bool:
    """Return whether REGENERATE=1 asks to rewrite golden files; refuse it under CI.

    A golden file rewritten in CI would then be compared with itself, and the
    drift test could never fail there (as Hera's example tests refuse it too).
    """
    if os.environ.get("REGENERATE") != "1":
        return False
    if os.environ.get("CI"):
        pytest.fail("REGENERATE=1 is refused under CI: regenerate golden files locally and review the diff")
    return True


def invoke(*args: str) -> Any:
    """Run ``qhybrid ARGS`` in this process (typer's runner); the result has exit_code, stdout, stderr."""
    from typer.testing import CliRunner

    from qhybrid.cli import app

    return CliRunner().invoke(app, list(args), prog_name="qhybrid", env={"COLUMNS": "200"})


@pytest.fixture
def cli():
    return run_cli


def spec_for(policy: str) -> Any:
    """Return the reference spec under ``policy``: the width policy's QPU branch needs sampled mode."""
    from qhybrid.spec import RunSpec

    if policy == "width":
        return RunSpec(scenario="cutting", policy=policy, mode="sampled", shots=1024)
    return RunSpec(scenario="cutting", policy=policy)


def every_workflow(stack: str, *, both_artifact_stores: bool = True) -> list[dict[str, Any]]:
    """Return the Workflow of every policy the stack can run, and under the other artifact store.

    A stack without GPUs refuses the all-GPU policy (tests/scenarios/test_workflow.py), so it is left out.
    """
    from dataclasses import replace

    from qhybrid.blueprint.config import load_stack_file
    from qhybrid.cutting.policies import POLICIES
    from qhybrid.spec import RunSpec
    from qhybrid.workflow.build import workflow_object

    config = load_stack_file(stack)
    out = [
        workflow_object(config, spec_for(policy))
        for policy in sorted(POLICIES)
        if not (policy == "gpu" and config.gpu_resource is None)
    ]
    if both_artifact_stores:
        if config.artifact_store == "pvc":
            other = replace(
                config, artifact_store="s3", artifact_s3_endpoint="minio:9000", artifact_s3_bucket="b"
            )
        else:
            other = replace(config, artifact_store="pvc")
        out.append(workflow_object(other, RunSpec(scenario="cutting")))
    return out
