"""The shared result cache's platform part: Valkey, its Service, NetworkPolicy and ServiceMonitor."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from infra.objects import create_object
from qhybrid.blueprint import cache
from qhybrid.blueprint.config import StackConfig


@dataclass(frozen=True, kw_only=True)
class ResultCacheArgs:
    """Config, the cluster's provider, and what must exist first (the ServiceMonitor CRD's part)."""

    config: StackConfig
    provider: k8s.Provider
    after: Sequence[pulumi.Resource] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        """A stack with the cache turned off creates no ResultCache at all."""
        if not self.config.cache_enabled:
            raise ValueError("cacheEnabled is false: do not create the ResultCache part")


class ResultCache(pulumi.ComponentResource):
    """One Valkey that the workflow's generate and execute pods share; nothing else may reach it."""

    url: pulumi.Output[str]

    def __init__(self, name: str, args: ResultCacheArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """Create the namespace first, then the rest; the ServiceMonitor after ``args.after``."""
        super().__init__("qhybrid:cache:ResultCache", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        objects = cache.cache_objects(args.config)
        ns = create_object(objects[0], child)
        for obj in objects[1:]:
            needs: list[pulumi.Resource] = [ns]
            if obj["kind"] == "ServiceMonitor":
                needs += list(args.after)
            create_object(obj, child.merge(pulumi.ResourceOptions(depends_on=needs)))
        self.url = pulumi.Output.from_input(cache.cache_url(args.config))
        self.register_outputs({"url": self.url})
