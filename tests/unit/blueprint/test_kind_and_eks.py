"""The cluster as data: kind's config, the EKS node group specs and the GPU add-ons' values."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml

from qhybrid.blueprint import eks, kind
from qhybrid.blueprint.config import ConfigError, load_stack_file
from qhybrid.blueprint.names import PROMETHEUS_SELECTOR_LABELS
from qhybrid.blueprint.pools import POOL_LABEL, POOLS
from qhybrid.blueprint.versions import CHARTS, DCGM_EXPORTER, KIND_NODE_IMAGE


@pytest.fixture(scope="module")
def kind_stack():
    return load_stack_file("kind")


@pytest.fixture(scope="module")
def eks_stack():
    return load_stack_file("eks")


def workers_of(config: dict, pool: str) -> list[dict]:
    return [n for n in config["nodes"] if n["role"] == "worker" and n["labels"] == {POOL_LABEL: pool}]


# --- kind -------------------------------------------------------------------------------------------------


def test_kind_config_has_one_control_plane_then_the_configured_workers_per_pool(kind_stack):
    sized = dataclasses.replace(kind_stack, system_nodes=2, cpu_nodes=3, gpu_nodes=1, qpu_gateway_nodes=2)
    config = kind.kind_cluster_config(sized)
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert config["kind"] == "Cluster"
    assert config["name"] == sized.cluster_name
    roles = [n["role"] for n in config["nodes"]]
    assert roles.count("control-plane") == 1
    assert roles[0] == "control-plane"
    for pool, size in sized.pool_sizes().items():
        assert len(workers_of(config, pool)) == size, pool
    assert roles.count("worker") == sum(sized.pool_sizes().values())
    assert all(n["image"] == KIND_NODE_IMAGE for n in config["nodes"])


@pytest.mark.parametrize("pool", list(POOLS))
def test_every_kind_worker_carries_exactly_its_pools_labels_and_taints(kind_stack, pool):
    config = kind.kind_cluster_config(kind_stack)
    [worker] = workers_of(config, pool)
    assert worker["labels"] == POOLS[pool].node_labels
    assert kind.worker_taints(worker) == POOLS[pool].taints
    if not POOLS[pool].tainted:
        assert "kubeadmConfigPatches" not in worker  # system runs the platform's controllers


def test_kind_taints_are_a_kubeadm_join_patch_in_the_form_kubeadm_reads(kind_stack):
    config = kind.kind_cluster_config(kind_stack)
    [gpu] = workers_of(config, "gpu")
    [patch] = gpu["kubeadmConfigPatches"]
    document = yaml.safe_load(patch)
    assert set(document) == {"kind", "nodeRegistration"}
    assert document["kind"] == "JoinConfiguration"
    assert document["nodeRegistration"] == {
        "taints": [{"key": "qhybrid.io/pool", "value": "gpu", "effect": "NoSchedule"}]
    }


def test_the_control_plane_is_no_pool(kind_stack):
    [control_plane] = [
        n for n in kind.kind_cluster_config(kind_stack)["nodes"] if n["role"] == "control-plane"
    ]
    assert set(control_plane) == {"role", "image"}


def test_kind_config_yaml_round_trips_and_is_deterministic(kind_stack):
    text = kind.kind_config_yaml(kind_stack)
    assert yaml.safe_load(text) == kind.kind_cluster_config(kind_stack)
    assert text == kind.kind_config_yaml(kind_stack)


def test_kind_commands_create_from_stdin_and_delete_the_same_cluster(kind_stack):
    named = dataclasses.replace(kind_stack, cluster_name="lab-7")
    create = kind.kind_create_command(named)
    assert "&& kind create cluster --name lab-7 --config - " in create
    # the shared artifact directory exists, writable by the workers' uid, before kind mounts it
    assert create.startswith(
        "mkdir -p /tmp/qhybrid-lab-7-artifacts && chmod 1777 /tmp/qhybrid-lab-7-artifacts"
    )
    delete = kind.kind_delete_command(named)
    assert "kind delete cluster --name lab-7" in delete
    assert "grep -qx lab-7" in delete  # a cluster already gone does not fail `pulumi destroy`
    assert kind.kind_kubeconfig_command(named) == "kind get kubeconfig --name lab-7"


def test_every_kind_worker_mounts_the_shared_artifact_directory(kind_stack):
    from qhybrid.blueprint.argo import KIND_ARTIFACT_NODE_PATH, artifact_volume

    nodes = kind.kind_cluster_config(kind_stack)["nodes"]
    workers = [n for n in nodes if n["role"] == "worker"]
    host = kind.artifact_host_path(kind_stack)
    for node in workers:
        assert node["extraMounts"] == [{"hostPath": host, "containerPath": KIND_ARTIFACT_NODE_PATH}]
    # the PersistentVolume the workflow claims is that directory
    volume = next(o for o in artifact_volume(kind_stack) if o["kind"] == "PersistentVolume")
    assert volume["spec"]["hostPath"]["path"] == KIND_ARTIFACT_NODE_PATH


def test_kind_refuses_a_gpu_vendor_it_cannot_provide(kind_stack):
    with pytest.raises(ConfigError) as caught:
        kind.kind_cluster_config(dataclasses.replace(kind_stack, gpu_vendor="nvidia", gpu_quota_gpus=0))
    assert caught.value.field == "qhybrid:gpuVendor"


def test_kind_refuses_an_eks_config(eks_stack):
    with pytest.raises(ConfigError) as caught:
        kind.kind_cluster_config(eks_stack)
    assert caught.value.field == "qhybrid:cluster"


# --- EKS --------------------------------------------------------------------------------------------------


def test_one_node_group_per_pool_sized_typed_and_labelled_from_config(eks_stack):
    specs = eks.node_group_specs(eks_stack)
    assert [s["pool"] for s in specs] == list(POOLS)
    for spec in specs:
        pool = spec["pool"]
        size = eks_stack.pool_sizes()[pool]
        assert spec["scaling"] == {"desired_size": size, "min_size": size, "max_size": max(size, 1)}
        assert spec["instance_types"] == [getattr(eks_stack, f"{pool.replace('-', '_')}_instance_type")]
        assert spec["labels"] == POOLS[pool].node_labels
        assert spec["node_group_name_prefix"] == f"{eks_stack.cluster_name}-{pool}-"
        assert spec["disk_size"] >= 20


@pytest.mark.parametrize("pool", list(POOLS))
def test_node_group_taints_are_the_pools_taints_in_the_eks_api_form(eks_stack, pool):
    [spec] = [s for s in eks.node_group_specs(eks_stack) if s["pool"] == pool]
    expected = [{"key": t["key"], "value": t["value"], "effect": "NO_SCHEDULE"} for t in POOLS[pool].taints]
    assert spec["taints"] == expected
    assert bool(spec["taints"]) == POOLS[pool].tainted


def test_ami_types_nvidia_image_only_on_the_gpu_pool_of_an_nvidia_stack(eks_stack):
    amis = {s["pool"]: s["ami_type"] for s in eks.node_group_specs(eks_stack)}
    assert amis == {
        "system": "AL2023_x86_64_STANDARD",
        "cpu": "AL2023_x86_64_STANDARD",
        "gpu": "AL2023_x86_64_NVIDIA",
        "qpu-gateway": "AL2023_x86_64_STANDARD",
    }
    no_gpus = dataclasses.replace(eks_stack, gpu_vendor="none", gpu_quota_gpus=0)
    assert {s["ami_type"] for s in eks.node_group_specs(no_gpus)} == {"AL2023_x86_64_STANDARD"}


def test_graviton_instance_types_get_arm_images(eks_stack):
    arm = dataclasses.replace(eks_stack, cpu_instance_type="c7gn.4xlarge", gpu_instance_type="g5g.2xlarge")
    amis = {s["pool"]: s["ami_type"] for s in eks.node_group_specs(arm)}
    assert amis["cpu"] == "AL2023_ARM_64_STANDARD"
    assert amis["gpu"] == "AL2023_ARM_64_NVIDIA"
    assert not eks.is_arm("g5.2xlarge") and not eks.is_arm("m7i-flex.large") and eks.is_arm("m7g.large")


def test_an_empty_pool_keeps_a_valid_scaling_config(eks_stack):
    empty = dataclasses.replace(
        eks_stack, gpu_nodes=0, gpu_quota_gpus=0, gpu_quota_cpu=0, gpu_quota_memory_gi=0
    )
    [gpu] = [s for s in eks.node_group_specs(empty) if s["pool"] == "gpu"]
    assert gpu["scaling"] == {"desired_size": 0, "min_size": 0, "max_size": 1}


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"gpu_vendor": "amd"}, "qhybrid:gpuVendor"),
        ({"aws_region": "mars-1"}, "qhybrid:awsRegion"),
        ({"gpu_instance_type": "a big one"}, "qhybrid:gpuInstanceType"),
        ({"qpu_gateway_instance_type": ""}, "qhybrid:qpuGatewayInstanceType"),
        ({"cluster": "kind"}, "qhybrid:cluster"),
    ],
)
def test_eks_refuses_what_it_cannot_build_naming_the_key(eks_stack, change, key):
    bad = dataclasses.replace(eks_stack, **change)
    with pytest.raises(ConfigError) as caught:
        eks.node_group_specs(bad)
    assert caught.value.field == key


def test_node_role_trusts_ec2_and_gets_the_worker_and_ebs_policies():
    policy = json.loads(eks.node_assume_role_policy())
    [statement] = policy["Statement"]
    assert statement == {
        "Effect": "Allow",
        "Principal": {"Service": "ec2.amazonaws.com"},
        "Action": "sts:AssumeRole",
    }
    names = {arn.rsplit("/", 1)[1] for arn in eks.NODE_POLICY_ARNS}
    assert names == {
        "AmazonEKSWorkerNodePolicy",
        "AmazonEKS_CNI_Policy",
        "AmazonEC2ContainerRegistryReadOnly",
        "AmazonEBSCSIDriverPolicy",
    }


def test_network_spans_two_zones_in_one_vpc():
    import ipaddress

    vpc = ipaddress.ip_network(eks.VPC_CIDR)
    subnets = [ipaddress.ip_network(c) for c in eks.SUBNET_CIDRS]
    assert len(subnets) >= 2  # EKS needs subnets in two zones
    assert all(s.subnet_of(vpc) for s in subnets)
    assert not subnets[0].overlaps(subnets[1])


# --- GPU add-ons ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", [eks.nvidia_device_plugin_values(), eks.dcgm_exporter_values()])
def test_gpu_daemonsets_run_on_the_gpu_pool_and_tolerate_exactly_its_taint(values):
    assert values["tolerations"] == POOLS["gpu"].tolerations
    assert values["tolerations"] == [
        {"key": POOL_LABEL, "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
    ]
    assert values["nodeSelector"] == POOLS["gpu"].node_labels
    # the chart's default affinity wants Node Feature Discovery labels: ours replaces it
    [term] = values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert term == {"matchExpressions": [{"key": POOL_LABEL, "operator": "In", "values": ["gpu"]}]}


def test_dcgm_exporter_is_scraped_by_kube_prometheus_stack():
    monitor = eks.dcgm_exporter_values()["serviceMonitor"]
    assert monitor["enabled"] is True
    assert monitor["additionalLabels"] == PROMETHEUS_SELECTOR_LABELS


def test_dcgm_exporter_chart_is_pinned():
    assert CHARTS["dcgm-exporter"] is DCGM_EXPORTER
    assert DCGM_EXPORTER.repo == "https://nvidia.github.io/dcgm-exporter/helm-charts"
    assert DCGM_EXPORTER.version.count(".") == 2
