"""Cluster: private EKS with encrypted secrets, logs, IRSA and spot-aware node groups."""

import pytest

from infra.cluster import CONTROL_PLANE_LOG_TYPES, WORKLOAD_LABEL, Cluster, ClusterArgs, node_template_tag_names
from infra.config import NodeGroupConfig

from .helpers import build

CLUSTER_KEY = "arn:aws:kms:ap-southeast-1:123456789012:key/cluster"
LOGS_KEY = "arn:aws:kms:ap-southeast-1:123456789012:key/logs"
PRIVATE = ["subnet-private-a", "subnet-private-b"]
PUBLIC = ["subnet-public-a", "subnet-public-b"]


def _args(public_access_cidrs=(), service_spot=False, private_access_cidrs=(), admin_principal_arns=()):
    return ClusterArgs(
        cluster_name="retail-test-eks",
        vpc_id="vpc-1",
        private_subnet_ids=PRIVATE,
        public_subnet_ids=PUBLIC,
        secrets_kms_key_arn=CLUSTER_KEY,
        logs_kms_key_arn=LOGS_KEY,
        log_retention_days=30,
        version="1.35",
        public_access_cidrs=public_access_cidrs,
        private_access_cidrs=private_access_cidrs,
        admin_principal_arns=admin_principal_arns,
        service_nodes=NodeGroupConfig(min_size=2, desired_size=2, max_size=5, spot=service_spot),
        batch_nodes=NodeGroupConfig(min_size=0, desired_size=0, max_size=3, spot=True),
    )


def cluster(public_access_cidrs=(), service_spot=False, private_access_cidrs=(), admin_principal_arns=()):
    args = _args(public_access_cidrs, service_spot, private_access_cidrs, admin_principal_arns)
    return build(lambda: Cluster("c", args))


@pytest.fixture(scope="module")
def private():
    return cluster()


@pytest.fixture(scope="module")
def office_access():
    return cluster(public_access_cidrs=("203.0.113.0/24",), service_spot=True)


def eks_inputs(run):
    (eks,) = run.of_type("eks:index:Cluster")
    return eks.inputs


def eks_outputs(run):
    (eks,) = run.of_type("eks:index:Cluster")
    return eks.outputs


def node_groups(run):
    return {g.name: g.inputs for g in run.of_type("eks:index:ManagedNodeGroup")}


def test_api_endpoint_is_private_when_no_cidrs_are_configured(private):
    inputs = eks_inputs(private)
    assert inputs["endpointPrivateAccess"] is True
    assert inputs["endpointPublicAccess"] is False
    assert "publicAccessCidrs" not in inputs


def test_public_endpoint_admits_only_the_configured_cidrs(office_access):
    inputs = eks_inputs(office_access)
    assert inputs["endpointPublicAccess"] is True
    assert inputs["publicAccessCidrs"] == ["203.0.113.0/24"]


def test_kubernetes_secrets_are_encrypted_with_the_cluster_key(private):
    assert eks_inputs(private)["encryptionConfigKeyArn"] == CLUSTER_KEY


def test_all_control_plane_log_types_are_enabled(private):
    assert eks_inputs(private)["enabledClusterLogTypes"] == list(CONTROL_PLANE_LOG_TYPES)


def test_control_plane_logs_go_to_an_encrypted_log_group_with_retention(private):
    (group,) = private.of_type("aws:cloudwatch/logGroup:LogGroup")
    assert group.inputs["name"] == "/aws/eks/retail-test-eks/cluster"
    assert group.inputs["kmsKeyId"] == LOGS_KEY
    assert group.inputs["retentionInDays"] == 30


def test_an_oidc_provider_is_created_for_irsa(private):
    assert eks_inputs(private)["createOidcProvider"] is True


def test_no_default_node_group_and_access_by_eks_api(private):
    inputs = eks_inputs(private)
    assert inputs["skipDefaultNodeGroup"] is True
    assert inputs["authenticationMode"] == "API"


def test_node_groups_run_in_private_subnets_without_public_ips(private):
    assert eks_inputs(private)["nodeAssociatePublicIpAddress"] is False
    assert all(g["subnetIds"] == PRIVATE for g in node_groups(private).values())


