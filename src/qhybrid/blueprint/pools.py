"""Node pools, resource classes and the tables that tie them together.

A pool is a set of nodes carrying the label ``qhybrid.io/pool=<pool>``. Workload
pools are tainted ``qhybrid.io/pool=<pool>:NoSchedule`` so that only pods that
tolerate them land there; the untainted ``system`` pool runs the platform's own
controllers (Argo, Kueue, Prometheus, Grafana). Each resource class (cpu, gpu,
qpu) has one Kueue ResourceFlavor bound to its pool, one ClusterQueue and one
LocalQueue; Argo templates and Kueue flavors both read these tables, so a
toleration can never disagree with a taint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

POOL_LABEL = "qhybrid.io/pool"
TAINT_EFFECT = "NoSchedule"


@dataclass(frozen=True)
class Pool:
    """A group of nodes with one label value and, for workload pools, one taint."""

    name: str
    tainted: bool
    purpose: str

    @property
    def node_labels(self) -> dict[str, str]:
        """Return the labels every node of the pool carries."""
        return {POOL_LABEL: self.name}

    @property
    def taints(self) -> list[dict[str, str]]:
        """Return the pool's node taints (Kubernetes Taint objects)."""
        if not self.tainted:
            return []
        return [{"key": POOL_LABEL, "value": self.name, "effect": TAINT_EFFECT}]

    @property
    def tolerations(self) -> list[dict[str, str]]:
        """Return the pod tolerations that match the pool's taints exactly."""
        return [
            {"key": t["key"], "operator": "Equal", "value": t["value"], "effect": t["effect"]}
            for t in self.taints
        ]


POOLS: dict[str, Pool] = {
    "system": Pool("system", tainted=False, purpose="platform controllers: Argo, Kueue, monitoring"),
    "cpu": Pool("cpu", tainted=True, purpose="CPU simulation of subexperiments"),
    "gpu": Pool("gpu", tainted=True, purpose="GPU simulation of wide subexperiments"),
    "qpu-gateway": Pool("qpu-gateway", tainted=True, purpose="the QPU gateway and the QPU-branch workers"),
}


@dataclass(frozen=True)
class ResourceClass:
    """One branch of the cutting fan-out: its Kueue flavor, queues and pool."""

    name: str  # cpu | gpu | qpu
    pool: str
    flavor: str
    cluster_queue: str
    local_queue: str


RESOURCE_CLASSES: dict[str, ResourceClass] = {
    name: ResourceClass(name, pool, flavor=name, cluster_queue=f"cq-{name}", local_queue=f"queue-{name}")
    for name, pool in (("cpu", "cpu"), ("gpu", "gpu"), ("qpu", "qpu-gateway"))
}

# GPU vendor -> the extended resource its device plugin advertises. "none" is a
# GPU pool without accelerators (kind): its workers simulate on CPU.
GPU_RESOURCES: dict[str, str | None] = {"nvidia": "nvidia.com/gpu", "amd": "amd.com/gpu", "none": None}

KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


def pool_placement(pool: str) -> dict[str, Any]:
    """Return the nodeSelector and tolerations that put a pod on ``pool``."""
    if pool not in POOLS:
        raise KeyError(f"unknown pool {pool!r}; pools are {sorted(POOLS)}")
    return {"nodeSelector": POOLS[pool].node_labels, "tolerations": POOLS[pool].tolerations}
