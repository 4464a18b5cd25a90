"""Required tags on every taggable AWS resource, from its own tags or the provider's default tags.

Buckets of both generations pulumi-aws 7 ships (`Bucket` and the older `BucketV2`) are taggable.
tests/policies/test_tag_coverage.py fails when a stack declares a type that pulumi-aws lets carry
tags and `TAGGABLE` does not list it.
"""

from __future__ import annotations

from typing import Any

from policies.model import Resource, ResourceRule, as_json

REQUIRED_TAGS = ("project", "environment", "owner", "cost-center")
TAGGABLE = frozenset(
    {
        "aws:s3/bucket:Bucket",
        "aws:s3/bucketV2:BucketV2",
        "aws:kms/key:Key",
        "aws:ec2/vpc:Vpc",
        "aws:ec2/subnet:Subnet",
        "aws:ec2/securityGroup:SecurityGroup",
        "aws:ec2/natGateway:NatGateway",
        "aws:ec2/eip:Eip",
        "aws:ec2/internetGateway:InternetGateway",
        "aws:ec2/routeTable:RouteTable",
        "aws:ec2/vpcEndpoint:VpcEndpoint",
        "aws:ec2/flowLog:FlowLog",
        "aws:ecr/repository:Repository",
        "aws:iam/role:Role",
        "aws:cloudwatch/logGroup:LogGroup",
        "aws:cloudwatch/metricAlarm:MetricAlarm",
        "aws:cloudwatch/eventRule:EventRule",
        "aws:sns/topic:Topic",
        "aws:cloudtrail/trail:Trail",
        "aws:sagemaker/modelPackageGroup:ModelPackageGroup",
        "aws:eks/cluster:Cluster",
        "aws:eks/addon:Addon",
        "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",
        "aws:budgets/budget:Budget",
        "aws:iam/policy:Policy",
        "aws:glue/catalogDatabase:CatalogDatabase",
        "aws:athena/workgroup:Workgroup",
        "aws:emrserverless/application:Application",
    }
)


def effective_tags(resource: Resource) -> dict[str, Any]:
    """The provider's default tags, overlaid by the resource's `tagsAll` and `tags`."""
    defaults = as_json(resource.provider_props.get("defaultTags")) or {}
    tags = dict(defaults.get("tags") or {}) if isinstance(defaults, dict) else {}
    tags.update(resource.get("tagsAll", default={}))
    tags.update(resource.get("tags", default={}))
    return tags


def required_tags(resource: Resource) -> list[str]:
    tags = effective_tags(resource)
    missing = [t for t in REQUIRED_TAGS if not tags.get(t)]
    return [f"lacks the tag(s) {', '.join(missing)}"] if missing else []


RULES = [
    ResourceRule(
        "aws-required-tags",
        f"Tag with {', '.join(REQUIRED_TAGS)} (the AWS provider's default_tags from the stack config do this).",
        TAGGABLE,
        required_tags,
    ),
]
