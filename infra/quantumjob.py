"""The QuantumJob part: its CRD and the operator that turns each QuantumJob into an Argo Workflow."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from infra.objects import create_object
from qhybrid.blueprint import quantumjob
from qhybrid.blueprint.config import StackConfig


@dataclass(frozen=True, kw_only=True)
class QuantumJobOperatorArgs:
    """Config, the cluster's provider, and what must exist first.

    ``workflows``: the part that makes the workflow namespace and the Workflow CRD (Argo);
    ``monitoring``: the part whose CRDs the ServiceMonitor needs.
    """

    config: StackConfig
    provider: k8s.Provider
    workflows: Sequence[pulumi.Resource] = field(default_factory=tuple)
    monitoring: Sequence[pulumi.Resource] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        """The operator creates Workflows: it needs the part that installs Argo."""
        if not self.workflows:
            raise ValueError("workflows: give the Argo part (the workflow namespace and the Workflow CRD)")


class QuantumJobOperator(pulumi.ComponentResource):
    """The QuantumJob CRD; its operator in a restricted namespace, with a Role in the workflow namespace."""

    crd_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: QuantumJobOperatorArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Create the CRD and namespace first, the Role after Argo, the ServiceMonitor after monitoring."""
        super().__init__("qhybrid:operator:QuantumJobOperator", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        crd, namespace, *rest = quantumjob.quantumjob_objects(args.config)
        crd_resource = create_object(crd, child)
        ns = create_object(namespace, child)
        workflow_namespace = args.config.workflow_namespace
        for obj in rest:
            needs: list[pulumi.Resource] = [ns, crd_resource]
            if obj["metadata"].get("namespace") == workflow_namespace:
                needs += list(args.workflows)
            if obj["kind"] == "ServiceMonitor":
                needs += list(args.monitoring)
            create_object(obj, child.merge(pulumi.ResourceOptions(depends_on=needs)))
        self.crd_name = pulumi.Output.from_input(crd["metadata"]["name"])
        self.register_outputs({"crdName": self.crd_name})
