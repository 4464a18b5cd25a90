"""The composed platform and service stacks (dev, prod, ephemeral), built from their stack files through __main__.py."""

import json

import pytest

from infra.cluster import WORKLOAD_LABEL
from infra.offline import OfflineRun

STACKS = ["dev", "prod", "ephemeral"]


@pytest.fixture(params=STACKS)
def stack(request) -> OfflineRun:
    return request.getfixturevalue(request.param)


@pytest.fixture(params=STACKS)
def service(request) -> OfflineRun:
    return request.getfixturevalue(f"{request.param}_service")


def of(run: OfflineRun, type_: str):
    return run.of_type(type_)


def inputs_by_bucket(run: OfflineRun, type_: str) -> dict:
    return {r.inputs["bucket"]: r.inputs for r in run.of_type(type_)}


def test_every_platform_component_is_a_retail_component_resource(dev, prod):
    expected = {
        "Encryption", "Network", "AuditTrail", "DataLake", "SecureBucket", "ContainerRegistry",
        "Cluster", "MlPlatform", "Observability", "LakeCatalog", "LakeEngine",
    }  # fmt: skip
    for stack in (dev, prod):
        components = {r.type for r in stack.resources if not r.custom and not r.remote}
        assert components == {f"retail:infra:{name}" for name in expected}


def test_the_ephemeral_platform_has_no_trail_of_its_own(ephemeral):
    assert not of(ephemeral, "aws:cloudtrail/trail:Trail")
    assert not [r for r in ephemeral.resources if r.type == "retail:infra:AuditTrail"]


def test_the_service_holds_the_add_ons_the_api_and_batch_scoring(service):
    components = {r.type for r in service.resources if not r.custom}
    assert components == {
        f"retail:infra:{name}"
        for name in ("LoadBalancerController", "LogShipping", "ClusterAutoscaler", "InferenceService", "BatchScoring",
                     "MonitoringSchedule")
    }


def test_the_platform_creates_no_kubernetes_object(stack):
    """So it deploys from anywhere AWS answers, before any network reaches a private Kubernetes API."""
    kubernetes = [r for r in stack.resources if r.type.startswith(("kubernetes:", "pulumi:providers:kubernetes"))]
    assert kubernetes == []


def test_every_platform_resource_except_providers_belongs_to_a_component(stack):
    top_level = [r for r in stack.children(stack.stack_urn) if r.custom]
    assert {r.type for r in top_level} == {"pulumi:providers:aws"}


def test_logical_names_are_unique(stack):
    names = [r.name for r in stack.resources]
    assert len(names) == len(set(names))


def test_service_logical_names_are_unique(service):
    names = [r.name for r in service.resources]
    assert len(names) == len(set(names))


def test_the_provider_targets_the_briefs_region_and_tags_everything(stack):
    (provider,) = of(stack, "pulumi:providers:aws")
    tags = json.loads(provider.inputs["defaultTags"])["tags"]
    assert provider.inputs["region"] == "ap-southeast-1"
    assert tags["project"] == "retail-mlops"
    assert tags["environment"] == stack.stack
    assert {"owner", "cost-center"} <= set(tags)


def test_every_bucket_is_encrypted_with_a_customer_managed_key(stack):
    keys = {k.outputs["arn"] for k in of(stack, "aws:kms/key:Key")}
    sse = inputs_by_bucket(
        stack,
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    )
    buckets = {b.id for b in of(stack, "aws:s3/bucket:Bucket")}
    assert set(sse) == buckets
    for config in sse.values():
        assert config["rules"][0]["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"] in keys


