"""The Argo, Kueue and gateway objects: schema-valid, consistent with the pools, least privilege."""

from __future__ import annotations

import copy
import json

import kubernetes_validate
import pytest
import yaml

from qhybrid.blueprint import argo, gateway, kueue
from qhybrid.blueprint.config import load_stack_config, load_stack_file
from qhybrid.blueprint.names import (
    GATEWAY_CREDENTIALS_SECRET,
    GATEWAY_LABELS,
    GATEWAY_NAMESPACE,
    GATEWAY_SERVICE_ACCOUNT,
    GATEWAY_TOKEN_AUDIENCE,
    WORKER_LABELS,
    WORKFLOW_SERVICE_ACCOUNT,
)
from qhybrid.blueprint.pools import POOL_LABEL, POOLS, RESOURCE_CLASSES
from qhybrid.blueprint.render import rendered_parts
from qhybrid.blueprint.versions import KUBERNETES_SCHEMA_VERSION

STACKS = ["kind", "eks"]


CORE_GROUPS = {
    "",
    "apps",
    "policy",
    "batch",
    "networking.k8s.io",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
}


def api_group(obj):
    return obj["apiVersion"].rpartition("/")[0]


def core_objects(config):
    """Objects of built-in kinds: Kubernetes' own schemas cover them."""
    return [o for objs in rendered_parts(config).values() for o in objs if api_group(o) in CORE_GROUPS]


def tolerates(tolerations, taint):
    return any(
        t["key"] == taint["key"]
        and t.get("effect") in (None, taint["effect"])
        and (t.get("operator") == "Exists" or t.get("value") == taint["value"])
        for t in tolerations
    )


@pytest.mark.parametrize("stack", STACKS)
def test_core_objects_validate_against_the_kubernetes_schema(stack):
    objects = core_objects(load_stack_file(stack))
    assert {o["kind"] for o in objects} >= {"Namespace", "Deployment", "Service", "NetworkPolicy", "Role"}
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_SCHEMA_VERSION, strict=True)


def test_the_schema_check_catches_a_misspelt_field():
    deployment = copy.deepcopy(gateway.deployment(load_stack_file("kind")))
    deployment["spec"]["template"]["spec"]["tolleration"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_SCHEMA_VERSION, strict=True)


def test_flavors_bind_each_class_to_its_pool_and_tolerate_its_taint():
    for name, resource_class in RESOURCE_CLASSES.items():
        flavor = kueue.resource_flavor(name)
        pool = POOLS[resource_class.pool]
        assert flavor["spec"]["nodeLabels"] == {POOL_LABEL: pool.name}
        assert pool.taints, "workload pools are tainted"
        for taint in pool.taints:
            assert tolerates(flavor["spec"]["tolerations"], taint), (name, taint)
        # and it tolerates no other pool's taint
        for other in POOLS.values():
            if other.name != pool.name:
                assert not any(tolerates(flavor["spec"]["tolerations"], t) for t in other.taints)


@pytest.mark.parametrize("stack", STACKS)
def test_queues_reference_what_exists_and_carry_the_configured_quota(stack):
    config = load_stack_file(stack)
    objects = kueue.kueue_objects(config)
    flavors = {o["metadata"]["name"] for o in objects if o["kind"] == "ResourceFlavor"}
    cluster_queues = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ClusterQueue"}
    local_queues = [o for o in objects if o["kind"] == "LocalQueue"]
    assert sorted(lq["metadata"]["name"] for lq in local_queues) == ["queue-cpu", "queue-gpu", "queue-qpu"]
    for lq in local_queues:
        assert lq["metadata"]["namespace"] == config.workflow_namespace
        assert lq["spec"]["clusterQueue"] in cluster_queues
    for cq in cluster_queues.values():
        assert cq["spec"]["cohortName"] == config.cohort
        for group in cq["spec"]["resourceGroups"]:
            for flavor in group["flavors"]:
                assert flavor["name"] in flavors
                assert [r["name"] for r in flavor["resources"]] == group["coveredResources"]
    gpu = cluster_queues["cq-gpu"]["spec"]["resourceGroups"][0]
    if config.gpu_resource:
        assert config.gpu_resource in gpu["coveredResources"]
        quota = {r["name"]: r["nominalQuota"] for r in gpu["flavors"][0]["resources"]}
        assert quota[config.gpu_resource] == config.gpu_quota_gpus
    else:
        assert gpu["coveredResources"] == ["cpu", "memory"]
    cpu = cluster_queues["cq-cpu"]["spec"]["resourceGroups"][0]["flavors"]
    assert cpu[0]["resources"] == [
        {"name": "cpu", "nominalQuota": config.cpu_quota_cpu},
        {"name": "memory", "nominalQuota": f"{config.cpu_quota_memory_gi}Gi"},
    ]
    # cpu work may borrow the gpu pool's idle cores, never with quota of its own there
    assert cpu[1]["name"] == "gpu" and all(r["nominalQuota"] in (0, "0Gi") for r in cpu[1]["resources"])
    qpu = cluster_queues["cq-qpu"]["spec"]["resourceGroups"][0]
    assert {"name": "pods", "nominalQuota": config.qpu_quota_pods} in qpu["flavors"][0]["resources"]


