"""The QPU gateway's platform part: credentials Secret, Deployment, Service, PDB, policies."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from infra.objects import create_object
from qhybrid.blueprint import gateway
from qhybrid.blueprint.config import StackConfig


@dataclass(frozen=True, kw_only=True)
class QpuGatewayArgs:
    """Config, the cluster's provider and the provider token (a Pulumi secret, or None)."""

    config: StackConfig
    provider: k8s.Provider
    provider_token: pulumi.Input[str] | None

    def __post_init__(self) -> None:
        """A plain string token would end up unencrypted in the state: refuse it."""
        if isinstance(self.provider_token, str):
            raise ValueError("provider_token must be a Pulumi secret Output, not a plain string")


class QpuGateway(pulumi.ComponentResource):
    """One gateway per cluster holds the provider credentials; workers only reach its Service."""

    service_url: pulumi.Output[str]

    def __init__(self, name: str, args: QpuGatewayArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """Create the gateway's objects in order: namespace, then the rest, pods after the Secret."""
        super().__init__("qhybrid:gateway:QpuGateway", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        objects = gateway.gateway_objects(args.config, args.provider_token)
        ns = create_object(objects[0], child)
        created: dict[str, pulumi.CustomResource] = {}
        for obj in objects[1:]:
            needs: list[pulumi.Resource] = [ns]
            if obj["kind"] == "Deployment":
                # Everything the pod mounts or runs as exists before it is scheduled, and
                # its service account may create TokenReviews before it serves a worker.
                needs += [
                    created[kind]
                    for kind in (
                        "Secret",
                        "ServiceAccount",
                        "ClusterRoleBinding",
                        "ConfigMap",
                        "PersistentVolumeClaim",
                    )
                ]
            created[obj["kind"]] = create_object(obj, child.merge(pulumi.ResourceOptions(depends_on=needs)))
        service = gateway.service(args.config)
        self.service_url = pulumi.Output.from_input(
            f"http://{service['metadata']['name']}.{service['metadata']['namespace']}.svc:{args.config.gateway_port}"
        )
        self.register_outputs({"service_url": self.service_url})
