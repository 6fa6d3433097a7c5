"""The cloud cluster as data: EKS managed node groups, their network and the GPU add-ons' values.

One managed node group per pool: its size from config, its instance type, the
pool's labels and, for workload pools, the pool's taint in the EKS API's form
(``NO_SCHEDULE`` rather than Kubernetes' ``NoSchedule``). Nodes boot Amazon
Linux 2023; the gpu pool of an ``nvidia`` stack boots the AL2023 NVIDIA image,
which carries the driver and container toolkit but not the device plugin: the
plugin (and dcgm-exporter, for GPU metrics) are Helm releases placed on the gpu
pool with the values built here.
"""

from __future__ import annotations

import json
import re
from typing import Any

from qhybrid.blueprint.config import ConfigError, StackConfig
from qhybrid.blueprint.names import PART_OF, PROMETHEUS_SELECTOR_LABELS
from qhybrid.blueprint.pools import POOL_LABEL, POOLS, pool_placement

GPU_POOL = "gpu"
# EKS NodeGroup taint effects (API enum) for Kubernetes' taint effects.
TAINT_EFFECTS = {
    "NoSchedule": "NO_SCHEDULE",
    "NoExecute": "NO_EXECUTE",
    "PreferNoSchedule": "PREFER_NO_SCHEDULE",
}
# Root volume per node (GiB): CUDA images are several GiB each.
DISK_SIZES = {"system": 50, "cpu": 50, "gpu": 150, "qpu-gateway": 50}
# AWS managed policies every EKS node role needs (pull images, run the VPC CNI, join the cluster).
NODE_POLICY_ARNS = (
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
    # The EBS CSI driver provisions the gateway's state volume; on the node role it needs
    # no IRSA setup (its controller runs on the system pool).
    "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy",
)
EBS_CSI_ADDON = "aws-ebs-csi-driver"


def default_storage_class() -> dict[str, Any]:
    """Return the default StorageClass (gp3 through the EBS CSI driver) for ReadWriteOnce volumes."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": "gp3",
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": "ebs.csi.aws.com",
        "parameters": {"type": "gp3", "encrypted": "true"},
        "reclaimPolicy": "Delete",
        # Bind where the pod lands: an EBS volume lives in one zone.
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": True,
    }


# The cluster gets its own VPC rather than the account's default one: the default VPC
# has a subnet in every zone, and EKS refuses control planes in a few of them.
VPC_CIDR = "10.42.0.0/16"
SUBNET_CIDRS = ("10.42.0.0/18", "10.42.64.0/18")  # one public subnet per zone, two zones (EKS minimum)
EKS_UNSUPPORTED_ZONE_IDS = ("use1-az3", "usw1-az2", "cac1-az3")
_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]$")
_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
# family letters, generation, attribute letters (a "g" there means Graviton): c7gn.large -> c, 7, gn
_INSTANCE_FAMILY = re.compile(r"^([a-z]+)([0-9]+)([a-z-]*)\.")
INSTANCE_TYPE_KEYS = {
    "system": "systemInstanceType",
    "cpu": "cpuInstanceType",
    "gpu": "gpuInstanceType",
    "qpu-gateway": "qpuGatewayInstanceType",
}


def instance_type(config: StackConfig, pool: str) -> str:
    """Return the EC2 instance type configured for ``pool``."""
    return str(getattr(config, f"{pool.replace('-', '_')}_instance_type"))


def is_arm(instance: str) -> bool:
    """Tell whether an EC2 instance type is Graviton (arm64): a ``g`` among its attribute letters."""
    match = _INSTANCE_FAMILY.match(instance)
    return bool(match and "g" in match.group(3))


def check_eks_config(config: StackConfig) -> None:
    """Refuse settings an EKS cluster cannot honour; the error names the key."""
    if config.cluster != "eks":
        raise ConfigError("cluster", f"is {config.cluster!r}; the EKS node groups need cluster eks")
    if not _REGION.match(config.aws_region):
        raise ConfigError("awsRegion", f"{config.aws_region!r} is not an AWS region like us-east-1")
    if config.gpu_vendor not in ("nvidia", "none"):
        raise ConfigError(
            "gpuVendor",
            f"is {config.gpu_vendor!r} but EKS has node images for NVIDIA GPUs only; use nvidia or none",
        )
    for pool in POOLS:
        value = instance_type(config, pool)
        if not _INSTANCE_TYPE.match(value):
            raise ConfigError(
                INSTANCE_TYPE_KEYS[pool], f"{value!r} is not an EC2 instance type like m6i.large"
            )


def ami_type(config: StackConfig, pool: str) -> str:
    """Return the EKS AMI type for ``pool``: AL2023, with NVIDIA drivers on an nvidia gpu pool."""
    arch = "ARM_64" if is_arm(instance_type(config, pool)) else "x86_64"
    flavour = "NVIDIA" if pool == GPU_POOL and config.gpu_vendor == "nvidia" else "STANDARD"
    return f"AL2023_{arch}_{flavour}"


def eks_taints(pool: str) -> list[dict[str, str]]:
    """Return the pool's taints in the EKS NodeGroup API form (effect ``NO_SCHEDULE``)."""
    return [
        {"key": t["key"], "value": t["value"], "effect": TAINT_EFFECTS[t["effect"]]}
        for t in POOLS[pool].taints
    ]


