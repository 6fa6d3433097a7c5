"""The object store's platform part: SeaweedFS (S3) with its identity Secret, Service, policy, monitor."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from infra.objects import create_object
from qhybrid.blueprint import objectstore
from qhybrid.blueprint.config import StackConfig


@dataclass(frozen=True, kw_only=True)
class ObjectStoreArgs:
    """Config, the cluster's provider, the S3 keys (Pulumi secrets) and what must exist first."""

    config: StackConfig
    provider: k8s.Provider
    access_key: pulumi.Input[str] | None
    secret_key: pulumi.Input[str] | None
    after: Sequence[pulumi.Resource] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        """Refuse plain-text keys (they would sit unencrypted in the state) and a store turned off."""
        if not self.config.object_store_enabled:
            raise ValueError("objectStoreEnabled is false: do not create the ObjectStore part")
        for name in ("access_key", "secret_key"):
            if isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a Pulumi secret Output, not a plain string")


class ObjectStore(pulumi.ComponentResource):
    """One SeaweedFS server: MLflow's artifacts, and workflows' when a stack points its S3 at it."""

    endpoint: pulumi.Output[str]

    def __init__(self, name: str, args: ObjectStoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """Create the namespace, the Secret before the server, the ServiceMonitor after ``args.after``."""
        super().__init__("qhybrid:objectstore:ObjectStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        objects = objectstore.object_store_objects(args.config, args.access_key, args.secret_key)
        ns = create_object(objects[0], child)
        created: dict[str, pulumi.CustomResource] = {}
        for obj in objects[1:]:
            needs: list[pulumi.Resource] = [ns]
            if obj["kind"] == "StatefulSet":
                needs.append(created["Secret"])
            if obj["kind"] == "ServiceMonitor":
                needs += list(args.after)
            created[obj["kind"]] = create_object(obj, child.merge(pulumi.ResourceOptions(depends_on=needs)))
        self.endpoint = pulumi.Output.from_input(objectstore.endpoint())
        self.register_outputs({"endpoint": self.endpoint})