def test_kueue_manages_labelled_pods_in_the_workflow_namespace_only():
    config = load_stack_file("kind")
    manager = kueue.manager_configuration(config)
    assert "pod" in manager["integrations"]["frameworks"]
    assert manager["manageJobsWithoutQueueName"] is False
    assert manager["managedJobsNamespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": config.workflow_namespace}
    }
    values = kueue.helm_values(config, {"controllerManager": {"replicas": 2}})
    assert values["controllerManager"]["replicas"] == 2  # extra values merge deeply
    assert values["controllerManager"]["nodeSelector"] == {POOL_LABEL: "system"}


@pytest.mark.parametrize("stack", STACKS)
def test_the_provider_secret_reaches_only_the_gateway_pods_read_only(stack):
    config = load_stack_file(stack)
    everything = [o for objs in rendered_parts(config).values() for o in objs]
    mounting = []
    for obj in everything:
        pod = obj.get("spec", {}).get("template", {}).get("spec")
        if not pod:
            continue
        text = json.dumps(pod)
        if GATEWAY_CREDENTIALS_SECRET in text:
            mounting.append(obj)
            for container in pod["containers"]:
                assert "env" not in container and "envFrom" not in container  # files only
                mounts = [m for m in container["volumeMounts"] if m["name"] == "provider-credentials"]
                assert mounts and all(m["readOnly"] for m in mounts)
    assert [(o["kind"], o["metadata"]["labels"]["app.kubernetes.io/name"]) for o in mounting] == [
        ("Deployment", GATEWAY_LABELS["app.kubernetes.io/name"])
    ]
    pod = mounting[0]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {POOL_LABEL: "qpu-gateway"}
    assert all(tolerates(pod["tolerations"], t) for t in POOLS["qpu-gateway"].taints)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_only_the_gateway_may_leave_the_cluster():
    config = load_stack_file("kind")
    [gateway_policy] = gateway.network_policies(config)
    [workflow_policy] = argo.workflow_network_policies(config)
    workers = gateway_policy["spec"]["ingress"][0]["from"][0]
    assert workers["podSelector"]["matchLabels"] == WORKER_LABELS
    assert (
        workers["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        == config.workflow_namespace
    )
    egress = {
        tuple(p["port"] for p in rule["ports"]): [p["ipBlock"]["cidr"] for p in rule["to"] if "ipBlock" in p]
        for rule in gateway_policy["spec"]["egress"]
    }
    assert egress[(443,)] == list(config.gateway_egress_cidrs)  # the providers
    # the API server (TokenReview), behind the kubernetes Service: only the cluster's ranges
    assert egress[(443, 6443)] == list(config.workflow_egress_cidrs)
    assert egress[(53, 53)] == []  # DNS: kube-dns pods only
    worker_blocks = [
        p["ipBlock"]["cidr"]
        for rule in workflow_policy["spec"]["egress"]
        for p in rule["to"]
        if "ipBlock" in p
    ]
    assert worker_blocks == list(config.workflow_egress_cidrs)
    assert "0.0.0.0/0" not in worker_blocks
    assert workflow_policy["spec"]["podSelector"] == {} and workflow_policy["spec"]["ingress"] == []


@pytest.mark.parametrize("store", ["pvc", "s3"])
def test_workflow_pods_get_least_privilege(store):
    extra = {
        "qhybrid:artifactStore": store,
        "qhybrid:artifactS3Endpoint": "minio:9000",
        "qhybrid:artifactS3Bucket": "b",
    }
    config = load_stack_config("t", extra, set())
    role = next(o for o in argo.workflow_rbac(config) if o["kind"] == "Role")
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        if rule["resources"] == ["secrets"]:
            assert rule["resourceNames"] == [argo.S3_CREDENTIALS_SECRET] and rule["verbs"] == ["get"]
    assert {r["resources"][0] for r in role["rules"]} == (
        {"workflowtaskresults", "secrets"} if store == "s3" else {"workflowtaskresults"}
    )


def test_kind_shares_one_host_directory_as_a_read_write_many_volume():
    objects = argo.artifact_volume(load_stack_file("kind"))
    volume, claim = objects
    assert volume["spec"]["hostPath"]["path"] == argo.KIND_ARTIFACT_NODE_PATH
    assert claim["spec"]["volumeName"] == volume["metadata"]["name"]
    assert volume["spec"]["claimRef"]["name"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_workload_namespaces_enforce_the_restricted_standard():
    config = load_stack_file("kind")
    namespaces = {
        o["metadata"]["name"]: o
        for objs in rendered_parts(config).values()
        for o in objs
        if o["kind"] == "Namespace"
    }
    for name in (config.workflow_namespace, "qhybrid-gateway"):
        assert namespaces[name]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_one_gateway_owns_its_durable_queue():
    config = load_stack_file("eks")
    deployment = gateway.deployment(config)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}  # never two pods on one queue
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    claim = gateway.state_claim(config)
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["resources"]["requests"]["storage"] == config.gateway_state_size
    assert volumes["config"]["configMap"]["name"] == gateway.config_map(config)["metadata"]["name"]


# Volume types the restricted Pod Security Standard allows.
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"
}  # fmt: skip