def node_group_specs(config: StackConfig) -> list[dict[str, Any]]:
    """Return one managed node group spec per pool: name prefix, size, instance type, AMI, labels, taints.

    Sizes are fixed (desired = min = nodes) because Kueue's quotas are sized to the
    pools; ``max`` is at least 1 because the EKS API requires it even for an empty pool.
    """
    check_eks_config(config)
    specs = []
    for pool, size in config.pool_sizes().items():
        specs.append(
            {
                "pool": pool,
                "node_group_name_prefix": f"{config.cluster_name}-{pool}-",
                "instance_types": [instance_type(config, pool)],
                "ami_type": ami_type(config, pool),
                "disk_size": DISK_SIZES[pool],
                "scaling": {"desired_size": size, "min_size": size, "max_size": max(size, 1)},
                "labels": dict(POOLS[pool].node_labels),
                "taints": eks_taints(pool),
            }
        )
    return specs


def aws_tags(config: StackConfig) -> dict[str, str]:
    """Return the tags every AWS resource of the stack carries (find and cost them by stack)."""
    return {**PART_OF, "qhybrid.io/stack": config.stack, "qhybrid.io/cluster": config.cluster_name}


def node_assume_role_policy() -> str:
    """Return the trust policy that lets EC2 instances assume the node role (JSON text)."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
    )


def _gpu_placement() -> dict[str, Any]:
    """Return nodeSelector, tolerations and affinity that put a DaemonSet on the gpu pool only.

    ``affinity`` is spelled out because the device plugin chart's default affinity
    requires Node Feature Discovery labels this cluster does not run; Helm replaces
    lists wholesale, so our ``nodeSelectorTerms`` drop the chart's.
    """
    placement = pool_placement(GPU_POOL)
    term = {"matchExpressions": [{"key": POOL_LABEL, "operator": "In", "values": [GPU_POOL]}]}
    return {
        "nodeSelector": placement["nodeSelector"],
        "tolerations": placement["tolerations"],
        "affinity": {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}
        },
    }


def nvidia_device_plugin_values() -> dict[str, Any]:
    """Return the nvidia-device-plugin chart values: run on the gpu pool, tolerate exactly its taint."""
    return {**_gpu_placement(), "gfd": {"enabled": False}}


def dcgm_exporter_values() -> dict[str, Any]:
    """Return the dcgm-exporter chart values: on the gpu pool, scraped by kube-prometheus-stack."""
    return {
        **_gpu_placement(),
        "serviceMonitor": {
            "enabled": True,
            "interval": "15s",
            # kube-prometheus-stack selects ServiceMonitors by its release label.
            "additionalLabels": dict(PROMETHEUS_SELECTOR_LABELS),
        },
    }
