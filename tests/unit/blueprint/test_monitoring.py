"""Monitoring objects and values: they pass the checks, select what they claim, and agree with each other."""

from __future__ import annotations

import json
import re

import kubernetes_validate
import pytest

from qhybrid.blueprint import argo, gateway, kueue, monitoring
from qhybrid.blueprint import validate as crd_checks
from qhybrid.blueprint.config import load_stack_file
from qhybrid.blueprint.monitoring import alerts, cost, dashboards, panels, service_dashboards, slos
from qhybrid.blueprint.monitoring import metric_names as m
from qhybrid.blueprint.names import (
    ARGO_NAMESPACE,
    ARGO_RELEASE,
    GATEWAY_METRICS_PATH,
    GATEWAY_NAMESPACE,
    GRAFANA_DASHBOARD_LABEL,
    KUEUE_NAMESPACE,
    KUEUE_RELEASE,
    MONITORING_NAMESPACE,
    PROMETHEUS_POD_LABELS,
    PROMETHEUS_SELECTOR_LABELS,
)
from qhybrid.blueprint.pools import POOL_LABEL, POOLS
from qhybrid.blueprint.validate.fields import duration_seconds, selector_matches
from qhybrid.blueprint.versions import ARGO_WORKFLOWS, KUBERNETES_SCHEMA_VERSION, KUEUE

STACKS = ["kind", "eks"]


@pytest.fixture(scope="module", params=STACKS)
def config(request):
    return load_stack_file(request.param)


@pytest.fixture(scope="module")
def objects(config):
    return monitoring.monitoring_objects(config)


def by_kind(objs, kind):
    return [o for o in objs if o["kind"] == kind]


def only(objs, kind, name):
    [found] = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


# ---------------------------------------------------------------- the objects as a whole


def test_objects_pass_structural_and_reference_checks(objects):
    assert crd_checks.check_objects(objects) == []


def test_core_objects_are_schema_valid(objects):
    core = [o for o in objects if o["apiVersion"] == "v1"] + [monitoring.grafana_admin_secret("x")]
    assert {o["kind"] for o in core} == {"Namespace", "ConfigMap", "Secret"}
    for obj in core:
        kubernetes_validate.validate(obj, KUBERNETES_SCHEMA_VERSION, strict=True)


def test_namespace_first_then_monitors_rule_and_one_dashboard_per_board(config, objects):
    assert objects[0]["kind"] == "Namespace" and objects[0]["metadata"]["name"] == MONITORING_NAMESPACE
    labels = objects[0]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"  # node-exporter: host namespaces
    assert [o["kind"] for o in objects[1:5]] == [
        "ServiceMonitor",
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
    ]
    assert len(by_kind(objects, "ConfigMap")) == len(dashboards.dashboards(config)) == 7
    assert all(o["metadata"]["namespace"] == MONITORING_NAMESPACE for o in objects[1:])


def test_objects_are_deterministic(config):
    first = json.dumps(monitoring.monitoring_objects(config), sort_keys=True)
    assert json.dumps(monitoring.monitoring_objects(config), sort_keys=True) == first


def test_no_secret_object_among_the_objects(objects):
    assert by_kind(objects, "Secret") == []
    assert "admin-password" not in json.dumps(objects)


# ---------------------------------------------------------------- chart values


def test_retention_comes_from_config(config):
    spec = monitoring.helm_values(config)["prometheus"]["prometheusSpec"]
    assert spec["retention"] == config.prometheus_retention
    assert duration_seconds(spec["retention"]) is not None


def test_retention_follows_a_changed_config(config):
    import dataclasses

    changed = dataclasses.replace(config, prometheus_retention="30d")
    assert monitoring.helm_values(changed)["prometheus"]["prometheusSpec"]["retention"] == "30d"


