"""Monitoring as data: kube-prometheus-stack's values, scrape config, rules and dashboards.

kube-prometheus-stack (chart pinned in ``versions``) runs Prometheus, Alertmanager,
Grafana, the operator and kube-state-metrics on the ``system`` pool; node-exporter
runs on every node. Prometheus selects ServiceMonitors, PodMonitors and
PrometheusRules by the label ``release: kube-prometheus-stack``
(``names.PROMETHEUS_SELECTOR_LABELS``), which every object here carries.

Scrape targets and how their charts expose them (checked against the charts' templates):

* Argo's workflow controller: ``controller.metricsConfig.enabled`` makes the
  argo-workflows chart create a Service with port ``metrics`` (plain http, as
  ``metricsConfig.secure`` is false), labelled with the chart's selector labels.
* Kueue's controller manager: the chart always creates
  ``<fullname>-controller-manager-metrics-service`` with port ``https`` (8443),
  serving a self-signed certificate and authorising callers by token; Prometheus
  sends its service-account token, which kube-prometheus-stack's ClusterRole lets
  ``get`` the ``/metrics`` non-resource URL.
* The QPU gateway: a PodMonitor on the gateway pods' ``http`` port, so every replica
  is scraped whether or not a Service exists.

Each monitor rewrites ``job`` to a fixed name (``metric_names.JOB_*``) that the
target-down alerts select.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from qhybrid.blueprint.config import StackConfig
from qhybrid.blueprint.monitoring import alerts, cost, dashboards
from qhybrid.blueprint.monitoring import metric_names as m
from qhybrid.blueprint.monitoring.cost import ARGO_WORKFLOW_POD_LABEL
from qhybrid.blueprint.names import (
    ARGO_NAMESPACE,
    ARGO_RELEASE,
    GATEWAY_LABELS,
    GATEWAY_METRICS_PATH,
    GATEWAY_NAMESPACE,
    GATEWAY_PORT_NAME,
    GRAFANA_DASHBOARD_LABEL,
    KUEUE_NAMESPACE,
    KUEUE_RELEASE,
    MONITORING_NAMESPACE,
    PART_OF,
    PROMETHEUS_SELECTOR_LABELS,
)
from qhybrid.blueprint.namespaces import platform_namespace
from qhybrid.blueprint.pools import POOL_LABEL, pool_placement

MONITORING_API = "monitoring.coreos.com/v1"
SCRAPE_INTERVAL = "30s"

GRAFANA_ADMIN_SECRET = "grafana-admin"
GRAFANA_ADMIN_USER = "admin"
GRAFANA_USER_KEY = "admin-user"  # the keys the grafana chart reads from admin.existingSecret
GRAFANA_PASSWORD_KEY = "admin-password"

PROMETHEUS_RULE_NAME = "qhybrid-slos"

# Labels the argo-workflows chart puts on the controller's metrics Service (its
# "argo-workflows.selectorLabels" helper with name and component "workflow-controller").
ARGO_CONTROLLER_SERVICE_LABELS = {
    "app.kubernetes.io/name": "argo-workflows-workflow-controller",
    "app.kubernetes.io/instance": ARGO_RELEASE,
    "app.kubernetes.io/component": "workflow-controller",
}
ARGO_METRICS_PORT = "metrics"  # controller.metricsConfig.servicePortName's default

# Labels the kueue chart puts on every Service it creates ("kueue.selectorLabels"); of
# those Services only the metrics one has a port named https (the webhook's is unnamed).
KUEUE_SERVICE_LABELS = {
    "app.kubernetes.io/name": "kueue",
    "app.kubernetes.io/instance": KUEUE_RELEASE,
    "control-plane": "controller-manager",
}
KUEUE_METRICS_PORT = "https"
SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


def _metadata(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": MONITORING_NAMESPACE,
        "labels": {**PART_OF, **PROMETHEUS_SELECTOR_LABELS},
    }


def _set_job(job: str) -> list[dict[str, Any]]:
    return [{"action": "replace", "targetLabel": "job", "replacement": job}]


def monitoring_namespace() -> dict[str, Any]:
    """Return the monitoring Namespace (privileged: node-exporter uses host namespaces)."""
    return platform_namespace(MONITORING_NAMESPACE)


def helm_values(config: StackConfig) -> dict[str, Any]:
    """Return kube-prometheus-stack's values; no secret among them (Grafana's comes from a Secret)."""
    system = pool_placement("system")
    placed = {"nodeSelector": system["nodeSelector"], "tolerations": system["tolerations"]}
    [(dashboard_label, dashboard_label_value)] = GRAFANA_DASHBOARD_LABEL.items()
    # Select our objects by an explicit label rather than the chart's release-name default,
    # so the selector is visible here and tested against every monitor and rule.
    selector = {"matchLabels": dict(PROMETHEUS_SELECTOR_LABELS)}
    return {
        "prometheusOperator": {**placed, "admissionWebhooks": {"patch": dict(placed)}},
        "prometheus": {
            "prometheusSpec": {
                **placed,
                "retention": config.prometheus_retention,
                "scrapeInterval": SCRAPE_INTERVAL,
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "podMonitorSelectorNilUsesHelmValues": False,
                "ruleSelectorNilUsesHelmValues": False,
                "serviceMonitorSelector": selector,
                "podMonitorSelector": selector,
                "ruleSelector": selector,
            }
        },
        "alertmanager": {"alertmanagerSpec": dict(placed)},
        "grafana": {
            **placed,
            "admin": {
                "existingSecret": GRAFANA_ADMIN_SECRET,
                "userKey": GRAFANA_USER_KEY,
                "passwordKey": GRAFANA_PASSWORD_KEY,
            },
            "sidecar": {
                "dashboards": {
                    "enabled": True,
                    "label": dashboard_label,
                    "labelValue": dashboard_label_value,
                    "searchNamespace": [MONITORING_NAMESPACE],
                }
            },
        },
        "kube-state-metrics": {
            **placed,
            # Export each node's pool label, so dashboards can group usage by pool, and each
            # pod's workflow label, so the cost rules can add its pods' usage up per workflow.
            "metricLabelsAllowlist": [f"nodes=[{POOL_LABEL}]", f"pods=[{ARGO_WORKFLOW_POD_LABEL}]"],
        },
        # A DaemonSet: it must run on every pool, tainted or not.
        "prometheus-node-exporter": {
            "tolerations": [
                {"key": POOL_LABEL, "operator": "Exists", "effect": "NoSchedule"},
                {
                    "key": "node-role.kubernetes.io/control-plane",
                    "operator": "Exists",
                    "effect": "NoSchedule",
                },
            ]
        },
        # Neither kind nor EKS lets these be scraped (loopback binds, managed control plane):
        # their targets would be down forever and their default alerts would fire for nothing.
        "kubeEtcd": {"enabled": False},
        "kubeScheduler": {"enabled": False},
        "kubeControllerManager": {"enabled": False},
        "kubeProxy": {"enabled": False},
    }


def argo_metrics_values() -> dict[str, Any]:
    """Return the argo-workflows chart values that expose the controller's metrics to our monitor."""
    return {
        "controller": {
            "metricsConfig": {"enabled": True, "secure": False, "path": "/metrics"},
            # Our ServiceMonitor (argo_service_monitor) scrapes it; the chart's would be a duplicate.
            "serviceMonitor": {"enabled": False},
        }
    }


