"""The platform against a real API server: every object created, preflight, TokenReview, RBAC.

Run with ``QHYBRID_TEST_KUBECONFIG`` naming any API server (a bare kube-apiserver with
etcd and RBAC, or kind): ``pytest -m apiserver tests/apiserver``. Unset, these skip.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
from typing import Any

import pytest

from qhybrid.blueprint import argo
from qhybrid.blueprint.config import load_stack_file
from qhybrid.blueprint.names import GATEWAY_TOKEN_AUDIENCE, WORKFLOW_SERVICE_ACCOUNT
from qhybrid.blueprint.pools import POOL_LABEL, POOLS
from qhybrid.blueprint.render import rendered_parts
from qhybrid.gateway.config import ClientConfig, KubernetesConfig
from qhybrid.gateway.kubernetes_auth import ReviewRejected, TokenReviewer
from qhybrid.ops import preflight
from qhybrid.ops.kubeapi import ApiFailure, KubeApi, resource_path
from tests.apiserver.conftest import Scratch, kubeconfig_cluster, token_for

AUTH_DELEGATOR = "system:auth-delegator"


def served(kube: KubeApi, obj: dict[str, Any]) -> tuple[str, bool]:
    """Return the plural and namespacedness of ``obj``'s kind, as the server's discovery says."""
    resource = (kube.resources(obj["apiVersion"]) or {})[obj["kind"]]
    return resource["name"], bool(resource["namespaced"])


def renamed(objects: list[dict[str, Any]], scratch: Scratch) -> list[dict[str, Any]]:
    """Give every namespace and cluster-scoped object a per-test name, and the references to them."""
    namespaces = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
    namespaces |= {o["metadata"]["namespace"] for o in objects if o["metadata"].get("namespace")}
    ns = {name: scratch.name(name) for name in namespaces}
    cluster_names = {
        (o["kind"], o["metadata"]["name"])
        for o in objects
        if not o["metadata"].get("namespace") and o["kind"] != "Namespace"
    }
    named = {key: scratch.name(key[1]) for key in cluster_names}
    out = []
    for original in objects:
        obj = copy.deepcopy(original)
        meta, spec, kind = obj["metadata"], obj.get("spec") or {}, obj["kind"]
        if kind == "Namespace":
            meta["name"] = ns[meta["name"]]
        elif meta.get("namespace"):
            meta["namespace"] = ns[meta["namespace"]]
        else:
            meta["name"] = named[(kind, meta["name"])]
        for subject in obj.get("subjects") or []:
            subject["namespace"] = ns.get(subject.get("namespace"), subject.get("namespace"))
        if obj.get("roleRef", {}).get("kind") == "ClusterRole":
            obj["roleRef"]["name"] = named.get(
                ("ClusterRole", obj["roleRef"]["name"]), obj["roleRef"]["name"]
            )
        if kind == "LocalQueue":
            spec["clusterQueue"] = named[("ClusterQueue", spec["clusterQueue"])]
        for group in spec.get("resourceGroups") or []:
            for flavor in group["flavors"]:
                flavor["name"] = named[("ResourceFlavor", flavor["name"])]
        if kind == "PersistentVolumeClaim" and spec.get("volumeName"):
            spec["volumeName"] = named[("PersistentVolume", spec["volumeName"])]
        selector = spec.get("namespaceSelector") or {}
        if "matchNames" in selector:
            selector["matchNames"] = [ns.get(n, n) for n in selector["matchNames"]]
        out.append(obj)
    return sorted(out, key=lambda o: o["kind"] != "Namespace")  # namespaces first, then render order


@pytest.mark.parametrize("stack", ["kind", "eks"])
def test_every_rendered_object_is_created_for_real(kube, crds, scratch, stack):
    # Given every object the Pulumi program creates for the stack, under per-test names,
    objects = renamed([o for part in rendered_parts(load_stack_file(stack)).values() for o in part], scratch)
    refused = []
    # when each is created for real, with strict field validation,
    for obj in objects:
        plural, namespaced = served(kube, obj)
        try:
            scratch.create(obj, plural, namespaced)
        except ApiFailure as failure:
            refused.append(f"{obj['kind']} {obj['metadata']['name']}: {failure}")
    # then the server accepts every one.
    assert refused == []
    assert len(scratch.created) == len(objects) > 30


def ensure(kube: KubeApi, api_version: str, plural: str, obj: dict[str, Any], made: list[str]) -> None:
    """Create ``obj`` (cluster-scoped) unless an object of that name exists; remember what was made."""
    path = resource_path(api_version, plural, None, obj["metadata"]["name"])
    try:
        kube.get(path)
    except ApiFailure as failure:
        if failure.status != 404:
            raise
        kube.create(resource_path(api_version, plural, None), obj)
        made.append(path)


@pytest.fixture
def platform(kube, crds):
    """The kind stack's platform applied for real under its own names, with nodes and a StorageClass.

    Preflight checks the stack's own namespaces, so this one fixture does not rename:
    on kind after `pulumi up` it changes nothing; on a bare API server it creates the
    objects, a Node per pool and a default StorageClass, and deletes what it made.
    """
    config = load_stack_file("kind")
    made: list[str] = []
    objects = [o for part in rendered_parts(config).values() for o in part]
    for obj in sorted(objects, key=lambda o: o["kind"] != "Namespace"):
        plural, namespaced = served(kube, obj)
        namespace = obj["metadata"].get("namespace") if namespaced else None
        path = resource_path(obj["apiVersion"], plural, namespace, obj["metadata"]["name"])
        try:
            kube.get(path)
        except ApiFailure:
            kube.apply(path, obj, dry_run=False)
            if namespace is None:
                made.append(path)
    labelled = {
        (n["metadata"].get("labels") or {}).get(POOL_LABEL)
        for n in kube.get("/api/v1/nodes").get("items") or []
    }
    for pool, count in config.pool_sizes().items():
        if count and pool not in labelled:
            node = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": f"qhybrid-test-{pool}", "labels": {POOL_LABEL: pool}},
                "spec": {"taints": POOLS[pool].taints},
            }
            ensure(kube, "v1", "nodes", node, made)
    classes = kube.get("/apis/storage.k8s.io/v1/storageclasses").get("items") or []
    if not any(
        (c["metadata"].get("annotations") or {}).get(preflight.DEFAULT_CLASS_ANNOTATION) == "true"
        for c in classes
    ):
        storage_class = {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": "qhybrid-test-default",
                "annotations": {preflight.DEFAULT_CLASS_ANNOTATION: "true"},
            },
            "provisioner": "kubernetes.io/no-provisioner",
        }
        ensure(kube, "storage.k8s.io/v1", "storageclasses", storage_class, made)
    yield config
    for path in reversed(made):
        kube.delete(path)


def test_preflight_passes_and_names_an_object_broken_on_purpose(kube, platform, monkeypatch):
    # Given the platform in place, every preflight check passes;
    rows = preflight.run_preflight(kube, platform)
    assert [r for r in rows if r.status == preflight.FAIL] == []
    assert sum(r.status == preflight.PASS for r in rows) > 30
    # when one ClusterQueue carries a field the API does not have,
    parts = rendered_parts(platform)
    broken = next(o for o in parts["kueue"] if o["kind"] == "ClusterQueue")
    broken["spec"]["namespaceSelectr"] = {}
    monkeypatch.setattr(preflight, "rendered_parts", lambda config: parts)
    rows = preflight.run_preflight(kube, platform, checks=[preflight.dry_run_objects])
    # then the strict dry run fails it, by name.
    [row] = [r for r in rows if r.status == preflight.FAIL]
    assert row.check == f"dry run ClusterQueue {broken['metadata']['name']}"
    assert "namespaceSelectr" in row.detail


def test_the_gateway_accepts_a_projected_workflow_token_and_refuses_others(kube, scratch, tmp_path):
    # Given a namespace with the workflow's service account, another account, and a reviewer
    # bound to system:auth-delegator (what the gateway's own account is bound to),
    namespace = scratch.name("tokens")
    scratch.create(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}, "namespaces", False
    )
    for account in (WORKFLOW_SERVICE_ACCOUNT, "someone-else", "reviewer"):
        sa = {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": account, "namespace": namespace},
        }
        scratch.create(sa, "serviceaccounts", True)
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": scratch.name("reviewer")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": AUTH_DELEGATOR},
        "subjects": [{"kind": "ServiceAccount", "name": "reviewer", "namespace": namespace}],
    }
    scratch.create(binding, "clusterrolebindings", False)
    server, ca = kubeconfig_cluster(tmp_path)
    own = tmp_path / "reviewer.token"
    own.write_text(token_for(kube, namespace, "reviewer", None))
    settings = KubernetesConfig(
        api_url=server, ca_file=ca or tmp_path / "none", token_file=own, audience=GATEWAY_TOKEN_AUDIENCE
    )
    client = ClientConfig(
        name="workflow", kubernetes_service_account=f"{namespace}/{WORKFLOW_SERVICE_ACCOUNT}"
    )

    async def review(token: str) -> str:
        reviewer = TokenReviewer(settings, (client,))
        try:
            return (await reviewer.review(token, hashlib.sha256(token.encode()).hexdigest())).name
        finally:
            await reviewer.aclose()

    # when tokens minted by the server through the TokenRequest API are reviewed,
    good = token_for(kube, namespace, WORKFLOW_SERVICE_ACCOUNT, [GATEWAY_TOKEN_AUDIENCE])
    # then the workflow's, for the gateway's audience, is accepted,
    assert asyncio.run(review(good)) == "workflow"
    # and another account's, or one for another audience, is refused.
    with pytest.raises(ReviewRejected):
        asyncio.run(review(token_for(kube, namespace, "someone-else", [GATEWAY_TOKEN_AUDIENCE])))
    with pytest.raises(ReviewRejected):
        asyncio.run(review(token_for(kube, namespace, WORKFLOW_SERVICE_ACCOUNT, ["another-audience"])))


def test_each_service_account_can_do_what_it_needs_and_no_more(kube, crds, scratch):
    # Given the workflow namespace's RBAC objects under a per-test namespace,
    config = load_stack_file("kind")
    objects = renamed(
        [argo.workflow_namespace(config), *argo.workflow_rbac(config)],
        scratch,
    )
    for obj in objects:
        scratch.create(obj, *served(kube, obj))
    namespace = objects[0]["metadata"]["name"]
    user = f"system:serviceaccount:{namespace}:{WORKFLOW_SERVICE_ACCOUNT}"
    # then SubjectAccessReview says the workflow account may record step results and nothing else.
    assert preflight.can(kube, user, "create", "argoproj.io", "workflowtaskresults", namespace)
    assert preflight.can(kube, user, "patch", "argoproj.io", "workflowtaskresults", namespace)
    for verb, group, resource in (("list", "", "secrets"), ("create", "", "pods"), ("get", "", "configmaps")):
        assert not preflight.can(kube, user, verb, group, resource, namespace), (verb, resource)
    assert not preflight.can(kube, user, "create", "argoproj.io", "workflowtaskresults", "default")
