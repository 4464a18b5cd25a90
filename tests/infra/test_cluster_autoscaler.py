"""ClusterAutoscaler: the official chart, auto-discovering this cluster's node groups, through IRSA, with the
README's policy narrowed to this cluster's groups."""

import pytest

from infra.cluster_autoscaler import (
    CHART,
    CHART_REPOSITORY,
    DESCRIBE_ACTIONS,
    ClusterAutoscaler,
    ClusterAutoscalerArgs,
)
from infra.offline import OfflineRun

from .helpers import build, policy_of, statements

ISSUER = "oidc.eks.ap-southeast-1.amazonaws.com/id/EXAMPLE"
CLUSTER = "retail-test-eks"
SERVICE_NODES = {"retail.io/workload": "inference"}


@pytest.fixture(scope="module")
def run() -> OfflineRun:
    args = ClusterAutoscalerArgs(
        cluster_name=CLUSTER,
        region="ap-southeast-1",
        account_id="123456789012",
        oidc_provider_arn=f"arn:aws:iam::123456789012:oidc-provider/{ISSUER}",
        oidc_issuer=ISSUER,
        node_labels=SERVICE_NODES,
        chart_version="9.59.0",
        version="1.35.0",
    )
    return build(lambda: ClusterAutoscaler("ca", args))


@pytest.fixture(scope="module")
def release(run):
    (only,) = run.of_type("kubernetes:helm.sh/v3:Release")
    return only


@pytest.fixture(scope="module")
def values(release):
    return release.inputs["values"]


@pytest.fixture(scope="module")
def policy(run):
    (only,) = run.of_type("aws:iam/rolePolicy:RolePolicy")
    return {s["Sid"]: s for s in statements(only)}


def test_the_official_chart_is_installed_pinned_in_kube_system(release):
    assert (release.inputs["chart"], release.inputs["version"]) == (CHART, "9.59.0")
    assert release.inputs["repositoryOpts"] == {"repo": CHART_REPOSITORY}
    assert release.inputs["namespace"] == "kube-system"


def test_it_discovers_the_node_groups_of_this_cluster_on_aws(values):
    assert values["cloudProvider"] == "aws" and values["awsRegion"] == "ap-southeast-1"
    assert values["autoDiscovery"] == {"clusterName": CLUSTER}


def test_its_service_account_is_bound_to_a_role_only_it_may_assume(run, values):
    (role,) = run.of_type("aws:iam/role:Role")
    account = values["rbac"]["serviceAccount"]
    assert account["annotations"] == {"eks.amazonaws.com/role-arn": role.outputs["arn"]}
    (trust,) = policy_of(role, "assumeRolePolicy")["Statement"]
    assert trust["Condition"]["StringEquals"][f"{ISSUER}:sub"] == (
        f"system:serviceaccount:kube-system:{account['name']}"
    )


def test_the_release_waits_for_the_roles_policy(run, release):
    (policy,) = run.of_type("aws:iam/rolePolicy:RolePolicy")
    assert policy.urn in release.dependencies


def test_it_runs_on_the_service_nodes_hardened(values):
    assert values["nodeSelector"] == SERVICE_NODES
    assert values["securityContext"]["runAsNonRoot"] is True
    assert values["containerSecurityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
    }  # fmt: skip
    assert values["resources"]["limits"]["memory"]


def test_nodes_whose_pods_only_cache_in_empty_dirs_can_be_removed(values):
    assert values["extraArgs"]["skip-nodes-with-local-storage"] is False


def test_the_describe_actions_are_the_readmes_on_any_resource(policy):
    describe = policy["DescribeNodeGroupsAndInstanceTypes"]
    assert describe["Action"] == list(DESCRIBE_ACTIONS) and describe["Resource"] == "*"
    assert "Condition" not in describe


def test_managed_node_groups_are_read_from_eks_only_for_this_cluster(policy):
    read = policy["ReadManagedNodeGroupLabelsAndTaints"]
    assert read["Action"] == "eks:DescribeNodegroup"
    assert read["Resource"] == f"arn:aws:eks:ap-southeast-1:123456789012:nodegroup/{CLUSTER}/*"


def test_only_this_clusters_discovered_groups_can_be_resized(policy):
    resize = policy["ResizeThisClustersNodeGroups"]
    assert resize["Action"] == ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"]
    assert resize["Resource"] == (
        "arn:aws:autoscaling:ap-southeast-1:123456789012:autoScalingGroup:*:autoScalingGroupName/*"
    )
    assert resize["Condition"] == {"Null": {f"aws:ResourceTag/k8s.io/cluster-autoscaler/{CLUSTER}": "false"}}
