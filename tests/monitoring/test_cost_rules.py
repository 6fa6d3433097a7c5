"""A run's cost in its report and the cost recording rules' figure for the same workflow agree.

The report prices the usage its steps measured with the stack's price table
(``provenance.cost``). The recording rules price what the cluster measures with the
same table. promtool is given the series a cluster would hold for that workflow (its
pods' ``main`` containers' CPU seconds adding up to the report's, Argo's ``wait``
containers, another workflow's pod, the gateway's shot counter) and must compute the
report's figure.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from qhybrid.blueprint import monitoring
from qhybrid.blueprint.config import StackConfig, load_stack_file, stack_from_values, stack_values
from qhybrid.blueprint.monitoring import cost
from qhybrid.blueprint.monitoring import metric_names as m
from qhybrid.cache.session import OFF
from qhybrid.cost import Usage, estimate
from qhybrid.pipeline.runner import run_local
from qhybrid.spec import RunSpec

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not on PATH: apt-get install prometheus (.ci/run does)"
)
MINUTES = 30
WORKFLOW = "cutting-7f3a2"


def ramp(total: float, minutes: int = 10) -> str:
    """A counter from 0 to exactly ``total`` over ``minutes``, then flat (the pod finished)."""
    values = [total * i / minutes for i in range(minutes)] + [total] * (MINUTES + 1 - minutes)
    return " ".join(repr(float(v)) for v in values)


def workflow_series(config: StackConfig, workflow: str, cpu_by_pod: dict[str, float]) -> list[dict[str, str]]:
    """The series of one workflow's pods: labels, main containers' CPU, and Argo's wait containers."""
    ns = config.workflow_namespace
    series = []
    for pod, seconds in cpu_by_pod.items():
        where = f'namespace="{ns}", pod="{pod}"'
        series += [
            {
                "series": f'{cost.KSM_POD_LABELS}{{{where}, {cost.WORKFLOW_LABEL}="{workflow}"}}',
                "values": f"1x{MINUTES}",
            },
            {"series": f'{cost.CADVISOR_CPU}{{{where}, container="main"}}', "values": ramp(seconds)},
            # Argo's sidecar: not the run's work, not priced
            {"series": f'{cost.CADVISOR_CPU}{{{where}, container="wait"}}', "values": f"0+0.5x{MINUTES}"},
        ]
    return series


