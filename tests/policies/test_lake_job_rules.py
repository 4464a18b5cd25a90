"""The lake job's rules: an EMR Serverless application must run in the VPC within a capacity ceiling and stop when
idle, and the role EMR Serverless assumes may write only below named prefixes.

Beyond each rule's one passing and one failing example (tests/policies/cases.py): what each rule reads, one setting
at a time, and the real deployment (the platform's job role, the lake stack's application) passing all three.
"""

from __future__ import annotations

import json

import pytest

from policies.catalog import BY_NAME
from policies.evaluate import evaluate
from policies.offline import resources_of
from tests.policies.cases import BUCKET, EMR_APPLICATION, LAKE_JOB_POLICY, LAKE_JOB_ROLE, LAKE_WRITE, changed, res

LAKE_JOB_RULES = ("emr-serverless-in-vpc", "emr-serverless-bounded", "emr-serverless-role-writes-lake-prefixes")


def messages(rule: str, subject) -> list[str]:
    """The rule's messages on `subject`, with the stack's lake bucket (lake-raw) beside it."""
    resources = subject if isinstance(subject, list) else [subject]
    return [v.message for v in evaluate([BY_NAME[rule]], [BUCKET, *resources], {})]


def with_statement(**statement) -> object:
    return changed(LAKE_JOB_POLICY, "policy", value=json.dumps({"Statement": [{**LAKE_WRITE, **statement}]}))


def test_the_real_deployment_passes_the_lake_job_rules(deployment):
    resources = [r for run in deployment("dev") for r in resources_of(run)]
    assert {r.type for r in resources} >= {"aws:emrserverless/application:Application", "aws:iam/role:Role"}
    assert evaluate([BY_NAME[name] for name in LAKE_JOB_RULES], resources, {}) == []


@pytest.mark.parametrize(("network", "missing"), [({"subnetIds": ["subnet-a"]}, "no security group"),
                                                  ({"securityGroupIds": ["sg-1"]}, "no subnets")])
def test_an_application_missing_subnets_or_a_security_group_is_outside_the_vpc(network, missing):
    (message,) = messages("emr-serverless-in-vpc", changed(EMR_APPLICATION, "networkConfiguration", value=network))
    assert message == f"runs its workers outside the VPC ({missing})"


def test_an_application_that_never_stops_fails_and_one_that_leaves_auto_stop_unstated_passes():
    never = changed(EMR_APPLICATION, "autoStopConfiguration", "enabled", value=False)
    unstated = changed(EMR_APPLICATION, "autoStopConfiguration", value=None)
    assert messages("emr-serverless-bounded", never) == ["does not stop when idle"]
    assert messages("emr-serverless-bounded", unstated) == []  # EMR Serverless stops an idle application by default


@pytest.mark.parametrize(
    ("statement", "reported"),
    [({"Resource": "*"}, "on *, not below the lake's silver/, gold/, manifests/"),
     ({"Resource": "arn:aws:s3:::lake-raw"}, "on arn:aws:s3:::lake-raw, not below"),
     ({"Resource": "arn:aws:s3:::lake-raw/lake*"}, "on arn:aws:s3:::lake-raw/lake*, not below"),
     ({"Action": "s3:*", "Resource": "arn:aws:s3:::lake-raw/*"}, "allows s3:* on arn:aws:s3:::lake-raw/*"),
     ({"Action": "s3:Delete*"}, None),
     ({"Action": "*", "Resource": "*"}, "allows * on *"),
     ({"Resource": "arn:aws:s3:::lake-raw/lake/*"}, "on arn:aws:s3:::lake-raw/lake/*, not below"),
     ({"Resource": "arn:aws:s3:::lake-raw/lake/raw/*"}, "on arn:aws:s3:::lake-raw/lake/raw/*, not below"),
     ({"Resource": "arn:aws:s3:::lake-raw/lake/raw/silver/*"}, "on arn:aws:s3:::lake-raw/lake/raw/silver/*"),
     ({"Resource": "arn:aws:s3:::lake-raw/lake/sil*/*"}, "on arn:aws:s3:::lake-raw/lake/sil*/*"),
     ({"Resource": "arn:aws:s3:::lake-raw/gold/r/*"}, None)],
    ids=["everything", "a bucket", "a key prefix without a segment", "s3:* on a bucket's objects",
         "deletes below prefixes", "admin", "the whole lake root", "the raw zone", "a silver folder inside raw",
         "a wildcard zone", "a lake at the bucket's root"],
)
def test_the_job_role_writes_only_below_named_prefixes(statement, reported):
    found = messages("emr-serverless-role-writes-lake-prefixes", [LAKE_JOB_ROLE, with_statement(**statement)])
    assert found == [] if reported is None else reported in found[0]