@pytest.mark.parametrize("stack", STACKS)
def test_the_gateway_may_review_tokens_and_nothing_more(stack):
    config = load_stack_file(stack)
    objects = rendered_parts(config)["gateway"]
    bindings = [o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    assert bindings == [gateway.token_review_binding()]
    [binding] = bindings
    assert "namespace" not in binding["metadata"]  # cluster-scoped
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "system:auth-delegator",  # built in: create tokenreviews and subjectaccessreviews
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": GATEWAY_SERVICE_ACCOUNT, "namespace": GATEWAY_NAMESPACE}
    ]
    [account] = [o for o in objects if o["kind"] == "ServiceAccount"]
    assert account["metadata"]["name"] == GATEWAY_SERVICE_ACCOUNT
    assert account["automountServiceAccountToken"] is False  # no other pod of this account gets a token
    pod = gateway.deployment(config)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == GATEWAY_SERVICE_ACCOUNT
    assert pod["automountServiceAccountToken"] is True  # the gateway's own token, for TokenReview
    # still within the restricted standard its namespace enforces
    assert {key for v in pod["volumes"] for key in v if key != "name"} <= RESTRICTED_VOLUMES
    assert pod["securityContext"]["runAsNonRoot"] is True and "hostNetwork" not in pod
    container = pod["containers"][0]["securityContext"]
    assert container["allowPrivilegeEscalation"] is False and container["capabilities"] == {"drop": ["ALL"]}
    assert objects.index(binding) < objects.index(gateway.deployment(config))


@pytest.mark.parametrize(("budget", "expected"), [(0, None), (250_000, 250_000)])
def test_the_gateway_config_admits_the_workflow_service_account(budget, expected):
    from qhybrid.gateway.config import parse_config

    config = load_stack_config("t", {"qhybrid:gatewayWorkflowShotBudget": budget}, set())
    config_map = gateway.config_map(config)
    parsed = parse_config(yaml.safe_load(config_map["data"]["config.yaml"]), source="configmap")
    [client] = parsed.clients
    assert client.name == WORKFLOW_SERVICE_ACCOUNT and client.token_sha256 is None
    assert client.shot_budget == expected and client.backends is None
    # the account the gateway admits is the one the workflow's pods run as
    [account] = [o for o in argo.workflow_rbac(config) if o["kind"] == "ServiceAccount"]
    assert client.kubernetes_service_account == (
        f"{account['metadata']['namespace']}/{account['metadata']['name']}"
    )
    assert parsed.kubernetes.audience == GATEWAY_TOKEN_AUDIENCE
    assert parsed.kubernetes.api_url is None  # in cluster: KUBERNETES_SERVICE_HOST/PORT
    assert str(parsed.kubernetes.token_file) == "/var/run/secrets/kubernetes.io/serviceaccount/token"
    assert [b.name for b in parsed.backends] == ["aer", "fake_manila"]