def test_service_nodes_are_on_demand_and_batch_nodes_spot_by_default(private):
    groups = node_groups(private)
    assert groups["c-inference-nodes"]["capacityType"] == "ON_DEMAND"
    assert groups["c-batch-nodes"]["capacityType"] == "SPOT"


def test_service_nodes_use_spot_when_configured(office_access):
    assert node_groups(office_access)["c-inference-nodes"]["capacityType"] == "SPOT"


def test_node_groups_scale_within_the_configured_bounds(private):
    groups = node_groups(private)
    assert groups["c-inference-nodes"]["scalingConfig"] == {
        "minSize": 2,
        "desiredSize": 2,
        "maxSize": 5,
    }
    assert groups["c-batch-nodes"]["scalingConfig"]["minSize"] == 0
    assert all(g["ignoreScalingChanges"] is True for g in groups.values())


def test_batch_nodes_are_tainted_so_only_batch_pods_land_there(private):
    groups = node_groups(private)
    assert groups["c-batch-nodes"]["taints"] == [{"key": WORKLOAD_LABEL, "value": "batch", "effect": "NO_SCHEDULE"}]
    assert "taints" not in groups["c-inference-nodes"]


def test_the_batch_group_is_named_after_the_cluster_so_its_auto_scaling_group_can_be_found(private):
    groups = node_groups(private)
    assert groups["c-batch-nodes"]["nodeGroupName"] == "retail-test-eks-batch"
    assert "nodeGroupName" not in groups["c-inference-nodes"]  # a new name would replace the serving nodes


def asg_tags(run) -> dict[str, dict[str, str]]:
    """Auto Scaling group name -> its tags the stack sets."""
    tags: dict[str, dict[str, str]] = {}
    for tag in run.of_type("aws:autoscaling/tag:Tag"):
        assert tag.inputs["tag"]["propagateAtLaunch"] is False
        tags.setdefault(tag.inputs["autoscalingGroupName"], {})[tag.inputs["tag"]["key"]] = tag.inputs["tag"]["value"]
    return tags


def test_the_autoscaler_learns_the_batch_nodes_label_and_taint_from_their_auto_scaling_group(private):
    """So it can scale the batch group up from zero for pods that select and tolerate it."""
    (batch,) = asg_tags(private)
    assert batch.startswith("eks-retail-test-eks-batch-")
    template = "k8s.io/cluster-autoscaler/node-template"
    assert asg_tags(private)[batch] == {
        f"{template}/label/{WORKLOAD_LABEL}": "batch",
        f"{template}/taint/{WORKLOAD_LABEL}": "batch:NoSchedule",
    }


def test_each_tag_resource_is_named_by_its_key_so_a_new_label_renames_no_other():
    template = "k8s.io/cluster-autoscaler/node-template"
    label, taint = f"{template}/label/{WORKLOAD_LABEL}", f"{template}/taint/{WORKLOAD_LABEL}"
    before = node_template_tag_names("c-batch-asg", {label: "batch", taint: "batch:NoSchedule"})
    assert before == {label: "c-batch-asg-label-retail-io-workload", taint: "c-batch-asg-taint-retail-io-workload"}
    after = node_template_tag_names("c-batch-asg", {f"{template}/label/a.io/zone": "z", label: "b", taint: "b"})
    assert {key: after[key] for key in before} == before
    with pytest.raises(ValueError, match="share a name"):
        node_template_tag_names("p", {f"{template}/label/a.b": "x", f"{template}/label/a-b": "y"})


def test_the_stack_s_tags_have_their_key_s_name(private):
    names = {tag.inputs["tag"]["key"]: tag.name for tag in private.of_type("aws:autoscaling/tag:Tag")}
    assert names == node_template_tag_names("c-batch-asg", names)


