"""The cache where it pays: sweeps, the variational loop, and the workflow's pods (issue 14)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from qhybrid.blueprint import cache as cache_part
from qhybrid.blueprint.config import load_stack_file
from qhybrid.blueprint.names import CACHE_PORT, WORKFLOW_STEP_LABEL
from qhybrid.cache import session as cache_session
from qhybrid.cache.session import CacheSettings
from qhybrid.errors import InputError
from qhybrid.pipeline.rundir import RunDir
from qhybrid.pipeline.runner import run_local
from qhybrid.pipeline.sweep import Sweep, run_sweep
from qhybrid.pipeline.variational import QaoaSpec, run_qaoa
from qhybrid.spec import RunSpec
from qhybrid.workflow.batching import split_batches
from qhybrid.workflow.build import workflow_object
from tests.conftest import run_cli


def test_a_sweep_of_one_partition_serves_the_other_from_the_cache(tmp_path):
    cache = CacheSettings(location=str(tmp_path / "lmdb"))
    table = run_sweep(
        RunSpec(scenario="cutting", qubits=6), Sweep.parse("B=0:0.5:3"), tmp_path / "s", cache=cache
    )
    rows = table["rows"]
    assert [r["served"] for r in rows][0] == 0 and all(r["served"] > 0 for r in rows[1:])
    assert all(abs(r["error"]) < 1e-12 for r in rows)
    assert rows[0]["estimate"] != rows[1]["estimate"]  # B's angles did change
    saved = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert (
        saved["served_from_cache"] == sum(r["served"] for r in rows)
        and (tmp_path / "s" / "sweep.png").is_file()
    )
    # The first point is the unshifted problem: bitwise the plain run's estimate.
    plain = run_local(RunSpec(scenario="cutting", qubits=6), tmp_path / "plain", progress=False)
    assert rows[0]["estimate"] == plain["estimate"]


@pytest.mark.parametrize("text", ["B=0:1", "B0:1:3", "BB=0:1:3", "B=a:1:3", "B=0:1:1", "B=0:inf:3"])
def test_a_malformed_sweep_is_one_line_naming_the_flag(text):
    with pytest.raises(InputError, match="--sweep"):
        Sweep.parse(text)


def test_a_sweep_needs_a_label_the_partition_has(tmp_path):
    with pytest.raises(InputError, match="no qubit labelled 'C'"):
        run_sweep(RunSpec(scenario="cutting", qubits=4), Sweep.parse("C=0:1:2"), tmp_path / "s")


def test_the_qaoa_loop_optimises_reuses_symmetric_halves_and_resumes_bitwise(tmp_path):
    spec = QaoaSpec(nodes=6, max_evaluations=6, seed=1)
    cache = CacheSettings(location=str(tmp_path / "lmdb"))
    first = run_qaoa(spec, tmp_path / "q", cache=cache)
    assert first["evaluations"] == 6 and len(first["trace"]) == 6
    assert first["optimum"]["max_cut"] == 6  # an even ring: every edge cut
    assert first["best"]["energy"] == max(e["energy"] for e in first["trace"])
    assert all(abs(e["energy"] - e["exact"]) < 1e-12 for e in first["trace"])
    # Uniform angles make the two halves one circuit relabelled: a cold evaluation serves
    # a share of its own subexperiments.
    assert first["trace"][0]["hits"]["relabelled"] > 0
    assert first["subexperiments"]["fraction_avoided"] > 0.4
    cache_session.reset_sessions()
    again = run_qaoa(spec, tmp_path / "q", cache=cache)  # the same folder: read back, not rerun
    assert [e["energy"] for e in again["trace"]] == [e["energy"] for e in first["trace"]]
    with pytest.raises(InputError, match="holds another QAOA"):
        run_qaoa(replace(spec, nodes=8), tmp_path / "q")


def test_run_qaoa_and_the_sweep_flag_on_the_command_line(tmp_path):
    result = run_cli(
        "run",
        "qaoa",
        "--nodes",
        "4",
        "--max-evaluations",
        "4",
        "--out",
        str(tmp_path / "q"),
        "--json",
        check=True,
    )
    assert json.loads(result.stdout)["evaluations"] == 4
    bad = run_cli("run", "qaoa", "--graph", "star", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and bad.stderr.strip().startswith("qhybrid: error: --graph")
    swept = run_cli(
        "run",
        "cutting",
        "--qubits",
        "4",
        "--sweep",
        "B=0:1:2",
        "--out",
        str(tmp_path / "s"),
        "--json",
        check=True,
    )
    assert len(json.loads(swept.stdout)["rows"]) == 2


def test_generate_serves_hits_first_so_batches_and_branch_pods_see_only_misses(tmp_path):
    cache = CacheSettings(location=str(tmp_path / "lmdb"))
    spec = RunSpec(scenario="cutting")
    cold = run_local(spec, tmp_path / "cold", cache=cache, progress=False)
    cache_session.reset_sessions()
    # The same spec in a new folder: generate serves every result before execute.
    from qhybrid.pipeline.generate import generate

    warm_dir = RunDir(tmp_path / "warm")
    manifest = generate(warm_dir, spec, cache=cache)
    assert manifest["cached_before_execute"] == cold["counts"]["unique"]
    backends = [u["backend"] for u in manifest["plan"]["unique"]]
    done = warm_dir.done_ids(backends)
    assert len(done) == cold["counts"]["unique"]
    assert split_batches(backends, {"cpu": 4}, None, done) == {"cpu": []}  # no pod starts
    assert split_batches(backends, {"cpu": 4}, None, set(list(done)[:10]))["cpu"]  # misses get pods
    report = run_local(spec, warm_dir.root, cache=cache, progress=False)
    assert report["estimate"] == cold["estimate"]
    assert report["cache"]["from_store"] == cold["counts"]["unique"] and report["cache"]["computed"] == 0


def test_the_workflow_passes_the_cache_to_generate_and_execute_and_only_they_may_reach_it():
    config = load_stack_file("kind")
    workflow = workflow_object(config, RunSpec(scenario="cutting"))
    url = cache_part.cache_url(config)
    templates = {t["name"]: t for t in workflow["spec"]["templates"] if "container" in t}
    for name, template in templates.items():
        args = template["container"]["args"]
        step = template["metadata"]["labels"][WORKFLOW_STEP_LABEL]
        assert ("--cache" in args and url in args) == (step in ("generate", "execute")), name
    policy = cache_part.network_policy(config)
    (clients, prometheus) = policy["spec"]["ingress"]
    (peer,) = clients["from"]
    assert peer["podSelector"]["matchExpressions"] == [
        {"key": WORKFLOW_STEP_LABEL, "operator": "In", "values": ["generate", "execute"]}
    ]
    assert clients["ports"] == [{"protocol": "TCP", "port": CACHE_PORT}]
    assert policy["spec"]["egress"] == [] and "Egress" in policy["spec"]["policyTypes"]
    # Turned off, there is no cache part and no pod is given a --cache.
    off = replace(config, cache_enabled=False)
    assert cache_part.cache_objects(off) == []
    assert "--cache" not in json.dumps(workflow_object(off, RunSpec(scenario="cutting")))


def test_the_cache_server_is_bounded_and_lru():
    conf = cache_part.server_config(load_stack_file("kind"))
    assert "maxmemory 1024mb" in conf and "maxmemory-policy allkeys-lru" in conf and "appendonly yes" in conf


def test_the_halves_of_a_symmetric_ring_serve_each_other_as_relabelled_hits(tmp_path):
    from qhybrid.scenarios.qaoa import maxcut_observable, pauli_sum_text, qaoa_maxcut_circuit, ring_edges
    from qiskit import qasm3

    ring = ring_edges(12)
    spec = RunSpec(
        circuit_qasm=qasm3.dumps(qaoa_maxcut_circuit(ring, layers=1, seed=3)),
        circuit_source="ring",
        observable=pauli_sum_text(maxcut_observable(ring)),
        partition="AAAAAABBBBBB",
    )
    report = run_local(
        spec, tmp_path / "r", cache=CacheSettings(location=str(tmp_path / "lmdb")), progress=False
    )
    hits, unique = report["cache"]["hits"], report["counts"]["unique"]
    # B's subexperiments are A's on qubits 6-11 (and A's own mirror images): relabelled hits.
    assert hits["relabelled"] >= 0.4 * unique and report["cache"]["computed"] + hits["relabelled"] == unique
    assert abs(report["error"]) < 1e-12
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert set(manifest["qubits"]) == {"0,1,2,3,4,5", "6,7,8,9,10,11"}
