"""Monitoring: kube-prometheus-stack, its scrape config, the SLO rules and the dashboards.

Order matters twice: the chart reads Grafana's admin password from a Secret that
must exist first, and ServiceMonitors, PodMonitors and PrometheusRules need the
CRDs the chart installs, so they (and the dashboards, which need the chart's
Grafana to be useful) depend on the release.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from infra.objects import create_object, helm_release
from qhybrid.blueprint import monitoring
from qhybrid.blueprint.config import StackConfig
from qhybrid.blueprint.monitoring import alerts, dashboards
from qhybrid.blueprint.names import MONITORING_NAMESPACE, MONITORING_RELEASE
from qhybrid.blueprint.versions import KUBE_PROMETHEUS_STACK


@dataclass(frozen=True, kw_only=True)
class MonitoringArgs:
    """What the monitoring part needs: config, the cluster's provider and Grafana's admin password."""

    config: StackConfig
    provider: k8s.Provider
    grafana_admin_password: pulumi.Input[str]

    def __post_init__(self) -> None:
        """Refuse a missing provider or password before any resource exists."""
        if not isinstance(self.config, StackConfig):
            raise TypeError(f"config must be a StackConfig, got {type(self.config).__name__}")
        if not isinstance(self.provider, k8s.Provider):
            raise TypeError("provider must be the cluster's pulumi_kubernetes.Provider")
        if self.grafana_admin_password is None or self.grafana_admin_password == "":
            raise ValueError(
                "grafanaAdminPassword is not set; "
                "run `pulumi config set --secret grafanaAdminPassword <value>`"
            )


class Monitoring(pulumi.ComponentResource):
    """Prometheus, Alertmanager and Grafana on the system pool, watching Argo, Kueue and the gateway."""

    namespace: pulumi.Output[str]
    release_name: pulumi.Output[str]
    grafana_admin_secret: pulumi.Output[str]
    dashboard_uids: pulumi.Output[list[str]]
    alert_names: pulumi.Output[list[str]]
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """Create the namespace, the admin Secret, the chart, then the objects that need its CRDs."""
        super().__init__("qhybrid:monitoring:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        namespace_obj, *objects = monitoring.monitoring_objects(args.config)
        if namespace_obj["kind"] != "Namespace":
            raise ValueError("monitoring_objects must start with the Namespace")
        namespace = create_object(namespace_obj, child)
        # Output.secret keeps the password encrypted in state even when a plain string is passed.
        password = pulumi.Output.secret(args.grafana_admin_password)
        secret = create_object(
            monitoring.grafana_admin_secret(password),
            child.merge(pulumi.ResourceOptions(depends_on=[namespace])),
        )
        self.release = helm_release(
            MONITORING_RELEASE,
            chart=KUBE_PROMETHEUS_STACK,
            namespace=MONITORING_NAMESPACE,
            values=monitoring.helm_values(args.config),
            opts=child.merge(pulumi.ResourceOptions(depends_on=[namespace, secret])),
        )
        after_chart = child.merge(pulumi.ResourceOptions(depends_on=[self.release]))
        self.objects = [create_object(obj, after_chart) for obj in objects]

        # Outputs resolve once their resource exists, so a consumer waits for it.
        self.namespace = namespace.id.apply(lambda _: MONITORING_NAMESPACE)
        self.grafana_admin_secret = secret.id.apply(lambda _: monitoring.GRAFANA_ADMIN_SECRET)
        self.release_name = self.release.name.apply(lambda n: n or MONITORING_RELEASE)
        self.dashboard_uids = pulumi.Output.from_input(
            [board["uid"] for board in dashboards.dashboards(args.config)]
        )
        self.alert_names = pulumi.Output.from_input(alerts.alert_names())
        self.register_outputs(
            {
                "namespace": self.namespace,
                "release_name": self.release_name,
                "grafana_admin_secret": self.grafana_admin_secret,
                "dashboard_uids": self.dashboard_uids,
                "alert_names": self.alert_names,
            }
        )
