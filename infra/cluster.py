"""The Cluster part: a kind cluster or an EKS cluster, and the Kubernetes provider everything else uses.

``Cluster`` creates the cluster the stack asks for and exposes its kubeconfig (a
secret) and a ``pulumi_kubernetes.Provider`` built from it; every other part
passes that provider to its resources.

* kind: a ``command:local:Command`` runs ``kind create cluster --config -`` with the
  rendered config on stdin and ``kind delete cluster`` on delete, so ``pulumi
  destroy`` removes the cluster; a second Command reads ``kind get kubeconfig``.
* eks: a dedicated VPC, a ``pulumi_eks.Cluster`` without its default node group,
  one managed node group per pool sharing a node IAM role, and on an nvidia stack
  the NVIDIA device plugin on the gpu pool.

``Cluster.add_gpu_metrics(after=[monitoring])`` adds dcgm-exporter (GPU utilisation
for Prometheus) on an nvidia stack. It is a separate call because the exporter's
ServiceMonitor needs the CRDs and namespace that kube-prometheus-stack brings, and
those exist only after the cluster (Helm refuses a chart whose kinds are unknown).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_command as command
import pulumi_eks as eks
import pulumi_kubernetes as k8s

from infra.objects import create_object, helm_release
from qhybrid.blueprint import eks as eks_spec
from qhybrid.blueprint import kind
from qhybrid.blueprint.config import StackConfig
from qhybrid.blueprint.names import MONITORING_NAMESPACE
from qhybrid.blueprint.versions import DCGM_EXPORTER, NVIDIA_DEVICE_PLUGIN

DEVICE_PLUGIN_NAMESPACE = "kube-system"
DEVICE_PLUGIN_RELEASE = "nvidia-device-plugin"
DCGM_EXPORTER_RELEASE = "dcgm-exporter"


@dataclass(frozen=True, kw_only=True)
class ClusterArgs:
    """What the Cluster needs: the stack's config, checked for the chosen cluster kind."""

    config: StackConfig

    def __post_init__(self) -> None:
        """Refuse a config this cluster kind cannot honour, before any resource exists."""
        if not isinstance(self.config, StackConfig):
            raise TypeError(f"config must be a StackConfig, got {type(self.config).__name__}")
        if self.config.cluster == "kind":
            kind.check_kind_config(self.config)
        else:
            eks_spec.check_eks_config(self.config)


