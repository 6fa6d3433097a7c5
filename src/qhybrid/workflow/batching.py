"""How a branch's unique subexperiments become pods: per-pod requests, slots from quota, batches.

Argo adds roughly ten seconds of overhead to every pod (scheduling, the init and
wait containers, status reporting; argo-workflows issues 6262 and 12381), which
dominates a simulation of a few qubits. So each branch (cpu, gpu, qpu) gets as
many batch pods as its Kueue ClusterQueue admits at once ("slots"), and its
unique subexperiments are split evenly over them, never one pod per subexperiment
unless asked (``per_pod``).

A batch is ``{"start": A, "stop": B, "count": N}`` for one branch: the unique
subexperiments of [A, B) that the plan puts on that branch's backend (plan order
interleaves backends). ``qhybrid step execute --start A --stop B --backend X``
runs exactly those and writes ``results/range-A-B-X.npz``; a retried pod rewrites
the same file name, and the local runner's ``--resume`` counts it as done.

This module is pure (no Kubernetes, no Hera): the ``step batches`` entry point
and the workflow builder both use it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass

from qhybrid.blueprint.config import StackConfig
from qhybrid.blueprint.pools import RESOURCE_CLASSES
from qhybrid.cutting.policies import get_policy
from qhybrid.errors import InputError


@dataclass(frozen=True)
class Requests:
    """A container's requests (equal to its limits): millicores, MiB of memory, GPUs."""

    cpu_milli: int
    memory_mi: int
    gpus: int = 0

    def __add__(self, other: Requests) -> Requests:
        """Return the sum of two containers' requests."""
        return Requests(
            self.cpu_milli + other.cpu_milli, self.memory_mi + other.memory_mi, self.gpus + other.gpus
        )


# The one table of per-pod requests. The main container runs one single-threaded
# simulation at a time; Argo's wait sidecar is pinned (podSpecPatch) to EXECUTOR so
# a pod's total, which is what Kueue charges against the quota, is a round number.
EXECUTOR = Requests(cpu_milli=100, memory_mi=128)
MAIN_REQUESTS: dict[str, Requests] = {
    "cpu": Requests(cpu_milli=900, memory_mi=1920),
    "gpu": Requests(cpu_milli=900, memory_mi=1920, gpus=1),
    "qpu": Requests(cpu_milli=400, memory_mi=896),
}


def pod_requests(resource_class: str, config: StackConfig) -> Requests:
    """Return what one pod of ``resource_class`` charges the quota (main container + wait sidecar)."""
    main = MAIN_REQUESTS[resource_class]
    if resource_class == "gpu" and config.gpu_resource is None:
        main = Requests(main.cpu_milli, main.memory_mi)  # a GPU pool without GPUs (kind)
    return main + EXECUTOR


def slots(resource_class: str, config: StackConfig) -> int:
    """Return how many pods of ``resource_class`` its ClusterQueue's nominal quota admits at once."""
    quota = config.quotas(resource_class)
    pod = pod_requests(resource_class, config)
    limits = [quota["cpu"] * 1000 // pod.cpu_milli, quota["memory_gi"] * 1024 // pod.memory_mi]
    if pod.gpus:
        limits.append(quota["gpus"] // pod.gpus)
    if resource_class == "qpu":
        limits.append(quota["pods"])
    return max(0, min(limits))


def branches_for(policy: str) -> tuple[str, ...]:
    """Return the resource classes a policy can send subexperiments to, in RESOURCE_CLASSES order."""
    used = {backend for _, backend in get_policy(policy).rules}
    return tuple(name for name in RESOURCE_CLASSES if name in used)


def branch_slots(config: StackConfig, policy: str) -> dict[str, int]:
    """Return slots per branch of ``policy``; a branch its queue can never admit is refused.

    On a stack without GPUs (gpuVendor none, as on kind) the gpu pool's nodes cannot run
    the gpu backend, so there is no gpu branch: a policy that runs everything on the GPU
    is refused here, and one that sends only some subexperiments there (width: wider
    than 20 qubits) gets no gpu branch, so the workflow's batches step refuses, in one
    line and before any subexperiment runs, a plan that needs one.
    """
    result = {}
    branches = branches_for(policy)
    if "gpu" in branches and config.gpu_resource is None:
        if branches == ("gpu",):
            raise InputError(
                "--policy",
                f"stack {config.stack!r} has no GPUs (gpuVendor {config.gpu_vendor}): policy {policy!r} "
                "runs everything on the gpu backend; use --policy cpu, or a stack with GPUs",
            )
        branches = tuple(name for name in branches if name != "gpu")
    for name in branches:
        result[name] = slots(name, config)
        if result[name] < 1:
            pod = pod_requests(name, config)
            raise InputError(
                "--stack",
                f"stack {config.stack!r}: queue {RESOURCE_CLASSES[name].local_queue} admits no pod of "
                f"{pod} (quota {config.quotas(name)}); policy {policy!r} needs that branch",
            )
    return result


def split_batches(
    backends: Sequence[str],
    branch_slots: Mapping[str, int],
    per_pod: int | None = None,
    done: Set[int] = frozenset(),
) -> dict[str, list[dict[str, int]]]:
    """Split each branch's unique ids (``backends``: the backend of each, plan order) into batches.

    Without ``per_pod``, a branch with n unique subexperiments gets min(slots, n)
    batches whose sizes differ by at most one; with it, batches of ``per_pod``
    (``per_pod=1`` is the paper's one pod per subexperiment). Every branch named in
    ``branch_slots`` gets a list (possibly empty); a backend without a branch is refused.
    Ids in ``done`` (results generate already served from the cache) get no batch.
    """
    if per_pod is not None and per_pod < 1:
        raise InputError("--per-pod", f"must be at least 1, got {per_pod}")
    unknown = sorted(set(backends) - set(branch_slots))
    if unknown:
        counts = {name: list(backends).count(name) for name in unknown}
        raise InputError(
            "--slots",
            f"the plan puts subexperiments on {counts} but this workflow has no branch for "
            f"{unknown} (a stack without GPUs has no gpu branch); choose another policy or stack",
        )
    result: dict[str, list[dict[str, int]]] = {}
    for name, count in branch_slots.items():
        ids = [uid for uid, backend in enumerate(backends) if backend == name and uid not in done]
        if not ids:
            result[name] = []
            continue
        if count < 1:
            raise InputError("--slots", f"branch {name!r} has {len(ids)} subexperiments but {count} slots")
        batches = math.ceil(len(ids) / per_pod) if per_pod else min(count, len(ids))
        size, extra = divmod(len(ids), batches)
        result[name] = []
        position = 0
        for b in range(batches):
            chunk = ids[position : position + size + (1 if b < extra else 0)]
            position += len(chunk)
            result[name].append({"start": chunk[0], "stop": chunk[-1] + 1, "count": len(chunk)})
    return result


def parse_slots(values: Sequence[str]) -> dict[str, int]:
    """Parse ``--slots cpu=4`` flags into {branch: slots}."""
    result: dict[str, int] = {}
    for value in values:
        name, sep, number = value.partition("=")
        if not sep or name not in RESOURCE_CLASSES or not number.isdigit():
            raise InputError("--slots", f"{value!r} is not BRANCH=N, BRANCH one of {list(RESOURCE_CLASSES)}")
        result[name] = int(number)
    return result
