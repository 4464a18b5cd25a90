"""The composed dev and prod stacks, built from their Pulumi.<stack>.yaml through __main__.py."""

import json

import pytest

from infra.cluster import WORKLOAD_LABEL
from infra.offline import OfflineRun

STACKS = ["dev", "prod"]


@pytest.fixture(params=STACKS)
def stack(request) -> OfflineRun:
    return request.getfixturevalue(request.param)


def of(run: OfflineRun, type_: str):
    return run.of_type(type_)


def inputs_by_bucket(run: OfflineRun, type_: str) -> dict:
    return {r.inputs["bucket"]: r.inputs for r in run.of_type(type_)}


def test_every_component_is_a_retail_component_resource(stack):
    expected = {
        "Encryption", "Network", "AuditTrail", "DataLake", "SecureBucket", "ContainerRegistry",
        "Cluster", "MlPlatform", "InferenceService", "Observability",
    }  # fmt: skip
    components = {r.type for r in stack.resources if not r.custom and not r.remote}
    assert components == {f"retail:infra:{name}" for name in expected}


def test_every_resource_except_providers_belongs_to_a_component(stack):
    top_level = [r for r in stack.children(stack.stack_urn) if r.custom]
    assert {r.type for r in top_level} == {"pulumi:providers:aws"}


def test_logical_names_are_unique(stack):
    names = [r.name for r in stack.resources]
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


def test_prod_cluster_api_is_private_only_and_dev_open_to_one_cidr(dev, prod):
    (dev_cluster,) = of(dev, "eks:index:Cluster")
    (prod_cluster,) = of(prod, "eks:index:Cluster")
    assert prod_cluster.inputs["endpointPublicAccess"] is False
    assert dev_cluster.inputs["publicAccessCidrs"] == ["203.0.113.0/24"]


def test_prod_keeps_more_replicas_than_dev(dev, prod):
    def bounds(run):
        (hpa,) = of(run, "kubernetes:autoscaling/v2:HorizontalPodAutoscaler")
        return hpa.inputs["spec"]["minReplicas"], hpa.inputs["spec"]["maxReplicas"]

    assert bounds(dev) == (1, 3)
    assert bounds(prod) == (3, 10)


def test_prod_budget_is_the_briefs_500_usd_and_dev_stays_below(dev, prod):
    def limit(run):
        (budget,) = of(run, "aws:budgets/budget:Budget")
        return int(budget.inputs["limitAmount"])

    assert limit(prod) == 500
    assert limit(dev) < 500


def test_latency_alarm_uses_the_briefs_200_ms_in_both_stacks(stack):
    (latency,) = [a for a in of(stack, "aws:cloudwatch/metricAlarm:MetricAlarm") if a.name.endswith("latency-p95")]
    assert latency.inputs["threshold"] == 200


def test_prod_data_survives_destroy_and_dev_data_does_not(dev, prod):
    assert all(b.inputs["forceDestroy"] is False for b in of(prod, "aws:s3/bucket:Bucket"))
    lake = [b for b in of(dev, "aws:s3/bucket:Bucket") if "-lake-" in b.name]
    assert all(b.inputs["forceDestroy"] is True for b in lake)


def test_audit_trail_stays_on_even_in_dev(dev):
    (trail,) = of(dev, "aws:cloudtrail/trail:Trail")
    assert trail.inputs["isMultiRegionTrail"] and trail.inputs["enableLogFileValidation"]


def test_inference_image_comes_from_the_stacks_registry(stack):
    (deployment,) = of(stack, "kubernetes:apps/v1:Deployment")
    (repo,) = [r for r in of(stack, "aws:ecr/repository:Repository") if r.name.endswith("-inference")]
    image = deployment.inputs["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"{repo.outputs['repositoryUrl']}:0.1.0"


def test_stacks_declare_the_same_kinds_of_resources(dev, prod):
    assert {r.type for r in dev.resources} == {r.type for r in prod.resources}


def test_stack_exports_what_operators_need(stack):
    assert {"clusterName", "kubeconfig", "lakeBuckets", "repositoryUrls", "modelUri"} <= set(stack.stack_outputs)
    assert stack.stack_outputs["clusterName"] == f"retail-{stack.stack}-eks"
