"""Run artifacts in an S3-compatible bucket, laid out as the workflows and MLflow lay them out.

One bucket per stack (``artifactS3Bucket``) holds two trees (``blueprint.names``):

- ``qhybrid/<name>/...``: a run's files under its run-directory paths. A workflow's S3
  artifacts write exactly these keys (``report.json``, ``results/``, ...) under its
  workflow name; :func:`push_run` writes a local run the same way, and :func:`pull_run`
  reads either back into a run directory that ``qhybrid runs``, ``job get`` and a
  resume understand.
- ``mlflow/...``: MLflow's artifact root (the tracking server's
  ``--artifacts-destination``), so a tracked run's artifacts sit in the same bucket.

Credentials come from the environment or the AWS config files (boto3's own chain:
``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``), never from a flag, so they do not
appear on command lines. Every download is written atomically.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qhybrid import atomic
from qhybrid.blueprint.names import WORKFLOW_ARTIFACT_PREFIX
from qhybrid.errors import InputError, QhybridError

_SKIPPED = (".tmp",)  # an interrupted writer's temporaries are not part of a run


@dataclass(frozen=True, kw_only=True)
class ObjectStore:
    """A bucket on an S3-compatible endpoint (AWS S3, SeaweedFS, MinIO)."""

    endpoint: str
    bucket: str
    region: str = "us-east-1"

    def __post_init__(self) -> None:
        """Refuse what cannot be an endpoint or a bucket, naming the flag."""
        if not self.endpoint.startswith(("http://", "https://")):
            raise InputError("--endpoint", f"must be an http(s) URL, got {self.endpoint!r}")
        if not 3 <= len(self.bucket) <= 63 or not self.bucket.replace("-", "").replace(".", "").isalnum():
            raise InputError("--bucket", f"{self.bucket!r} is not an S3 bucket name")

    def client(self) -> Any:
        """A boto3 S3 client with path-style addressing (what self-hosted servers expect)."""
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise InputError("--endpoint", "needs boto3: pip install 'qhybrid[tracking]'") from None
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"}),
        )


def run_prefix(name: str) -> str:
    """The key prefix of one run's files: what a workflow of that name writes."""
    if not name or "/" in name or name in (".", ".."):
        raise InputError("--name", f"{name!r} is not a run or workflow name")
    return f"{WORKFLOW_ARTIFACT_PREFIX}/{name}/"


def _files(run_dir: Path) -> list[Path]:
    return sorted(path for path in run_dir.rglob("*") if path.is_file() and not path.name.endswith(_SKIPPED))


def push_run(store: ObjectStore, run_dir: Path, name: str) -> list[str]:
    """Upload every file of a finished run to ``qhybrid/<name>/``; return the keys written.

    Idempotent: a key whose object already has the file's MD5 (its ETag) is not sent again.
    """
    if not (run_dir / "report.json").is_file():
        raise InputError("RUN_DIR", f"{run_dir} holds no finished run (no report.json)")
    prefix = run_prefix(name)
    client = store.client()
    written = []
    try:
        for path in _files(run_dir):
            key = prefix + path.relative_to(run_dir).as_posix()
            data = path.read_bytes()
            if _etag(client, store.bucket, key) == hashlib.md5(data, usedforsecurity=False).hexdigest():
                continue
            client.put_object(Bucket=store.bucket, Key=key, Body=data)
            written.append(key)
    except Exception as error:
        raise _store_error(store, error) from None
    return written


def pull_run(store: ObjectStore, name: str, out: Path) -> list[Path]:
    """Download ``qhybrid/<name>/`` into ``out`` (each file atomically); return the files written."""
    prefix = run_prefix(name)
    client = store.client()
    written = []
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket, Prefix=prefix)
        keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
        if not keys:
            raise InputError("--name", f"s3://{store.bucket}/{prefix} holds nothing")
        for key in keys:
            relative = key[len(prefix) :]
            target = (out / relative).resolve()
            if out.resolve() not in target.parents:
                raise QhybridError(f"s3://{store.bucket}/{key}: a key that leaves the run directory")
            body = client.get_object(Bucket=store.bucket, Key=key)["Body"].read()
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_bytes(target, body)
            written.append(target)
    except QhybridError:
        raise
    except Exception as error:
        raise _store_error(store, error) from None
    return written


def _etag(client: Any, bucket: str, key: str) -> str | None:
    try:
        return str(client.head_object(Bucket=bucket, Key=key)["ETag"]).strip('"')
    except Exception:
        return None


def _store_error(store: ObjectStore, error: Exception) -> QhybridError:
    # boto3's messages name the operation and the code; they never hold the secret key.
    return QhybridError(f"s3://{store.bucket} at {store.endpoint}: {type(error).__name__}: {error}")
