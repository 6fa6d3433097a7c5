"""The Cluster component under Pulumi's mocks: kind commands, EKS node groups, provider, config errors."""

from __future__ import annotations

import json

import pulumi_kubernetes as k8s
import pytest
import yaml

from qhybrid.blueprint import kind
from qhybrid.blueprint.config import ConfigError, from_pulumi, load_stack_file
from qhybrid.blueprint.names import MONITORING_NAMESPACE, PROMETHEUS_SELECTOR_LABELS
from qhybrid.blueprint.pools import POOL_LABEL, POOLS
from qhybrid.blueprint.versions import DCGM_EXPORTER, NVIDIA_DEVICE_PLUGIN
from tests.unit.infra import conftest
from tests.unit.infra.conftest import SECRET_KEYS, run_program, stack_values

ZONES = ["us-east-1a", "us-east-1b", "us-east-1c"]
COMMAND = "command:local:Command"
NODE_GROUP = "eks:index:ManagedNodeGroup"
RELEASE = "kubernetes:helm.sh/v3:Release"


@pytest.fixture(scope="module", autouse=True)
def availability_zones():
    # The shared mocks answer every invoke with nothing; the EKS network asks for the region's zones.
    original = conftest._Mocks.call

    def call(self, args):
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return {"names": ZONES, "zoneIds": ["use1-az1", "use1-az2", "use1-az4"]}
        return original(self, args)

    conftest._Mocks.call = call
    yield
    conftest._Mocks.call = original


def cluster_program():
    from infra.cluster import Cluster, ClusterArgs

    cluster = Cluster("cluster", ClusterArgs(config=from_pulumi()))
    # stands in for the monitoring part (kube-prometheus-stack's CRDs and namespace)
    monitoring = k8s.core.v1.Namespace(
        "monitoring-ns", metadata={"name": MONITORING_NAMESPACE}, opts=_opts(cluster.provider)
    )
    cluster.add_gpu_metrics(after=[monitoring])


def _opts(provider):
    import pulumi

    return pulumi.ResourceOptions(provider=provider)


@pytest.fixture(scope="module")
def kind_graph():
    return run_program(cluster_program, stack_values("kind"), SECRET_KEYS, stack="kind")


@pytest.fixture(scope="module")
def eks_graph():
    return run_program(cluster_program, stack_values("eks"), SECRET_KEYS, stack="eks")


def the_cluster(graph):
    [cluster] = graph.of_type("qhybrid:cluster:Cluster")
    return cluster


def descendants(graph, root):
    found, frontier = [], [root]
    while frontier:
        children = graph.children_of(frontier.pop())
        found += children
        frontier += children
    return found


def unsecret(value):
    # provider inputs arrive as the engine's secret envelope
    if isinstance(value, dict) and "value" in value and len(value) == 2:
        return value["value"]
    return value


def the_provider(graph):
    [provider] = [
        p for p in graph.of_type("pulumi:providers:kubernetes") if p.parent == the_cluster(graph).urn
    ]
    return provider


# --- kind -------------------------------------------------------------------------------------------------


def kind_commands(graph):
    commands = {c.name: c for c in graph.of_type(COMMAND)}
    assert set(commands) == {"cluster-kind", "cluster-kubeconfig"}
    return commands["cluster-kind"], commands["cluster-kubeconfig"]


def test_kind_create_command_feeds_the_rendered_config_on_stdin(kind_graph):
    create, _ = kind_commands(kind_graph)
    config = load_stack_file("kind")
    assert create.inputs["create"] == kind.kind_create_command(config)
    assert "--config -" in create.inputs["create"]
    assert yaml.safe_load(create.inputs["stdin"]) == kind.kind_cluster_config(config)
    # a changed config recreates the cluster
    assert create.inputs["triggers"] == [create.inputs["stdin"]]


def test_kind_delete_command_deletes_the_cluster_it_created(kind_graph):
    create, _ = kind_commands(kind_graph)
    name = yaml.safe_load(create.inputs["stdin"])["name"]
    assert f"kind create cluster --name {name} " in create.inputs["create"]
    assert f"kind delete cluster --name {name}" in create.inputs["delete"]


def test_kind_workers_in_the_created_config_carry_pool_labels_and_taints(kind_graph):
    create, _ = kind_commands(kind_graph)
    nodes = yaml.safe_load(create.inputs["stdin"])["nodes"]
    workers = [n for n in nodes if n["role"] == "worker"]
    assert len(workers) == sum(load_stack_file("kind").pool_sizes().values())
    for worker in workers:
        pool = POOLS[worker["labels"][POOL_LABEL]]
        assert kind.worker_taints(worker) == pool.taints


