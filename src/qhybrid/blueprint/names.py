"""Names shared by builders, components and the workflow: namespaces, releases, labels, ports.

One place, so a ServiceMonitor's selector, a NetworkPolicy's peer and the object
it points at can never drift apart. The workflow namespace comes from stack
config (``workflowNamespace``); everything else is fixed.
"""

from __future__ import annotations

PART_OF = {"app.kubernetes.io/part-of": "qhybrid"}

# Namespaces of the platform's parts.
ARGO_NAMESPACE = "argo"
KUEUE_NAMESPACE = "kueue-system"
MONITORING_NAMESPACE = "monitoring"
GATEWAY_NAMESPACE = "qhybrid-gateway"
CACHE_NAMESPACE = "qhybrid-cache"
OPERATOR_NAMESPACE = "qhybrid-operator"

# Helm release names (chart resources are named after them).
ARGO_RELEASE = "argo-workflows"
KUEUE_RELEASE = "kueue"
MONITORING_RELEASE = "kube-prometheus-stack"

# The QPU gateway's objects.
GATEWAY_NAME = "qpu-gateway"
GATEWAY_LABELS = {"app.kubernetes.io/name": GATEWAY_NAME, "app.kubernetes.io/component": "qpu-gateway"}
GATEWAY_PORT_NAME = "http"  # serves the API and /metrics
GATEWAY_METRICS_PATH = "/metrics"
GATEWAY_CREDENTIALS_SECRET = "qpu-provider-credentials"
GATEWAY_CREDENTIALS_MOUNT = "/var/run/secrets/qhybrid/provider"
GATEWAY_SERVICE_ACCOUNT = "qpu-gateway"
GATEWAY_CONFIG_MAP = "qpu-gateway-config"
GATEWAY_CONFIG_DIR = "/etc/qhybrid-gateway"
GATEWAY_CONFIG_FILE = "config.yaml"
GATEWAY_STATE_CLAIM = "qpu-gateway-state"
GATEWAY_STATE_DIR = "/var/lib/qhybrid-gateway"

# The object store's bucket layout: a workflow's (or a pushed run's) files under
# qhybrid/<name>/, and MLflow's artifact root under mlflow/ (qhybrid.tracking.objectstore).
WORKFLOW_ARTIFACT_PREFIX = "qhybrid"
MLFLOW_ARTIFACT_PREFIX = "mlflow"

# The object store (SeaweedFS: S3) and the MLflow tracking server, each in its namespace.
OBJECT_STORE_NAMESPACE = "qhybrid-objectstore"
OBJECT_STORE_NAME = "object-store"
OBJECT_STORE_LABELS = {
    "app.kubernetes.io/name": OBJECT_STORE_NAME,
    "app.kubernetes.io/component": "object-store",
}
OBJECT_STORE_PORT = 8333
OBJECT_STORE_PORT_NAME = "s3"
OBJECT_STORE_METRICS_PORT = 9327
OBJECT_STORE_METRICS_PORT_NAME = "metrics"
OBJECT_STORE_IDENTITIES_SECRET = "object-store-identities"  # the server's s3.json (its keys)
TRACKING_NAMESPACE = "qhybrid-tracking"
TRACKING_NAME = "mlflow"
TRACKING_LABELS = {"app.kubernetes.io/name": TRACKING_NAME, "app.kubernetes.io/component": "tracking"}
TRACKING_PORT = 5000
TRACKING_PORT_NAME = "http"
TRACKING_S3_SECRET = "mlflow-s3-credentials"  # an AWS credentials file, mounted only into MLflow
TRACKING_DATABASE_SECRET = "mlflow-database"  # the external database's URI (trackingDatabase=external)

# The shared result cache (Valkey): its Service, ports, and the workflow steps that may reach it.
CACHE_NAME = "result-cache"
CACHE_LABELS = {"app.kubernetes.io/name": CACHE_NAME, "app.kubernetes.io/component": "result-cache"}
CACHE_PORT = 6379
CACHE_PORT_NAME = "valkey"
CACHE_METRICS_PORT = 9121
CACHE_METRICS_PORT_NAME = "metrics"
CACHE_CONFIG_MAP = "result-cache-config"
# Every workflow pod carries its step's name under this label; the cache admits these steps.
WORKFLOW_STEP_LABEL = "qhybrid.io/step"
CACHE_CLIENT_STEPS = ("generate", "execute")

# Workflow pods: their service account and the label every worker pod carries,
# which the gateway's NetworkPolicy admits.
WORKFLOW_SERVICE_ACCOUNT = "qhybrid-workflow"
WORKER_LABELS = {"app.kubernetes.io/name": "qhybrid-worker", **PART_OF}
ARTIFACT_PVC = "qhybrid-artifacts"
ARTIFACT_REPOSITORY_CONFIGMAP = "artifact-repositories"

# Labels that make kube-prometheus-stack pick up our objects.
PROMETHEUS_SELECTOR_LABELS = {"release": MONITORING_RELEASE}
GRAFANA_DASHBOARD_LABEL = {"grafana_dashboard": "1"}

# Labels the Prometheus operator puts on the pods of every Prometheus it runs: the
# peer that NetworkPolicies admit so their pods can be scraped.
PROMETHEUS_POD_LABELS = {"app.kubernetes.io/name": "prometheus"}

# How QPU-branch worker pods authenticate to the gateway without any Secret: a
# projected service-account token for this audience, which the gateway checks with
# the Kubernetes TokenReview API.
GATEWAY_TOKEN_AUDIENCE = "qpu-gateway"
WORKER_GATEWAY_TOKEN_DIR = "/var/run/secrets/qhybrid/gateway"
WORKER_GATEWAY_TOKEN_FILE = "token"
