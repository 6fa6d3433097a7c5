"""Typed stack configuration: declared once in ``Pulumi.yaml``, loaded into one StackConfig.

The declarations (type, default, description, secret) are read from the
project file itself, so a default is never repeated in code. Values come either
from the Pulumi engine (``from_pulumi``, in the program) or from a stack file
(``load_stack_file``, for ``qhybrid platform render`` and tests). Either way every value
is checked before any resource exists, and an error names the config key.
Secret values never enter StackConfig: it records only which secrets are set.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Set
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from qhybrid.blueprint.pools import GPU_RESOURCES, RESOURCE_CLASSES
from qhybrid.cost import PriceTable
from qhybrid.errors import InputError

PROJECT = "qhybrid"
PROJECT_FILE_NAME = "Pulumi.yaml"
STACKS_DIR_NAME = "stacks"
# A source checkout: src/qhybrid/blueprint/config.py -> the repository root.
_CHECKOUT_DIR = Path(__file__).resolve().parents[3]
# A wheel ships Pulumi.yaml and stacks/ as data beside the package (pyproject's qhybrid.project).
_PACKAGED_DIR = Path(__file__).resolve().parents[1] / "project"
CLUSTERS = ("kind", "eks")
ARTIFACT_STORES = ("pvc", "s3")
TRACKING_DATABASES = ("sqlite", "external")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$")
_DURATION = re.compile(r"^[0-9]+(ms|s|m|h|d|w|y)$")


class ConfigError(InputError):
    """A stack config value is missing, malformed or inconsistent; names the key."""

    def __init__(self, key: str, problem: str) -> None:
        """Name the key as users type it: ``qhybrid:<key>``."""
        super().__init__(f"{PROJECT}:{key}", problem)


@dataclass(frozen=True)
class Declaration:
    """One config key as declared in Pulumi.yaml."""

    key: str
    type: str  # string | integer | boolean | array
    description: str
    default: Any = None
    secret: bool = False


def _is_our_project(folder: Path) -> bool:
    """Return whether ``folder`` holds qhybrid's Pulumi.yaml."""
    path = folder / PROJECT_FILE_NAME
    if not path.is_file():
        return False
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(document, Mapping) and document.get("name") == PROJECT


def find_project_dir(explicit: Path | None = None) -> Path:
    """Return the folder holding Pulumi.yaml and stacks/.

    In order: ``explicit`` (``--project-dir``), the current folder when it holds
    qhybrid's Pulumi.yaml (as ``pulumi`` itself looks there), the source checkout
    this module was imported from, and the copy a wheel ships.
    """
    if explicit is not None:
        if not _is_our_project(explicit):
            raise InputError("--project-dir", f"{explicit} holds no Pulumi.yaml of project {PROJECT!r}")
        return explicit
    for candidate in (Path.cwd(), _CHECKOUT_DIR, _PACKAGED_DIR):
        if _is_our_project(candidate):
            return candidate
    raise InputError(
        "--project-dir",
        f"no Pulumi.yaml of project {PROJECT!r} here, in a checkout or shipped with qhybrid; "
        "give --project-dir (the folder holding Pulumi.yaml and stacks/)",
    )


def declarations(project_file: Path | None = None) -> dict[str, Declaration]:
    """Return every config key declared in the project file (default: the found project's), by key."""
    project_file = project_file or find_project_dir() / PROJECT_FILE_NAME
    project = yaml.safe_load(project_file.read_text(encoding="utf-8"))
    result = {}
    for key, spec in (project.get("config") or {}).items():
        result[key] = Declaration(
            key=key,
            type=spec["type"],
            description=spec.get("description", ""),
            default=spec.get("default"),
            secret=bool(spec.get("secret", False)),
        )
    return result


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


