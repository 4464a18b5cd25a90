"""The EKS cluster (pulumi-eks), its managed node groups, API access and admins."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks

from infra.config import NodeGroupConfig
from infra.iam import ec2_trust_policy

ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
CONTROL_PLANE_LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")
NODE_POLICIES = (
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
    "AmazonEC2ContainerRegistryPullOnly",
)
AMI_TYPE = "AL2023_x86_64_STANDARD"
"""Stated, not left to defaults: pulumi-eks documents AL2, EKS picks AL2023 for new node groups since 1.30."""
NODE_ADDONS = ("coredns", "metrics-server")
"""EKS add-ons whose pods need nodes, so they are created after the node groups. pulumi-eks installs
vpc-cni and kube-proxy itself, but not coredns when there is no default node group."""
SERVICE_WORKLOAD = "inference"
BATCH_WORKLOAD = "batch"
WORKLOAD_LABEL = "retail.io/workload"
"""Node label (and, on batch nodes, taint key) that places pods on a node group."""
NODE_TEMPLATE_TAG = "k8s.io/cluster-autoscaler/node-template"
"""Prefix of the Auto Scaling group tags that tell Cluster Autoscaler the labels and taints of a group's nodes
before it has seen one, so it can scale a group up from zero for pods that select or tolerate them
(https://github.com/kubernetes/autoscaler/blob/master/cluster-autoscaler/cloudprovider/aws/README.md,
"Auto-Discovery Setup": `.../node-template/label/<label>: <value>`, `.../node-template/taint/<key>:
<value>:<effect>`)."""
TAINT_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}
"""EKS node group taint effects (API spelling) -> the Kubernetes spelling of tolerations and autoscaler tags."""


POSITION_NAMED_TAGS = {
    f"{NODE_TEMPLATE_TAG}/label/{WORKLOAD_LABEL}": 0,
    f"{NODE_TEMPLATE_TAG}/taint/{WORKLOAD_LABEL}": 1,
}
"""The tags stacks deployed before 27a632b named by their position (`<group>-asg-tag-<i>`): each is aliased to its
name there, so those stacks keep the resource; a tag added since has no old name to keep."""


def node_template_tag_names(prefix: str, tags: Mapping[str, str]) -> dict[str, str]:
    """Each node-template tag's resource name: `prefix` and the tag's key past NODE_TEMPLATE_TAG, e.g.
    `<prefix>-label-retail-io-workload`. Named by key, a tag keeps its resource when others are added or removed:
    named by position, the tags after a new one would move to other names, and replacing a tag creates the new
    resource's tag before deleting the old one's, which the provider does by key, the key just written."""
    names = {key: f"{prefix}-" + re.sub(r"[^A-Za-z0-9]+", "-", key.removeprefix(f"{NODE_TEMPLATE_TAG}/")).strip("-")
             for key in tags}
    if len(set(names.values())) != len(names):
        raise ValueError(f"node-template tags whose keys differ only in punctuation would share a name: {sorted(tags)}")
    return names


@dataclass
class ClusterArgs:
    cluster_name: str
    vpc_id: pulumi.Input[str]
    private_subnet_ids: Sequence[pulumi.Input[str]]
    public_subnet_ids: Sequence[pulumi.Input[str]]
    secrets_kms_key_arn: pulumi.Input[str]
    logs_kms_key_arn: pulumi.Input[str]
    log_retention_days: int
    version: str = "1.35"
    public_access_cidrs: Sequence[str] = ()
    private_access_cidrs: Sequence[str] = ()
    admin_principal_arns: Sequence[str] = ()
    service_nodes: NodeGroupConfig = field(default_factory=NodeGroupConfig)
    batch_nodes: NodeGroupConfig = field(default_factory=lambda: NodeGroupConfig(min_size=0, desired_size=0, spot=True))


class Cluster(pulumi.ComponentResource):
    """An EKS cluster reachable privately (from `private_access_cidrs`) and publicly from `public_access_cidrs`.

    `admin_principal_arns` (e.g. the CI deploy role) get cluster-admin through EKS access
    entries, beside the creator. The VPC CNI enforces Kubernetes NetworkPolicies.
    Kubernetes secrets are envelope-encrypted with the cluster key; all five control
    plane log types go to a pre-created, KMS-encrypted log group with retention; an IAM
    OIDC provider enables IRSA. No default node group: a managed group for the service
    (label `retail.io/workload=inference`) and a tainted one for batch jobs, both in
    private subnets with IMDSv2, and spot capacity where the node group config says so.
    The batch group starts at zero nodes: its Auto Scaling group carries Cluster Autoscaler's
    node-template tags (its label and taint), so the autoscaler the service stack installs
    can scale it up for a pending batch pod.
    Node groups wait for their role's policy attachments, so a destroy removes the
    policies only after the nodes. CoreDNS and metrics-server (which feeds the
    HorizontalPodAutoscaler) are EKS add-ons created once there are nodes to run them.
    """

    cluster_name: str
    kubeconfig: pulumi.Output[str]
    oidc_provider_arn: pulumi.Output[str]
    oidc_issuer: pulumi.Output[str]
    service_node_labels: dict[str, str]
    """Labels of the nodes the inference service is scheduled on."""
    batch_node_labels: dict[str, str]
    """Labels of the tainted spot nodes batch jobs are scheduled on (they scale from zero)."""
    batch_node_taints: list[dict[str, str]]
    """The batch nodes' taints in Kubernetes spelling (key, value, effect): what batch pods tolerate."""

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
            vpc_cni_options=eks.VpcCniOptionsArgs(enable_network_policy=True),
            # STANDARD: past its standard support EKS upgrades the control plane instead of billing extended
            # support (six times the hourly price; pulumi-eks defaults to EXTENDED).
            upgrade_policy=aws.eks.ClusterUpgradePolicyArgs(support_type="STANDARD"),
            skip_default_node_group=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[log_group]),
        )
        node_groups = [
            self._node_group(SERVICE_WORKLOAD, args.service_nodes, args),
            self._node_group(BATCH_WORKLOAD, args.batch_nodes, args),
        ]
        for addon in NODE_ADDONS:
            aws.eks.Addon(
                f"{name}-{addon}",
                cluster_name=args.cluster_name,
                addon_name=addon,
                # EKS bootstraps a self-managed CoreDNS; the managed add-on takes it over.
                resolve_conflicts_on_create="OVERWRITE",
                resolve_conflicts_on_update="OVERWRITE",
                opts=pulumi.ResourceOptions(parent=self, depends_on=node_groups),
            )
        self._private_access(args)
        self._admins(args)
        self.cluster_name = args.cluster_name
        self.kubeconfig = pulumi.Output.secret(self.eks_cluster.kubeconfig_json)
        self.oidc_provider_arn = self.eks_cluster.oidc_provider_arn
        self.oidc_issuer = self.eks_cluster.oidc_issuer
        self.service_node_labels = {WORKLOAD_LABEL: SERVICE_WORKLOAD}
        self.batch_node_labels = {WORKLOAD_LABEL: BATCH_WORKLOAD}
        self.batch_node_taints = [
            {"key": t["key"], "value": t["value"], "effect": TAINT_EFFECTS[t["effect"]]}
            for t in _taints(BATCH_WORKLOAD)
        ]
        self.register_outputs(
            {
                "cluster_name": self.cluster_name,
                "kubeconfig": self.kubeconfig,
                "oidc_provider_arn": self.oidc_provider_arn,
                "oidc_issuer": self.oidc_issuer,
                "service_node_labels": self.service_node_labels,
                "batch_node_labels": self.batch_node_labels,
                "batch_node_taints": self.batch_node_taints,
            }
        )

    def _private_access(self, args: ClusterArgs) -> None:
        """HTTPS to the private API endpoint from each of `private_access_cidrs` (nodes are admitted by EKS)."""
        for i, cidr in enumerate(args.private_access_cidrs):
            # ec2.SecurityGroupRule, the resource pulumi-eks manages this group's other rules with (pulumi-aws
            # warns against mixing it with vpc.SecurityGroupIngressRule on one group).
            aws.ec2.SecurityGroupRule(
                f"{self._name}-api-from-{i}",
                type="ingress",
                security_group_id=self.eks_cluster.cluster_security_group_id,
                cidr_blocks=[cidr],
                protocol="tcp",
                from_port=443,
                to_port=443,
                description=f"Kubernetes API from deployer network {cidr}",
                opts=pulumi.ResourceOptions(parent=self),
            )

    def _admins(self, args: ClusterArgs) -> None:
        for i, principal in enumerate(args.admin_principal_arns):
            entry = aws.eks.AccessEntry(
                f"{self._name}-admin-{i}",
                cluster_name=args.cluster_name,
                principal_arn=principal,
                type="STANDARD",
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.eks_cluster]),
            )
            aws.eks.AccessPolicyAssociation(
                f"{self._name}-admin-{i}-policy",
                cluster_name=args.cluster_name,
                principal_arn=entry.principal_arn,
                policy_arn=ADMIN_POLICY,
                access_scope={"type": "cluster"},
                opts=pulumi.ResourceOptions(parent=self),
            )

    def _node_group(self, workload: str, nodes: NodeGroupConfig, args: ClusterArgs) -> eks.ManagedNodeGroup:
        role, attachments = self._node_role(workload)
        labels, taints = {WORKLOAD_LABEL: workload}, _taints(workload)
        # The batch group scales from zero, so the autoscaler must learn its nodes from tags on its Auto Scaling
        # group, found by the group's name: named here (pulumi-eks would pick a random one). The service group
        # always has nodes to learn from and keeps its generated name (a new name replaces a node group).
        scales_from_zero = workload == BATCH_WORKLOAD
        node_group_name = f"{args.cluster_name}-{workload}" if scales_from_zero else None
        group = eks.ManagedNodeGroup(
            f"{self._name}-{workload}-nodes",
            cluster=self.eks_cluster,
            node_group_name=node_group_name,
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
            labels=labels,
            taints=taints or None,
            enable_imd_sv2=True,
            ami_type=AMI_TYPE,
            # Cluster Autoscaler (service stack) owns the desired size between min and max.
            ignore_scaling_changes=True,
            opts=pulumi.ResourceOptions(parent=self.eks_cluster, depends_on=attachments),
        )
        if node_group_name:
            self._node_template_tags(workload, args.cluster_name, node_group_name, group, labels, taints)
        return group

    def _node_template_tags(
        self,
        workload: str,
        cluster_name: str,
        node_group_name: str,
        group: eks.ManagedNodeGroup,
        labels: dict[str, str],
        taints: list[dict[str, str]],
    ) -> None:
        """Tag the group's Auto Scaling group with its nodes' labels and taints, for Cluster Autoscaler.

        EKS tags a managed node group's Auto Scaling group for the autoscaler's auto-discovery
        (`k8s.io/cluster-autoscaler/enabled`, `k8s.io/cluster-autoscaler/<cluster>`; "Amazon EKS tags managed
        node group resources so that they are configured to use the Kubernetes Cluster Autoscaler",
        https://docs.aws.amazon.com/eks/latest/userguide/managed-node-groups.html), but not with the node
        labels and taints, which the autoscaler needs to scale a group up from zero nodes. The autoscaler
        can also read them from EKS's DescribeNodegroup, but only while it has never seen a node of the group
        and only when that call succeeds (cloudprovider/aws/README.md, "eks:DescribeNodegroup"); these tags
        do not depend on either. EKS does not copy node group tags to the Auto Scaling group, so they are
        set on it directly, found by the group's name once it exists.
        """
        asg_name = aws.eks.get_node_group_output(
            cluster_name=cluster_name,
            node_group_name=node_group_name,
            opts=pulumi.InvokeOutputOptions(parent=self, depends_on=[group]),
        ).apply(lambda found: found.resources[0].autoscaling_groups[0].name)
        tags = {f"{NODE_TEMPLATE_TAG}/label/{key}": value for key, value in labels.items()}
        tags |= {f"{NODE_TEMPLATE_TAG}/taint/{t['key']}": f"{t['value']}:{TAINT_EFFECTS[t['effect']]}" for t in taints}
        names = node_template_tag_names(f"{self._name}-{workload}-asg", tags)
        for key, value in sorted(tags.items()):
            position = POSITION_NAMED_TAGS.get(key)
            old_name = None if position is None else f"{self._name}-{workload}-asg-tag-{position}"
            aws.autoscaling.Tag(
                names[key],
                autoscaling_group_name=asg_name,
                tag=aws.autoscaling.TagTagArgs(key=key, value=value, propagate_at_launch=False),
                opts=pulumi.ResourceOptions(
                    parent=self,
                    # the provider deletes a tag by its key: a replacement must not create the key before deleting it
                    delete_before_replace=True,
                    aliases=[] if old_name is None else [pulumi.Alias(name=old_name)],
                ),
            )

    def _node_role(self, workload: str) -> tuple[aws.iam.Role, list[aws.iam.RolePolicyAttachment]]:
        role = aws.iam.Role(
            f"{self._name}-{workload}-node-role",
            assume_role_policy=ec2_trust_policy(),
            opts=pulumi.ResourceOptions(parent=self),
        )
        attachments = [
            aws.iam.RolePolicyAttachment(
                f"{self._name}-{workload}-{policy}",
                role=role.name,
                policy_arn=f"arn:aws:iam::aws:policy/{policy}",
                opts=pulumi.ResourceOptions(parent=self),
            )
            for policy in NODE_POLICIES
        ]
        return role, attachments


def _taints(workload: str) -> list[dict[str, str]]:
    """EKS node group taints (API spelling): batch nodes admit only pods that tolerate the batch workload."""
    return [{"key": WORKLOAD_LABEL, "value": workload, "effect": "NO_SCHEDULE"}] if workload == BATCH_WORKLOAD else []
