"""StackConfig: declared once in Pulumi.yaml, validated on load, errors name the key."""

from __future__ import annotations

import shutil
from dataclasses import fields

import pytest

from qhybrid.blueprint.config import (
    ConfigError,
    StackConfig,
    _camel,
    declarations,
    find_project_dir,
    load_stack_config,
    load_stack_file,
)
from qhybrid.errors import InputError
from tests.conftest import REPO

SECRETS = {"qhybrid:grafanaAdminPassword"}


def load(**values):
    raw = {"qhybrid:grafanaAdminPassword": "pw", **{f"qhybrid:{k}": v for k, v in values.items()}}
    return load_stack_config("test", raw, SECRETS)


def test_every_declared_key_is_a_field_and_every_field_is_declared():
    declared = declarations()
    plain = {k for k, d in declared.items() if not d.secret}
    field_keys = {_camel(f.name) for f in fields(StackConfig)} - {"stack", "secretsSet"}
    assert plain == field_keys
    for declaration in declared.values():
        assert declaration.description, f"{declaration.key} has no description"
        assert declaration.secret == (declaration.default is None), declaration.key


def test_defaults_come_from_pulumi_yaml_and_engine_strings_are_coerced():
    # Given the engine's string values, when loaded, then types follow the declarations.
    config = load(cpuQuotaCpu="12", artifactS3Insecure="true", gatewayEgressCidrs='["10.1.0.0/16"]')
    assert config.cpu_quota_cpu == 12
    assert config.artifact_s3_insecure is True
    assert config.gateway_egress_cidrs == ("10.1.0.0/16",)
    assert config.gpu_quota_gpus == declarations()["gpuQuotaGpus"].default


def test_committed_stacks_load():
    kind, eks = load_stack_file("kind"), load_stack_file("eks")
    assert (kind.cluster, kind.gpu_resource) == ("kind", None)
    assert (eks.cluster, eks.gpu_resource, eks.artifact_store) == ("eks", "nvidia.com/gpu", "s3")


@pytest.mark.parametrize(
    ("values", "key", "fragment"),
    [
        ({"cpuQuotaCpu": -1}, "qhybrid:cpuQuotaCpu", "zero or more"),
        ({"gatewayWorkflowShotBudget": -1}, "qhybrid:gatewayWorkflowShotBudget", "zero or more"),
        ({"gpuVendor": "intel"}, "qhybrid:gpuVendor", "['nvidia', 'amd', 'none']"),
        ({"cpuNodes": 0}, "qhybrid:cpuNodes", "queue-cpu queue has quota"),
        ({"gpuNodes": 0}, "qhybrid:gpuNodes", "queue-gpu queue has quota"),
        ({"gpuVendor": "none"}, "qhybrid:gpuQuotaGpus", "no GPUs to admit"),
        ({"cluster": "gke"}, "qhybrid:cluster", "['kind', 'eks']"),
        ({"workflowNamespace": "Bad_Name"}, "qhybrid:workflowNamespace", "RFC 1123"),
        ({"gatewayPort": 70000}, "qhybrid:gatewayPort", "1-65535"),
        ({"gatewayEgressCidrs": '["not-a-cidr"]'}, "qhybrid:gatewayEgressCidrs", "not a CIDR"),
        ({"cpuQuotaCpu": "eight"}, "qhybrid:cpuQuotaCpu", "must be an integer"),
        ({"artifactStore": "s3"}, "qhybrid:artifactS3Endpoint", "required when artifactStore is s3"),
        ({"unknownKey": 1}, "qhybrid:unknownKey", "not declared"),
        ({"prometheusRetention": "a week"}, "qhybrid:prometheusRetention", "duration"),
    ],
)
def test_invalid_config_names_the_key(values, key, fragment):
    with pytest.raises(ConfigError) as caught:
        load(**values)
    assert caught.value.field == key
    assert fragment in str(caught.value)


def test_a_secret_in_plain_text_is_refused():
    raw = {"qhybrid:grafanaAdminPassword": "pw", "qhybrid:qpuProviderToken": "tok"}
    with pytest.raises(ConfigError, match="qpuProviderToken: is a secret but was set in plain text"):
        load_stack_config("test", raw, SECRETS)
    config = load_stack_config("test", raw, SECRETS | {"qhybrid:qpuProviderToken"})
    assert "qpuProviderToken" in config.secrets_set
    assert "tok" not in repr(config)  # values never enter StackConfig


def test_deploy_needs_its_secrets_but_render_does_not():
    config = load_stack_config("test", {}, set())
    with pytest.raises(ConfigError, match="grafanaAdminPassword: is not set"):
        config.check_secrets_for_deploy()
    s3 = load(artifactStore="s3", artifactS3Endpoint="minio:9000", artifactS3Bucket="b")
    with pytest.raises(ConfigError, match="artifactS3AccessKey"):
        s3.check_secrets_for_deploy()


def test_stack_file_secure_values_count_as_secrets(tmp_path):
    # Given a project folder of one's own (--project-dir) with the declarations and two stacks,
    shutil.copyfile(REPO / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.x.yaml").write_text(
        "config:\n  qhybrid:qpuProviderToken:\n    secure: AAABAJ==\n  qhybrid:cpuQuotaCpu: 3\n"
    )
    loaded = load_stack_file("x", project_dir=tmp_path)
    assert loaded.secrets_set == {"qpuProviderToken"}
    (tmp_path / "stacks" / "Pulumi.y.yaml").write_text("config:\n  qhybrid:qpuProviderToken: plain\n")
    with pytest.raises(ConfigError, match="plain text"):
        load_stack_file("y", project_dir=tmp_path)


def test_the_project_folder_is_found_or_named_in_one_line(tmp_path, monkeypatch):
    # The current folder wins when it holds qhybrid's Pulumi.yaml (as pulumi itself looks there),
    shutil.copytree(REPO / "stacks", tmp_path / "stacks")
    shutil.copyfile(REPO / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    monkeypatch.chdir(tmp_path)
    assert find_project_dir() == tmp_path
    # a folder holding another project's Pulumi.yaml is not ours,
    other = tmp_path / "other"
    other.mkdir()
    (other / "Pulumi.yaml").write_text("name: someone-else\nruntime: python\n")
    with pytest.raises(InputError, match="--project-dir: .* holds no Pulumi.yaml of project 'qhybrid'"):
        find_project_dir(other)
    # and elsewhere the checkout this module came from is used.
    monkeypatch.chdir(other)
    assert find_project_dir() == REPO


def test_unknown_stack_lists_the_stacks():
    with pytest.raises(Exception, match=r"stacks: \['eks', 'kind'\]"):
        load_stack_file("nope")