def test_kubeconfig_is_read_after_the_cluster_exists_and_is_secret(kind_graph):
    create, kubeconfig = kind_commands(kind_graph)
    assert create.urn in kubeconfig.dependencies
    assert kubeconfig.inputs["triggers"] == ["cluster-kind-id"]  # re-read when the cluster is recreated
    assert kubeconfig.inputs["create"] == "kind get kubeconfig --name qhybrid"
    assert kubeconfig.inputs["logging"] == "stderr"  # stdout (the admin key) stays out of logs


def test_the_provider_is_built_from_the_kubeconfig_command(kind_graph):
    _, kubeconfig = kind_commands(kind_graph)
    provider = the_provider(kind_graph)
    assert kubeconfig.urn in provider.dependencies
    assert unsecret(provider.inputs["kubeconfig"]).startswith("apiVersion: v1\nkind: Config")
    assert "4dabf18193072939515e22adb298388d" in provider.inputs["kubeconfig"]  # marked secret


def test_kind_has_no_gpu_releases(kind_graph):
    assert kind_graph.of_type(RELEASE) == []


@pytest.mark.parametrize("stack", ["kind", "eks"])
def test_every_child_has_the_cluster_component_as_parent(stack, kind_graph, eks_graph):
    graph = {"kind": kind_graph, "eks": eks_graph}[stack]
    cluster = the_cluster(graph)
    owned = [r for r in graph.registrations if r.name != "monitoring-ns" and r is not cluster]
    assert owned
    assert all(r.parent == cluster.urn for r in owned), [
        (r.type, r.name) for r in owned if r.parent != cluster.urn
    ]


# --- EKS --------------------------------------------------------------------------------------------------


def node_groups(graph):
    return {r.name.removeprefix("cluster-"): r for r in graph.of_type(NODE_GROUP)}


def test_eks_cluster_from_config_without_default_node_group(eks_graph):
    [cluster] = eks_graph.of_type("eks:index:Cluster")
    assert cluster.inputs["name"] == "qhybrid"
    assert cluster.inputs["version"] == "1.34"
    assert cluster.inputs["skipDefaultNodeGroup"] is True
    assert cluster.inputs["authenticationMode"] == "API"
    assert len(cluster.inputs["subnetIds"]) == 2


def test_aws_resources_use_a_provider_for_the_configured_region(eks_graph):
    [aws] = eks_graph.of_type("pulumi:providers:aws")
    assert aws.inputs["region"] == "us-east-1"
    for resource in eks_graph.registrations:
        if resource.type.startswith("aws:"):
            assert resource.provider.startswith(aws.urn), resource.name


def test_one_managed_node_group_per_pool_with_the_pools_labels_and_taints(eks_graph):
    groups = node_groups(eks_graph)
    assert set(groups) == set(POOLS)
    [cluster] = eks_graph.of_type("eks:index:Cluster")
    for pool, group in groups.items():
        assert group.inputs["labels"] == POOLS[pool].node_labels
        expected = [
            {"key": t["key"], "value": t["value"], "effect": "NO_SCHEDULE"} for t in POOLS[pool].taints
        ]
        assert group.inputs["taints"] == expected
        assert cluster.urn in group.dependencies
    assert groups["gpu"].inputs["amiType"] == "AL2023_x86_64_NVIDIA"
    assert groups["gpu"].inputs["instanceTypes"] == ["g5.2xlarge"]
    assert groups["cpu"].inputs["scalingConfig"] == {"desiredSize": 4, "minSize": 4, "maxSize": 4}


def test_node_groups_wait_for_the_node_role_policies(eks_graph):
    attachments = eks_graph.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    policies = {a.inputs["policyArn"].rsplit("/", 1)[1] for a in attachments}
    assert policies == {
        "AmazonEKSWorkerNodePolicy",
        "AmazonEKS_CNI_Policy",
        "AmazonEC2ContainerRegistryReadOnly",
        "AmazonEBSCSIDriverPolicy",
    }
    [role] = eks_graph.of_type("aws:iam/role:Role")
    assert json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Principal"] == {
        "Service": "ec2.amazonaws.com"
    }
    for group in node_groups(eks_graph).values():
        assert {role.urn, *(a.urn for a in attachments)} <= set(group.dependencies)


