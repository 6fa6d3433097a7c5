"""The QuantumJob CRD (issue 15, first part): generated from RunSpec's sources, structural, CEL-checked."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import celpy
import kubernetes_validate
import pytest

from qhybrid.blueprint.quantumjob_crd import GROUP, IMMUTABLE_RULE, KIND, VERSION, quantumjob_crd
from qhybrid.blueprint.validate.schemas import crd_schemas, schema_problems
from qhybrid.blueprint.versions import KUBERNETES_SCHEMA_VERSION
from qhybrid.cutting.policies import FAILOVER_MODES, POLICIES
from qhybrid.spec import MODES

CRD = quantumjob_crd()
SCHEMA = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def job(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": {"name": "j"}, "spec": spec}


def nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path or "<root>", schema
    for name, child in (schema.get("properties") or {}).items():
        yield from nodes(child, f"{path}.{name}")
    if "items" in schema:
        yield from nodes(schema["items"], f"{path}[]")


def cel_rules(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, str, str]]:
    for where, node in nodes(schema, path):
        for rule in node.get("x-kubernetes-validations", []):
            yield where, rule["rule"], rule["message"]


def evaluate(rule: str, **bindings: Any) -> bool:
    environment = celpy.Environment()
    program = environment.program(environment.compile(rule))
    return bool(program.evaluate({name: celpy.json_to_cel(value) for name, value in bindings.items()}))


def rules_at(where: str) -> list[tuple[str, str]]:
    return [(rule, message) for w, rule, message in cel_rules(SCHEMA) if w == where]


def refused(spec: dict[str, Any]) -> list[str]:
    """The messages of every spec-level or circuit-level rule the spec breaks (as the API server would)."""
    messages = [m for rule, m in rules_at(".spec") if not evaluate(rule, self=spec)]
    if "circuit" in spec:
        messages += [m for rule, m in rules_at(".spec.circuit") if not evaluate(rule, self=spec["circuit"])]
    return messages


def with_defaults(spec: dict[str, Any]) -> dict[str, Any]:
    properties = SCHEMA["properties"]["spec"]["properties"]
    return {**{k: v["default"] for k, v in properties.items() if "default" in v}, **spec}


def test_the_crd_is_a_valid_apiextensions_object_with_a_structural_schema():
    kubernetes_validate.validate(CRD, KUBERNETES_SCHEMA_VERSION, strict=True)
    for where, node in nodes(SCHEMA):
        assert "type" in node, f"{where}: a structural schema gives every node a type"
        assert not ("properties" in node and "additionalProperties" in node), where
    version = CRD["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Phase", "Estimate", "Error", "Age"]


def test_enums_come_from_the_same_source_as_the_cli():
    spec = SCHEMA["properties"]["spec"]["properties"]
    assert spec["mode"]["enum"] == list(MODES)
    assert set(spec["policy"]["enum"]) == set(POLICIES)
    assert spec["failover"]["enum"] == list(FAILOVER_MODES)


def test_every_cel_rule_compiles():
    rules = list(cel_rules(SCHEMA))
    assert len(rules) >= 6
    environment = celpy.Environment()
    for _, rule, _ in rules:
        environment.compile(rule)


GOOD = [
    {"partition": "AAAAABBBBB"},
    {"partition": "AAAAABBBBB", "mode": "sampled", "shots": 4096, "seed": 7, "policy": "width"},
    {"circuit": {"qasm": "OPENQASM 3.0;"}, "observable": "ZZ", "maxWidth": 3, "failover": "never"},
    {"circuit": {"configMapKeyRef": {"name": "c", "key": "k.qasm"}}, "observable": "ZZ", "partition": "AB"},
    {"partition": "AB", "mode": "sampled", "shots": 100, "shotBudget": 100000, "cache": False},
]
BAD = [
    ({}, "give exactly one of partition or maxWidth"),
    ({"partition": "AB", "maxWidth": 3}, "give exactly one of partition or maxWidth"),
    ({"partition": "AB", "mode": "sampled"}, "sampled mode needs shots"),
    ({"partition": "AB", "shots": 10}, "shots are for sampled mode only"),
    ({"circuit": {"qasm": "x"}, "maxWidth": 3}, "a circuit needs an observable"),
    ({"circuit": {"qasm": "x", "configMapKeyRef": {"name": "c", "key": "k"}}, "observable": "Z",
      "maxWidth": 2}, "give the circuit inline (qasm) or as a ConfigMap key (configMapKeyRef), not both"),
    ({"partition": "AB", "mode": "sampled", "shots": 100, "shotBudget": 10},
     "shotBudget must allow at least one subexperiment's shots"),
]  # fmt: skip
SCHEMA_BAD = [
    {"partition": "AB", "mode": "fast"},
    {"partition": "AB", "policy": "tpu"},
    {"partition": "AB", "failover": "sometimes"},
    {"partition": "A-B"},
    {"partition": "AB", "seed": -1},
    {"partition": "AB", "colour": "blue"},  # unknown fields are an error in strict mode
]


@pytest.mark.parametrize("spec", GOOD)
def test_good_jobs_pass_the_schema_and_every_rule(spec):
    assert schema_problems(job(**spec), crd_schemas(CRD)) == []
    assert refused(with_defaults(spec)) == []


@pytest.mark.parametrize(("spec", "message"), BAD)
def test_bad_jobs_are_refused_by_the_rule_that_names_the_problem(spec, message):
    assert message in refused(with_defaults(spec))


@pytest.mark.parametrize("spec", SCHEMA_BAD)
def test_bad_values_are_refused_by_the_schema(spec):
    assert schema_problems(job(**spec), crd_schemas(CRD))


def test_the_spec_is_immutable_once_the_job_has_started():
    rule, _ = IMMUTABLE_RULE
    old = {**job(partition="AB"), "status": {"phase": "Pending", "message": "waiting for its ConfigMap"}}
    changed = copy.deepcopy(old)
    changed["spec"]["seed"] = 5
    assert evaluate(rule, self=changed, oldSelf=old)  # no Workflow yet: a change is fine
    for phase in ("Pending", "Running", "Succeeded", "Failed"):
        old["status"] = {"phase": phase, "workflowName": "cutting-0a1b2c3d"}
        assert not evaluate(rule, self=changed, oldSelf=old), phase
        assert evaluate(rule, self=copy.deepcopy(old), oldSelf=old), phase  # status-only updates pass
    assert evaluate(rule, self=changed, oldSelf=job(partition="AB"))  # no status yet


@pytest.mark.parametrize(
    "flags",
    [
        [],
        ["--mode", "sampled", "--shots", "100", "--policy", "width"],
        ["--qubits", "6", "--max-width", "3"],
    ],
)
def test_job_render_writes_jobs_the_crd_accepts(flags, tmp_path):
    import yaml

    from tests.conftest import run_cli

    out = tmp_path / "job.yaml"
    run_cli("job", "render", "--name", "reference", *flags, "--out", str(out), check=True)
    rendered = yaml.safe_load(out.read_text())
    assert schema_problems(rendered, crd_schemas(CRD)) == []
    assert refused(with_defaults(rendered["spec"])) == []


def test_job_render_refuses_a_bad_name_or_failover_in_one_line(tmp_path):
    from tests.conftest import run_cli

    for args, flag in ((["--name", "Bad_Name"], "--name"), (["--failover", "sometimes"], "--failover")):
        result = run_cli("job", "render", *args)
        assert result.returncode == 2 and result.stderr.startswith(f"qhybrid: error: {flag}")
        assert len(result.stderr.strip().splitlines()) == 1
