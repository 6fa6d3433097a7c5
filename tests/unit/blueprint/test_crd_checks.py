"""crd_checks: each rule accepts the real objects and rejects the mistake it exists for."""

from __future__ import annotations

import copy
import json

import pytest

from qhybrid.blueprint import monitoring
from qhybrid.blueprint import validate as crd_checks
from qhybrid.blueprint.config import load_stack_file
from qhybrid.blueprint.validate import check_object, check_references
from qhybrid.blueprint.validate.fields import duration_seconds, selector_matches
from qhybrid.blueprint.validate.monitoring import CONFIGMAP_MAX_BYTES


@pytest.fixture(scope="module")
def objects():
    return monitoring.monitoring_objects(load_stack_file("kind"))


def of_kind(objects, kind):
    return copy.deepcopy(next(o for o in objects if o["kind"] == kind))


def problems_of(obj):
    problems = check_object(obj)
    assert problems, "expected a problem"
    return "\n".join(problems)


def test_the_monitoring_objects_are_clean(objects):
    for obj in objects:
        assert check_object(obj) == [], obj["metadata"]["name"]
    assert check_references(objects) == []


# ---------------------------------------------------------------- generic


@pytest.mark.parametrize("field", ["apiVersion", "kind"])
def test_missing_type_fields(objects, field):
    obj = of_kind(objects, "ConfigMap")
    del obj[field]
    assert f"{field} is missing" in problems_of(obj)


def test_missing_metadata_or_name(objects):
    obj = of_kind(objects, "ConfigMap")
    del obj["metadata"]["name"]
    assert "metadata.name" in problems_of(obj)
    del obj["metadata"]
    assert "metadata is missing" in problems_of(obj)


@pytest.mark.parametrize("name", ["Upper", "under_score", "-dash", "a" * 254, ""])
def test_object_names_must_be_dns_subdomains(objects, name):
    obj = of_kind(objects, "ServiceMonitor")
    obj["metadata"]["name"] = name
    assert "DNS-1123 subdomain" in problems_of(obj)


def test_namespace_names_must_be_dns_labels(objects):
    obj = of_kind(objects, "Namespace")
    obj["metadata"]["name"] = "with.dot"
    assert "DNS-1123 label" in problems_of(obj)


def test_namespaced_kinds_need_a_namespace_and_cluster_kinds_must_not_have_one(objects):
    obj = of_kind(objects, "PrometheusRule")
    del obj["metadata"]["namespace"]
    assert "metadata.namespace is missing" in problems_of(obj)
    ns = of_kind(objects, "Namespace")
    ns["metadata"]["namespace"] = "default"
    assert "cluster-scoped" in problems_of(ns)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("bad key", "v", "label key"),
        ("Example.com/name", "v", "invalid prefix"),
        ("a/" + "n" * 64, "v", "label key"),
        ("ok", "bad value!", "label value"),
        ("ok", "v" * 64, "label value"),
        ("ok", 1, "not a string"),
    ],
)
def test_label_keys_and_values(objects, key, value, expected):
    obj = of_kind(objects, "PodMonitor")
    obj["metadata"]["labels"][key] = value
    assert expected in problems_of(obj)


def test_empty_label_value_is_allowed(objects):
    obj = of_kind(objects, "PodMonitor")
    obj["metadata"]["labels"]["example.com/flag"] = ""
    assert check_object(obj) == []


# ---------------------------------------------------------------- ServiceMonitor / PodMonitor


