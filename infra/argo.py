"""Argo Workflows: its Helm release and the workflow namespace its pods run in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.objects import create_object, helm_release
from qhybrid.blueprint import argo
from qhybrid.blueprint.config import StackConfig
from qhybrid.blueprint.names import ARGO_NAMESPACE, ARGO_RELEASE
from qhybrid.blueprint.namespaces import platform_namespace
from qhybrid.blueprint.versions import ARGO_WORKFLOWS


@dataclass(frozen=True, kw_only=True)
class ArgoWorkflowsArgs:
    """What the Argo part needs: config, the cluster's provider, S3 secrets when artifactStore=s3."""

    config: StackConfig
    provider: k8s.Provider
    s3_access_key: pulumi.Input[str] | None = None
    s3_secret_key: pulumi.Input[str] | None = None
    extra_values: dict[str, Any] = field(default_factory=dict)  # e.g. metrics settings

    def __post_init__(self) -> None:
        """S3 artifacts need both credentials."""
        if self.config.artifact_store == "s3" and (self.s3_access_key is None or self.s3_secret_key is None):
            raise ValueError("artifactStore is s3: artifactS3AccessKey and artifactS3SecretKey are required")


class ArgoWorkflows(pulumi.ComponentResource):
    """The Argo controller and server, and the least-privileged home of workflow pods."""

    workflow_namespace: pulumi.Output[str]
    release: k8s.helm.v3.Release

    def __init__(
        self, name: str, args: ArgoWorkflowsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Create the namespaces, the chart release and the workflow namespace's objects."""
        super().__init__("qhybrid:argo:ArgoWorkflows", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        system_ns = create_object(platform_namespace(ARGO_NAMESPACE), child)
        objects = argo.argo_objects(args.config, args.s3_access_key, args.s3_secret_key)
        workflow_ns = create_object(objects[0], child)
        # The chart creates RBAC in the workflow namespace, so both namespaces come first.
        self.release = helm_release(
            ARGO_RELEASE,
            chart=ARGO_WORKFLOWS,
            namespace=ARGO_NAMESPACE,
            values=argo.helm_values(args.config, args.extra_values),
            opts=child.merge(pulumi.ResourceOptions(depends_on=[system_ns, workflow_ns])),
        )
        for obj in objects[1:]:
            create_object(obj, child.merge(pulumi.ResourceOptions(depends_on=[workflow_ns])))
        self.workflow_namespace = pulumi.Output.from_input(args.config.workflow_namespace)
        self.workflow_namespace_resource = workflow_ns
        self.register_outputs({"workflow_namespace": self.workflow_namespace})
