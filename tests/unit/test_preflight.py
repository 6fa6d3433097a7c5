"""``qhybrid preflight`` against a stand-in API server on loopback answering in the API's own shapes.

The stand-in speaks HTTP to the real client path (the kubernetes package's ApiClient
through ``qhybrid.ops.kubeapi``, a kubeconfig with a bearer token). Its answers have
the shapes the Kubernetes API reference gives for /version, discovery, lists, server-
side apply (200, or 422 with a Status) and SubjectAccessReview; they were written from
that reference, not captured from a cluster. The ``apiserver`` tier runs preflight
against a real API server.
"""

from __future__ import annotations

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from qhybrid.blueprint.config import load_stack_file
from qhybrid.blueprint.pools import POOL_LABEL, POOLS
from qhybrid.blueprint.render import rendered_parts
from qhybrid.ops.kubeapi import KubeApi
from qhybrid.ops.preflight import FAIL, PASS, WARN, as_json, failed, run_preflight
from tests.conftest import invoke

TOKEN = "preflight-test-token"
# kind -> (plural, namespaced), as the discovery documents of a v1.36 server list them.
RESOURCES = {
    "v1": {
        "Namespace": ("namespaces", False),
        "ServiceAccount": ("serviceaccounts", True),
        "ConfigMap": ("configmaps", True),
        "Secret": ("secrets", True),
        "Service": ("services", True),
        "PersistentVolume": ("persistentvolumes", False),
        "PersistentVolumeClaim": ("persistentvolumeclaims", True),
        "Node": ("nodes", False),
    },
    "apps/v1": {"Deployment": ("deployments", True), "StatefulSet": ("statefulsets", True)},
    "rbac.authorization.k8s.io/v1": {
        "Role": ("roles", True),
        "RoleBinding": ("rolebindings", True),
        "ClusterRole": ("clusterroles", False),
        "ClusterRoleBinding": ("clusterrolebindings", False),
    },
    "networking.k8s.io/v1": {"NetworkPolicy": ("networkpolicies", True)},
    "policy/v1": {"PodDisruptionBudget": ("poddisruptionbudgets", True)},
    "storage.k8s.io/v1": {"StorageClass": ("storageclasses", False)},
    "apiextensions.k8s.io/v1": {"CustomResourceDefinition": ("customresourcedefinitions", False)},
    "kueue.x-k8s.io/v1beta2": {
        "ResourceFlavor": ("resourceflavors", False),
        "ClusterQueue": ("clusterqueues", False),
        "LocalQueue": ("localqueues", True),
    },
    "argoproj.io/v1alpha1": {
        "Workflow": ("workflows", True),
        "WorkflowTaskResult": ("workflowtaskresults", True),
    },
    "monitoring.coreos.com/v1": {
        "ServiceMonitor": ("servicemonitors", True),
        "PodMonitor": ("podmonitors", True),
        "PrometheusRule": ("prometheusrules", True),
    },
}


