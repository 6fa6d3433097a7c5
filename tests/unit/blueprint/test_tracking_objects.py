"""The object store and MLflow parts as objects: secrets only where mounted, least privilege, config."""

from __future__ import annotations

import json

import pytest

from qhybrid.blueprint import objectstore, tracking
from qhybrid.blueprint.config import ConfigError, load_stack_file, stack_from_values, stack_values
from qhybrid.blueprint.names import (
    MLFLOW_ARTIFACT_PREFIX,
    OBJECT_STORE_IDENTITIES_SECRET,
    OBJECT_STORE_PORT,
    TRACKING_DATABASE_SECRET,
    TRACKING_S3_SECRET,
)

ACCESS, SECRET, URI = (
    "access-key-value",
    "secret-key-value",
    "postgresql://u:database-password@db:5432/mlflow",
)


@pytest.fixture(params=["kind", "eks"])
def config(request):
    return load_stack_file(request.param)


def by_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def with_values(config, **overrides):
    values = stack_values(config)
    values.update(overrides)
    return stack_from_values(values)


def test_object_store_identity_is_only_in_its_secret_and_mounted_only_into_its_pod(config):
    objects = objectstore.object_store_objects(config, ACCESS, SECRET)
    [secret] = by_kind(objects, "Secret")
    identity = json.loads(secret["stringData"]["s3.json"])["identities"][0]
    assert identity["credentials"] == [{"accessKey": ACCESS, "secretKey": SECRET}]
    others = json.dumps([o for o in objects if o["kind"] != "Secret"])
    assert ACCESS not in others and SECRET not in others
    [server] = by_kind(objects, "StatefulSet")
    pod = server["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert {"name": "identities", "secret": {"secretName": OBJECT_STORE_IDENTITIES_SECRET}} in pod["volumes"]
    args = pod["containers"][0]["args"]
    assert (
        f"-s3.port={OBJECT_STORE_PORT}" in args
        and "-s3.port.iceberg=0" in args
        and "-s3.port.lance=0" in args
    )


def test_object_store_admits_s3_from_mlflow_and_workflows_and_lets_nothing_out(config):
    [policy] = by_kind(objectstore.object_store_objects(config, ACCESS, SECRET), "NetworkPolicy")
    spec = policy["spec"]
    assert spec["egress"] == [] and set(spec["policyTypes"]) == {"Ingress", "Egress"}
    s3_rule = next(
        r for r in spec["ingress"] if r["ports"] == [{"protocol": "TCP", "port": OBJECT_STORE_PORT}]
    )
    namespaces = {
        p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for p in s3_rule["from"]
    }
    assert namespaces == {"qhybrid-tracking", config.workflow_namespace}


def test_mlflow_keeps_artifacts_in_the_object_stores_bucket_under_the_mlflow_prefix(config):
    endpoint, root = tracking.artifact_destination(config)
    assert endpoint == objectstore.endpoint()
    assert root == f"s3://{config.object_store_bucket}/{MLFLOW_ARTIFACT_PREFIX}"
    [deployment] = by_kind(tracking.tracking_objects(config, ACCESS, SECRET, URI), "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][container["args"].index("--artifacts-destination") + 1] == root
    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_S3_ENDPOINT_URL"]["value"] == endpoint
    hosts = container["args"][container["args"].index("--allowed-hosts") + 1].split(",")
    assert "mlflow.qhybrid-tracking.svc:5000" in hosts and "localhost:5000" in hosts


def test_no_secret_of_mlflow_is_in_its_pod_spec_or_command_line(config):
    objects = tracking.tracking_objects(config, ACCESS, SECRET, URI)
    not_secrets = json.dumps([o for o in objects if o["kind"] != "Secret"])
    for value in (ACCESS, SECRET, URI, "database-password"):
        assert value not in not_secrets
    secrets = {s["metadata"]["name"]: s for s in by_kind(objects, "Secret")}
    assert f"aws_secret_access_key = {SECRET}" in secrets[TRACKING_S3_SECRET]["stringData"]["credentials"]
    [deployment] = by_kind(objects, "Deployment")
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    if config.tracking_database == "external":
        assert secrets[TRACKING_DATABASE_SECRET]["stringData"]["uri"] == URI
        assert (
            env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"]["name"] == TRACKING_DATABASE_SECRET
        )
    else:
        assert TRACKING_DATABASE_SECRET not in secrets
        assert env["MLFLOW_BACKEND_STORE_URI"]["value"].startswith("sqlite:///")


def test_sqlite_on_a_volume_for_kind_and_an_external_database_for_eks():
    kind = tracking.tracking_objects(load_stack_file("kind"), ACCESS, SECRET)
    eks = tracking.tracking_objects(load_stack_file("eks"), ACCESS, SECRET, URI)
    [kind_deployment] = by_kind(kind, "Deployment")
    assert by_kind(kind, "PersistentVolumeClaim") and not by_kind(eks, "PersistentVolumeClaim")
    # one writer of the SQLite file at a time
    assert kind_deployment["spec"]["strategy"] == {"type": "Recreate"}
    [eks_policy] = by_kind(eks, "NetworkPolicy")
    database = [r for r in eks_policy["spec"]["egress"] if r["ports"][0]["port"] in tracking.DATABASE_PORTS]
    assert [b["ipBlock"]["cidr"] for b in database[0]["to"]] == list(
        load_stack_file("eks").tracking_database_cidrs
    )
    [kind_policy] = by_kind(kind, "NetworkPolicy")
    assert not any(r["ports"][0]["port"] in tracking.DATABASE_PORTS for r in kind_policy["spec"]["egress"])


def test_mlflow_has_no_role_and_no_token(config):
    objects = tracking.tracking_objects(config, ACCESS, SECRET, URI)
    assert not by_kind(objects, "Role") and not by_kind(objects, "RoleBinding")
    [account] = by_kind(objects, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    [deployment] = by_kind(objects, "Deployment")
    assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


@pytest.mark.parametrize(
    ("overrides", "key", "fragment"),
    [
        ({"trackingDatabase": "postgres"}, "qhybrid:trackingDatabase", "unknown value"),
        (
            {"trackingDatabase": "external", "trackingDatabaseCidrs": []},
            "qhybrid:trackingDatabaseCidrs",
            "address",
        ),
        ({"objectStoreBucket": "Not_A_Bucket"}, "qhybrid:objectStoreBucket", "not an S3 bucket name"),
        ({"objectStoreSize": "lots"}, "qhybrid:objectStoreSize", "not a quantity"),
        ({"objectStoreEnabled": False}, "qhybrid:trackingEnabled", "enable objectStoreEnabled"),
    ],
)
def test_bad_tracking_config_fails_naming_the_key(overrides, key, fragment):
    with pytest.raises(ConfigError, match=f"{key}: .*{fragment}"):
        with_values(load_stack_file("kind"), **overrides)


def test_parts_turned_off_render_nothing():
    config = with_values(load_stack_file("kind"), trackingEnabled=False, objectStoreEnabled=False)
    assert objectstore.object_store_objects(config, ACCESS, SECRET) == []
    assert tracking.tracking_objects(config, ACCESS, SECRET) == []


def test_deploying_needs_the_object_stores_keys_and_the_database_uri():
    with pytest.raises(ConfigError, match="objectStoreAccessKey: is not set"):
        with_values(load_stack_file("kind"), secretsSet=["grafanaAdminPassword"]).check_secrets_for_deploy()
    eks = with_values(
        load_stack_file("eks"),
        secretsSet=[
            "grafanaAdminPassword", "artifactS3AccessKey", "artifactS3SecretKey", "objectStoreAccessKey",
            "objectStoreSecretKey",
        ],
    )  # fmt: skip
    with pytest.raises(ConfigError, match="trackingDatabaseUri: is not set"):
        eks.check_secrets_for_deploy()