def test_no_bucket_can_be_made_public(stack):
    blocks = inputs_by_bucket(stack, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert set(blocks) == {b.id for b in of(stack, "aws:s3/bucket:Bucket")}
    assert all(b["blockPublicPolicy"] and b["restrictPublicBuckets"] for b in blocks.values())


def test_every_kms_key_rotates(stack):
    assert all(k.inputs["enableKeyRotation"] for k in of(stack, "aws:kms/key:Key"))


def test_every_log_group_is_encrypted_and_has_retention(stack):
    (logs_key,) = [k for k in of(stack, "aws:kms/key:Key") if k.name.endswith("-logs-key")]
    for group in of(stack, "aws:cloudwatch/logGroup:LogGroup"):
        assert group.inputs["kmsKeyId"] == logs_key.outputs["arn"]
        assert group.inputs["retentionInDays"] > 0


def test_log_retention_is_longer_in_prod(dev, prod):
    def retention(run):
        return {g.inputs["retentionInDays"] for g in of(run, "aws:cloudwatch/logGroup:LogGroup")}

    assert retention(dev) == {14}
    assert retention(prod) == {90}


def test_kubernetes_secrets_ecr_and_sns_use_customer_managed_keys(stack):
    keys = {k.outputs["arn"] for k in of(stack, "aws:kms/key:Key")}
    (cluster,) = of(stack, "eks:index:Cluster")
    (topic,) = of(stack, "aws:sns/topic:Topic")
    assert cluster.inputs["encryptionConfigKeyArn"] in keys
    assert topic.inputs["kmsMasterKeyId"] in keys
    for repo in of(stack, "aws:ecr/repository:Repository"):
        assert repo.inputs["encryptionConfigurations"][0]["kmsKey"] in keys


def test_dev_has_one_nat_gateway_and_prod_one_per_az(dev, prod):
    assert len(of(dev, "aws:ec2/natGateway:NatGateway")) == 1
    assert len(of(prod, "aws:ec2/natGateway:NatGateway")) == 3
    prod_zones = {s.inputs["availabilityZone"] for s in of(prod, "aws:ec2/subnet:Subnet")}
    assert len(prod_zones) == 3


def test_nodes_live_in_private_subnets(stack):
    private = {s.id for s in of(stack, "aws:ec2/subnet:Subnet") if s.inputs["tags"]["tier"] == "private"}
    for group in of(stack, "eks:index:ManagedNodeGroup"):
        assert set(group.inputs["subnetIds"]) == private


def capacity(run: OfflineRun) -> dict[str, str]:
    """Capacity type per workload label (inference, batch)."""
    return {g.inputs["labels"][WORKLOAD_LABEL]: g.inputs["capacityType"] for g in of(run, "eks:index:ManagedNodeGroup")}


def test_dev_runs_everything_on_spot(dev):
    assert capacity(dev) == {"inference": "SPOT", "batch": "SPOT"}


def test_prod_serves_on_demand_and_batches_on_spot(prod):
    assert capacity(prod) == {"inference": "ON_DEMAND", "batch": "SPOT"}


def test_prod_cluster_api_is_private_and_admits_its_deploy_network_while_dev_is_iam_gated(dev, prod):
    (dev_cluster,) = of(dev, "eks:index:Cluster")
    (prod_cluster,) = of(prod, "eks:index:Cluster")
    assert prod_cluster.inputs["endpointPublicAccess"] is False
    (rule,) = of(prod, "aws:ec2/securityGroupRule:SecurityGroupRule")
    assert (rule.inputs["cidrBlocks"], rule.inputs["fromPort"]) == (["10.50.0.0/16"], 443)
    assert dev_cluster.inputs["publicAccessCidrs"] == ["0.0.0.0/0"]


def test_prod_keeps_more_replicas_than_dev(dev_service, prod_service):
    def bounds(run):
        (hpa,) = of(run, "kubernetes:autoscaling/v2:HorizontalPodAutoscaler")
        return hpa.inputs["spec"]["minReplicas"], hpa.inputs["spec"]["maxReplicas"]

    assert bounds(dev_service) == (1, 3)
    assert bounds(prod_service) == (3, 10)


def test_prod_budget_is_the_briefs_500_usd_and_dev_stays_below(dev, prod, ephemeral):
    def limit(run):
        (budget,) = of(run, "aws:budgets/budget:Budget")
        return int(budget.inputs["limitAmount"])

    assert limit(prod) == 500
    assert limit(dev) < 500 and limit(ephemeral) < limit(dev)


def test_latency_alarm_uses_the_briefs_200_ms_in_every_stack(stack):
    (latency,) = [a for a in of(stack, "aws:cloudwatch/metricAlarm:MetricAlarm") if a.name.endswith("latency-p95")]
    assert latency.inputs["threshold"] == 200


def test_only_prod_treats_a_silent_service_as_an_incident(dev, prod, ephemeral):
    def missing(run):
        (heartbeat,) = [a for a in of(run, "aws:cloudwatch/metricAlarm:MetricAlarm") if a.name.endswith("heartbeat")]
        return heartbeat.inputs["treatMissingData"]

    assert (missing(prod), missing(dev), missing(ephemeral)) == ("breaching", "notBreaching", "notBreaching")


def test_prod_data_survives_destroy_and_dev_data_does_not(dev, prod):
    assert all(b.inputs["forceDestroy"] is False for b in of(prod, "aws:s3/bucket:Bucket"))
    lake = [b for b in of(dev, "aws:s3/bucket:Bucket") if "-lake-" in b.name]
    assert all(b.inputs["forceDestroy"] is True for b in lake)


def test_an_ephemeral_stack_can_be_destroyed_with_data_and_images_in_it(ephemeral):
    assert all(b.inputs["forceDestroy"] is True for b in of(ephemeral, "aws:s3/bucket:Bucket"))
    assert not of(ephemeral, "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration")
    assert all(r.inputs["forceDelete"] is True for r in of(ephemeral, "aws:ecr/repository:Repository"))
    assert not of(ephemeral, "aws:sns/topicSubscription:TopicSubscription")


def test_audit_trail_stays_on_even_in_dev(dev):
    (trail,) = of(dev, "aws:cloudtrail/trail:Trail")
    assert trail.inputs["isMultiRegionTrail"] and trail.inputs["enableLogFileValidation"]


@pytest.mark.parametrize("name", STACKS)
def test_the_service_runs_the_released_image_digest_from_the_stacks_registry(name, request):
    stack, service = request.getfixturevalue(name), request.getfixturevalue(f"{name}_service")
    (deployment,) = of(service, "kubernetes:apps/v1:Deployment")
    image = deployment.inputs["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.startswith(f"{stack.stack_outputs['repositoryUrls']['inference']}@sha256:")


def test_platform_stacks_declare_the_same_kinds_of_resources_apart_from_the_deploy_network_rule(dev, prod):
    assert {r.type for r in dev.resources} | {"aws:ec2/securityGroupRule:SecurityGroupRule"} == {
        r.type for r in prod.resources
    }


def test_the_platform_exports_what_operators_training_and_the_service_read(stack):
    assert {
        "clusterName", "kubeconfig", "oidcProviderArn", "oidcIssuer", "lakeBuckets", "lakeBucketArns",
        "repositoryUrls", "dataKeyArn", "logsKeyArn", "sagemakerExecutionRoleArn", "modelPackageGroupName",
        "inferenceLogGroupName", "publicSubnetCidrs", "vpcCidr", "serviceNodeLabels", "region",
        "batchNodeLabels", "batchNodeTaints",
    } <= set(stack.stack_outputs)  # fmt: skip
    assert stack.stack_outputs["clusterName"] == f"retail-{stack.stack}-eks"


def test_the_service_exports_its_endpoint_key_and_release(service):
    assert {"endpoint", "deployApiKey", "image", "modelPackageArn", "modelManifestSha256", "predictionsUri"} <= set(
        service.stack_outputs
    )
