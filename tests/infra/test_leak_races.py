"""The leak scan when another environment in the account is torn down while it runs: a load balancer, target group
or OIDC provider listed and then deleted before its tags are asked for is skipped, not an error that makes the scan
"not clean" (botocore's elbv2 and iam models list LoadBalancerNotFound, TargetGroupNotFound and NoSuchEntity for
those calls); the EKS log group is named by the ARN the tagging scan uses."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from infra.leaks import LeakScope, _eks_log_group_findings, _elbv2_tags, _iam_global_findings


def not_found(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "gone"}}, "DescribeTags")


class Elbv2:
    """DescribeTags over `tags`; an ARN in `gone` was deleted after the listing."""

    def __init__(self, tags: dict[str, dict[str, str]], gone: set[str], code: str = "LoadBalancerNotFound"):
        self.tags, self.gone, self.code, self.calls = tags, gone, code, 0

    def describe_tags(self, ResourceArns: list[str]):  # noqa: N803 (boto3's parameter name)
        self.calls += 1
        if set(ResourceArns) & self.gone:
            raise not_found(self.code)
        return {"TagDescriptions": [{"ResourceArn": arn, "Tags": [{"Key": k, "Value": v} for k, v in
                                                                   self.tags[arn].items()]} for arn in ResourceArns]}


@pytest.mark.parametrize("code", ["LoadBalancerNotFound", "TargetGroupNotFound"])
def test_a_load_balancer_deleted_between_listing_and_tags_is_skipped(code):
    arns = [f"arn:lb/{i}" for i in range(25)]
    client = Elbv2({arn: {"n": arn} for arn in arns}, {"arn:lb/3"}, code)
    found = dict(_elbv2_tags(client, arns))
    assert sorted(found) == sorted(set(arns) - {"arn:lb/3"}) and found["arn:lb/7"] == {"n": "arn:lb/7"}
    assert client.calls == 1 + 20 + 1  # the failed batch of 20 asked again ARN by ARN; the last 5 at once


def test_another_describe_tags_error_is_still_raised():
    client = Elbv2({"arn:lb/0": {}}, {"arn:lb/0"}, "AccessDenied")
    with pytest.raises(ClientError):
        list(_elbv2_tags(client, ["arn:lb/0"]))


class Iam:
    def __init__(self):
        self.providers = ["arn:oidc/gone", "arn:oidc/ours"]

    def list_open_id_connect_providers(self):
        return {"OpenIDConnectProviderList": [{"Arn": arn} for arn in self.providers]}

    def list_open_id_connect_provider_tags(self, OpenIDConnectProviderArn: str):  # noqa: N803
        if OpenIDConnectProviderArn.endswith("gone"):
            raise not_found("NoSuchEntity")
        return {"Tags": [{"Key": "environment", "Value": "ephemeral-pr-7"}]}

    def get_paginator(self, name: str):
        class Pages:
            def paginate(self, **_):
                return [{"Policies": []}]
        return Pages()


SCOPE = LeakScope(stack="ephemeral-pr-7", region="ap-southeast-1", cluster="retail-mlops-ephemeral-pr-7")


def test_an_oidc_provider_deleted_between_listing_and_tags_is_skipped():
    found = list(_iam_global_findings(SCOPE, lambda service: Iam()))
    assert [f.ident for f in found] == ["arn:oidc/ours"]


class Logs:
    def get_paginator(self, name: str):
        class Pages:
            def paginate(self, **_):
                return [{"logGroups": [{"logGroupName": "/aws/eks/c/cluster",
                                        "arn": "arn:aws:logs:ap-southeast-1:1:log-group:/aws/eks/c/cluster:*"}]}]
        return Pages()


def test_the_eks_log_group_is_named_by_its_arn_without_the_streams_wildcard():
    (finding,) = _eks_log_group_findings(SCOPE, lambda service: Logs())
    assert finding.ident == "arn:aws:logs:ap-southeast-1:1:log-group:/aws/eks/c/cluster"