class Cluster:
    """What the stand-in API server knows: a cluster after `pulumi up` of ``stack`` unless changed."""

    def __init__(self, stack: str) -> None:
        config = load_stack_file(stack)
        self.config = config
        self.version = {"major": "1", "minor": "36", "gitVersion": "v1.36.1", "platform": "linux/amd64"}
        self.served = copy.deepcopy(RESOURCES)
        objects = [o for part in rendered_parts(config).values() for o in part]
        self.namespaces = {
            o["metadata"]["name"]: copy.deepcopy(o) for o in objects if o["kind"] == "Namespace"
        }
        self.namespaces["default"] = {"metadata": {"name": "default", "labels": {}}}
        self.nodes = []
        for pool, count in config.pool_sizes().items():
            for i in range(count):
                allocatable = {"cpu": "8", "memory": "32Gi"}
                if pool == "gpu" and config.gpu_resource:
                    allocatable[config.gpu_resource] = "1"
                self.nodes.append(
                    {
                        "metadata": {"name": f"{pool}-{i}", "labels": {POOL_LABEL: pool}},
                        "spec": {"taints": copy.deepcopy(POOLS[pool].taints)},
                        "status": {"allocatable": allocatable},
                    }
                )
        self.storage_classes = [
            {
                "metadata": {
                    "name": "standard",
                    "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
                }
            }
        ]
        workflow = f"system:serviceaccount:{config.workflow_namespace}:qhybrid-workflow"
        self.allowed = {
            (workflow, "create", "workflowtaskresults"),
            (workflow, "patch", "workflowtaskresults"),
            ("system:serviceaccount:qhybrid-gateway:qpu-gateway", "create", "tokenreviews"),
        }
        self.refuse: dict[str, tuple[int, str, str]] = {}  # object path -> (status, reason, message)
        self.forbidden_paths: set[str] = set()
        self.applied: list[tuple[str, dict[str, str]]] = []


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def handler_for(cluster: Cluster) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def reply(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def authorised(self) -> bool:
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self.reply(401, status(401, "Unauthorized", "Unauthorized"))
                return False
            if urlparse(self.path).path in cluster.forbidden_paths:
                self.reply(403, status(403, "Forbidden", "nodes is forbidden: User cannot list resource"))
                return False
            return True

        def do_GET(self) -> None:  # noqa: N802
            if not self.authorised():
                return
            path = urlparse(self.path).path
            if path == "/version":
                return self.reply(200, cluster.version)
            for group_version, kinds in cluster.served.items():
                prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
                if path == prefix:
                    resources = [
                        {
                            "name": plural,
                            "namespaced": namespaced,
                            "kind": kind,
                            "verbs": ["create", "get", "patch"],
                        }
                        for kind, (plural, namespaced) in kinds.items()
                    ]
                    return self.reply(
                        200,
                        {"kind": "APIResourceList", "groupVersion": group_version, "resources": resources},
                    )
            lists = {
                "/api/v1/namespaces": list(cluster.namespaces.values()),
                "/api/v1/nodes": cluster.nodes,
                "/apis/storage.k8s.io/v1/storageclasses": cluster.storage_classes,
            }
            if path in lists:
                return self.reply(200, {"kind": "List", "items": lists[path]})
            self.reply(
                404, status(404, "NotFound", f"the server could not find the requested resource ({path})")
            )

        def body(self) -> dict[str, Any]:
            return json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")

        def do_PATCH(self) -> None:  # noqa: N802
            if not self.authorised():
                return
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            obj = self.body()
            assert self.headers["Content-Type"] == "application/apply-patch+yaml"
            cluster.applied.append((url.path, query))
            if url.path in cluster.refuse:
                code, reason, message = cluster.refuse[url.path]
                return self.reply(code, status(code, reason, message))
            self.reply(200, obj)

        def do_POST(self) -> None:  # noqa: N802
            if not self.authorised():
                return
            review = self.body()
            spec = review["spec"]
            key = (spec["user"], spec["resourceAttributes"]["verb"], spec["resourceAttributes"]["resource"])
            review["status"] = {"allowed": key in cluster.allowed}
            self.reply(201, review)

    return Handler


@pytest.fixture
def serve(tmp_path):
    servers = []

    def start(cluster: Cluster) -> Path:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(cluster))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}
                    ],
                    "users": [{"name": "u", "user": {"token": TOKEN}}],
                    "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                    "current-context": "x",
                }
            )
        )
        return kubeconfig

    yield start
    for server in servers:
        server.shutdown()


def rows_of(cluster: Cluster, serve) -> list:
    return run_preflight(KubeApi.from_kubeconfig(serve(cluster)), cluster.config)


@pytest.mark.parametrize("stack", ["kind", "eks"])
def test_a_ready_cluster_passes_every_check(stack, serve):
    cluster = Cluster(stack)
    rows = rows_of(cluster, serve)
    assert [r for r in rows if r.status != PASS] == []
    checks = {r.check.split(" ")[0] for r in rows}
    assert {"server", "API", "dry", "namespace", "pool", "default"} <= checks
    # Every object went as a dry run with strict field validation, never for real.
    objects = sum(len(p) for p in rendered_parts(cluster.config).values())
    assert len(cluster.applied) == objects
    assert all(q["dryRun"] == "All" and q["fieldValidation"] == "Strict" for _, q in cluster.applied)


def test_an_old_server_fails_the_version_check(serve):
    cluster = Cluster("kind")
    cluster.version = {"major": "1", "minor": "31+", "gitVersion": "v1.31.4-eks"}
    [row] = [r for r in rows_of(cluster, serve) if r.check == "server version"]
    assert row.status == FAIL and "v1.31.4-eks is older than 1.34" in row.detail


def test_missing_crds_fail_both_the_api_and_the_dry_run_rows(serve):
    cluster = Cluster("kind")
    del cluster.served["kueue.x-k8s.io/v1beta2"]
    rows = rows_of(cluster, serve)
    api_rows = [r for r in rows if r.check.startswith("API kueue.x-k8s.io/v1beta2")]
    assert len(api_rows) == 3 and all(r.status == FAIL and r.detail == "not served" for r in api_rows)
    dry = [r for r in rows if r.check.startswith("dry run ClusterQueue")]
    assert dry and all(r.status == FAIL and "not served" in r.detail for r in dry)


def test_an_object_the_server_refuses_is_named(serve):
    cluster = Cluster("kind")
    path = "/apis/kueue.x-k8s.io/v1beta2/clusterqueues/cq-gpu"
    message = 'ClusterQueue.kueue.x-k8s.io "cq-gpu" is invalid: spec.cohortName: Invalid value'
    cluster.refuse[path] = (422, "Invalid", message)
    rows = rows_of(cluster, serve)
    [row] = [r for r in rows if r.status == FAIL]
    assert row.check == "dry run ClusterQueue cq-gpu"
    assert row.detail == f"refused: 422 Invalid: {message}"
    assert failed(rows)