def endpoint(obj):
    spec = obj["spec"]
    return (spec.get("endpoints") or spec["podMetricsEndpoints"])[0]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda o: o["spec"].update(selector={}), "would select everything"),
        (lambda o: o["spec"].pop("selector"), "LabelSelector"),
        (
            lambda o: o["spec"].update(selector={"matchExpressions": [{"key": "a", "operator": "Equals"}]}),
            "operator",
        ),
        (
            lambda o: o["spec"].update(selector={"matchExpressions": [{"key": "a", "operator": "In"}]}),
            "needs values",
        ),
        (
            lambda o: o["spec"].update(
                selector={"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}
            ),
            "takes no values",
        ),
        (lambda o: o["spec"].update(endpoints=[]), "non-empty list"),
        (lambda o: endpoint(o).update(targetPort=8080), "exactly one of"),
        (lambda o: endpoint(o).pop("port"), "exactly one of"),
        (lambda o: endpoint(o).update(port="Metrics"), "port name"),
        (lambda o: endpoint(o).update(port="a-very-long-port-name"), "port name"),
        (lambda o: endpoint(o).update(port="8080"), "port name"),
        (lambda o: endpoint(o).update(path="metrics"), "must start with '/'"),
        (lambda o: endpoint(o).update(tlsConfig={"insecureSkipVerify": True}), "plain http"),
        (lambda o: endpoint(o).update(interval="30s", scrapeTimeout="1m"), "scrapeTimeout is longer"),
        (lambda o: endpoint(o).update(relabelings=[{"action": "replace"}]), "needs targetLabel"),
        (lambda o: endpoint(o).update(relabelings=[{"targetLabel": "bad-label"}]), "not a valid label name"),
        (lambda o: o["spec"]["namespaceSelector"].update(any=True), "exclusive"),
        (lambda o: o["spec"]["namespaceSelector"].update(matchNames=["Argo"]), "DNS-1123 label"),
    ],
)
def test_service_monitor_mistakes(mutate, expected):
    obj = monitoring.argo_service_monitor()
    assert check_object(obj) == []
    mutate(obj)
    assert expected in problems_of(obj)


def test_https_endpoint_may_carry_tls_and_token():
    assert check_object(monitoring.kueue_service_monitor()) == []


def test_pod_monitor_needs_pod_metrics_endpoints():
    obj = monitoring.gateway_pod_monitor()
    obj["spec"]["podMetricsEndpoints"] = []
    assert "podMetricsEndpoints must be a non-empty list" in problems_of(obj)
    obj = monitoring.gateway_pod_monitor()
    endpoint(obj).update(portNumber=8080)
    assert "exactly one of" in problems_of(obj)


# ---------------------------------------------------------------- PrometheusRule


def first_alert(obj):
    return next(r for g in obj["spec"]["groups"] for r in g["rules"] if "alert" in r)


def alert_group(obj):
    return next(g for g in obj["spec"]["groups"] if "alert" in g["rules"][0])


def first_record(obj):
    return next(r for g in obj["spec"]["groups"] for r in g["rules"] if "record" in r)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda o: first_alert(o)["labels"].pop("severity"), "labels.severity"),
        (lambda o: first_alert(o)["labels"].update(severity="page"), "labels.severity"),
        (lambda o: first_alert(o)["annotations"].pop("summary"), "annotations.summary"),
        (lambda o: first_alert(o)["annotations"].update(description="  "), "annotations.description"),
        (lambda o: first_alert(o).update(expr=""), "expr is missing"),
        (lambda o: first_alert(o).update(record="x"), "exactly one of alert and record"),
        (lambda o: first_alert(o).update(alert="Has space"), "alert name"),
        (lambda o: first_alert(o)["labels"].update({"bad-name": "x"}), "label name"),
        (lambda o: first_record(o).update({"for": "5m"}), "a recording rule has no for"),
        (
            lambda o: first_record(o).update(annotations={"summary": "s"}),
            "a recording rule has no annotations",
        ),
        (lambda o: first_record(o).update(record="bad-name"), "not a valid metric name"),
        (lambda o: o["spec"]["groups"].append(copy.deepcopy(o["spec"]["groups"][1])), "duplicate group name"),
        (
            lambda o: alert_group(o)["rules"].append(copy.deepcopy(alert_group(o)["rules"][0])),
            "duplicate alert",
        ),
        (lambda o: o["spec"]["groups"][0].update(rules=[]), "rules must be a non-empty list"),
        (lambda o: o["spec"].update(groups=[]), "spec.groups must be a non-empty list"),
    ],
)
def test_prometheus_rule_mistakes(mutate, expected):
    obj = monitoring.prometheus_rule(load_stack_file("kind"))
    assert check_object(obj) == []
    mutate(obj)
    assert expected in problems_of(obj)


# ---------------------------------------------------------------- ConfigMap


def test_dashboard_configmap_mistakes(objects):
    cm = of_kind(objects, "ConfigMap")
    [key] = cm["data"]
    broken = copy.deepcopy(cm)
    broken["data"][key] = "{not json"
    assert "is not JSON" in problems_of(broken)
    board = json.loads(cm["data"][key])
    board["uid"] = "u" * 41
    broken["data"][key] = json.dumps(board)
    assert "dashboard uid" in problems_of(broken)
    broken = copy.deepcopy(cm)
    broken["data"]["bad key"] = "{}"
    assert "data key" in problems_of(broken)
    broken = copy.deepcopy(cm)
    broken["data"][key] = "x" * (CONFIGMAP_MAX_BYTES + 1)
    assert "1 MiB" in problems_of(broken)


