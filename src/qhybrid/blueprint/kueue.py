"""Kueue as data: the controller's configuration, ResourceFlavors, ClusterQueues, LocalQueues.

Each resource class (cpu, gpu, qpu) gets a flavor bound to its pool by node
labels and tolerations (Kueue injects both into every pod it admits on that
flavor), a ClusterQueue with the quota from config, and a LocalQueue in the
workflow namespace. All ClusterQueues share one cohort. The cpu queue lists the
gpu flavor second with no quota of its own, so CPU work may borrow the GPU
pool's idle cores; the gpu queue can reclaim them by preemption, which the
workflow's retry strategy survives.
"""

from __future__ import annotations

from typing import Any

import yaml

from qhybrid.blueprint.config import StackConfig
from qhybrid.blueprint.helm_values import merge_values
from qhybrid.blueprint.names import PART_OF
from qhybrid.blueprint.pools import POOLS, RESOURCE_CLASSES, pool_placement

# v1beta2 is Kueue's storage version since 0.16; v1beta1 is served but deprecated. What
# changed for our objects: ClusterQueue.spec.cohort is cohortName (a Cohort's name; an
# implicit cohort when no Cohort object exists), flavorFungibility lost Borrow/Preempt
# (we use TryNextFlavor), and the controller Configuration is config v1beta2, where
# waitForPodsReady is on when present (no ``enable`` field).
API_VERSION = "kueue.x-k8s.io/v1beta2"
CONFIG_API_VERSION = "config.kueue.x-k8s.io/v1beta2"


def manager_configuration(config: StackConfig) -> dict[str, Any]:
    """Return Kueue's controller Configuration: pod integration for the workflow namespace only."""
    return {
        "apiVersion": CONFIG_API_VERSION,
        "kind": "Configuration",
        "health": {"healthProbeBindAddress": ":8081"},
        "metrics": {"bindAddress": ":8443", "enableClusterQueueResources": True},
        "webhook": {"port": 9443},
        "leaderElection": {"leaderElect": True, "resourceName": "c1f6bfd2.kueue.x-k8s.io"},
        "controller": {
            "groupKindConcurrency": {
                "Job.batch": 5,
                "Pod": 5,
                "Workload.kueue.x-k8s.io": 5,
                "LocalQueue.kueue.x-k8s.io": 1,
                "ClusterQueue.kueue.x-k8s.io": 1,
                "ResourceFlavor.kueue.x-k8s.io": 1,
            }
        },
        "clientConnection": {"qps": 50, "burst": 100},
        # Argo creates one plain Pod per step: the pod integration is how they are admitted.
        # Only labelled pods in the workflow namespace are managed; nothing else is gated.
        "manageJobsWithoutQueueName": False,
        "managedJobsNamespaceSelector": {
            "matchLabels": {"kubernetes.io/metadata.name": config.workflow_namespace}
        },
        "integrations": {"frameworks": ["batch/job", "pod"]},
        # A pod that never starts (image pull, node lost) releases its quota and is requeued.
        "waitForPodsReady": {
            "timeout": "10m",
            "blockAdmission": False,
            "requeuingStrategy": {"timestamp": "Eviction", "backoffLimitCount": 5},
        },
    }