@pytest.mark.parametrize(
    "path",
    [
        ("prometheusOperator",),
        ("prometheusOperator", "admissionWebhooks", "patch"),
        ("prometheus", "prometheusSpec"),
        ("alertmanager", "alertmanagerSpec"),
        ("grafana",),
        ("kube-state-metrics",),
    ],
)
def test_platform_components_run_on_the_system_pool(config, path):
    node = monitoring.helm_values(config)
    for key in path:
        node = node[key]
    assert node["nodeSelector"] == {POOL_LABEL: "system"}
    assert node["tolerations"] == []


def tolerates(tolerations, taint):
    for t in tolerations:
        if t["key"] != taint["key"] or t.get("effect", taint["effect"]) != taint["effect"]:
            continue
        if t["operator"] == "Exists" or t.get("value") == taint["value"]:
            return True
    return False


def test_node_exporter_tolerates_every_pool_taint_and_is_not_pinned(config):
    exporter = monitoring.helm_values(config)["prometheus-node-exporter"]
    assert "nodeSelector" not in exporter
    taints = [t for pool in POOLS.values() for t in pool.taints]
    assert len(taints) == 3
    for taint in taints:
        assert tolerates(exporter["tolerations"], taint), taint


def test_prometheus_selects_every_monitor_and_rule_by_label(config, objects):
    spec = monitoring.helm_values(config)["prometheus"]["prometheusSpec"]
    selected = {"serviceMonitorSelector": "ServiceMonitor", "podMonitorSelector": "PodMonitor"}
    selected["ruleSelector"] = "PrometheusRule"
    for key, kind in selected.items():
        assert spec[f"{key}NilUsesHelmValues"] is False
        assert spec[key] == {"matchLabels": PROMETHEUS_SELECTOR_LABELS}
        matching = by_kind(objects, kind)
        assert matching, kind
        for obj in matching:
            assert selector_matches(spec[key], obj["metadata"]["labels"]), obj["metadata"]["name"]


def test_grafana_reads_its_admin_from_the_secret_we_create(config):
    grafana = monitoring.helm_values(config)["grafana"]
    secret = monitoring.grafana_admin_secret("pw")
    assert grafana["admin"]["existingSecret"] == secret["metadata"]["name"]
    assert secret["metadata"]["namespace"] == MONITORING_NAMESPACE
    assert secret["stringData"][grafana["admin"]["userKey"]] == "admin"
    assert secret["stringData"][grafana["admin"]["passwordKey"]] == "pw"
    assert "adminPassword" not in grafana


def test_grafana_sidecar_loads_the_dashboard_configmaps(config, objects):
    sidecar = monitoring.helm_values(config)["grafana"]["sidecar"]["dashboards"]
    assert sidecar["enabled"] is True
    for cm in by_kind(objects, "ConfigMap"):
        assert cm["metadata"]["labels"][sidecar["label"]] == sidecar["labelValue"]
        assert cm["metadata"]["namespace"] in sidecar["searchNamespace"]
    assert {sidecar["label"]: sidecar["labelValue"]} == GRAFANA_DASHBOARD_LABEL


def test_kube_state_metrics_exports_the_labels_dashboards_and_cost_rules_group_by(config):
    ksm = monitoring.helm_values(config)["kube-state-metrics"]
    assert ksm["metricLabelsAllowlist"] == [f"nodes=[{POOL_LABEL}]", f"pods=[{cost.ARGO_WORKFLOW_POD_LABEL}]"]
    # kube-state-metrics turns qhybrid.io/pool into label_qhybrid_io_pool
    assert dashboards.POOL_LABEL == "label_" + re.sub(r"[^a-zA-Z0-9]", "_", POOL_LABEL)
    assert cost.WORKFLOW_LABEL == "label_" + re.sub(r"[^a-zA-Z0-9]", "_", cost.ARGO_WORKFLOW_POD_LABEL)


# ---------------------------------------------------------------- scrape targets


