"""The local cluster as data: kind's cluster config and the commands that create and delete it.

One control-plane node, then ``pool_sizes()[pool]`` workers per pool. Every worker
carries its pool's node labels (kind's ``labels`` field, passed to the kubelet as
``--node-labels``) and, for tainted pools, its pool's taints through a kubeadm
``JoinConfiguration`` patch (``nodeRegistration.taints``, which kubeadm registers
the node with). The taint list form is the same in kubeadm v1beta3 and v1beta4,
unlike ``kubeletExtraArgs`` (a map in v1beta3, a list in v1beta4), so the patch
keeps working whichever kubeadm API the node image speaks.

The config reaches ``kind create cluster --config -`` on stdin, so nothing is
written to a file that a later ``pulumi destroy`` might not find.
"""

from __future__ import annotations

import shlex
from typing import Any

import yaml

from qhybrid.blueprint.argo import KIND_ARTIFACT_NODE_PATH
from qhybrid.blueprint.config import ConfigError, StackConfig
from qhybrid.blueprint.pools import POOLS
from qhybrid.blueprint.versions import KIND_NODE_IMAGE

API_VERSION = "kind.x-k8s.io/v1alpha4"
# `kind create cluster` returns once the control plane is Ready (workers have joined by then).
CREATE_WAIT = "5m"


def check_kind_config(config: StackConfig) -> None:
    """Refuse settings a kind cluster cannot honour; the error names the key."""
    if config.cluster != "kind":
        raise ConfigError("cluster", f"is {config.cluster!r}; the kind config needs cluster kind")
    if config.gpu_vendor != "none":
        raise ConfigError(
            "gpuVendor",
            f"is {config.gpu_vendor!r} but kind nodes have no GPUs; set gpuVendor none on a kind stack "
            "(the gpu pool's workers then simulate on CPU)",
        )


def artifact_host_path(config: StackConfig) -> str:
    """Return the host directory every kind worker mounts as the shared artifact volume."""
    return f"/tmp/qhybrid-{config.cluster_name}-artifacts"


def _worker(pool: str, host_path: str) -> dict[str, Any]:
    node: dict[str, Any] = {
        "role": "worker",
        "image": KIND_NODE_IMAGE,
        "labels": dict(POOLS[pool].node_labels),
        # One host directory in every worker: a hostPath volume on it is ReadWriteMany
        # across the cluster (kind's own provisioner offers ReadWriteOnce only).
        "extraMounts": [{"hostPath": host_path, "containerPath": KIND_ARTIFACT_NODE_PATH}],
    }
    taints = POOLS[pool].taints
    if taints:
        # kubeadm applies JoinConfiguration.nodeRegistration.taints when the worker registers,
        # so no pod can land on it before the taint exists.
        patch = {"kind": "JoinConfiguration", "nodeRegistration": {"taints": [dict(t) for t in taints]}}
        node["kubeadmConfigPatches"] = [yaml.safe_dump(patch, sort_keys=False)]
    return node


def kind_cluster_config(config: StackConfig) -> dict[str, Any]:
    """Return the kind Cluster config: one control plane, then each pool's labelled, tainted workers."""
    check_kind_config(config)
    nodes: list[dict[str, Any]] = [{"role": "control-plane", "image": KIND_NODE_IMAGE}]
    for pool, size in config.pool_sizes().items():
        nodes.extend(_worker(pool, artifact_host_path(config)) for _ in range(size))
    return {"kind": "Cluster", "apiVersion": API_VERSION, "name": config.cluster_name, "nodes": nodes}


def kind_config_yaml(config: StackConfig) -> str:
    """Return the kind config as the YAML text fed to ``kind create cluster --config -``."""
    return yaml.safe_dump(kind_cluster_config(config), sort_keys=False)


def worker_taints(node: dict[str, Any]) -> list[dict[str, str]]:
    """Return the taints a kind node's kubeadm JoinConfiguration patches register it with."""
    taints: list[dict[str, str]] = []
    for patch in node.get("kubeadmConfigPatches", []):
        document = yaml.safe_load(patch)
        if document.get("kind") == "JoinConfiguration":
            taints.extend(document.get("nodeRegistration", {}).get("taints", []))
    return taints


def kind_create_command(config: StackConfig) -> str:
    """Return the shell command that creates the cluster from the config on stdin.

    The shared artifact directory is created first, writable by the workers' uid 10001
    (sticky, like /tmp), since hostPath volumes ignore the pod's fsGroup. Once the
    cluster is up, the worker and gateway images are loaded into its nodes when they
    have been built (``make images``), so ``pulumi up`` finds them without a registry;
    after a rebuild, ``make kind-load`` loads them again. kind has no GPUs, so the
    GPU worker image is not loaded here.
    """
    name = shlex.quote(config.cluster_name)
    host = shlex.quote(artifact_host_path(config))
    loads = " ; ".join(
        f"if docker image inspect {shlex.quote(image)} >/dev/null 2>&1; then "
        f"kind load docker-image {shlex.quote(image)} --name {name}; fi"
        for image in (config.worker_image, config.gateway_image)
    )
    return (
        f"mkdir -p {host} && chmod 1777 {host} && "
        f"kind create cluster --name {name} --config - --wait {CREATE_WAIT} && {{ {loads} ; }}"
    )


def kind_delete_command(config: StackConfig) -> str:
    """Return the shell command that deletes the cluster, and succeeds if it is already gone.

    Some kind releases fail ``kind delete cluster`` on a missing cluster; a cluster removed
    by hand must not block ``pulumi destroy``, while a failing delete still fails it.
    """
    name = shlex.quote(config.cluster_name)
    return f"if kind get clusters 2>/dev/null | grep -qx {name}; then kind delete cluster --name {name}; fi"


def kind_kubeconfig_command(config: StackConfig) -> str:
    """Return the shell command that prints the cluster's kubeconfig (host-reachable API address)."""
    return f"kind get kubeconfig --name {shlex.quote(config.cluster_name)}"
