"""Upstream Helm charts the blueprint installs: every version pinned here and only here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HelmChart:
    """Where a chart comes from and the exact version installed."""

    name: str
    repo: str  # an https chart repository, or "" when ``name`` is a full oci:// reference
    version: str


ARGO_WORKFLOWS = HelmChart("argo-workflows", "https://argoproj.github.io/argo-helm", "0.45.21")
KUEUE = HelmChart("oci://registry.k8s.io/kueue/charts/kueue", "", "0.13.4")
KUBE_PROMETHEUS_STACK = HelmChart(
    "kube-prometheus-stack", "https://prometheus-community.github.io/helm-charts", "75.18.1"
)
NVIDIA_DEVICE_PLUGIN = HelmChart(
    "nvidia-device-plugin", "https://nvidia.github.io/k8s-device-plugin", "0.17.3"
)

CHARTS: dict[str, HelmChart] = {
    "argo-workflows": ARGO_WORKFLOWS,
    "kueue": KUEUE,
    "kube-prometheus-stack": KUBE_PROMETHEUS_STACK,
    "nvidia-device-plugin": NVIDIA_DEVICE_PLUGIN,
}

# kind's node image, matching the Kubernetes version the schemas are checked against.
KIND_NODE_IMAGE = "kindest/node:v1.33.1"
KUBERNETES_SCHEMA_VERSION = "1.33"

# GPU metrics on the gpu pool of an nvidia stack (the chart version follows the exporter
# version: chart 4.1.1 ships exporter 4.1.1 with DCGM 4.2.3).
DCGM_EXPORTER = HelmChart("dcgm-exporter", "https://nvidia.github.io/dcgm-exporter/helm-charts", "4.1.1")
CHARTS["dcgm-exporter"] = DCGM_EXPORTER