def argo_chart_service_labels():
    """The labels argo-workflows' templates put on the controller's metrics Service."""
    controller = "workflow-controller"
    return {
        "helm.sh/chart": f"{ARGO_WORKFLOWS.name}-{ARGO_WORKFLOWS.version}",
        "app.kubernetes.io/name": f"{ARGO_WORKFLOWS.name}-{controller}",
        "app.kubernetes.io/instance": ARGO_RELEASE,
        "app.kubernetes.io/component": controller,
        "app.kubernetes.io/managed-by": "Helm",
        "app.kubernetes.io/part-of": "argo-workflows",
    }


def kueue_chart_service_labels():
    """The labels kueue's templates put on its metrics (and webhook) Services."""
    chart = KUEUE.name.rsplit("/", 1)[-1]
    return {
        "helm.sh/chart": f"{chart}-{KUEUE.version}",
        "app.kubernetes.io/name": chart,
        "app.kubernetes.io/instance": KUEUE_RELEASE,
        "control-plane": "controller-manager",
        "app.kubernetes.io/version": f"v{KUEUE.version}",
        "app.kubernetes.io/managed-by": "Helm",
    }


def test_argo_monitor_selects_the_chart_metrics_service(config):
    sm = monitoring.argo_service_monitor()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [ARGO_NAMESPACE]}
    assert selector_matches(sm["spec"]["selector"], argo_chart_service_labels())
    [endpoint] = sm["spec"]["endpoints"]
    metrics = argo.helm_values(config, monitoring.argo_metrics_values())["controller"]["metricsConfig"]
    assert metrics["enabled"] is True
    assert endpoint["port"] == "metrics"  # the chart's metricsConfig.servicePortName default
    assert endpoint["scheme"] == ("https" if metrics["secure"] else "http")
    assert endpoint["path"] == metrics["path"]


def test_argo_metrics_values_merge_into_the_argo_release_without_losing_its_settings(config):
    values = argo.helm_values(config, monitoring.argo_metrics_values())
    assert values["controller"]["workflowNamespaces"] == [config.workflow_namespace]
    assert values["controller"]["serviceMonitor"] == {"enabled": False}
    assert values["controller"]["nodeSelector"] == {POOL_LABEL: "system"}