@dataclass(frozen=True, kw_only=True)
class StackConfig:
    """Every setting of one stack, validated. Field ``foo_bar`` is config key ``fooBar``."""

    stack: str
    cluster: str
    cluster_name: str
    kubernetes_version: str
    system_nodes: int
    cpu_nodes: int
    gpu_nodes: int
    qpu_gateway_nodes: int
    gpu_vendor: str
    aws_region: str
    system_instance_type: str
    cpu_instance_type: str
    gpu_instance_type: str
    qpu_gateway_instance_type: str
    workflow_namespace: str
    artifact_store: str
    artifact_pvc_size: str
    artifact_storage_class: str
    artifact_s3_endpoint: str
    artifact_s3_bucket: str
    artifact_s3_region: str
    artifact_s3_insecure: bool
    cohort: str
    cpu_quota_cpu: int
    cpu_quota_memory_gi: int
    gpu_quota_gpus: int
    gpu_quota_cpu: int
    gpu_quota_memory_gi: int
    qpu_quota_pods: int
    qpu_quota_cpu: int
    qpu_quota_memory_gi: int
    worker_image: str
    gpu_worker_image: str
    gateway_image: str
    gateway_port: int
    gateway_backends: tuple[str, ...]
    gateway_state_size: str
    gateway_workflow_shot_budget: int
    gateway_egress_cidrs: tuple[str, ...]
    workflow_egress_cidrs: tuple[str, ...]
    qpu_provider_instance: str
    cache_enabled: bool
    cache_max_memory_mib: int
    cache_storage_size: str
    prometheus_retention: str
    object_store_enabled: bool
    object_store_size: str
    object_store_bucket: str
    tracking_enabled: bool
    tracking_database: str
    tracking_database_cidrs: tuple[str, ...]
    tracking_storage_size: str
    price_currency: str
    price_cpu_core_hour: str
    price_gpu_hour: str
    price_qpu_shot: tuple[str, ...]
    secrets_set: frozenset[str] = field(default_factory=frozenset)  # names only, never values

    def __post_init__(self) -> None:
        """Check each value, then the values that must agree with each other."""
        _choice("cluster", self.cluster, CLUSTERS)
        _choice("gpuVendor", self.gpu_vendor, tuple(GPU_RESOURCES))
        _choice("artifactStore", self.artifact_store, ARTIFACT_STORES)
        for name in ("cluster_name", "workflow_namespace", "cohort"):
            value = getattr(self, name)
            if not _DNS_LABEL.match(value) or len(value) > 63:
                raise ConfigError(_camel(name), f"{value!r} is not a valid Kubernetes name (RFC 1123 label)")
        if not re.fullmatch(r"1\.[0-9]{2}", self.kubernetes_version):
            raise ConfigError(
                "kubernetesVersion", f"{self.kubernetes_version!r} is not a minor version like 1.33"
            )
        counts = (
            "system_nodes",
            "cpu_nodes",
            "gpu_nodes",
            "qpu_gateway_nodes",
            "gateway_workflow_shot_budget",
        )
        quotas = tuple(f.name for f in fields(self) if "_quota_" in f.name)
        for name in counts + quotas:
            if getattr(self, name) < 0:
                raise ConfigError(_camel(name), f"must be zero or more, got {getattr(self, name)}")
        if self.system_nodes < 1:
            raise ConfigError("systemNodes", "the platform's controllers need at least one system node")
        if self.cache_max_memory_mib < 16:
            raise ConfigError("cacheMaxMemoryMib", f"must be at least 16, got {self.cache_max_memory_mib}")
        if not _DURATION.match(self.prometheus_retention):
            raise ConfigError(
                "prometheusRetention", f"{self.prometheus_retention!r} is not a duration like 7d"
            )
        if not 1 <= self.gateway_port <= 65535:
            raise ConfigError("gatewayPort", f"must be a port number 1-65535, got {self.gateway_port}")
        if not self.gateway_backends:
            raise ConfigError("gatewayBackends", "must name at least one backend, e.g. aer")
        for backend in self.gateway_backends:
            if backend != "aer" and not re.fullmatch(r"emulator:fake_[a-z0-9_]+", backend):
                raise ConfigError(
                    "gatewayBackends",
                    f"{backend!r} is not aer or emulator:<fake device> (e.g. emulator:fake_manila)",
                )
        for name in ("gateway_egress_cidrs", "workflow_egress_cidrs", "tracking_database_cidrs"):
            for cidr in getattr(self, name):
                try:
                    ipaddress.ip_network(cidr)
                except ValueError:
                    raise ConfigError(_camel(name), f"{cidr!r} is not a CIDR like 10.0.0.0/8") from None
        self._check_queues_have_pools()
        self._check_prices()
        self._check_storage_and_tracking()
        if self.artifact_store == "s3":
            for key in ("artifactS3Endpoint", "artifactS3Bucket"):
                if not getattr(self, _snake(key)):
                    raise ConfigError(key, "is required when artifactStore is s3")

    def _check_queues_have_pools(self) -> None:
        pools = {"cpu": self.cpu_nodes, "gpu": self.gpu_nodes, "qpu-gateway": self.qpu_gateway_nodes}
        for name, resource_class in RESOURCE_CLASSES.items():
            quota = self.quotas(name)
            if any(quota.values()) and pools[resource_class.pool] == 0:
                pool_key = _camel(f"{resource_class.pool.replace('-', '_')}_nodes")
                raise ConfigError(
                    pool_key,
                    f"the {resource_class.local_queue} queue has quota {quota} but its pool "
                    f"{resource_class.pool!r} has 0 nodes; add nodes or set its quota to 0",
                )
        if self.qpu_gateway_nodes == 0:
            raise ConfigError("qpuGatewayNodes", "the QPU gateway needs at least one qpu-gateway node")
        if self.gpu_quota_gpus > 0 and GPU_RESOURCES[self.gpu_vendor] is None:
            raise ConfigError(
                "gpuQuotaGpus",
                f"is {self.gpu_quota_gpus} but gpuVendor is 'none' (no GPUs to admit); set it to 0",
            )

    def _check_storage_and_tracking(self) -> None:
        for key in (
            "cacheStorageSize",
            "artifactPvcSize",
            "gatewayStateSize",
            "objectStoreSize",
            "trackingStorageSize",
        ):
            if not _QUANTITY.match(getattr(self, _snake(key))):
                raise ConfigError(key, f"{getattr(self, _snake(key))!r} is not a quantity like 2Gi")
        bucket = self.object_store_bucket
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
            raise ConfigError("objectStoreBucket", f"{bucket!r} is not an S3 bucket name")
        _choice("trackingDatabase", self.tracking_database, TRACKING_DATABASES)
        if (
            self.tracking_enabled
            and self.tracking_database == "external"
            and not self.tracking_database_cidrs
        ):
            raise ConfigError("trackingDatabaseCidrs", "name the external database's address ranges")
        if self.tracking_enabled and not self.object_store_enabled and self.artifact_store != "s3":
            raise ConfigError(
                "trackingEnabled",
                "MLflow keeps artifacts in S3: enable objectStoreEnabled or use artifactStore s3",
            )

    def _check_prices(self) -> None:
        try:
            prices = self.prices
        except InputError as error:
            raise ConfigError(error.field.partition("[")[0], error.problem) from None
        unpriced = sorted(set(self.gateway_backend_names()) - set(prices.qpu_shot))
        if unpriced:
            raise ConfigError(
                "priceQpuShot", f"has no price for gateway backend(s) {unpriced}; add <backend>=<price>"
            )

    @property
    def prices(self) -> PriceTable:
        """The price table of reports and the cost recording rules."""
        return PriceTable.parse(
            self.price_currency, self.price_cpu_core_hour, self.price_gpu_hour, self.price_qpu_shot
        )

    def gateway_backend_names(self) -> list[str]:
        """The names the gateway gives its backends: ``aer``, and each emulator's device."""
        return [backend.partition(":")[2] or backend for backend in self.gateway_backends]

    def check_secrets_for_deploy(self) -> None:
        """Check that the secrets a deployment needs are set (rendering needs none)."""
        needed = ["grafanaAdminPassword"]
        if self.artifact_store == "s3":
            needed += ["artifactS3AccessKey", "artifactS3SecretKey"]
        if self.object_store_enabled:
            needed += ["objectStoreAccessKey", "objectStoreSecretKey"]
        if self.tracking_enabled and self.tracking_database == "external":
            needed += ["trackingDatabaseUri"]
        for key in needed:
            if key not in self.secrets_set:
                raise ConfigError(key, f"is not set; run `pulumi config set --secret {key} <value>`")

    @property
    def gpu_resource(self) -> str | None:
        """Return the GPU extended resource name, or None on a GPU pool without accelerators."""
        return GPU_RESOURCES[self.gpu_vendor]

    def quotas(self, resource_class: str) -> dict[str, int]:
        """Return one resource class's quota: cpu cores, memory GiB, and gpus or pods."""
        prefix = f"{resource_class}_quota_"
        return {
            f.name.removeprefix(prefix): getattr(self, f.name)
            for f in fields(self)
            if f.name.startswith(prefix)
        }

    def pool_sizes(self) -> dict[str, int]:
        """Return the node count of every pool."""
        return {
            "system": self.system_nodes,
            "cpu": self.cpu_nodes,
            "gpu": self.gpu_nodes,
            "qpu-gateway": self.qpu_gateway_nodes,
        }


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(key, f"unknown value {value!r}; choose one of {list(allowed)}")


