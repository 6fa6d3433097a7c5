"""What a user gets from ``pip install qhybrid``: the wheel, in a fresh virtualenv, outside any checkout.

Builds the wheel from this tree, installs it (not editable) into a new virtualenv,
and runs the commands a new user would from an empty folder: nothing may depend on
the source tree being around (Pulumi.yaml, stacks, scenarios, chaos experiments
ship inside the wheel).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.install
BUILD_IGNORES = (
    ".git",
    ".venv",
    "build",
    "dist",
    "runs",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    "rendered",
)


def sh(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, (
        f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """Return (the installed qhybrid command, an empty folder outside the checkout)."""
    root = tmp_path_factory.mktemp("wheel")
    # Build from a copy: setuptools' build/ folder in the checkout would keep files a
    # later change deleted, and the wheel would ship them.
    source = root / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*BUILD_IGNORES))
    sh([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(root / "dist"), str(source)], root)
    [wheel] = sorted((root / "dist").glob("qhybrid-*.whl"))
    sh([sys.executable, "-m", "venv", str(root / "venv")], root)
    sh([str(root / "venv" / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], root)
    user = root / "user"
    user.mkdir()
    return root / "venv" / "bin" / "qhybrid", user


def test_the_wheel_ships_the_project_files_and_no_source_tree_paths(installed):
    command, _ = installed
    [wheel] = sorted((command.parents[2] / "dist").glob("qhybrid-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"qhybrid/project/Pulumi.yaml", "qhybrid/project/stacks/Pulumi.kind.yaml"} <= names
    assert "qhybrid/project/stacks/Pulumi.eks.yaml" in names
    assert any(n.startswith("qhybrid_chaos/experiments/local/") for n in names)
    assert not any(n.startswith(("qhybrid/project/tests/", "qhybrid/project/src/")) for n in names)


def test_a_new_user_outside_the_checkout(installed):
    command, user = installed
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "QHYBRID_PROJECT_DIR")}
    env["COLUMNS"] = "200"
    # Given an installed qhybrid and an empty folder,
    version = sh([str(command), "--version"], user, env)
    assert version.stdout.strip().startswith("qhybrid ")
    # when the reference workload runs, it gives the same estimate as from the checkout,
    run = sh([str(command), "run", "cutting", "--out", "run"], user, env)
    assert "estimate        +0.580412358312" in run.stdout
    assert (user / "run" / "report.json").is_file()
    # the platform and the workflow render from the declarations the wheel ships,
    rendered = sh([str(command), "platform", "render", "--stack", "kind", "--out", "D"], user, env)
    assert (user / "D" / "kind").is_dir() and len(rendered.stdout.splitlines()) > 3
    sh([str(command), "workflow", "render", "--out", "wf.yaml"], user, env)
    workflow = yaml.safe_load((user / "wf.yaml").read_text())
    assert workflow["kind"] == "Workflow"
    # and --help shows the defaults.
    usage = sh([str(command), "run", "cutting", "--help"], user, env).stdout
    for default in (
        "[default: 1]",
        "[default: 64]",
        "[default: (10)]",
        "[default: (exact)]",
        "[default: (0)]",
    ):
        assert default in usage, default
    # A --project-dir that holds no project is one clear line, exit 2.
    wrong = subprocess.run(
        [str(command), "platform", "render", "--project-dir", str(user)],
        cwd=user,
        capture_output=True,
        text=True,
    )
    assert wrong.returncode == 2
    assert wrong.stderr.startswith("qhybrid: error: --project-dir: ")


def test_run_files_follow_the_umask(installed):
    command, user = installed
    env = {**os.environ, "COLUMNS": "200"}
    # Given a shared-group umask, every file a run writes is group-readable.
    result = subprocess.run(
        ["sh", "-c", f"umask 002 && '{command}' run cutting --out shared"],
        cwd=user, capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    modes = {p.name: p.stat().st_mode & 0o777 for p in (user / "shared").rglob("*") if p.is_file()}
    assert modes and set(modes.values()) == {0o664}, modes