class Cluster(pulumi.ComponentResource):
    """The stack's Kubernetes cluster (kind or EKS) and the provider built from its kubeconfig."""

    kubeconfig: pulumi.Output[str]
    cluster_name: pulumi.Output[str]
    provider: k8s.Provider
    node_groups: dict[str, eks.ManagedNodeGroup]
    device_plugin: k8s.helm.v3.Release | None
    gpu_metrics: k8s.helm.v3.Release | None

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """Create the cluster ``args.config.cluster`` names, then its Kubernetes provider."""
        super().__init__("qhybrid:cluster:Cluster", name, None, opts)
        config = args.config
        self._stack_config = config
        self._gpu_metrics_name = f"{name}-dcgm-exporter"
        self.node_groups = {}
        self.device_plugin = None
        self.gpu_metrics = None
        if config.cluster == "kind":
            self.kubeconfig = self._kind(name, config)
            # A kind cluster can vanish under Pulumi (Docker restarted, `kind delete` by hand):
            # let `pulumi destroy` drop its objects from state instead of failing on them.
            self.provider = k8s.Provider(
                f"{name}-k8s",
                kubeconfig=self.kubeconfig,
                delete_unreachable=True,
                opts=pulumi.ResourceOptions(parent=self),
            )
        else:
            self.kubeconfig = self._eks(name, config)
            # Every part schedules onto the pools: the provider is usable once all node groups are.
            self.provider = k8s.Provider(
                f"{name}-k8s",
                kubeconfig=self.kubeconfig,
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(self.node_groups.values())),
            )
            # Stateful parts (the gateway's durable queue) need a default StorageClass.
            create_object(
                eks_spec.default_storage_class(),
                pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=[self.ebs_csi]),
            )
            if config.gpu_vendor == "nvidia":
                self.device_plugin = helm_release(
                    DEVICE_PLUGIN_RELEASE,
                    resource_name=f"{name}-nvidia-device-plugin",
                    chart=NVIDIA_DEVICE_PLUGIN,
                    namespace=DEVICE_PLUGIN_NAMESPACE,
                    values=eks_spec.nvidia_device_plugin_values(),
                    opts=pulumi.ResourceOptions(
                        parent=self, provider=self.provider, depends_on=[self.node_groups[eks_spec.GPU_POOL]]
                    ),
                )
        self.cluster_name = pulumi.Output.from_input(config.cluster_name)
        self.register_outputs({"kubeconfig": self.kubeconfig, "clusterName": self.cluster_name})

    def add_gpu_metrics(self, *, after: Sequence[pulumi.Resource]) -> k8s.helm.v3.Release | None:
        """Install dcgm-exporter on the gpu pool of an nvidia stack, once ``after`` exists.

        ``after`` is the monitoring part: the exporter's ServiceMonitor needs
        kube-prometheus-stack's CRDs and the monitoring namespace, which cannot exist
        before the cluster does, so this runs after construction. Returns the release,
        or None on a stack without NVIDIA GPUs.
        """
        if self.gpu_metrics is not None:
            raise RuntimeError("add_gpu_metrics was already called on this Cluster")
        if self._stack_config.gpu_vendor != "nvidia":
            return None
        self.gpu_metrics = helm_release(
            DCGM_EXPORTER_RELEASE,
            resource_name=self._gpu_metrics_name,
            chart=DCGM_EXPORTER,
            namespace=MONITORING_NAMESPACE,
            values=eks_spec.dcgm_exporter_values(),
            opts=pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=list(after)),
        )
        return self.gpu_metrics

    def _kind(self, name: str, config: StackConfig) -> pulumi.Output[str]:
        config_yaml = kind.kind_config_yaml(config)
        create = command.local.Command(
            f"{name}-kind",
            create=kind.kind_create_command(config),
            delete=kind.kind_delete_command(config),
            stdin=config_yaml,
            # Any change to the rendered config recreates the cluster. The old one must go
            # first: the new one has the same name, and kind refuses a name in use.
            triggers=[config_yaml],
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        kubeconfig = command.local.Command(
            f"{name}-kubeconfig",
            create=kind.kind_kubeconfig_command(config),
            # Read again whenever the cluster is recreated (new certificates, new API port).
            triggers=[create.id],
            # The kubeconfig holds the admin client key: keep it out of logs and state in clear.
            logging=command.local.Logging.STDERR,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[create], additional_secret_outputs=["stdout"]
            ),
        )
        return pulumi.Output.secret(kubeconfig.stdout)

    def _eks(self, name: str, config: StackConfig) -> pulumi.Output[str]:
        tags = eks_spec.aws_tags(config)
        aws_provider = aws.Provider(
            f"{name}-aws",
            region=config.aws_region,
            default_tags=aws.ProviderDefaultTagsArgs(tags=tags),
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws_opts = pulumi.ResourceOptions(parent=self, provider=aws_provider)
        subnets, associations = self._network(name, config, aws_provider)
        cluster = eks.Cluster(
            f"{name}-eks",
            name=config.cluster_name,
            version=config.kubernetes_version,
            vpc_id=subnets[0].vpc_id,
            subnet_ids=[subnet.id for subnet in subnets],
            skip_default_node_group=True,
            # Access entries, not the aws-auth ConfigMap: EKS adds the managed node groups'
            # role and the creator (whose credentials run `aws eks get-token`) itself.
            authentication_mode=eks.AuthenticationMode.API,
            # IAM roles for service accounts (the s3 artifact store can use one).
            create_oidc_provider=True,
            # The VPC CNI enforces NetworkPolicies only when asked to; ours isolate the gateway.
            vpc_cni_options=eks.VpcCniOptionsArgs(enable_network_policy=True),
            tags=tags,
            # Nodes reach the API and the registries through the public route table.
            opts=pulumi.ResourceOptions(
                parent=self, providers={"aws": aws_provider}, depends_on=associations
            ),
        )
        role = aws.iam.Role(
            f"{name}-node-role", assume_role_policy=eks_spec.node_assume_role_policy(), opts=aws_opts
        )
        attachments = [
            aws.iam.RolePolicyAttachment(
                f"{name}-node-{arn.rsplit('/', 1)[1]}", role=role.name, policy_arn=arn, opts=aws_opts
            )
            for arn in eks_spec.NODE_POLICY_ARNS
        ]
        for spec in eks_spec.node_group_specs(config):
            self.node_groups[spec["pool"]] = eks.ManagedNodeGroup(
                f"{name}-{spec['pool']}",
                # The cluster's core data rather than the Cluster resource: same inputs for the
                # provider, and no resource reference for Pulumi's Python mocks to rehydrate.
                cluster=cluster.core,
                # A prefix, not a fixed name: a replaced group is created before the old one goes.
                node_group_name_prefix=spec["node_group_name_prefix"],
                node_role_arn=role.arn,
                instance_types=spec["instance_types"],
                ami_type=spec["ami_type"],
                disk_size=spec["disk_size"],
                scaling_config=aws.eks.NodeGroupScalingConfigArgs(**spec["scaling"]),
                labels=spec["labels"],
                taints=[aws.eks.NodeGroupTaintArgs(**taint) for taint in spec["taints"]],
                tags=tags,
                # Nodes cannot join until the role may pull images and run the CNI.
                opts=pulumi.ResourceOptions(
                    parent=self, providers={"aws": aws_provider}, depends_on=[cluster, role, *attachments]
                ),
            )
        self.ebs_csi = aws.eks.Addon(
            f"{name}-ebs-csi",
            cluster_name=config.cluster_name,
            addon_name=eks_spec.EBS_CSI_ADDON,
            opts=pulumi.ResourceOptions(
                parent=self, provider=aws_provider, depends_on=list(self.node_groups.values())
            ),
        )
        return pulumi.Output.secret(cluster.kubeconfig_json)

    def _network(
        self, name: str, config: StackConfig, aws_provider: aws.Provider
    ) -> tuple[list[aws.ec2.Subnet], list[aws.ec2.RouteTableAssociation]]:
        """Create a VPC with one public subnet per zone in zones EKS accepts for control planes."""
        aws_opts = pulumi.ResourceOptions(parent=self, provider=aws_provider)
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=eks_spec.VPC_CIDR,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={"Name": config.cluster_name},
            opts=aws_opts,
        )
        gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, opts=aws_opts)
        routes = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=gateway.id)],
            opts=aws_opts,
        )
        zones = aws.get_availability_zones_output(
            state="available",
            exclude_zone_ids=list(eks_spec.EKS_UNSUPPORTED_ZONE_IDS),
            opts=pulumi.InvokeOutputOptions(parent=self, provider=aws_provider),
        )
        needed = len(eks_spec.SUBNET_CIDRS)

        def zone(index: int) -> Callable[[Sequence[str] | None], str]:
            def pick(names: Sequence[str] | None) -> str:
                if not names or len(names) < needed:
                    raise pulumi.RunError(
                        f"qhybrid:awsRegion: {config.aws_region} offers {len(names or [])} zones "
                        f"EKS accepts; the cluster needs {needed}"
                    )
                return names[index]

            return pick

        subnets: list[aws.ec2.Subnet] = []
        associations: list[aws.ec2.RouteTableAssociation] = []
        for index, cidr in enumerate(eks_spec.SUBNET_CIDRS):
            subnet = aws.ec2.Subnet(
                f"{name}-public-{index}",
                vpc_id=vpc.id,
                cidr_block=cidr,
                availability_zone=zones.names.apply(zone(index)),
                map_public_ip_on_launch=True,
                # Lets the AWS load balancer integration put internet-facing LBs here.
                tags={"Name": f"{config.cluster_name}-public-{index}", "kubernetes.io/role/elb": "1"},
                opts=aws_opts,
            )
            associations.append(
                aws.ec2.RouteTableAssociation(
                    f"{name}-public-{index}", subnet_id=subnet.id, route_table_id=routes.id, opts=aws_opts
                )
            )
            subnets.append(subnet)
        return subnets, associations
