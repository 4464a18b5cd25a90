"""The EKS cluster (pulumi-eks), its managed node groups and its Kubernetes provider."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks
import pulumi_kubernetes as k8s

from infra.config import NodeGroupConfig
from infra.iam import ec2_trust_policy

CONTROL_PLANE_LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")
NODE_POLICIES = (
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
    "AmazonEC2ContainerRegistryPullOnly",
)
SERVICE_WORKLOAD = "inference"
BATCH_WORKLOAD = "batch"
WORKLOAD_LABEL = "retail.io/workload"
"""Node label (and, on batch nodes, taint key) that places pods on a node group."""


@dataclass
class ClusterArgs:
    cluster_name: str
    vpc_id: pulumi.Input[str]
    private_subnet_ids: Sequence[pulumi.Input[str]]
    public_subnet_ids: Sequence[pulumi.Input[str]]
    secrets_kms_key_arn: pulumi.Input[str]
    logs_kms_key_arn: pulumi.Input[str]
    log_retention_days: int
    version: str = "1.33"
    public_access_cidrs: Sequence[str] = ()
    service_nodes: NodeGroupConfig = field(default_factory=NodeGroupConfig)
    batch_nodes: NodeGroupConfig = field(default_factory=lambda: NodeGroupConfig(min_size=0, desired_size=0, spot=True))


class Cluster(pulumi.ComponentResource):
    """An EKS cluster reachable privately, and publicly only from `public_access_cidrs`.

    Kubernetes secrets are envelope-encrypted with the cluster key; all five control
    plane log types go to a pre-created, KMS-encrypted log group with retention; an IAM
    OIDC provider enables IRSA. No default node group: a managed group for the service
    (label `retail.io/workload=inference`) and a tainted one for batch jobs, both in
    private subnets with IMDSv2, and spot capacity where the node group config says so.
    The metrics-server add-on feeds the HorizontalPodAutoscaler.
    """

    cluster_name: str
    kubeconfig: pulumi.Output[str]
    oidc_provider_arn: pulumi.Output[str]
    oidc_issuer: pulumi.Output[str]
    provider: k8s.Provider

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("retail:infra:Cluster", name, None, opts)
        self._name = name
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-control-plane-logs",
            name=f"/aws/eks/{args.cluster_name}/cluster",
            retention_in_days=args.log_retention_days,
            kms_key_id=args.logs_kms_key_arn,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.eks_cluster = eks.Cluster(
            f"{name}-eks",
            name=args.cluster_name,
            version=args.version,
            vpc_id=args.vpc_id,
            private_subnet_ids=list(args.private_subnet_ids),
            public_subnet_ids=list(args.public_subnet_ids),
            node_associate_public_ip_address=False,
            endpoint_private_access=True,
            endpoint_public_access=bool(args.public_access_cidrs),
            public_access_cidrs=list(args.public_access_cidrs) or None,
            encryption_config_key_arn=args.secrets_kms_key_arn,
            enabled_cluster_log_types=list(CONTROL_PLANE_LOG_TYPES),
            create_oidc_provider=True,
            authentication_mode=eks.AuthenticationMode.API,
            skip_default_node_group=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[log_group]),
        )
        node_groups = [
            self._node_group(SERVICE_WORKLOAD, args.service_nodes, args, taint=False),
            self._node_group(BATCH_WORKLOAD, args.batch_nodes, args, taint=True),
        ]
        aws.eks.Addon(
            f"{name}-metrics-server",
            cluster_name=args.cluster_name,
            addon_name="metrics-server",
            opts=pulumi.ResourceOptions(parent=self, depends_on=node_groups),
        )
        self.cluster_name = args.cluster_name
        self.kubeconfig = pulumi.Output.secret(self.eks_cluster.kubeconfig_json)
        self.oidc_provider_arn = self.eks_cluster.oidc_provider_arn
        self.oidc_issuer = self.eks_cluster.oidc_issuer
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs(
            {
                "cluster_name": self.cluster_name,
                "kubeconfig": self.kubeconfig,
                "oidc_provider_arn": self.oidc_provider_arn,
                "oidc_issuer": self.oidc_issuer,
            }
        )

    def _node_group(
        self, workload: str, nodes: NodeGroupConfig, args: ClusterArgs, *, taint: bool
    ) -> eks.ManagedNodeGroup:
        role = self._node_role(workload)
        return eks.ManagedNodeGroup(
            f"{self._name}-{workload}-nodes",
            cluster=self.eks_cluster,
            node_role=role,
            subnet_ids=list(args.private_subnet_ids),
            instance_types=list(nodes.instance_types),
            capacity_type="SPOT" if nodes.spot else "ON_DEMAND",
            disk_size=nodes.disk_size_gb,
            scaling_config={
                "min_size": nodes.min_size,
                "desired_size": nodes.desired_size,
                "max_size": nodes.max_size,
            },
            labels={WORKLOAD_LABEL: workload},
            taints=([{"key": WORKLOAD_LABEL, "value": workload, "effect": "NO_SCHEDULE"}] if taint else None),
            enable_imd_sv2=True,
            ignore_scaling_changes=True,
            opts=pulumi.ResourceOptions(parent=self.eks_cluster),
        )

    def _node_role(self, workload: str) -> aws.iam.Role:
        role = aws.iam.Role(
            f"{self._name}-{workload}-node-role",
            assume_role_policy=ec2_trust_policy(),
            opts=pulumi.ResourceOptions(parent=self),
        )
        for policy in NODE_POLICIES:
            aws.iam.RolePolicyAttachment(
                f"{self._name}-{workload}-{policy}",
                role=role.name,
                policy_arn=f"arn:aws:iam::aws:policy/{policy}",
                opts=pulumi.ResourceOptions(parent=self),
            )
        return role