def kueue_metrics_values() -> dict[str, Any]:
    """Return the kueue chart values for metrics: its own ServiceMonitor off (ours replaces it)."""
    # The metrics Service exists regardless; the chart's monitor would scrape twice and its
    # RoleBinding names a prometheus-k8s service account kube-prometheus-stack does not have.
    return {"enablePrometheus": False}


def http_service_monitor(
    name: str, namespace: str, service_labels: Mapping[str, str], port: str, job: str
) -> dict[str, Any]:
    """Return a ServiceMonitor (in the monitoring namespace) scraping ``/metrics`` over http, as ``job``."""
    return {
        "apiVersion": MONITORING_API,
        "kind": "ServiceMonitor",
        "metadata": _metadata(name),
        "spec": {
            "namespaceSelector": {"matchNames": [namespace]},
            "selector": {"matchLabels": dict(service_labels)},
            "endpoints": [
                {
                    "port": port,
                    "path": "/metrics",
                    "scheme": "http",
                    "interval": SCRAPE_INTERVAL,
                    "relabelings": _set_job(job),
                }
            ],
        },
    }


def argo_service_monitor() -> dict[str, Any]:
    """Return the ServiceMonitor of Argo's workflow controller."""
    return http_service_monitor(
        "argo-workflows-controller",
        ARGO_NAMESPACE,
        ARGO_CONTROLLER_SERVICE_LABELS,
        ARGO_METRICS_PORT,
        m.JOB_ARGO_CONTROLLER,
    )


