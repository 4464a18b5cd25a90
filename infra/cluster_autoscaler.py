"""Cluster Autoscaler: what scales the managed node groups, and the batch group up from zero.

The batch node group starts with no nodes (min 0, desired 0, infra/cluster.py), so a batch
pod would stay Pending forever unless something adds a node. Chosen: Kubernetes Cluster
Autoscaler from its official Helm chart (kubernetes/autoscaler, repository
https://kubernetes.github.io/autoscaler), with auto-discovery of the Auto Scaling groups of
this cluster's managed node groups. Not Karpenter: it replaces managed node groups with its
own NodePools and an interruption queue, while this platform sizes its managed groups in
stack config and only needs the batch group woken for a weekly job. Not EKS Auto Mode: it
charges a management fee on every node (infra/addons.py says why the platform avoids it).

How the autoscaler finds and sizes the groups
(https://github.com/kubernetes/autoscaler/blob/master/cluster-autoscaler/cloudprovider/aws/README.md):

- auto-discovery: `--node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,
  k8s.io/cluster-autoscaler/<cluster>` (the chart's `autoDiscovery.tags` default); EKS puts
  both tags on a managed node group's Auto Scaling group;
- scaling from zero: the node-template label and taint tags the platform puts on each group's
  Auto Scaling group (infra/cluster.py), and, as a second source, EKS DescribeNodegroup
  (`eks:DescribeNodegroup`, which the autoscaler calls for managed groups it has not seen a
  node of);
- it only changes each group's desired size, between the min and max of stack config; the
  node groups ignore desired-size drift (`ignore_scaling_changes`), so `pulumi up` does not
  undo it.

The IAM policy is the README's "Full Cluster Autoscaler Features Policy": the describe
actions on "*" (they have no resource-level permissions, as Amazon EC2 Auto Scaling's
identity-based policy examples say), and SetDesiredCapacity/TerminateInstanceInAutoScalingGroup
only on Auto Scaling groups tagged with this cluster's discovery tag (the README recommends
tag conditions; https://docs.aws.amazon.com/autoscaling/ec2/userguide/control-access-using-iam.html),
so the role can resize nothing the autoscaler would not discover (and only in this account and
region). `eks:DescribeNodegroup` is scoped to this cluster's node groups.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.iam import irsa_trust_policy, policy_document

CHART = "cluster-autoscaler"
CHART_REPOSITORY = "https://kubernetes.github.io/autoscaler"
NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "cluster-autoscaler"
DISCOVERY_TAG = "k8s.io/cluster-autoscaler"
"""`<DISCOVERY_TAG>/enabled` and `<DISCOVERY_TAG>/<cluster>`: the tags auto-discovery looks for."""
DESCRIBE_ACTIONS = (
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeAutoScalingInstances",
    "autoscaling:DescribeLaunchConfigurations",
    "autoscaling:DescribeScalingActivities",
    "ec2:DescribeImages",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeLaunchTemplateVersions",
    "ec2:GetInstanceTypesFromInstanceRequirements",
)
"""The README's first block, without eks:DescribeNodegroup (scoped to the cluster's node groups below)."""
SCALE_ACTIONS = ("autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup")
RUN_AS = 65534
HELM_TIMEOUT_SECONDS = 600


@dataclass
class ClusterAutoscalerArgs:
    cluster_name: pulumi.Input[str]
    region: str
    account_id: pulumi.Input[str]
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer: pulumi.Input[str]
    node_labels: pulumi.Input[dict]
    """Where the autoscaler itself runs: the service nodes (they always have at least one node)."""
    chart_version: str
    version: str
    """Cluster Autoscaler's own version (the image tag `v<version>`): its minor is the cluster's."""


class ClusterAutoscaler(pulumi.ComponentResource):
    """Cluster Autoscaler in kube-system, discovering this cluster's node groups, through IRSA.

    `release` is what workloads that need a node group scaled from zero depend on, so the
    autoscaler runs before their first pod and is removed after them.
    """

    role_arn: pulumi.Output[str]
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: ClusterAutoscalerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("retail:infra:ClusterAutoscaler", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}-role",
            description="Cluster Autoscaler: resize this cluster's node groups (IRSA)",
            assume_role_policy=irsa_trust_policy(args.oidc_provider_arn, args.oidc_issuer, NAMESPACE, SERVICE_ACCOUNT),
            opts=child,
        )
        policy = aws.iam.RolePolicy(
            f"{name}-scale-node-groups", role=role.id, policy=autoscaler_policy(args), opts=child
        )
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            name=SERVICE_ACCOUNT,
            chart=CHART,
            version=args.chart_version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CHART_REPOSITORY),
            namespace=NAMESPACE,
            timeout=HELM_TIMEOUT_SECONDS,
            values=autoscaler_values(args, role.arn),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
        )
        self.role_arn = role.arn
        self.register_outputs({"role_arn": self.role_arn})


def autoscaler_policy(args: ClusterAutoscalerArgs) -> pulumi.Output[str]:
    """The README's full-features policy, with the scaling actions limited to this cluster's discovered groups."""
    cluster_tag = pulumi.Output.concat("aws:ResourceTag/", DISCOVERY_TAG, "/", args.cluster_name)
    node_groups = pulumi.Output.concat(
        "arn:aws:eks:", args.region, ":", args.account_id, ":nodegroup/", args.cluster_name, "/*"
    )
    groups = pulumi.Output.concat(
        "arn:aws:autoscaling:", args.region, ":", args.account_id, ":autoScalingGroup:*:autoScalingGroupName/*"
    )
    return policy_document(
        [
            {
                "Sid": "DescribeNodeGroupsAndInstanceTypes",
                "Effect": "Allow",
                "Action": list(DESCRIBE_ACTIONS),
                "Resource": "*",
            },
            {
                "Sid": "ReadManagedNodeGroupLabelsAndTaints",
                "Effect": "Allow",
                "Action": "eks:DescribeNodegroup",
                "Resource": node_groups,
            },
            {
                "Sid": "ResizeThisClustersNodeGroups",
                "Effect": "Allow",
                "Action": list(SCALE_ACTIONS),
                "Resource": groups,
                # The tag key must be present, whatever its value (EKS sets it on managed node groups).
                "Condition": cluster_tag.apply(lambda key: {"Null": {key: "false"}}),
            },
        ]
    )


def autoscaler_values(args: ClusterAutoscalerArgs, role_arn: pulumi.Input[str]) -> dict:
    """Chart values: auto-discovery for the cluster, IRSA, on the service nodes, hardened like the platform's pods."""
    return {
        "cloudProvider": "aws",
        "awsRegion": args.region,
        "image": {"tag": f"v{args.version}"},
        "autoDiscovery": {"clusterName": args.cluster_name},
        "rbac": {
            "serviceAccount": {
                "create": True,
                "name": SERVICE_ACCOUNT,
                "annotations": {"eks.amazonaws.com/role-arn": role_arn},
            }
        },
        "extraArgs": {
            # The inference pods' /tmp is an emptyDir (a cache of the model bundle, fetched again on start);
            # without this, no service node running one could ever be removed.
            "skip-nodes-with-local-storage": False,
            "expander": "least-waste",
        },
        # The STS interface endpoint in the VPC answers regional STS (README, "Common Notes and Gotchas").
        "extraEnv": {"AWS_STS_REGIONAL_ENDPOINTS": "regional"},
        "nodeSelector": args.node_labels,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containerSecurityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "resources": {
            "requests": {"cpu": "100m", "memory": "300Mi"},
            "limits": {"cpu": "500m", "memory": "600Mi"},
        },
    }