def helm_values(config: StackConfig, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return the Kueue chart's values; ``extra`` (e.g. metrics settings) is merged on top."""
    placement = pool_placement("system")
    values: dict[str, Any] = {
        "managerConfig": {"controllerManagerConfigYaml": yaml.safe_dump(manager_configuration(config))},
        "controllerManager": {
            "replicas": 1,
            "nodeSelector": placement["nodeSelector"],
            "tolerations": placement["tolerations"],
        },
    }
    return merge_values(values, extra or {})


def resource_flavor(resource_class: str) -> dict[str, Any]:
    """Return the ResourceFlavor of a resource class, bound to its pool."""
    pool = POOLS[RESOURCE_CLASSES[resource_class].pool]
    spec: dict[str, Any] = {"nodeLabels": pool.node_labels}
    if pool.tolerations:
        spec["tolerations"] = pool.tolerations
    return {
        "apiVersion": API_VERSION,
        "kind": "ResourceFlavor",
        "metadata": {"name": RESOURCE_CLASSES[resource_class].flavor, "labels": dict(PART_OF)},
        "spec": spec,
    }


def _quantity(resource: str, amount: int) -> int | str:
    return f"{amount}Gi" if resource == "memory" else amount


def _flavor_quota(flavor: str, quotas: dict[str, int]) -> dict[str, Any]:
    return {
        "name": flavor,
        "resources": [
            {"name": name, "nominalQuota": _quantity(name, amount)} for name, amount in quotas.items()
        ],
    }


def _class_quotas(config: StackConfig, resource_class: str) -> dict[str, int]:
    """Return Kubernetes resource name -> quota for one class, from config."""
    raw = config.quotas(resource_class)
    quotas = {"cpu": raw["cpu"], "memory": raw["memory_gi"]}
    if resource_class == "gpu" and config.gpu_resource is not None:
        quotas[config.gpu_resource] = raw["gpus"]
    if resource_class == "qpu":
        quotas["pods"] = raw["pods"]  # each QPU-branch pod holds one gateway slot
    return quotas


def cluster_queue(config: StackConfig, resource_class: str) -> dict[str, Any]:
    """Return the ClusterQueue of a resource class, in the stack's cohort."""
    rc = RESOURCE_CLASSES[resource_class]
    quotas = _class_quotas(config, resource_class)
    flavors = [_flavor_quota(rc.flavor, quotas)]
    if resource_class == "cpu":
        # Borrow the GPU pool's idle cores: zero nominal quota, so cpu work runs there
        # only on quota the gpu queue lends through the cohort.
        flavors.append(_flavor_quota(RESOURCE_CLASSES["gpu"].flavor, {"cpu": 0, "memory": 0}))
    return {
        "apiVersion": API_VERSION,
        "kind": "ClusterQueue",
        "metadata": {"name": rc.cluster_queue, "labels": dict(PART_OF)},
        "spec": {
            "cohortName": config.cohort,
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": config.workflow_namespace}},
            "queueingStrategy": "BestEffortFIFO",
            "resourceGroups": [{"coveredResources": list(quotas), "flavors": flavors}],
            "flavorFungibility": {"whenCanBorrow": "TryNextFlavor", "whenCanPreempt": "TryNextFlavor"},
            "preemption": {
                "reclaimWithinCohort": "Any",
                "borrowWithinCohort": {"policy": "Never"},
                "withinClusterQueue": "LowerPriority",
            },
        },
    }


def local_queue(config: StackConfig, resource_class: str) -> dict[str, Any]:
    """Return the LocalQueue that workflow pods of a resource class name in their queue label."""
    rc = RESOURCE_CLASSES[resource_class]
    return {
        "apiVersion": API_VERSION,
        "kind": "LocalQueue",
        "metadata": {"name": rc.local_queue, "namespace": config.workflow_namespace, "labels": dict(PART_OF)},
        "spec": {"clusterQueue": rc.cluster_queue},
    }


def flavors() -> list[dict[str, Any]]:
    """Return every ResourceFlavor."""
    return [resource_flavor(name) for name in RESOURCE_CLASSES]


def queues(config: StackConfig) -> list[dict[str, Any]]:
    """Return every ClusterQueue, then every LocalQueue."""
    return [cluster_queue(config, name) for name in RESOURCE_CLASSES] + [
        local_queue(config, name) for name in RESOURCE_CLASSES
    ]


def kueue_objects(config: StackConfig) -> list[dict[str, Any]]:
    """Return every Kueue object the blueprint creates (the chart's own objects excluded)."""
    return flavors() + queues(config)
