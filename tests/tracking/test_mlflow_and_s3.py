"""Tracked runs in a real MLflow server, and run artifacts through a real S3 server (SeaweedFS).

Everything runs on loopback: ``qhybrid`` as a user runs it (the CLI, in this process),
the MLflow tracking server and SeaweedFS as subprocesses (``conftest.py``). What is
checked is read back through their own clients: ``MlflowClient`` and boto3.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qhybrid import atomic
from qhybrid.blueprint.config import load_stack_file
from qhybrid.blueprint.names import MLFLOW_ARTIFACT_PREFIX
from qhybrid.cli import run_in_process
from qhybrid.workflow.build import report_location

mlflow = pytest.importorskip("mlflow", reason="the MLflow client: pip install 'qhybrid[tracking]'")


def qhybrid(*args: str) -> int:
    return run_in_process(list(args))


@pytest.fixture(scope="module")
def tracked(mlflow_server, s3, tmp_path_factory):
    """The default workload run once with --track, and what the server holds for it."""
    out = tmp_path_factory.mktemp("tracked") / "run"
    with pytest.MonkeyPatch.context() as env:
        for key, value in s3.env().items():
            env.setenv(key, value)
        assert qhybrid("run", "cutting", "--quiet", "--out", str(out), "--track", mlflow_server) == 0
    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("qhybrid")
    [run] = client.search_runs([experiment.experiment_id], filter_string=f"tags.`qhybrid.run_dir` = '{out}'")
    return out, atomic.read_json(out / "report.json"), client, run


def test_a_tracked_run_has_the_spec_as_params_figures_as_metrics_provenance_as_tags(tracked):
    out, report, client, run = tracked
    spec = report["provenance"]["spec"]
    assert run.data.params["spec.scenario"] == spec["scenario"] == "cutting"
    assert run.data.params["spec.seed"] == str(spec["seed"])
    assert run.data.params["spec.mode"] == "exact"
    metrics = run.data.metrics
    assert metrics["estimate"] == report["estimate"]  # a double in and out: bitwise
    assert metrics["error"] == report["error"] and metrics["exact"] == report["exact"]
    assert metrics["count.unique"] == report["counts"]["unique"] == 250
    assert metrics["time.total_wall"] == report["timings"]["total_wall"]
    assert metrics["cache.hits"] == sum(report["cache"]["hits"].values())
    assert metrics["failovers"] == 0
    assert metrics["cost.total"] == report["provenance"]["cost"]["estimate"]["total"]
    tags = run.data.tags
    assert tags["qhybrid.spec_hash"] == report["provenance"]["spec_hash"]
    assert tags["qhybrid.circuit_fingerprint"] == report["provenance"]["circuit_fingerprint"]
    assert json.loads(tags["qhybrid.backends"]) == report["provenance"]["backends"]
    assert run.info.status == "FINISHED"


def test_the_runs_artifacts_are_in_mlflow_and_read_back_bitwise(tracked, tmp_path):
    out, _report, client, run = tracked
    listed = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert {"report.json", "terms.png", "problem"} <= listed
    assert [item.path for item in client.list_artifacts(run.info.run_id, "problem")] == [
        "problem/circuit.qasm"
    ]
    for name in ("report.json", "terms.png", "problem/circuit.qasm"):
        local = client.download_artifacts(run.info.run_id, name, str(tmp_path))
        assert Path(local).read_bytes() == (out / name).read_bytes(), name


def test_mlflow_artifacts_sit_in_the_s3_bucket_under_the_mlflow_prefix(tracked, s3, s3_client):
    out, _report, _client, run = tracked
    keys = [
        item["Key"]
        for item in s3_client.list_objects_v2(Bucket=s3.bucket, Prefix=f"{MLFLOW_ARTIFACT_PREFIX}/")[
            "Contents"
        ]
    ]
    [report_key] = [k for k in keys if run.info.run_id in k and k.endswith("/artifacts/report.json")]
    body = s3_client.get_object(Bucket=s3.bucket, Key=report_key)["Body"].read()
    assert body == (out / "report.json").read_bytes()


def test_tracking_a_run_twice_logs_it_once(tracked, mlflow_server, capsys):
    out, _report, client, run = tracked
    assert qhybrid("runs", "track", str(out), "--track", mlflow_server) == 0
    assert run.info.run_id in capsys.readouterr().out
    experiment = client.get_experiment_by_name("qhybrid")
    assert len(client.search_runs([experiment.experiment_id], f"tags.`qhybrid.run_dir` = '{out}'")) == 1


def test_no_secret_reaches_mlflow(tracked, s3):
    _out, _report, _client, run = tracked
    logged = json.dumps([run.data.params, run.data.tags])
    assert s3.secret_key not in logged and s3.access_key not in logged


def test_a_variational_run_logs_one_step_per_evaluation(mlflow_server, tmp_path):
    out = tmp_path / "qaoa"
    args = ["run", "qaoa", "--nodes", "6", "--max-evaluations", "5", "--quiet", "--out", str(out)]
    assert qhybrid(*args, "--track", mlflow_server) == 0
    trace = atomic.read_json(out / "qaoa.json")["trace"]
    # each evaluation's report is priced with the kind stack's table (--prices kind)
    first = atomic.read_json(out / "evaluations" / "000" / "report.json")["provenance"]["cost"]
    assert first["prices"] == load_stack_file("kind").prices.to_json() and first["estimate"]["total"] > 0
    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("qhybrid")
    [run] = client.search_runs([experiment.experiment_id], "tags.`qhybrid.kind` = 'variational'")
    history = client.get_metric_history(run.info.run_id, "energy")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
        (entry["evaluation"], entry["energy"]) for entry in trace
    ]
    assert len(history) == len(trace) >= 5
    assert run.data.params["qaoa.nodes"] == "6"
    assert run.data.metrics["best_energy"] == max(entry["energy"] for entry in trace)


def test_a_tracking_server_that_is_down_loses_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    code = qhybrid("run", "cutting", "--quiet", "--out", str(out), "--track", "http://127.0.0.1:9")
    err = capsys.readouterr().err
    assert code == 2
    assert "the run finished" in err and f"qhybrid runs track {out}" in err
    assert (out / "report.json").is_file()  # the run itself is kept, complete


# ---------------------------------------------------------------- the workflow's S3 layout


def test_a_run_round_trips_through_s3_in_the_workflows_layout(tracked, s3_env, s3_client, tmp_path, capsys):
    out, _report, _client, _run = tracked
    name = "cutting-x7k2p"
    push = [
        "runs",
        "push",
        str(out),
        "--endpoint",
        s3_env.endpoint,
        "--bucket",
        s3_env.bucket,
        "--name",
        name,
    ]
    assert qhybrid(*push) == 0
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    keys = sorted(
        item["Key"]
        for page in s3_client.get_paginator("list_objects_v2").paginate(
            Bucket=s3_env.bucket, Prefix=f"qhybrid/{name}/"
        )
        for item in page["Contents"]
    )
    assert keys == [f"qhybrid/{name}/{f}" for f in files]
    # report.json sits where a workflow of that name puts it (what `job get` and users look for)
    s3_config = load_stack_file("eks")
    assert (
        report_location(s3_config, name) == f"s3://{s3_config.artifact_s3_bucket}/qhybrid/{name}/report.json"
    )
    assert f"qhybrid/{name}/report.json" in keys
    # again: nothing changed, nothing sent
    capsys.readouterr()
    assert qhybrid(*push) == 0
    assert capsys.readouterr().out.startswith("0 files sent")
    back = tmp_path / "pulled"
    pull = [
        "runs",
        "pull",
        name,
        "--endpoint",
        s3_env.endpoint,
        "--bucket",
        s3_env.bucket,
        "--out",
        str(back),
    ]
    assert qhybrid(*pull) == 0
    for relative in files:
        assert (back / relative).read_bytes() == (out / relative).read_bytes(), relative
    # and the pulled directory is a run qhybrid reads
    assert qhybrid("status", str(back)) == 0


def test_object_store_errors_are_one_line_naming_the_field(s3_env, tmp_path, capsys):
    not_a_run = tmp_path / "empty"
    not_a_run.mkdir()
    base = ["--endpoint", s3_env.endpoint, "--bucket", s3_env.bucket]
    assert qhybrid("runs", "push", str(not_a_run), *base) == 2
    assert "RUN_DIR" in capsys.readouterr().err
    assert qhybrid("runs", "pull", "no-such-run", *base, "--out", str(tmp_path / "x")) == 2
    assert "holds nothing" in capsys.readouterr().err
    assert qhybrid("runs", "pull", "x", "--endpoint", "ftp://nowhere", "--bucket", "b-1", "--out", "y") == 2
    assert "--endpoint" in capsys.readouterr().err