def kueue_service_monitor() -> dict[str, Any]:
    """Return the ServiceMonitor of Kueue's controller manager (https, token-authorised)."""
    return {
        "apiVersion": MONITORING_API,
        "kind": "ServiceMonitor",
        "metadata": _metadata("kueue-controller"),
        "spec": {
            "namespaceSelector": {"matchNames": [KUEUE_NAMESPACE]},
            "selector": {"matchLabels": dict(KUEUE_SERVICE_LABELS)},
            "endpoints": [
                {
                    "port": KUEUE_METRICS_PORT,
                    "path": "/metrics",
                    "scheme": "https",
                    "interval": SCRAPE_INTERVAL,
                    "bearerTokenFile": SERVICE_ACCOUNT_TOKEN,
                    # Kueue's internal certificate is self-signed (no cert-manager here); the
                    # token still authenticates Prometheus to Kueue.
                    "tlsConfig": {"insecureSkipVerify": True},
                    "relabelings": _set_job(m.JOB_KUEUE_CONTROLLER),
                }
            ],
        },
    }


def gateway_pod_monitor() -> dict[str, Any]:
    """Return the PodMonitor of the QPU gateway's pods."""
    return {
        "apiVersion": MONITORING_API,
        "kind": "PodMonitor",
        "metadata": _metadata("qpu-gateway"),
        "spec": {
            "namespaceSelector": {"matchNames": [GATEWAY_NAMESPACE]},
            "selector": {"matchLabels": dict(GATEWAY_LABELS)},
            "podMetricsEndpoints": [
                {
                    "port": GATEWAY_PORT_NAME,
                    "path": GATEWAY_METRICS_PATH,
                    "scheme": "http",
                    "interval": SCRAPE_INTERVAL,
                    "relabelings": _set_job(m.JOB_QPU_GATEWAY),
                }
            ],
        },
    }


def rule_groups(config: StackConfig) -> list[dict[str, Any]]:
    """Return every rule group: ``alerts.rule_groups()`` and the stack's cost rules."""
    return [*alerts.rule_groups(), cost.cost_rules(config)]


def prometheus_rule(config: StackConfig) -> dict[str, Any]:
    """Return the PrometheusRule holding every group of :func:`rule_groups`."""
    return {
        "apiVersion": MONITORING_API,
        "kind": "PrometheusRule",
        "metadata": _metadata(PROMETHEUS_RULE_NAME),
        "spec": {"groups": rule_groups(config)},
    }


def dashboard_configmaps(config: StackConfig) -> list[dict[str, Any]]:
    """Return one ConfigMap per dashboard, labelled for Grafana's dashboard sidecar."""
    result = []
    for board in dashboards.dashboards(config):
        result.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": f"dashboard-{board['uid']}",
                    "namespace": MONITORING_NAMESPACE,
                    "labels": {**PART_OF, **GRAFANA_DASHBOARD_LABEL},
                },
                "data": {f"{board['uid']}.json": json.dumps(board, indent=2, sort_keys=True)},
            }
        )
    return result


def grafana_admin_secret(password: Any) -> dict[str, Any]:
    """Return the Secret Grafana's admin login is read from; ``password`` may be a Pulumi secret."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": GRAFANA_ADMIN_SECRET,
            "namespace": MONITORING_NAMESPACE,
            "labels": dict(PART_OF),
        },
        "type": "Opaque",
        "stringData": {GRAFANA_USER_KEY: GRAFANA_ADMIN_USER, GRAFANA_PASSWORD_KEY: password},
    }


def scrape_monitors() -> list[dict[str, Any]]:
    """Return the ServiceMonitors and PodMonitors of Argo, Kueue and the gateway."""
    return [argo_service_monitor(), kueue_service_monitor(), gateway_pod_monitor()]


def monitoring_objects(config: StackConfig) -> list[dict[str, Any]]:
    """Return every object of the monitoring part except the chart and the admin Secret; namespace first."""
    return [
        monitoring_namespace(),
        *scrape_monitors(),
        prometheus_rule(config),
        *dashboard_configmaps(config),
    ]