def test_a_not_resource_write_is_reported():
    not_resource = changed(LAKE_JOB_POLICY, "policy", value=json.dumps({"Statement": [
        {"Effect": "Allow", "Action": "s3:PutObject", "NotResource": "arn:aws:s3:::lake-raw/lake/raw/*"}]}))
    (message,) = messages("emr-serverless-role-writes-lake-prefixes", [LAKE_JOB_ROLE, not_resource])
    assert "allows s3:PutObject on everything but arn:aws:s3:::lake-raw/lake/raw/*" in message


def test_a_not_action_write_is_wide():
    not_action = changed(LAKE_JOB_POLICY, "policy", value=json.dumps({"Statement": [
        {"Effect": "Allow", "NotAction": "s3:GetObject", "Resource": "arn:aws:s3:::lake-raw/lake/*"}]}))
    (message,) = messages("emr-serverless-role-writes-lake-prefixes", [LAKE_JOB_ROLE, not_action])
    assert "allows every action but s3:GetObject on arn:aws:s3:::lake-raw/lake/*, not below" in message


WIDE = json.dumps({"Statement": [{**LAKE_WRITE, "Resource": "arn:aws:s3:::lake-raw/*"}]})


def test_the_role_s_own_inline_policies_are_judged():
    role = changed(LAKE_JOB_ROLE, "inlinePolicies", value=[{"name": "extra", "policy": WIDE}])
    (message,) = messages("emr-serverless-role-writes-lake-prefixes", [role])
    assert message.startswith("inline policy extra allows s3:PutObject, s3:AbortMultipartUpload on "
                              "arn:aws:s3:::lake-raw/*")


def test_a_stack_policy_attached_by_managed_policy_arns_or_an_attachment_is_judged():
    policy = res("aws:iam/policy:Policy", "lake-extra", urn="urn:lake-extra", policy=WIDE)
    role = res(LAKE_JOB_ROLE.type, LAKE_JOB_ROLE.name, urn=LAKE_JOB_ROLE.urn,
               deps={"managedPolicyArns": ["urn:lake-extra"]}, **LAKE_JOB_ROLE.props,
               managedPolicyArns=["arn:aws:iam::123456789012:policy/lake-extra"])
    (message,) = messages("emr-serverless-role-writes-lake-prefixes", [role, policy])
    assert message.startswith("policy lake-extra allows s3:PutObject")
    attachment = res("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "lake-extra-attach",
                     deps={"role": [LAKE_JOB_ROLE.urn], "policyArn": ["urn:lake-extra"]},
                     policyArn="arn:aws:iam::123456789012:policy/lake-extra")
    (message,) = messages("emr-serverless-role-writes-lake-prefixes", [LAKE_JOB_ROLE, policy, attachment])
    assert message.startswith("policy lake-extra allows s3:PutObject")