def test_each_tag_is_deleted_before_it_is_replaced_and_keeps_the_name_it_was_deployed_under(monkeypatch):
    """The provider deletes a tag by its key: created first, a replacement's tag would be deleted with the old one.
    The two tags stacks deployed by position keep those resources, whatever positions they would sort to now."""
    import pulumi_aws as aws

    from infra import cluster

    made = {}
    real = aws.autoscaling.Tag

    def recorded(name, *args, opts, **kwargs):
        made[kwargs["tag"].key] = opts
        return real(name, *args, opts=opts, **kwargs)

    monkeypatch.setattr(aws.autoscaling, "Tag", recorded)
    taints = cluster._taints
    added = {"key": "a.io/first", "value": "x", "effect": "NO_SCHEDULE"}  # sorts between the deployed two
    monkeypatch.setattr(cluster, "_taints", lambda workload: [added, *taints(workload)] if taints(workload) else [])
    build(lambda: Cluster("c", _args()))
    assert all(opts.delete_before_replace for opts in made.values())
    assert {key: [a.name for a in opts.aliases] for key, opts in made.items()} == {
        **{key: [f"c-batch-asg-tag-{position}"] for key, position in cluster.POSITION_NAMED_TAGS.items()},
        f"{cluster.NODE_TEMPLATE_TAG}/taint/a.io/first": []}


def test_the_tags_are_set_once_the_batch_group_exists(private):
    (batch,) = [g for g in private.of_type("eks:index:ManagedNodeGroup") if g.name == "c-batch-nodes"]
    for tag in private.of_type("aws:autoscaling/tag:Tag"):
        assert batch.urn in tag.dependencies


def test_batch_pods_learn_the_batch_nodes_labels_and_taints_in_kubernetes_spelling():
    from infra.cluster import Cluster

    outputs = {}

    def program():
        cluster = Cluster("c", _args())
        outputs.update(labels=cluster.batch_node_labels, taints=cluster.batch_node_taints)

    build(program)
    assert outputs["labels"] == {WORKLOAD_LABEL: "batch"}
    assert outputs["taints"] == [{"key": WORKLOAD_LABEL, "value": "batch", "effect": "NoSchedule"}]


def test_nodes_require_imdsv2(private):
    assert all(g["enableIMDSv2"] is True for g in node_groups(private).values())


def test_node_roles_get_only_the_worker_cni_and_image_pull_policies(private):
    attached = {a.inputs["policyArn"] for a in private.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")}
    assert attached == {
        "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
        "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
        "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPullOnly",
    }


def test_coredns_and_metrics_server_are_added_once_there_are_nodes(private):
    addons = {a.inputs["addonName"]: a for a in private.of_type("aws:eks/addon:Addon")}
    groups = {g.urn for g in private.of_type("eks:index:ManagedNodeGroup")}
    assert set(addons) == {"coredns", "metrics-server"}
    assert all(groups <= set(addon.dependencies) for addon in addons.values())


def test_the_vpc_cni_enforces_network_policies(private):
    assert eks_inputs(private)["vpcCniOptions"]["enableNetworkPolicy"] is True


def test_node_groups_wait_for_their_role_policies_so_destroy_removes_them_last(private):
    attachments = {a.name: a.urn for a in private.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")}
    for group in private.of_type("eks:index:ManagedNodeGroup"):
        workload = group.name.removeprefix("c-").removesuffix("-nodes")
        own = {urn for name, urn in attachments.items() if name.startswith(f"c-{workload}-")}
        assert len(own) == 3 and own <= set(group.dependencies)


def test_deployer_networks_reach_the_private_endpoint_on_443():
    run = cluster(private_access_cidrs=("10.50.0.0/16",))
    (rule,) = run.of_type("aws:ec2/securityGroupRule:SecurityGroupRule")
    assert rule.inputs["type"] == "ingress" and rule.inputs["cidrBlocks"] == ["10.50.0.0/16"]
    assert (rule.inputs["fromPort"], rule.inputs["toPort"]) == (443, 443)
    assert rule.inputs["securityGroupId"] == eks_outputs(run)["clusterSecurityGroupId"]


def test_admin_principals_get_cluster_admin_through_access_entries():
    role = "arn:aws:iam::123456789012:role/github-deploy"
    run = cluster(admin_principal_arns=(role,))
    (entry,) = run.of_type("aws:eks/accessEntry:AccessEntry")
    (association,) = run.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
    assert entry.inputs["principalArn"] == role
    assert association.inputs["policyArn"].endswith("/AmazonEKSClusterAdminPolicy")
    assert association.inputs["accessScope"] == {"type": "cluster"}
