"""The experiment-tracking part: the MLflow server, its Secrets, volume or database, Service and policy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from infra.objects import create_object
from qhybrid.blueprint import tracking
from qhybrid.blueprint.config import StackConfig


@dataclass(frozen=True, kw_only=True)
class TrackingServerArgs:
    """Config, the provider, the S3 keys and database URI (Pulumi secrets), and what must exist first."""

    config: StackConfig
    provider: k8s.Provider
    s3_access_key: pulumi.Input[str] | None
    s3_secret_key: pulumi.Input[str] | None
    database_uri: pulumi.Input[str] | None = None
    after: Sequence[pulumi.Resource] = field(default_factory=tuple)  # the object store, the monitoring CRDs

    def __post_init__(self) -> None:
        """Refuse plain-text secrets and a tracking server turned off."""
        if not self.config.tracking_enabled:
            raise ValueError("trackingEnabled is false: do not create the TrackingServer part")
        for name in ("s3_access_key", "s3_secret_key", "database_uri"):
            if isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a Pulumi secret Output, not a plain string")


class TrackingServer(pulumi.ComponentResource):
    """One MLflow tracking server; its artifacts in the object store's (or the stack's) bucket."""

    url: pulumi.Output[str]

    def __init__(
        self, name: str, args: TrackingServerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Create the namespace, then what the pod mounts, then the pod; the monitor after ``args.after``."""
        super().__init__("qhybrid:tracking:TrackingServer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        objects = tracking.tracking_objects(
            args.config, args.s3_access_key, args.s3_secret_key, args.database_uri
        )
        ns = create_object(objects[0], child)
        mounted: list[pulumi.Resource] = []
        for obj in objects[1:]:
            needs: list[pulumi.Resource] = [ns]
            if obj["kind"] == "Deployment":
                needs += mounted + list(args.after)
            if obj["kind"] == "ServiceMonitor":
                needs += list(args.after)
            created = create_object(obj, child.merge(pulumi.ResourceOptions(depends_on=needs)))
            if obj["kind"] in ("Secret", "ServiceAccount", "PersistentVolumeClaim"):
                mounted.append(created)
        self.url = pulumi.Output.from_input(tracking.url())
        self.register_outputs({"url": self.url})
