"""The alerting rules under promtool: they load, and every alert fires and clears when it should.

Needs ``promtool`` (Debian's ``prometheus`` package; ``.ci/run`` installs it). Without
it the promtool tests skip, saying so; the coverage test below runs regardless.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from qhybrid.blueprint import monitoring
from qhybrid.blueprint.config import load_stack_file
from qhybrid.blueprint.monitoring import alerts, dashboards
from tests.monitoring.slo_cases import all_slo_cases

HERE = Path(__file__).resolve().parent
UNIT_TESTS = HERE / "alerts_test.yaml"
RULES_FILE = "qhybrid-rules.yaml"  # the name alerts_test.yaml's rule_files expects
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not on PATH: apt-get install prometheus (.ci/run does)"
)


SLO_TESTS = "slo_test.yaml"  # written next to the rules from tests/monitoring/slo_cases.py


def unit_tests() -> dict:
    return yaml.safe_load(UNIT_TESTS.read_text())


def all_cases() -> list[dict]:
    """The hand-written cases and the SLO cases built from each SLO's event streams."""
    return unit_tests()["tests"] + all_slo_cases()


def promtool(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def write_rules(directory: Path, groups: list[dict]) -> Path:
    path = directory / RULES_FILE
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    shutil.copy(UNIT_TESTS, directory / UNIT_TESTS.name)
    slo_tests = {"rule_files": [RULES_FILE], "evaluation_interval": "1m", "tests": all_slo_cases()}
    (directory / SLO_TESTS).write_text(yaml.safe_dump(slo_tests, sort_keys=False, width=1000))
    return path


@needs_promtool
def test_promtool_check_rules_accepts_the_rendered_rule(tmp_path):
    # Exactly what the PrometheusRule carries, so promtool checks the deployed rules.
    config = load_stack_file("eks")  # with GPUs: every cost rule is there
    path = write_rules(tmp_path, monitoring.prometheus_rule(config)["spec"]["groups"])
    result = promtool("check", "rules", path, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(g["rules"]) for g in monitoring.rule_groups(config))
    assert f"SUCCESS: {count} rules found" in result.stdout


@needs_promtool
@pytest.mark.parametrize("tests", [UNIT_TESTS.name, SLO_TESTS])
def test_promtool_unit_tests_pass(tmp_path, tests):
    write_rules(tmp_path, alerts.rule_groups())
    result = promtool("test", "rules", tests, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_promtool_slo_cases_fail_when_an_objective_is_loosened(tmp_path):
    # The cases' expectations come from the objectives: a rule with another objective fails them.
    groups = copy.deepcopy(alerts.rule_groups())
    rule = next(
        r for g in groups for r in g["rules"] if r.get("alert") == "QhybridQpuGatewayAvailabilityFastBurn"
    )
    rule["expr"] = rule["expr"].replace("> 0.0144", "> 2")  # burn can never exceed 1/budget here
    write_rules(tmp_path, groups)
    result = promtool("test", "rules", SLO_TESTS, cwd=tmp_path)
    assert result.returncode != 0
    assert "QhybridQpuGatewayAvailabilityFastBurn" in result.stdout + result.stderr


@needs_promtool
def test_promtool_unit_tests_fail_when_an_alert_loses_its_severity(tmp_path):
    groups = copy.deepcopy(alerts.rule_groups())
    rule = next(r for g in groups for r in g["rules"] if r.get("alert") == "QhybridQueueStalled")
    del rule["labels"]["severity"]
    write_rules(tmp_path, groups)
    result = promtool("test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "QhybridQueueStalled" in result.stdout + result.stderr


@needs_promtool
@pytest.mark.parametrize("stack", ["kind", "eks"])
def test_dashboard_queries_are_valid_promql(tmp_path, stack):
    # Grafana's macros are not PromQL; substitute the values Grafana would.
    rules = []
    for board in dashboards.dashboards(load_stack_file(stack)):
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"].replace("$__rate_interval", "2m").replace("$__range", "6h")
                rules.append({"record": f"dashboard:{board['uid'].replace('-', '_')}:query", "expr": expr})
    assert len(rules) > 20
    path = tmp_path / "dashboards.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = promtool("check", "rules", path, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_case_that_fires_and_one_that_stays_quiet():
    fires, quiet = set(), set()
    for case in all_cases():
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = set(alerts.alert_names())
    assert names - fires == set(), "alerts without a firing case"
    assert names - quiet == set(), "alerts without a quiet or clearing case"
    # promtool passes a quiet case for an alert that does not exist: catch the typo here
    assert (fires | quiet) - names == set()


def test_firing_cases_expect_the_rules_labels():
    rules = {r["alert"]: r for g in alerts.rule_groups() for r in g["rules"] if "alert" in r}
    for case in all_cases():
        for check in case.get("alert_rule_test", []):
            for expected in check.get("exp_alerts") or []:
                rule = rules[check["alertname"]]
                for key, value in rule["labels"].items():
                    assert expected["exp_labels"][key] == value, (case["name"], key)
                assert set(expected["exp_annotations"]) == set(rule["annotations"])


def test_unit_tests_load_the_rendered_rules_file():
    assert unit_tests()["rule_files"] == [RULES_FILE]


def test_ci_installs_promtool():
    ci = (HERE.parents[1] / ".ci" / "run").read_text()
    assert re.search(r"command -v promtool", ci) and "apt-get install" in ci and "prometheus" in ci
    assert ci.index("promtool") < ci.index("make test")