def promtool_test(
    tmp_path: Path, config: StackConfig, case: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    (tmp_path / "rules.yaml").write_text(
        yaml.safe_dump({"groups": [cost.cost_rules(config)]}, sort_keys=False)
    )
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": [case]}
    (tmp_path / "cost_test.yaml").write_text(yaml.safe_dump(tests, sort_keys=False, width=1000))
    return subprocess.run(
        [PROMTOOL, "test", "rules", "cost_test.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def agrees(expr: str, expected: float) -> dict[str, Any]:
    """A promtool check that ``expr`` equals ``expected`` to 1e-12 of it (sums of pods add in any order)."""
    return {
        # sum(): one series, without labels; an absent series fails (no sample where one is expected)
        "expr": f"abs(sum({expr}) - {expected!r}) <= bool {abs(expected) * 1e-12!r}",
        "eval_time": f"{MINUTES}m",
        "exp_samples": [{"labels": "{}", "value": 1}],
    }


@pytest.fixture(scope="module")
def default_report(tmp_path_factory) -> dict[str, Any]:
    """The default workload run on the kind stack's price table."""
    config = load_stack_file("kind")
    out = tmp_path_factory.mktemp("cost") / "run"
    return run_local(
        RunSpec(scenario="cutting"), out, console=Console(quiet=True), cache=OFF, prices=config.prices
    )


def test_the_report_prices_its_usage_with_the_stacks_table(default_report):
    section = default_report["provenance"]["cost"]
    kind = load_stack_file("kind").prices
    assert section["prices"] == kind.to_json()
    usage = Usage.from_json(section["usage"])
    assert usage.cpu_seconds > 0 and usage.gpu_seconds == 0 and usage.qpu_shots == {}  # all on cpu
    assert section["estimate"] == estimate(usage, kind)
    assert section["estimate"]["total"] == section["estimate"]["cpu"] > 0


@needs_promtool
def test_recording_rules_compute_the_reports_cost_for_the_same_workflow(default_report, tmp_path):
    config = load_stack_file("kind")
    report_cost = default_report["provenance"]["cost"]
    seconds = report_cost["usage"]["cpu_seconds"]
    # The workflow's generate, execute and report pods share the CPU seconds the report counted.
    pods = {
        f"{WORKFLOW}-generate-1": seconds * 0.25,
        f"{WORKFLOW}-execute-2": seconds * 0.6,
        f"{WORKFLOW}-report-3": seconds - seconds * 0.25 - seconds * 0.6,
    }
    case = {
        "name": "the default workload's workflow",
        "interval": "1m",
        "input_series": [
            *workflow_series(config, WORKFLOW, pods),
            *workflow_series(config, "another-workflow", {"another-workflow-generate-1": 100.0}),
        ],
        "promql_expr_test": [
            agrees(f'{cost.WORKFLOW_COST}{{workflow="{WORKFLOW}"}}', report_cost["estimate"]["total"]),
            agrees(f'{cost.WORKFLOW_CPU_COST}{{workflow="{WORKFLOW}"}}', report_cost["estimate"]["cpu"]),
            # the other workflow is priced apart: 100 s at the core-hour price
            agrees(
                f'{cost.WORKFLOW_COST}{{workflow="another-workflow"}}',
                100.0 / 3600 * config.prices.cpu_core_hour,
            ),
        ],
    }
    result = promtool_test(tmp_path, config, case)
    assert result.returncode == 0, result.stdout + result.stderr


def priced_stack() -> StackConfig:
    """The eks stack (GPUs) with a price on QPU shots."""
    values = stack_values(load_stack_file("eks"))
    values["priceQpuShot"] = ["aer=0.00025", "fake_manila=0.0001"]
    return stack_from_values(values)


@needs_promtool
def test_gpu_and_qpu_rules_compute_what_the_report_would(tmp_path):
    config = priced_stack()
    ns = config.workflow_namespace
    usage = Usage(cpu_seconds=42.5, gpu_seconds=600.0, qpu_shots={"aer": 4096, "fake_manila": 1000})
    expected = estimate(usage, config.prices)
    gpu_pod = f"{WORKFLOW}-execute-gpu-4"
    where = f'namespace="{ns}", pod="{gpu_pod}"'
    case = {
        "name": "a workflow with a GPU pod, and a team's QPU shots",
        "interval": "1m",
        "input_series": [
            *workflow_series(config, WORKFLOW, {f"{WORKFLOW}-execute-2": usage.cpu_seconds}),
            # one GPU held from t=60 s for 600 s
            {
                "series": f'{cost.KSM_POD_LABELS}{{{where}, {cost.WORKFLOW_LABEL}="{WORKFLOW}"}}',
                "values": f"1x{MINUTES}",
            },
            {
                "series": f'{m.KSM_POD_REQUESTS}{{{where}, resource="nvidia_com_gpu"}}',
                "values": f"1x{MINUTES}",
            },
            {"series": f"{cost.KSM_POD_START}{{{where}}}", "values": f"60x{MINUTES}"},
            {"series": f"{cost.KSM_POD_COMPLETION}{{{where}}}", "values": f"660x{MINUTES}"},
            *(
                {
                    "series": f'{m.GATEWAY_SHOTS_TOTAL}{{client="team-a", backend="{backend}"}}',
                    "values": ramp(float(shots)),
                }
                for backend, shots in usage.qpu_shots.items()
            ),
        ],
        "promql_expr_test": [
            agrees(f'{cost.WORKFLOW_GPU_COST}{{workflow="{WORKFLOW}"}}', expected["gpu"]),
            agrees(f'{cost.WORKFLOW_COST}{{workflow="{WORKFLOW}"}}', expected["cpu"] + expected["gpu"]),
            agrees(f'{cost.CLIENT_QPU_COST}{{client="team-a"}}', expected["qpu"]),
        ],
    }
    result = promtool_test(tmp_path, config, case)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_a_wrong_price_in_the_rules_is_caught(default_report, tmp_path):
    # The rules priced with another table than the report's: the agreement check fails.
    config = load_stack_file("kind")
    values = stack_values(config)
    values["priceCpuCoreHour"] = "0.05"
    other = stack_from_values(values)
    report_cost = default_report["provenance"]["cost"]
    case = {
        "name": "rules with another CPU price",
        "interval": "1m",
        "input_series": workflow_series(
            other, WORKFLOW, {f"{WORKFLOW}-execute-2": report_cost["usage"]["cpu_seconds"]}
        ),
        "promql_expr_test": [
            agrees(f'{cost.WORKFLOW_COST}{{workflow="{WORKFLOW}"}}', report_cost["estimate"]["total"])
        ],
    }
    result = promtool_test(tmp_path, other, case)
    assert result.returncode != 0
    assert "got: {} 0E+00" in result.stdout + result.stderr  # computed, and found different


def test_the_deployed_rule_holds_the_cost_group(tmp_path):
    config = load_stack_file("kind")
    groups = monitoring.prometheus_rule(config)["spec"]["groups"]
    assert groups[-1] == cost.cost_rules(config)
    records = {r["record"] for r in groups[-1]["rules"]}
    assert cost.WORKFLOW_GPU_COST not in records  # kind has no GPUs
    assert cost.WORKFLOW_GPU_COST in {r["record"] for r in cost.cost_rules(load_stack_file("eks"))["rules"]}
