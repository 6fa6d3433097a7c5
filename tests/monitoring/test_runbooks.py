"""Every alert has a runbook in docs/runbooks/, every runbook has an alert, and runbook_url links it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from qhybrid.blueprint.monitoring import alerts

RUNBOOKS = Path(__file__).resolve().parents[2] / "docs" / "runbooks"
SECTIONS = ("## What it means", "## How to confirm", "## How to mitigate", "## How to escalate")
_LINK = re.compile(r"\]\(([^)#]+\.md)\)")


def runbook_problems(directory: Path, names: list[str]) -> list[str]:
    """Return what is wrong between the alerts ``names`` and the runbooks in ``directory``."""
    problems = []
    books = {path.stem: path for path in directory.glob("*.md")}
    problems += [f"{name}: no runbook {name}.md" for name in names if name not in books]
    problems += [f"{stem}.md: no alert of that name" for stem in books if stem not in names]
    for stem, path in books.items():
        text = path.read_text()
        if not text.startswith(f"# {stem}\n"):
            problems.append(f"{stem}.md: does not start with '# {stem}'")
        problems += [f"{stem}.md: no '{section}' section" for section in SECTIONS if section not in text]
        for target in _LINK.findall(text):
            if not (directory / target).is_file():
                problems.append(f"{stem}.md: links {target}, which does not exist")
    return problems


def test_every_alert_has_a_runbook_and_every_runbook_an_alert():
    assert runbook_problems(RUNBOOKS, alerts.alert_names()) == []


def test_runbook_url_points_at_the_runbook_of_each_alert():
    for group in alerts.rule_groups():
        for rule in group["rules"]:
            if "alert" in rule:
                url = rule["annotations"]["runbook_url"]
                assert url.startswith(alerts.RUNBOOK_BASE_URL + "/")
                assert url.endswith(f"/{rule['alert']}.md")
                assert (RUNBOOKS / url.rpartition("/")[2]).is_file()


def test_removing_a_runbook_or_adding_a_stray_one_is_caught(tmp_path):
    copy = tmp_path / "runbooks"
    shutil.copytree(RUNBOOKS, copy)
    (copy / "QhybridQpuGatewayRefusingWrites.md").unlink()
    (copy / "QhybridNoSuchAlert.md").write_text("# QhybridNoSuchAlert\n")
    problems = runbook_problems(copy, alerts.alert_names())
    assert "QhybridQpuGatewayRefusingWrites: no runbook QhybridQpuGatewayRefusingWrites.md" in problems
    assert "QhybridNoSuchAlert.md: no alert of that name" in problems
    # and a runbook that linked the removed one now points at nothing
    assert (
        "QhybridQpuGatewayVolumeFillingUp.md: links QhybridQpuGatewayRefusingWrites.md, which does not exist"
        in problems
    )