def test_before_pulumi_up_missing_namespaces_are_warnings_not_failures(serve):
    cluster = Cluster("kind")
    cluster.namespaces = {"default": cluster.namespaces["default"]}
    rows = rows_of(cluster, serve)
    assert not failed(rows)
    warned = [r for r in rows if r.status == WARN]
    assert any(r.check.startswith("dry run Deployment qhybrid-gateway/") for r in warned)
    assert any(r.check == "namespace qhybrid-gateway" and r.detail == "does not exist yet" for r in warned)


def test_a_namespace_without_its_pod_security_label_fails_with_the_fix(serve):
    cluster = Cluster("kind")
    cluster.namespaces["qhybrid-workflows"]["metadata"]["labels"].pop("pod-security.kubernetes.io/enforce")
    [row] = [r for r in rows_of(cluster, serve) if r.check == "namespace qhybrid-workflows"]
    assert row.status == FAIL and row.detail == "enforces nothing, not restricted"
    label = "pod-security.kubernetes.io/enforce=restricted"
    assert row.hint == f"kubectl label namespace qhybrid-workflows {label} --overwrite"


def test_node_pools_need_their_nodes_taints_and_gpus(serve):
    cluster = Cluster("eks")
    cluster.nodes = [n for n in cluster.nodes if n["metadata"]["labels"][POOL_LABEL] != "cpu"]
    gpu = next(n for n in cluster.nodes if n["metadata"]["labels"][POOL_LABEL] == "gpu")
    gpu["status"]["allocatable"].pop("nvidia.com/gpu")
    gpu["spec"]["taints"] = []
    rows = {r.check: r for r in rows_of(cluster, serve) if r.check.startswith("pool ")}
    assert (
        rows["pool cpu"].status == FAIL and "no node labelled qhybrid.io/pool=cpu" in rows["pool cpu"].detail
    )
    assert rows["pool gpu"].status == FAIL
    assert "lacks taint qhybrid.io/pool=gpu" in rows["pool gpu"].detail
    assert "has no allocatable nvidia.com/gpu" in rows["pool gpu"].detail
    assert rows["pool system"].status == PASS


def test_no_default_storage_class_fails_naming_the_pending_claim(serve):
    cluster = Cluster("eks")
    cluster.storage_classes[0]["metadata"]["annotations"] = {}
    [row] = [r for r in rows_of(cluster, serve) if r.check == "default StorageClass"]
    assert row.status == FAIL and "PersistentVolumeClaim would stay Pending" in row.detail


def test_service_accounts_get_what_they_need_and_no_more(serve):
    cluster = Cluster("kind")
    workflow = "system:serviceaccount:qhybrid-workflows:qhybrid-workflow"
    cluster.allowed.add((workflow, "list", "secrets"))
    cluster.allowed.discard(("system:serviceaccount:qhybrid-gateway:qpu-gateway", "create", "tokenreviews"))
    rows = {r.check: r for r in rows_of(cluster, serve)}
    assert rows["qhybrid-workflow cannot list secrets"].status == FAIL
    assert rows["qhybrid-workflow cannot list secrets"].detail == "allowed"
    assert rows["qpu-gateway can create tokenreviews"].status == FAIL
    assert rows["qhybrid-workflow can create workflowtaskresults"].status == PASS


def test_a_refused_api_call_fails_its_check_and_the_others_still_run(serve):
    cluster = Cluster("kind")
    cluster.forbidden_paths.add("/api/v1/nodes")
    rows = rows_of(cluster, serve)
    [row] = [r for r in rows if r.status == FAIL]
    assert row.check == "node pools" and "403 Forbidden" in row.detail
    assert any(r.check == "default StorageClass" and r.status == PASS for r in rows)


def test_cli_prints_a_table_or_json_and_exits_1_on_failure(serve):
    cluster = Cluster("kind")
    kubeconfig = serve(cluster)
    ok = invoke("preflight", "--kubeconfig", str(kubeconfig), "--stack", "kind", "--json")
    assert ok.exit_code == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["passed"] is True and report["counts"]["fail"] == 0 and report["counts"]["pass"] > 40
    cluster.storage_classes.clear()
    bad = invoke("preflight", "--kubeconfig", str(kubeconfig), "--stack", "kind")
    assert bad.exit_code == 1
    assert "default StorageClass" in bad.stdout and "preflight: " in bad.stdout and "1 fail" in bad.stdout
    assert as_json([], "kind")["passed"] is True


def test_a_bad_kubeconfig_is_one_line_and_exit_2(tmp_path):
    result = invoke("preflight", "--kubeconfig", str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert result.stderr.startswith("qhybrid: error: --kubeconfig: cannot use it")
