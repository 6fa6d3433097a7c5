"""Compose the platform's parts for the running stack; returns what the stack exports."""

from __future__ import annotations

from typing import Any

from infra.argo import ArgoWorkflows, ArgoWorkflowsArgs
from infra.cache import ResultCache, ResultCacheArgs
from infra.cluster import Cluster, ClusterArgs
from infra.gateway import QpuGateway, QpuGatewayArgs
from infra.kueue import Kueue, KueueArgs
from infra.monitoring import Monitoring, MonitoringArgs
from infra.objectstore import ObjectStore, ObjectStoreArgs
from infra.quantumjob import QuantumJobOperator, QuantumJobOperatorArgs
from infra.tracking import TrackingServer, TrackingServerArgs
from qhybrid.blueprint import monitoring
from qhybrid.blueprint.config import from_pulumi, secret_value


def build_stack() -> dict[str, Any]:
    """Create every part; raises a ConfigError naming the key before any resource on bad config."""
    config = from_pulumi()
    cluster = Cluster("cluster", ClusterArgs(config=config))
    provider = cluster.provider
    argo = ArgoWorkflows(
        "argo",
        ArgoWorkflowsArgs(
            config=config,
            provider=provider,
            s3_access_key=secret_value("artifactS3AccessKey"),
            s3_secret_key=secret_value("artifactS3SecretKey"),
            extra_values=monitoring.argo_metrics_values(),
        ),
    )
    kueue = Kueue(
        "kueue",
        KueueArgs(
            config=config,
            provider=provider,
            workflow_namespace=argo.workflow_namespace_resource,
            extra_values=monitoring.kueue_metrics_values(),
        ),
    )
    gateway = QpuGateway(
        "qpu-gateway",
        QpuGatewayArgs(config=config, provider=provider, provider_token=secret_value("qpuProviderToken")),
    )
    monitoring_part = Monitoring(
        "monitoring",
        MonitoringArgs(
            config=config,
            provider=provider,
            grafana_admin_password=secret_value("grafanaAdminPassword"),
        ),
    )
    # dcgm-exporter ships a ServiceMonitor, whose CRD comes with kube-prometheus-stack.
    cluster.add_gpu_metrics(after=[monitoring_part])
    exports: dict[str, Any] = {}
    if config.cache_enabled:
        result_cache = ResultCache(
            "result-cache", ResultCacheArgs(config=config, provider=provider, after=[monitoring_part])
        )
        exports["cacheUrl"] = result_cache.url
    operator = QuantumJobOperator(
        "quantumjob-operator",
        QuantumJobOperatorArgs(
            config=config, provider=provider, workflows=[argo], monitoring=[monitoring_part]
        ),
    )
    exports["quantumJobCrd"] = operator.crd_name
    tracking_needs: list[Any] = [monitoring_part]
    if config.object_store_enabled:
        object_store = ObjectStore(
            "object-store",
            ObjectStoreArgs(
                config=config,
                provider=provider,
                access_key=secret_value("objectStoreAccessKey"),
                secret_key=secret_value("objectStoreSecretKey"),
                after=[monitoring_part],
            ),
        )
        exports["objectStoreEndpoint"] = object_store.endpoint
        tracking_needs.append(object_store)
    if config.tracking_enabled:
        # MLflow's artifacts: the object store's keys, or the stack's S3 keys without it.
        prefix = "objectStore" if config.object_store_enabled else "artifactS3"
        tracking_server = TrackingServer(
            "tracking",
            TrackingServerArgs(
                config=config,
                provider=provider,
                s3_access_key=secret_value(f"{prefix}AccessKey"),
                s3_secret_key=secret_value(f"{prefix}SecretKey"),
                database_uri=secret_value("trackingDatabaseUri")
                if config.tracking_database == "external"
                else None,
                after=tracking_needs,
            ),
        )
        exports["trackingUrl"] = tracking_server.url
    return {
        **exports,
        "kubeconfig": cluster.kubeconfig,
        "workflowNamespace": argo.workflow_namespace,
        "clusterQueues": kueue.cluster_queues,
        "localQueues": kueue.local_queues,
        "gatewayUrl": gateway.service_url,
    }
