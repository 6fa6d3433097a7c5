"""Run Pulumi programs under Pulumi's own mocks and record the resource graph.

``run_program(fn, config, secret_keys)`` runs ``fn`` (which creates resources)
with the mock engine and returns a ``Graph`` of every registration: type, name,
parent, explicit dependencies, provider and the inputs as the engine received
them (secret values unwrapped, so a test can see where a value flows).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.settings import SETTINGS
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # so tests import the Pulumi program as the package `infra`


@dataclass
class Registration:
    type: str
    name: str
    urn: str
    parent: str
    dependencies: list[str]
    provider: str
    inputs: dict[str, Any]
    custom: bool


@dataclass
class Graph:
    registrations: list[Registration] = field(default_factory=list)

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_]

    def named(self, name: str) -> Registration:
        matches = [r for r in self.registrations if r.name == name]
        assert len(matches) == 1, f"{len(matches)} resources named {name!r}"
        return matches[0]

    def by_urn(self, urn: str) -> Registration:
        return next(r for r in self.registrations if r.urn == urn)

    def children_of(self, parent: Registration) -> list[Registration]:
        return [r for r in self.registrations if r.parent == parent.urn]

    def kubernetes_objects(self, kind: str) -> list[Registration]:
        """Registrations of kubernetes:<group>/<version>:<kind> resources."""
        return [
            r for r in self.registrations if r.type.startswith("kubernetes:") and r.type.endswith(f":{kind}")
        ]


class _Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        outputs = dict(args.inputs)
        if args.typ == "command:local:Command":
            # `kind get kubeconfig` prints the kubeconfig; give the mock one to parse.
            outputs.setdefault("stdout", "apiVersion: v1\nkind: Config\nclusters: []\n")
        if args.typ == "eks:index:Cluster":
            outputs.setdefault("kubeconfigJson", '{"apiVersion": "v1", "kind": "Config"}')
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list]:
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return {
                "names": ["us-east-1a", "us-east-1b", "us-east-1c"],
                "zoneIds": ["use1-az1", "use1-az2", "use1-az4"],
            }, []
        return {}, []


class _GraphMonitor(MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks, graph: Graph) -> None:
        super().__init__(mocks)
        self.graph = graph

    def RegisterResource(self, request):  # noqa: N802 (the gRPC method name)
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.graph.registrations.append(
                Registration(
                    type=request.type,
                    name=request.name,
                    urn=response.urn,
                    parent=request.parent,
                    dependencies=list(request.dependencies),
                    provider=request.provider,
                    inputs=rpc.deserialize_properties(request.object),
                    custom=bool(request.custom),
                )
            )
        return response


def run_program(
    program: Callable[[], Any],
    config: Mapping[str, Any],
    secret_keys: Sequence[str] = (),
    *,
    stack: str = "kind",
    graph: Graph | None = None,
) -> Graph:
    """Run ``program`` under mocks with ``config`` (keys ``qhybrid:<key>``) and return its graph.

    Pass ``graph`` to see what was registered even when the program raises.
    """
    graph = graph if graph is not None else Graph()
    # An earlier test's asyncio.run() (the gateway's) leaves the main thread without an
    # event loop, and Pulumi's SDK asks for the current one: give every program its own.
    asyncio.set_event_loop(asyncio.new_event_loop())
    mocks = _Mocks()
    SETTINGS.rpc_manager.clear()
    SETTINGS.outputs.clear()
    pulumi.runtime.set_mocks(
        mocks, project="qhybrid", stack=stack, preview=False, monitor=_GraphMonitor(mocks, graph)
    )
    # As the engine passes them: strings, structured values (YAML lists) as JSON.
    as_text = {k: json.dumps(v) if isinstance(v, list | dict) else str(v) for k, v in config.items()}
    pulumi.runtime.set_all_config(as_text, list(secret_keys))

    def body() -> Any:
        result = program()
        return _sync_await(pulumi.Output.from_input(result).future()) if result is not None else None

    _sync_await(run_pulumi_func(body))
    return graph


@pytest.fixture
def kind_config() -> dict[str, Any]:
    """The kind stack's committed config plus the secrets a deploy needs."""
    return stack_values("kind")


def stack_values(stack: str, **overrides: Any) -> dict[str, Any]:
    import yaml

    document = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())
    values = dict(document["config"])
    values["qhybrid:grafanaAdminPassword"] = "grafana-admin-secret-value"
    values["qhybrid:qpuProviderToken"] = "provider-token-secret-value"
    values["qhybrid:artifactS3AccessKey"] = "s3-access-key-secret-value"
    values["qhybrid:artifactS3SecretKey"] = "s3-secret-key-secret-value"
    values["qhybrid:objectStoreAccessKey"] = "object-store-access-key-secret-value"
    values["qhybrid:objectStoreSecretKey"] = "object-store-secret-key-secret-value"
    values["qhybrid:trackingDatabaseUri"] = (
        "postgresql://mlflow:database-password-secret-value@db:5432/mlflow"
    )
    values.update({f"qhybrid:{k}": v for k, v in overrides.items()})
    return values


SECRET_KEYS = [
    "qhybrid:grafanaAdminPassword",
    "qhybrid:qpuProviderToken",
    "qhybrid:artifactS3AccessKey",
    "qhybrid:artifactS3SecretKey",
    "qhybrid:objectStoreAccessKey",
    "qhybrid:objectStoreSecretKey",
    "qhybrid:trackingDatabaseUri",
]
SECRET_VALUES = [
    "grafana-admin-secret-value",
    "provider-token-secret-value",
    "s3-access-key-secret-value",
    "s3-secret-key-secret-value",
    "object-store-access-key-secret-value",
    "object-store-secret-key-secret-value",
    "postgresql://mlflow:database-password-secret-value@db:5432/mlflow",
]