def test_kueue_monitor_selects_the_chart_metrics_service_over_https(config):
    sm = monitoring.kueue_service_monitor()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [KUEUE_NAMESPACE]}
    assert selector_matches(sm["spec"]["selector"], kueue_chart_service_labels())
    [endpoint] = sm["spec"]["endpoints"]
    assert endpoint["port"] == "https" and endpoint["scheme"] == "https"
    assert endpoint["bearerTokenFile"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"
    # the chart's metrics Service targets 8443: Kueue must listen there
    assert kueue.manager_configuration(config)["metrics"]["bindAddress"] == ":8443"
    values = kueue.helm_values(config, monitoring.kueue_metrics_values())
    assert values["enablePrometheus"] is False
    assert values["controllerManager"]["nodeSelector"] == {POOL_LABEL: "system"}


def test_gateway_monitor_selects_the_gateway_pods_and_their_metrics_port(config):
    pm = monitoring.gateway_pod_monitor()
    deployment = gateway.deployment(config)
    assert pm["spec"]["namespaceSelector"] == {"matchNames": [deployment["metadata"]["namespace"]]}
    assert deployment["metadata"]["namespace"] == GATEWAY_NAMESPACE
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector_matches(pm["spec"]["selector"], pod_labels)
    [endpoint] = pm["spec"]["podMetricsEndpoints"]
    ports = {p["name"] for c in deployment["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
    assert endpoint["port"] in ports
    assert endpoint["path"] == GATEWAY_METRICS_PATH


def test_gateway_network_policy_lets_prometheus_scrape(config):
    port = next(
        p["containerPort"]
        for c in gateway.deployment(config)["spec"]["template"]["spec"]["containers"]
        for p in c["ports"]
        if p["name"] == monitoring.gateway_pod_monitor()["spec"]["podMetricsEndpoints"][0]["port"]
    )
    policies = [p for p in gateway.network_policies(config) if "Ingress" in p["spec"]["policyTypes"]]
    admitted = False
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            for peer in rule["from"]:
                ns_ok = selector_matches(
                    peer.get("namespaceSelector", {}), {"kubernetes.io/metadata.name": MONITORING_NAMESPACE}
                )
                pod_ok = selector_matches(peer.get("podSelector", {}), PROMETHEUS_POD_LABELS)
                port_ok = any(p["port"] == port for p in rule.get("ports", []))
                admitted = admitted or (ns_ok and pod_ok and port_ok)
    assert admitted


def test_each_monitor_sets_the_job_its_down_alert_watches():
    alert_jobs = {
        r["labels"]["job"] for g in alerts.rule_groups() for r in g["rules"] if "job" in r.get("labels", {})
    }
    monitor_jobs = set()
    for monitor in monitoring.scrape_monitors():
        endpoints = monitor["spec"].get("endpoints") or monitor["spec"]["podMetricsEndpoints"]
        [relabel] = endpoints[0]["relabelings"]
        assert relabel["action"] == "replace" and relabel["targetLabel"] == "job"
        monitor_jobs.add(relabel["replacement"])
    assert monitor_jobs == alert_jobs == {m.JOB_ARGO_CONTROLLER, m.JOB_KUEUE_CONTROLLER, m.JOB_QPU_GATEWAY}
    for job in alert_jobs:
        assert any(f'up{{job="{job}"}}' in r["expr"] for g in alerts.rule_groups() for r in g["rules"])


# ---------------------------------------------------------------- rules


def test_prometheus_rule_holds_the_rule_groups(config):
    rule = monitoring.prometheus_rule(config)
    assert rule["spec"]["groups"] == [*alerts.rule_groups(), cost.cost_rules(config)]
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_every_alert_has_severity_component_summary_and_description():
    names = alerts.alert_names()
    # 11 component alerts, 2 shot-budget alerts, a fast and a slow burn per SLO
    assert len(names) == len(set(names)) == 13 + 2 * len(slos.SLOS)
    for group in alerts.rule_groups():
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            assert rule["labels"]["severity"] in alerts.SEVERITIES, rule["alert"]
            assert rule["annotations"]["runbook_url"] == alerts.runbook_url(rule["alert"])
            assert rule["labels"]["component"] in alerts.COMPONENT_LABELS
            assert rule["annotations"]["summary"].strip() and rule["annotations"]["description"].strip()
            assert duration_seconds(rule["for"]) is not None


def test_the_slos_of_the_issue_each_have_a_paging_alert():
    critical = {
        r["alert"]
        for g in alerts.rule_groups()
        for r in g["rules"]
        if r.get("labels", {}).get("severity") == "critical"
    }
    assert {
        "QhybridWorkflowSuccessFastBurn",  # job success rate
        "QhybridQuantumJobSuccessFastBurn",
        "QhybridQpuGatewayAvailabilityFastBurn",
        "QhybridQueueStalled",  # queue stall
        "QhybridQpuGatewayDown",  # QPU gateway down
        "QhybridQpuProviderCredentialsRejected",  # credential failures
    } <= critical
    assert "QhybridQpuCalibrationStale" in alerts.alert_names()
    assert "QhybridQpuClientAuthFailures" in alerts.alert_names()


def test_slos_are_the_issues_five_kinds_with_standard_burn_windows():
    names = {slo.name for slo in slos.SLOS}
    assert names == {
        "workflow-success",
        "quantumjob-success",
        "gateway-availability",
        "gateway-submit-latency",
        "qpu-time-to-result",
        "intended-backend",
    }
    windows = slos.BurnWindows()
    assert (windows.fast.long, windows.fast.short, windows.fast.factor) == ("1h", "5m", 14.4)
    assert (windows.slow.long, windows.slow.short, windows.slow.factor) == ("6h", "30m", 6.0)
    assert (windows.fast.severity, windows.slow.severity) == ("critical", "warning")
    recorded = {r["record"] for g in alerts.rule_groups() for r in g["rules"] if "record" in r}
    for window in ("5m", "30m", "1h", "6h", "30d"):
        assert slos.ERROR_RATIO.format(window=window) in recorded
    assert {slos.OBJECTIVE, slos.BUDGET_REMAINING} <= recorded


def test_latency_thresholds_are_bucket_bounds_of_their_histograms():
    # The share under a threshold is read from one bucket: it must be one of the bounds.
    from qhybrid.gateway.metrics import LATENCY_BUCKETS, REQUEST_BUCKETS

    assert slos.SUBMIT_LATENCY_THRESHOLD_SECONDS in REQUEST_BUCKETS
    assert slos.QPU_TIME_TO_RESULT_THRESHOLD_SECONDS in LATENCY_BUCKETS
    # prometheus_client writes the bound as 300.0: the selector must say it the same way
    assert 'le="300.0"' in slos.slo_named("qpu-time-to-result").bad


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("objective", 1.0, "objective 1.0 is not between 0 and 1"),
        ("name", "Gateway", "slo.name"),
        ("bad", "sum(rate(x[5m]))", "bad has no {window}"),
    ],
)
def test_an_slo_refuses_a_bad_field_naming_it(field, value, message):
    fields = dict(
        name="x", alert_prefix="QhybridX", component="workflows", objective=0.99, sli="s",
        bad="sum(rate(b[{window}]))", total="sum(rate(t[{window}]))",
    )  # fmt: skip
    fields[field] = value
    with pytest.raises(ValueError, match=re.escape(message)):
        slos.Slo(**fields)


def test_alert_builder_refuses_unknown_severity():
    with pytest.raises(ValueError, match="severity"):
        alerts._alert("X", "up", for_="1m", severity="page", component="queues", summary="s", description="d")


# ---------------------------------------------------------------- metric names


def test_gateway_contract_follows_prometheus_naming():
    for metric in m.GATEWAY_METRICS:
        assert m.naming_problems(metric) == [], metric
    assert len({metric.name for metric in m.GATEWAY_METRICS}) == len(m.GATEWAY_METRICS)


@pytest.mark.parametrize(
    "bad",
    [
        m.Metric("qhybrid_gateway_jobs", "counter", (), "counter without _total"),
        m.Metric("qhybrid_gateway_depth_total", "gauge", (), "gauge with _total"),
        m.Metric("qhybrid_gateway_latency", "histogram", (), "histogram without unit"),
        m.Metric("gateway_jobs_total", "counter", (), "no namespace"),
        m.Metric("qhybrid_gateway_x_total", "counter", ("le",), "reserved label"),
        m.Metric("qhybrid:gateway_total", "counter", (), "colon"),
    ],
)
def test_naming_problems_catches_violations(bad):
    assert m.naming_problems(bad)


def all_queries(config):
    exprs = [r["expr"] for g in monitoring.rule_groups(config) for r in g["rules"]]
    for board in dashboards.dashboards(config):
        exprs += [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    return exprs


def test_every_gateway_metric_is_watched_and_every_watched_one_is_in_the_contract(config):
    used = {
        re.sub(r"_(bucket|sum|count)$", "", name)
        for expr in all_queries(config)
        for name in re.findall(r"\bqhybrid_gateway_[a-z_]+", expr)
    }
    contract = {metric.name for metric in m.GATEWAY_METRICS}
    exported = {v for k, v in vars(m).items() if k.startswith("GATEWAY_") and isinstance(v, str)}
    assert contract <= used  # every metric of the contract is alerted on or shown
    assert used <= exported  # no query reads a gateway metric nobody defined


def test_recording_rules_read_by_queries_exist(config):
    records = {r["record"] for g in monitoring.rule_groups(config) for r in g["rules"] if "record" in r}
    used = {
        name for expr in all_queries(config) for name in re.findall(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", expr)
    }
    assert used - records == {m.NODE_CPU_USAGE_RULE}  # kube-prometheus-stack's own recording rule
    assert records <= used  # no recording rule nobody reads


# ---------------------------------------------------------------- dashboards


def test_dashboards_have_stable_unique_uids_and_ids(config):
    boards = dashboards.dashboards(config)
    assert [b["uid"] for b in boards] == list(dashboards.UIDS.values())
    for board in boards:
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)) and all(isinstance(i, int) and i > 0 for i in ids)
        assert board["templating"]["list"][0]["name"] == panels.DATASOURCE_VARIABLE
        assert board["editable"] is False


def test_dashboard_panels_fit_the_grid_without_overlap(config):
    for board in dashboards.dashboards(config):
        cells = set()
        for panel in board["panels"]:
            g = panel["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24, panel["title"]
            area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not cells & area, f"{board['uid']}: {panel['title']} overlaps"
            cells |= area


def test_every_query_panel_reads_the_datasource_variable(config):
    for board in dashboards.dashboards(config):
        for panel in board["panels"]:
            if panel["type"] in ("row", "text"):
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"])


def panel_titles(board):
    return {p["title"] for p in board["panels"]}


def test_dashboards_show_what_the_issue_asks_for(config):
    workflows, queues, compute, qpu, *_ = dashboards.dashboards(config)
    assert {"Workflows finished per hour", "Tasks by state", "Success rate (last hour)"} <= panel_titles(
        workflows
    )
    assert {"Tasks pending", "Tasks active", "Tasks succeeded", "Tasks failed"} <= panel_titles(workflows)
    assert {"Queue depth", "Admission wait"} <= panel_titles(queues)
    assert {"CPU utilisation by pool", "GPU utilisation"} <= panel_titles(compute)
    assert {
        "QPU job latency",
        "Shots per minute",
        "Shots used (time range)",
        "Calibration age",
    } <= panel_titles(qpu)
    tasks = next(p for p in workflows["panels"] if p["title"] == "Tasks by state")
    assert all(
        phase in tasks["targets"][0]["expr"] for phase in ("Pending", "Running", "Succeeded", "Failed")
    )
    success = next(p for p in workflows["panels"] if p["title"] == "Success rate (last hour)")
    assert f'namespace="{config.workflow_namespace}"' in success["targets"][0]["expr"]


def test_the_service_views_show_slos_burn_rates_alerts_queues_cache_and_failovers():
    executive, on_call, debug = service_dashboards.service_dashboards(load_stack_file("kind"))
    assert {slo.name for slo in slos.SLOS} <= panel_titles(executive)
    assert {"Workflows finished per day", "QuantumJobs finished per day"} <= panel_titles(executive)
    budget = next(p for p in executive["panels"] if p["title"] == "gateway-availability")
    assert budget["targets"][0]["expr"] == f'{slos.BUDGET_REMAINING}{{slo="gateway-availability"}}'
    assert {
        "Firing alerts",
        "Pending workloads by ClusterQueue",
        "Gateway answers by status",
    } <= panel_titles(on_call)
    burns = [p for p in on_call["panels"] if p["title"].startswith("Burn rate,")]
    assert [p["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"] for p in burns] == [14.4, 6.0]
    assert {"Shared result cache hit ratio", "Failovers, by namespace"} <= panel_titles(debug)
    assert "QPU job latency p95, by backend" in panel_titles(debug)


def test_gpu_panel_follows_the_gpu_vendor(config):
    compute = dashboards.compute_dashboard(config)
    gpu = next(p for p in compute["panels"] if p["title"] == "GPU utilisation")
    if config.gpu_resource is None:
        assert gpu["type"] == "text" and "no accelerators" in gpu["options"]["content"]
    else:
        resource = config.gpu_resource.replace(".", "_").replace("/", "_")
        assert gpu["type"] == "timeseries"
        assert f'resource="{resource}"' in gpu["targets"][0]["expr"]


def test_dashboard_configmaps_carry_the_dashboard_json(config, objects):
    for cm, board in zip(by_kind(objects, "ConfigMap"), dashboards.dashboards(config), strict=True):
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["name"] == f"dashboard-{board['uid']}"
        [(key, value)] = cm["data"].items()
        assert key == f"{board['uid']}.json"
        assert json.loads(value) == board
