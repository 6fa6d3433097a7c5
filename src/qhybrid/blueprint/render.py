"""``qhybrid platform render``: every manifest the blueprint builds, as YAML, without Pulumi.

For review and GitOps. Upstream charts are not rendered (Helm does that); their
values are, one file per chart. Secret values never leave Pulumi: rendered
Secrets carry a placeholder naming the config key to set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from qhybrid import atomic
from qhybrid.blueprint import argo, cache, gateway, kueue, monitoring, objectstore, quantumjob, tracking
from qhybrid.blueprint.config import StackConfig
from qhybrid.blueprint.names import ARGO_NAMESPACE, KUEUE_NAMESPACE
from qhybrid.blueprint.namespaces import platform_namespace


def secret_placeholder(key: str) -> str:
    """Return the text a rendered Secret holds instead of the value of config key ``key``."""
    return f"<secret: pulumi config set --secret {key}>"


def rendered_parts(config: StackConfig) -> dict[str, list[dict[str, Any]]]:
    """Return part name -> every Kubernetes object the Pulumi program creates for it, in apply order.

    Only what the charts create is left out (Helm renders that). A test compares this
    with the resources the program registers under Pulumi's mocks, so nothing the
    program creates can go missing here.
    """
    s3 = config.artifact_store == "s3"
    monitoring_namespace, *monitoring_objects = monitoring.monitoring_objects(config)
    parts = {
        "argo": [
            platform_namespace(ARGO_NAMESPACE),
            *argo.argo_objects(
                config,
                secret_placeholder("artifactS3AccessKey") if s3 else None,
                secret_placeholder("artifactS3SecretKey") if s3 else None,
            ),
        ],
        "kueue": [
            platform_namespace(KUEUE_NAMESPACE),
            *kueue.kueue_objects(config),
        ],
        "gateway": gateway.gateway_objects(config, secret_placeholder("qpuProviderToken")),
        "monitoring": [
            monitoring_namespace,
            monitoring.grafana_admin_secret(secret_placeholder("grafanaAdminPassword")),
            *monitoring_objects,
        ],
    }
    if config.cache_enabled:
        parts["cache"] = cache.cache_objects(config)
    parts["operator"] = quantumjob.quantumjob_objects(config)
    if config.object_store_enabled:
        parts["object-store"] = objectstore.object_store_objects(
            config, secret_placeholder("objectStoreAccessKey"), secret_placeholder("objectStoreSecretKey")
        )
    if config.tracking_enabled:
        prefix = "objectStore" if config.object_store_enabled else "artifactS3"
        parts["tracking"] = tracking.tracking_objects(
            config,
            secret_placeholder(f"{prefix}AccessKey"),
            secret_placeholder(f"{prefix}SecretKey"),
            secret_placeholder("trackingDatabaseUri"),
        )
    if config.cluster == "eks":
        from qhybrid.blueprint.eks import default_storage_class

        # The gateway's PVC stays Pending on a cluster without a default StorageClass.
        parts = {"cluster": [default_storage_class()], **parts}
    return parts


def helm_values(config: StackConfig) -> dict[str, dict[str, Any]]:
    """Return chart name -> the values the blueprint installs it with."""
    return {
        "argo-workflows": argo.helm_values(config, monitoring.argo_metrics_values()),
        "kueue": kueue.helm_values(config, monitoring.kueue_metrics_values()),
        "kube-prometheus-stack": monitoring.helm_values(config),
    }


def cluster_manifest(config: StackConfig) -> tuple[str, Any]:
    """Return the file name and content describing the cluster itself."""
    if config.cluster == "kind":
        from qhybrid.blueprint.kind import kind_cluster_config

        return "kind-config.yaml", kind_cluster_config(config)
    from qhybrid.blueprint.eks import node_group_specs

    return "eks-node-groups.yaml", node_group_specs(config)


def _dump_all(documents: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False, default_flow_style=False)


def write_rendered(config: StackConfig, out: Path) -> list[Path]:
    """Write every manifest under ``out`` and return the files written."""
    written = []
    for index, (part, objects) in enumerate(rendered_parts(config).items(), start=1):
        path = out / f"{index:02d}-{part}.yaml"
        atomic.write_text(path, _dump_all(objects))
        written.append(path)
    for chart, values in helm_values(config).items():
        path = out / "helm-values" / f"{chart}.yaml"
        atomic.write_text(path, yaml.safe_dump(values, sort_keys=False))
        written.append(path)
    name, content = cluster_manifest(config)
    atomic.write_text(out / name, yaml.safe_dump(content, sort_keys=False))
    written.append(out / name)
    return written