def test_an_aws_managed_policy_attached_to_the_job_role_cannot_be_judged_and_is_reported():
    attachment = res("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "s3-full", deps={"role": [LAKE_JOB_ROLE.urn]},
                     policyArn="arn:aws:iam::aws:policy/AmazonS3FullAccess")
    (message,) = messages("emr-serverless-role-writes-lake-prefixes", [LAKE_JOB_ROLE, attachment])
    assert message.startswith("policy arn:aws:iam::aws:policy/AmazonS3FullAccess is attached, which the stack does not "
                              "declare")
    managed = changed(LAKE_JOB_ROLE, "managedPolicyArns", value=["arn:aws:iam::aws:policy/AmazonS3FullAccess"])
    assert len(messages("emr-serverless-role-writes-lake-prefixes", [managed])) == 1


def test_the_rule_s_write_zones_are_the_job_role_s():
    from infra import lake_engine
    from policies.rules import lake_job

    assert lake_job.WRITE_ZONES == lake_engine.WRITE_ZONES


def test_reads_and_roles_other_services_assume_are_not_judged():
    read_everything = with_statement(Action="s3:GetObject", Resource="*")
    assert messages("emr-serverless-role-writes-lake-prefixes", [LAKE_JOB_ROLE, read_everything]) == []
    sagemaker_role = changed(LAKE_JOB_ROLE, "assumeRolePolicy", value=json.dumps({"Statement": [
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "sagemaker.amazonaws.com"}}]}))
    assert messages("emr-serverless-role-writes-lake-prefixes", [sagemaker_role, with_statement(Resource="*")]) == []


def test_a_policy_of_another_role_is_not_judged():
    elsewhere = res(LAKE_JOB_POLICY.type, "other-access", deps={"role": ["urn:other-role"]},
                    policy=json.dumps({"Statement": [{**LAKE_WRITE, "Resource": "*"}]}))
    assert messages("emr-serverless-role-writes-lake-prefixes", [LAKE_JOB_ROLE, elsewhere]) == []


ROLE_RULE = "emr-serverless-role-writes-lake-prefixes"
EVERYTHING = json.dumps({"Statement": [{**LAKE_WRITE, "Resource": "*"}]})


@pytest.mark.parametrize(("resource", "reported"), [
    ("arn:aws:s3:::someone-elses/lake/silver/*", True),
    ("arn:aws:s3:::someone-elses/silver/*", True),
    ("arn:aws:s3:::lake-raw/lake/silver/*", False),
], ids=["another bucket's lake", "another bucket's zone", "the stack's bucket"])
def test_writes_below_a_zone_of_a_bucket_the_stack_does_not_declare_are_wide(resource, reported):
    assert bool(messages(ROLE_RULE, [LAKE_JOB_ROLE, with_statement(Resource=resource)])) is reported


def test_an_auto_named_stack_bucket_is_known_by_its_logical_name_and_suffix_a_named_one_by_its_name():
    auto = res("aws:s3/bucket:Bucket", "retail-dev-lake-raw-bucket", urn="urn:auto")
    named = changed(BUCKET, "bucket", value="retail-lake-prod")
    for buckets, resource, reported in (
            ([auto], "arn:aws:s3:::retail-dev-lake-raw-bucket-0e55c69/lake/silver/*", False),
            ([auto], "arn:aws:s3:::retail-dev-lake-raw-bucket-evil/lake/silver/*", True),
            ([named], "arn:aws:s3:::retail-lake-prod/lake/silver/*", False),
            ([named], "arn:aws:s3:::lake-raw/lake/silver/*", True)):
        found = [v.message for v in evaluate([BY_NAME[ROLE_RULE]],
                                             [*buckets, LAKE_JOB_ROLE, with_statement(Resource=resource)], {})]
        assert bool(found) is reported, (buckets, resource)


@pytest.mark.parametrize("action", ["s3:?utObject", "s3:Put?bject", "s?:PutObject", "s3-object-lambda:PutObject",
                                    "s3-object-lambda:*"])
