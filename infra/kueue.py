"""Kueue: its Helm release, the resource flavors and the queues of each resource class."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.objects import create_object, helm_release
from qhybrid.blueprint import kueue
from qhybrid.blueprint.config import StackConfig
from qhybrid.blueprint.names import KUEUE_NAMESPACE, KUEUE_RELEASE
from qhybrid.blueprint.namespaces import platform_namespace
from qhybrid.blueprint.versions import KUEUE


@dataclass(frozen=True, kw_only=True)
class KueueArgs:
    """Config, the cluster's provider, and the workflow namespace the LocalQueues live in."""

    config: StackConfig
    provider: k8s.Provider
    workflow_namespace: pulumi.Resource
    extra_values: dict[str, Any] = field(default_factory=dict)  # e.g. metrics settings


class Kueue(pulumi.ComponentResource):
    """Kueue with the pod integration for the workflow namespace, flavors and queues."""

    cluster_queues: pulumi.Output[list[str]]
    local_queues: pulumi.Output[list[str]]

    def __init__(self, name: str, args: KueueArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """Create the release, then flavors, ClusterQueues and LocalQueues, each after what it uses."""
        super().__init__("qhybrid:kueue:Kueue", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        ns = create_object(platform_namespace(KUEUE_NAMESPACE), child)
        self.release = helm_release(
            KUEUE_RELEASE,
            chart=KUEUE,
            namespace=KUEUE_NAMESPACE,
            values=kueue.helm_values(args.config, args.extra_values),
            opts=child.merge(pulumi.ResourceOptions(depends_on=[ns])),
        )
        # The chart installs the CRDs (and the webhooks that check these objects).
        after_crds = child.merge(pulumi.ResourceOptions(depends_on=[self.release]))
        flavors = [create_object(obj, after_crds) for obj in kueue.flavors()]
        objects = kueue.queues(args.config)
        cluster_queue_objs = [o for o in objects if o["kind"] == "ClusterQueue"]
        local_queue_objs = [o for o in objects if o["kind"] == "LocalQueue"]
        cluster_queues = [
            create_object(obj, child.merge(pulumi.ResourceOptions(depends_on=[self.release, *flavors])))
            for obj in cluster_queue_objs
        ]
        for obj in local_queue_objs:
            create_object(
                obj,
                child.merge(
                    pulumi.ResourceOptions(
                        depends_on=[self.release, args.workflow_namespace, *cluster_queues]
                    )
                ),
            )
        self.cluster_queues = pulumi.Output.from_input([o["metadata"]["name"] for o in cluster_queue_objs])
        self.local_queues = pulumi.Output.from_input([o["metadata"]["name"] for o in local_queue_objs])
        self.register_outputs({"cluster_queues": self.cluster_queues, "local_queues": self.local_queues})