def test_eks_provider_comes_from_the_cluster_kubeconfig_and_waits_for_the_pools(eks_graph):
    provider = the_provider(eks_graph)
    [cluster] = eks_graph.of_type("eks:index:Cluster")
    assert cluster.urn in provider.dependencies
    assert json.loads(unsecret(provider.inputs["kubeconfig"]))["kind"] == "Config"
    assert {g.urn for g in node_groups(eks_graph).values()} <= set(provider.dependencies)


def releases(graph):
    return {r.inputs["chart"]: r for r in graph.of_type(RELEASE)}


def test_device_plugin_uses_the_cluster_provider_and_waits_for_the_gpu_pool(eks_graph):
    plugin = releases(eks_graph)[NVIDIA_DEVICE_PLUGIN.name]
    assert plugin.provider.startswith(the_provider(eks_graph).urn)
    assert node_groups(eks_graph)["gpu"].urn in plugin.dependencies
    assert plugin.inputs["version"] == NVIDIA_DEVICE_PLUGIN.version
    assert plugin.inputs["repositoryOpts"] == {"repo": NVIDIA_DEVICE_PLUGIN.repo}
    assert plugin.inputs["namespace"] == "kube-system"
    values = plugin.inputs["values"]
    assert values["tolerations"] == POOLS["gpu"].tolerations
    assert values["nodeSelector"] == POOLS["gpu"].node_labels


def test_gpu_metrics_wait_for_monitoring_and_are_scraped(eks_graph):
    dcgm = releases(eks_graph)[DCGM_EXPORTER.name]
    assert dcgm.parent == the_cluster(eks_graph).urn
    assert dcgm.provider.startswith(the_provider(eks_graph).urn)
    assert eks_graph.named("monitoring-ns").urn in dcgm.dependencies
    assert dcgm.inputs["namespace"] == MONITORING_NAMESPACE
    assert dcgm.inputs["values"]["serviceMonitor"]["additionalLabels"] == PROMETHEUS_SELECTOR_LABELS
    assert dcgm.inputs["values"]["tolerations"] == POOLS["gpu"].tolerations


def test_eks_without_gpus_installs_no_gpu_releases():
    values = stack_values("eks", gpuVendor="none", gpuQuotaGpus=0)
    graph = run_program(cluster_program, values, SECRET_KEYS, stack="eks")
    assert graph.of_type(RELEASE) == []
    assert node_groups(graph)["gpu"].inputs["amiType"] == "AL2023_x86_64_STANDARD"


# --- invalid config ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stack", "override", "key"),
    [
        ("kind", {"gpuVendor": "quantum"}, "qhybrid:gpuVendor"),
        ("kind", {"cpuNodes": -1}, "qhybrid:cpuNodes"),
        ("kind", {"gpuNodes": 0}, "qhybrid:gpuNodes"),  # the gpu queue keeps its quota
        ("kind", {"gpuVendor": "nvidia"}, "qhybrid:gpuVendor"),  # kind has no GPUs
        ("eks", {"gpuVendor": "amd"}, "qhybrid:gpuVendor"),  # EKS has NVIDIA images only
        ("eks", {"awsRegion": "moon"}, "qhybrid:awsRegion"),
        ("eks", {"cpuInstanceType": "huge"}, "qhybrid:cpuInstanceType"),
    ],
)
def test_invalid_config_fails_naming_the_key_before_any_resource(stack, override, key, monkeypatch):
    graphs = []

    class RecordedGraph(conftest.Graph):
        def __init__(self) -> None:
            super().__init__()
            graphs.append(self)  # run_program's graph, kept although run_program raises

    monkeypatch.setattr(conftest, "Graph", RecordedGraph)

    def program():
        from infra.cluster import Cluster, ClusterArgs

        Cluster("cluster", ClusterArgs(config=from_pulumi()))

    with pytest.raises(ConfigError) as caught:
        run_program(program, stack_values(stack, **override), SECRET_KEYS, stack=stack)
    assert caught.value.field == key
    [graph] = graphs
    assert graph.registrations == []


def test_eks_gets_ebs_volumes_and_network_policy_enforcement(eks_graph):
    [addon] = eks_graph.of_type("aws:eks/addon:Addon")
    assert addon.inputs["addonName"] == "aws-ebs-csi-driver"
    assert set(n.urn for n in node_groups(eks_graph).values()) <= set(addon.dependencies)
    [storage_class] = eks_graph.kubernetes_objects("StorageClass")
    assert storage_class.inputs["metadata"]["annotations"] == {
        "storageclass.kubernetes.io/is-default-class": "true"
    }
    assert addon.urn in storage_class.dependencies
    [cluster] = eks_graph.of_type("eks:index:Cluster")
    assert cluster.inputs["vpcCniOptions"]["enableNetworkPolicy"] is True