def test_question_mark_wildcards_and_s3_object_lambda_writes_count_as_writes(action):
    (message,) = messages(ROLE_RULE, [LAKE_JOB_ROLE, with_statement(Action=action, Resource="*")])
    assert f"allows {action} on *" in message


def test_a_role_policy_naming_the_role_by_its_physical_name_is_judged():
    named_role = changed(LAKE_JOB_ROLE, "name", value="retail-lake-job")
    by_name = res(LAKE_JOB_POLICY.type, "by-name", role="retail-lake-job", policy=EVERYTHING)
    (message,) = messages(ROLE_RULE, [named_role, by_name])
    assert message.startswith("role policy by-name allows")
    auto_named = res(LAKE_JOB_POLICY.type, "by-auto-name", role=f"{LAKE_JOB_ROLE.name}-96e06a3", policy=EVERYTHING)
    (message,) = messages(ROLE_RULE, [LAKE_JOB_ROLE, auto_named])
    assert message.startswith("role policy by-auto-name allows")


def test_every_attached_arn_that_is_no_stack_policy_is_reported_even_beside_stack_policies():
    policy = res("aws:iam/policy:Policy", "lake-ok", urn="urn:lake-ok", policy=json.dumps({"Statement": [LAKE_WRITE]}))
    arns = ["arn:aws:iam::123456789012:policy/lake-ok-1a2b3c4", "arn:aws:iam::123456789012:policy/AdminElsewhere"]
    role = res(LAKE_JOB_ROLE.type, LAKE_JOB_ROLE.name, urn=LAKE_JOB_ROLE.urn,
               deps={"managedPolicyArns": ["urn:lake-ok"]}, **LAKE_JOB_ROLE.props, managedPolicyArns=arns)
    assert messages(ROLE_RULE, [role, policy]) == [
        "policy arn:aws:iam::123456789012:policy/AdminElsewhere is attached, which the stack does not declare and "
        "cannot be judged: give the job role its access as an inline policy"]
    only_stack = changed(role, "managedPolicyArns", value=["arn:aws:iam::123456789012:policy/lake-ok-1a2b3c4"])
    assert messages(ROLE_RULE, [only_stack, policy]) == []


WIDE_POLICY = res("aws:iam/policy:Policy", "wide", urn="urn:wide", policy=EVERYTHING)


@pytest.mark.parametrize("attachment", [
    res("aws:iam/policyAttachment:PolicyAttachment", "by-roles", deps={"policyArn": ["urn:wide"]},
        roles=[LAKE_JOB_ROLE.name], policyArn="arn:aws:iam::123456789012:policy/wide"),
    res("aws:iam/policyAttachment:PolicyAttachment", "by-role-dependency",
        deps={"roles": [LAKE_JOB_ROLE.urn], "policyArn": ["urn:wide"]},
        policyArn="arn:aws:iam::123456789012:policy/wide"),
    res("aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive", "exclusive",
        deps={"roleName": [LAKE_JOB_ROLE.urn], "policyArns": ["urn:wide"]},
        policyArns=["arn:aws:iam::123456789012:policy/wide"]),
], ids=["PolicyAttachment by role name", "PolicyAttachment by dependency", "RolePolicyAttachmentsExclusive"])
def test_policy_attachments_and_exclusive_attachments_are_judged(attachment):
    (message,) = messages(ROLE_RULE, [LAKE_JOB_ROLE, WIDE_POLICY, attachment])
    assert message.startswith("policy wide allows s3:PutObject")


def test_an_exclusive_attachment_of_an_outside_policy_is_reported():
    exclusive = res("aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive", "exclusive",
                    roleName=LAKE_JOB_ROLE.name, policyArns=["arn:aws:iam::aws:policy/AmazonS3FullAccess"])
    (message,) = messages(ROLE_RULE, [LAKE_JOB_ROLE, exclusive])
    assert message.startswith("policy arn:aws:iam::aws:policy/AmazonS3FullAccess is attached")