def _coerce(declaration: Declaration, value: Any) -> Any:
    """Turn a config value (the engine passes strings; YAML may pass typed values) into its type."""
    key, kind = declaration.key, declaration.type
    if kind == "string":
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, got {value!r}")
        return value
    if kind == "integer":
        if isinstance(value, bool):
            raise ConfigError(key, f"must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
            return int(value)
        raise ConfigError(key, f"must be an integer, got {value!r}")
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(key, f"must be true or false, got {value!r}")
    if kind == "array":
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ConfigError(key, f"must be a list, got {value!r}") from None
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(key, f"must be a list of strings, got {value!r}")
        return tuple(value)
    raise ConfigError(key, f"Pulumi.yaml declares unsupported type {kind!r}")


def load_stack_config(
    stack: str,
    values: Mapping[str, Any],
    secret_keys: Set[str],
    *,
    project_file: Path | None = None,
) -> StackConfig:
    """Build a StackConfig from raw values keyed ``qhybrid:<key>`` (or bare ``<key>``).

    ``secret_keys`` names the keys that were stored encrypted. A secret key set in
    plain text, an undeclared key, or a value of the wrong type is refused.
    """
    declared = declarations(project_file)
    plain: dict[str, Any] = {}
    for raw_key, value in values.items():
        namespace, _, key = raw_key.rpartition(":")
        if namespace not in ("", PROJECT):
            continue  # provider config such as aws:region belongs to its provider
        if key not in declared:
            raise ConfigError(key, f"is not declared in Pulumi.yaml; declared keys: {sorted(declared)}")
        plain[key] = value
    secrets_set = set()
    kwargs: dict[str, Any] = {"stack": stack}
    for key, declaration in declared.items():
        is_secret = key in secret_keys or f"{PROJECT}:{key}" in secret_keys
        if declaration.secret:
            if key in plain and plain[key] not in (None, ""):
                if not is_secret:
                    raise ConfigError(
                        key,
                        f"is a secret but was set in plain text; remove it and run "
                        f"`pulumi config set --secret {key} <value>`",
                    )
                secrets_set.add(key)
            continue
        value = plain.get(key, declaration.default)
        if value is None:
            raise ConfigError(key, "has no value and no default")
        kwargs[_snake(key)] = _coerce(declaration, value)
    return StackConfig(**kwargs, secrets_set=frozenset(secrets_set))


def stack_values(config: StackConfig) -> dict[str, Any]:
    """Return a config as the plain values :func:`load_stack_config` reads back (secrets by name only).

    The operator gets its stack's config this way (a ConfigMap the blueprint writes):
    it builds each job's Workflow exactly as ``qhybrid workflow render`` would.
    """
    values: dict[str, Any] = {"stack": config.stack}
    for item in fields(config):
        if item.name in ("stack", "secrets_set"):
            continue
        value = getattr(config, item.name)
        values[_camel(item.name)] = list(value) if isinstance(value, tuple) else value
    values["secretsSet"] = sorted(config.secrets_set)
    return values


def stack_from_values(values: Mapping[str, Any], *, project_file: Path | None = None) -> StackConfig:
    """Rebuild the StackConfig that :func:`stack_values` wrote."""
    plain = {k: v for k, v in values.items() if k not in ("stack", "secretsSet")}
    secrets = [str(key) for key in values.get("secretsSet") or []]
    plain.update({key: "<set>" for key in secrets})  # set, never its value
    return load_stack_config(str(values.get("stack") or ""), plain, set(secrets), project_file=project_file)


def load_stack_file(stack: str, *, project_dir: Path | None = None) -> StackConfig:
    """Load ``stacks/Pulumi.<stack>.yaml``: encrypted values (``secure:``) count as set secrets.

    ``project_dir`` is the folder holding Pulumi.yaml and stacks/ (see :func:`find_project_dir`).
    """
    root = find_project_dir(project_dir)
    stacks_dir = root / STACKS_DIR_NAME
    path = stacks_dir / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        available = sorted(
            p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in stacks_dir.glob("Pulumi.*.yaml")
        )
        raise InputError("--stack", f"no stack {stack!r} ({path} is missing); stacks: {available}")
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    raw = document.get("config") or {}
    values: dict[str, Any] = {}
    secret_keys: set[str] = set()
    for key, value in raw.items():
        if isinstance(value, Mapping) and set(value) == {"secure"}:
            secret_keys.add(key)
            values[key] = "<encrypted>"
        else:
            values[key] = value
    return load_stack_config(stack, values, secret_keys, project_file=root / PROJECT_FILE_NAME)


def from_pulumi() -> StackConfig:
    """Load the running stack's config through the Pulumi SDK (inside ``pulumi up`` or mocks)."""
    import pulumi
    from pulumi.runtime.config import get_config, is_config_secret

    values = {}
    secret_keys = set()
    for key in declarations():
        full = f"{PROJECT}:{key}"
        value = get_config(full)
        if value is not None:
            values[full] = value
            if is_config_secret(full):
                secret_keys.add(full)
    config = load_stack_config(pulumi.get_stack(), values, secret_keys)
    config.check_secrets_for_deploy()
    return config


def secret_value(key: str) -> Any:
    """Return a secret's value as a Pulumi secret Output (None when unset); only infra calls this."""
    import pulumi

    if key not in {k for k, d in declarations().items() if d.secret}:
        raise ConfigError(key, "is not declared as a secret in Pulumi.yaml")
    return pulumi.Config(PROJECT).get_secret(key)