def test_plain_configmap_values_need_not_be_json(objects):
    cm = of_kind(objects, "ConfigMap")
    cm["metadata"]["labels"] = {"app": "x"}
    cm["data"] = {"config.yaml": "a: 1"}
    assert check_object(cm) == []


# ---------------------------------------------------------------- references


def test_unknown_namespace_is_refused_but_created_and_known_ones_pass(objects):
    cm = of_kind(objects, "ConfigMap")
    cm["metadata"].update(namespace="nowhere", name="elsewhere", labels={"app": "x"})
    assert any("'nowhere'" in p for p in check_references([*objects, cm]))
    created = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "nowhere"}}
    assert check_references([*objects, cm, created]) == []
    assert (
        check_references([*objects, cm], known_namespaces=crd_checks.DEFAULT_KNOWN_NAMESPACES | {"nowhere"})
        == []
    )


def test_monitor_naming_a_missing_namespace_is_refused(objects):
    sm = monitoring.argo_service_monitor()
    sm["spec"]["namespaceSelector"]["matchNames"] = ["argo-typo"]
    others = [o for o in objects if o["metadata"]["name"] != sm["metadata"]["name"]]
    assert any("namespaceSelector names 'argo-typo'" in p for p in check_references([*others, sm]))


@pytest.mark.parametrize("kind", ["ServiceMonitor", "PodMonitor", "PrometheusRule"])
def test_monitor_without_the_prometheus_selector_labels_is_refused(objects, kind):
    objs = copy.deepcopy(objects)
    target = next(o for o in objs if o["kind"] == kind)
    del target["metadata"]["labels"]["release"]
    assert any("Prometheus would ignore it" in p for p in check_references(objs))


def test_duplicates_are_refused(objects):
    assert any("defined 2 times" in p for p in check_references([*objects, of_kind(objects, "PodMonitor")]))
    cm = of_kind(objects, "ConfigMap")
    cm["metadata"]["name"] = "copy-of-a-dashboard"
    assert any("uid" in p and "used 2 times" in p for p in check_references([*objects, cm]))


# ---------------------------------------------------------------- primitives and registry


@pytest.mark.parametrize(
    ("labels", "expected"),
    [({"a": "1", "b": "2"}, True), ({"a": "1"}, False), ({"a": "2", "b": "2"}, False)],
)
def test_selector_match_labels(labels, expected):
    assert selector_matches({"matchLabels": {"a": "1", "b": "2"}}, labels) is expected


@pytest.mark.parametrize(
    ("expression", "labels", "expected"),
    [
        ({"key": "a", "operator": "In", "values": ["1", "2"]}, {"a": "2"}, True),
        ({"key": "a", "operator": "In", "values": ["1"]}, {"b": "1"}, False),
        ({"key": "a", "operator": "NotIn", "values": ["1"]}, {"a": "1"}, False),
        ({"key": "a", "operator": "NotIn", "values": ["1"]}, {}, True),
        ({"key": "a", "operator": "Exists"}, {"a": ""}, True),
        ({"key": "a", "operator": "Exists"}, {}, False),
        ({"key": "a", "operator": "DoesNotExist"}, {"a": "x"}, False),
    ],
)
def test_selector_match_expressions(expression, labels, expected):
    assert selector_matches({"matchExpressions": [expression]}, labels) is expected


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("1h30m", 5400), ("0", 0), ("1d", 86400), ("500ms", 0.5), ("2w", 1209600)],
)
def test_durations(text, seconds):
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "1.5h", "m", "30 s", None, 30])
def test_not_durations(text):
    assert duration_seconds(text) is None


def test_each_kind_runs_the_checker_its_table_names(monkeypatch):
    def check_widget(obj):
        return [] if obj.get("spec", {}).get("size") else ["spec.size is missing"]

    monkeypatch.setitem(crd_checks.CHECKERS, "Widget", check_widget)
    widget = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": "default"},
    }
    assert check_object(widget) == ["Widget default/w: spec.size is missing"]
    assert check_object({**widget, "spec": {"size": 1}}) == []
    # The table is explicit: every kind our blueprint builds a checker for is listed.
    assert {"ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap"} <= set(crd_checks.CHECKERS)
    assert {"ResourceFlavor", "ClusterQueue", "LocalQueue"} <= set(crd_checks.CHECKERS)
