"""The deployment's policy documents: every one linted by parliament, and each service's documented needs met.

The real dev, prod and ephemeral deployments must produce no finding that
policies/waivers.yaml does not accept. Each documented requirement (one row of
`REQUIREMENTS`) also has a failing fixture: the dev deployment with the statement the
row is about removed or mis-scoped, which the row must report.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from pulumi.runtime import rpc

from infra.offline import RegisteredResource
from policies.documents import (
    DOCUMENTED,
    PARLIAMENT,
    REQUIREMENTS,
    PolicyDocument,
    check_id,
    document_findings,
    parliament_findings,
    rendered_documents,
    requirement_findings,
)
from tests.contracts.helpers import STACKS, Statements, edit_document, edit_inputs, statement, without

SAGEMAKER_ROWS = {"sagemaker-vpc", "sagemaker-kms", "sagemaker-ecr"}


def blocking(findings):
    return [f"{f.subject}: {f.message}" for f in findings if f.blocking]


# --------------------------------------------------------------------------- collection


def test_every_policy_document_of_the_deployment_is_collected(dev):
    documents = rendered_documents(dev)
    kinds = {(d.resource.type, d.kind) for d in documents}
    assert kinds == {
        ("aws:iam/role:Role", "trust"),
        ("aws:iam/rolePolicy:RolePolicy", "identity"),
        ("aws:iam/policy:Policy", "identity"),
        ("aws:kms/key:Key", "key"),
        ("aws:s3/bucketPolicy:BucketPolicy", "resource"),
        ("aws:sns/topicPolicy:TopicPolicy", "resource"),
        ("aws:ecr/repositoryPolicy:RepositoryPolicy", "resource"),
    }
    resources = [r for run in dev for r in run.resources if r.type in {t for t, _ in kinds}]
    assert sorted(d.resource.name for d in documents) == sorted(r.name for r in resources)


def test_documents_arrive_with_every_output_resolved(dev):
    for document in rendered_documents(dev):
        assert rpc.UNKNOWN not in document.text
        assert document.statements, document.resource.name


def test_a_document_holding_an_unknown_value_is_reported_not_linted(dev):
    unknown = edit_document(dev, "-ml-sagemaker-access", lambda s: [{**s[0], "Resource": rpc.UNKNOWN}, *s[1:]])
    findings = [f for f in document_findings(unknown, waivers=[]) if check_id(f) == "UNRENDERED"]
    assert [f.subject for f in findings] == ["retail-dev-ml-sagemaker-access"]


# --------------------------------------------------------------------------- parliament


def _trust_document(dev) -> PolicyDocument:
    return next(d for d in rendered_documents(dev) if d.resource.name == "retail-dev-ml-sagemaker-execution")


def test_a_trust_policy_is_linted_with_its_role_as_resource(dev):
    assert parliament_findings(_trust_document(dev)) == []


def test_parliament_reports_a_malformed_trust_statement(dev):
    broken = edit_document(dev, "-ml-sagemaker-execution", lambda s: [{k: v for k, v in s[0].items() if k != "Effect"}])
    document = next(d for d in rendered_documents(broken) if d.resource.name == "retail-dev-ml-sagemaker-execution")
    assert [check_id(f) for f in parliament_findings(document)] == ["MALFORMED"]


def test_parliament_findings_name_the_resource_and_statement(dev):
    findings = [f for f in document_findings(dev, waivers=[]) if f.check == PARLIAMENT]
    subjects = {f.subject for f in findings}
    assert "retail-dev-kms-logs-key#CloudWatchLogsUseKey" in subjects
    assert "retail-dev-lb-controller-role#statement-1" in subjects


@pytest.mark.parametrize("stack", STACKS)
def test_every_parliament_finding_on_the_real_deployment_is_waived(deployments, stack):
    findings = [f for f in document_findings(deployments[stack]) if f.check == PARLIAMENT]
    assert findings, "parliament found nothing at all: is it still running?"
    assert blocking(findings) == []


# --------------------------------------------------------------------------- documented permissions, real deployments


@pytest.mark.parametrize("stack", STACKS)
def test_the_sagemaker_execution_role_meets_its_documented_requirements(deployments, stack):
    findings = [f for f in document_findings(deployments[stack]) if check_id(f) in SAGEMAKER_ROWS]
    assert [f for f in findings if check_id(f) in SAGEMAKER_ROWS] == []


@pytest.mark.parametrize("stack", STACKS)
def test_the_real_deployment_has_no_unwaived_document_finding(deployments, stack):
    assert blocking(document_findings(deployments[stack])) == []


# --------------------------------------------------------------------------- documented permissions, failing fixtures

Edit = Callable[[list], list]


def _key_statements(edit: Callable[[Statements], Statements], key: str = "-kms-logs-key") -> Edit:
    return lambda runs: edit_document(runs, key, edit)


def _audit_key_statements(edit: Callable[[Statements], Statements]) -> Edit:
    return _key_statements(edit, "-kms-audit-key")


def _set(sid: str, **elements: Any) -> Callable[[Statements], Statements]:
    def edit(statements: Statements) -> Statements:
        statement(statements, sid).update(elements)
        return statements

    return edit


def _describe_key_under_encryption_context(statements: Statements) -> Statements:
    statement(statements, "CloudTrailEncryptsLogs")["Action"] = ["kms:GenerateDataKey*", "kms:DescribeKey"]
    return without("CloudTrailDescribesKey")(statements)


def _other_trail(statements: Statements) -> Statements:
    condition = statement(statements, "CloudTrailEncryptsLogs")["Condition"]["StringEquals"]
    condition["aws:SourceArn"] = condition["aws:SourceArn"].replace("retail-dev-audit-trail", "another-trail")
    return statements


def _without_principal(service: str) -> Callable[[Statements], Statements]:
    def edit(statements: Statements) -> Statements:
        for s in statements:
            services = s.get("Principal", {}).get("Service") if isinstance(s.get("Principal"), dict) else None
            if isinstance(services, list) and service in services:
                s["Principal"]["Service"] = [x for x in services if x != service]
        return statements

    return edit


def _sagemaker_without(*sids: str) -> Edit:
    return lambda runs: edit_document(runs, "-ml-sagemaker-access", without(*sids))


def _without_action(action: str) -> Callable[[Statements], Statements]:
    return lambda statements: [s for s in statements if s.get("Action") != action]


def _streams_of_another_group(statements: Statements) -> Statements:
    writes = next(s for s in statements if "logs:PutLogEvents" in s["Action"])
    writes["Resource"] = writes["Resource"].replace("vpc-flow-logs", "other-logs")
    return statements


def _shipper_writes_elsewhere(statements: Statements) -> Statements:
    writes = statement(statements, "WriteInferenceLogStreams")
    writes["Resource"] = [r.replace("/retail/dev/inference", "/retail/dev/other") for r in writes["Resource"]]
    return statements


def _trust_another_service_account(statements: Statements) -> Statements:
    condition = statements[0]["Condition"]["StringEquals"]
    key = next(k for k in condition if k.endswith(":sub"))
    condition[key] = "system:serviceaccount:retail-inference:someone-else"
    return statements


def _controller_policy_changed(statements: Statements) -> Statements:
    return statements[:-1]


def _annotate_other_role(inputs: dict) -> None:
    inputs["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] = "arn:aws:iam::123456789012:role/not-created"


def _autoscaler_without(*sids: str) -> Edit:
    return lambda runs: edit_document(runs, "-cluster-autoscaler-scale-node-groups", without(*sids))


def _resize_other_clusters(statements: Statements) -> Statements:
    resize = statement(statements, "ResizeThisClustersNodeGroups")
    resize["Condition"] = {"Null": {"aws:ResourceTag/k8s.io/cluster-autoscaler/another-eks": "false"}}
    return statements


def _scorer_without(*sids: str) -> Edit:
    return lambda runs: edit_document(runs, "-batch-scoring-scorer-access", without(*sids))


def _scorer_edited(edit: Callable[[Statements], Statements]) -> Edit:
    return lambda runs: edit_document(runs, "-batch-scoring-scorer-access", edit)


def _scorer_writes_the_whole_lake(statements: Statements) -> Statements:
    writes = statement(statements, "WritePredictions")
    writes["Resource"] = writes["Resource"].replace("/lake/predictions/*", "/*")
    return statements


def _scorer_may_delete(statements: Statements) -> Statements:
    statement(statements, "WritePredictions")["Action"] = ["s3:PutObject", "s3:DeleteObject"]
    return statements


def _kms_not_through_s3(statements: Statements) -> Statements:
    statement(statements, "UseDataKeyThroughS3")["Condition"] = {
        "StringEquals": {"kms:ViaService": "logs.ap-southeast-1.amazonaws.com"}
    }
    return statements


def _scorer_statement(sid: str, edit: Callable[[dict[str, Any]], None]) -> Edit:
    """The scorer's policy with statement `sid` edited in place."""

    def edited(statements: Statements) -> Statements:
        edit(statement(statements, sid))
        return statements

    return _scorer_edited(edited)


def _also_on(*resources: str) -> Callable[[dict[str, Any]], None]:
    """The statement's resource, and each of `resources` (`{}` is its bucket's ARN)."""

    def edit(found: dict[str, Any]) -> None:
        bucket = str(found["Resource"]).split("/")[0]
        found["Resource"] = [found["Resource"], *(r.format(bucket) for r in resources)]

    return edit


def _all_but_deleting(found: dict[str, Any]) -> None:
    del found["Action"]
    found["NotAction"] = "s3:DeleteObject"


SCORER_WIDENINGS: list[tuple[str, Edit, str]] = [
    ("lists the whole bucket", _scorer_statement("ListSilverZone", lambda s: s.pop("Condition")),
     "ListSilverZone allows s3:ListBucket on arn:aws:s3:::"),
    ("lists every zone", _scorer_statement("ListSilverZone", lambda s: s.update(
        Condition={"StringLike": {"s3:prefix": "lake/*"}})),
     "with s3:prefix lake/*"),
    ("lists with a loosening operator too", _scorer_statement("ListSilverZone", lambda s: s["Condition"].update(
        StringNotLike={"s3:prefix": "lake/raw/*"})), "with no s3:prefix condition"),
    ("lists another bucket", _scorer_statement("ListSilverZone", _also_on("arn:aws:s3:::other-bucket")),
     "ListSilverZone allows s3:ListBucket on arn:aws:s3:::other-bucket"),
    ("lists the lake's prefix in the artifacts bucket", _scorer_statement("ListServedBundle", lambda s: s.update(
        Condition={"StringLike": {"s3:prefix": "lake/silver/*"}})), "with s3:prefix lake/silver/*"),
    ("has an AWS-managed policy", lambda runs: edit_inputs(runs, "-batch-scoring-scorer", lambda inputs: inputs.update(
        managedPolicyArns=["arn:aws:iam::aws:policy/AmazonS3FullAccess"])),
     "has arn:aws:iam::aws:policy/AmazonS3FullAccess attached, a policy this check cannot read"),
    ("reads the monitoring zone", _scorer_statement("ReadSilverZone", _also_on("{}/lake/monitoring/*")),
     "/lake/monitoring/*"),
    ("reads the service's prediction log", _scorer_statement("ReadSilverZone", _also_on("{}/lake/predictions/*")),
     "/lake/predictions/*"),
    ("reads zones named like silver", _scorer_statement("ReadSilverZone", _also_on("{}/lake/silver*")),
     "/lake/silver*"),
    ("writes outside the lake root", _scorer_statement("WritePredictions", _also_on("{}/elsewhere/*")),
     "WritePredictions allows s3:PutObject on arn:aws:s3:::"),
    ("may change the bucket policy", _scorer_statement("WritePredictions", lambda s: s.update(
        Action=["s3:PutObject", "s3:PutBucketPolicy"])), "WritePredictions allows s3:PutBucketPolicy"),
    ("reads with a wildcard action", _scorer_statement("ReadSilverZone", lambda s: s.update(Action="s3:Get*")),
     "ReadSilverZone allows s3:GetObjectAcl"),
    ("allows all but deleting", _scorer_statement("WritePredictions", _all_but_deleting),
     "WritePredictions allows with NotAction"),
    ("uses another key", _scorer_statement("UseDataKeyThroughS3", lambda s: s.update(Resource="*")),
     "UseDataKeyThroughS3 allows kms:Decrypt on *"),
]
"""Widenings of the scorer's role a role check by sample requests would miss, and what the check says of each."""


@pytest.mark.parametrize("edit, said", [pytest.param(edit, said, id=case) for case, edit, said in SCORER_WIDENINGS])
def test_a_scorer_role_that_allows_more_than_the_job_does_is_reported(dev, edit, said):
    findings = [f for f in requirement_findings(edit(dev)) if check_id(f) == "batch-job-s3-access"]
    assert findings and all(f.subject == "retail-dev-batch-scoring-scorer" for f in findings)
    assert any(said in f.message and "beyond what the job reads and writes" in f.message for f in findings), [
        f.message for f in findings]


def _scorer_arn(runs) -> str:
    (role,) = [r for run in runs for r in run.resources
               if r.type == "aws:iam/role:Role" and r.name.endswith("-batch-scoring-scorer")]
    return str(role.outputs["arn"])


def _granted(holder: str, principal: Callable[[str], Any], action: str | list[str],
             principal_element: str = "Principal", condition: dict | None = None) -> Edit:
    """`runs` with an Allow of `action` on everything (`*`) added to the resource policy of the resource named
    `*holder`, to the principal `principal(<the scorer role's ARN>)`, under `condition` if given."""

    def edit(runs):
        grant = {"Sid": "ExtraGrant", "Effect": "Allow", principal_element: principal(_scorer_arn(runs)),
                 "Action": action, "Resource": "*", **({"Condition": condition} if condition else {})}
        return edit_document(runs, holder, lambda statements: [*statements, grant])

    return edit


def _kms_grant(runs) -> list:
    """`runs` with a KMS grant of Decrypt on the data key to the scorer's role."""
    runs = copy.deepcopy(list(runs))
    platform = next(run for run in runs if any(r.name.endswith("-kms-data-key") for r in run.resources))
    key = next(r for r in platform.resources if r.name.endswith("-kms-data-key"))
    platform.resources.append(RegisteredResource(
        urn=f"{platform.stack_urn}::scorer-grant", id="grant", type="aws:kms/grant:Grant", name="scorer-grant",
        parent=platform.stack_urn, custom=True, remote=False,
        inputs={"keyId": key.outputs["arn"], "granteePrincipal": _scorer_arn(runs), "operations": ["Decrypt"]},
        outputs={}))
    return runs


OTHER_ROLE = "arn:aws:iam::123456789012:role/other"
TRAIL = "arn:aws:cloudtrail:ap-southeast-1:123456789012:trail/t"
THROUGH_S3 = {"StringEquals": {"kms:ViaService": "s3.ap-southeast-1.amazonaws.com"}}
RESOURCE_GRANTS: dict[str, tuple[Edit, tuple[str, ...]]] = {
    "a bucket policy naming the role": (
        _granted("-lake-silver-policy", lambda arn: {"AWS": arn}, "s3:DeleteObject"),
        ("ExtraGrant allows s3:DeleteObject on * (in the resource policy of retail-dev-lake-silver-policy)",)),
    "a bucket policy naming it among others": (
        _granted("-lake-gold-policy", lambda arn: {"AWS": [OTHER_ROLE, arn]}, "s3:GetObject"),
        ("ExtraGrant allows s3:GetObject on * (in the resource policy of retail-dev-lake-gold-policy)",)),
    "a bucket policy naming anyone": (
        _granted("-lake-artifacts-policy", lambda arn: "*", "s3:PutObject"),
        ("ExtraGrant allows s3:PutObject on * (in the resource policy of retail-dev-lake-artifacts-policy)",)),
    "a bucket policy naming anyone, the role by a condition": (
        _granted("-lake-artifacts-policy", lambda arn: {"AWS": "*"}, "s3:PutObject",
                 condition={"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::123456789012:role/*-scorer-*"}}),
        ("ExtraGrant allows s3:PutObject on *",)),
    "a bucket policy naming anyone in the bucket's account, by a policy variable": (
        _granted("-lake-gold-policy", lambda arn: "*", "s3:DeleteObject",
                 condition={"StringEquals": {"aws:PrincipalAccount": "${aws:ResourceAccount}"}}),
        ("ExtraGrant allows s3:DeleteObject on * (in the resource policy of retail-dev-lake-gold-policy)",)),
    "the data key's policy naming the role": (
        _granted("-kms-data-key", lambda arn: {"AWS": arn}, "kms:Encrypt"),
        ("ExtraGrant allows kms:Encrypt on arn:aws:kms:", "(in the key policy of retail-dev-kms-data-key)")),
    "a bucket policy allowing all but someone": (
        _granted("-lake-raw-policy", lambda arn: {"AWS": OTHER_ROLE}, "s3:GetObject", principal_element="NotPrincipal"),
        ("ExtraGrant allows with NotPrincipal",)),
    "a KMS grant to the role": (
        _kms_grant, ("the KMS grant scorer-grant lets it Decrypt with the key arn:aws:kms:", "not only through S3")),
    "the data key's policy giving the role what the job uses": (
        _granted("-kms-data-key", lambda arn: {"AWS": arn}, ["kms:Decrypt", "kms:GenerateDataKey"],
                 condition=THROUGH_S3), ()),
    "a bucket policy naming another role": (
        _granted("-lake-silver-policy", lambda arn: {"AWS": OTHER_ROLE}, "s3:DeleteObject"), ()),
    "a bucket policy naming the account": (
        _granted("-lake-silver-policy", lambda arn: {"AWS": "arn:aws:iam::123456789012:root"}, "s3:DeleteObject"), ()),
    "a bucket policy naming anyone, another role by a condition": (
        _granted("-lake-silver-policy", lambda arn: "*", "s3:DeleteObject",
                 condition={"ArnEquals": {"aws:PrincipalArn": OTHER_ROLE}}), ()),
    "a bucket policy naming anyone, for a service's requests": (
        _granted("-lake-silver-policy", lambda arn: "*", "s3:PutObject",
                 condition={"StringEquals": {"aws:SourceArn": TRAIL}}), ()),
}
"""Grants to the scorer's role in the stack's resource policies and KMS grants, or to others, and what the check
says of each: all of these substrings in one finding, or nothing at all (an empty tuple: the grant is not the role's,
or is what the job needs)."""


@pytest.mark.parametrize("case", list(RESOURCE_GRANTS))
def test_a_resource_policy_granting_the_scorer_more_is_reported_and_one_granting_others_is_not(dev, case):
    edit, said = RESOURCE_GRANTS[case]
    findings = [f.message for f in requirement_findings(edit(dev)) if check_id(f) == "batch-job-s3-access"]
    if not said:
        assert findings == []
    else:
        assert any(all(part in m for part in said) and "beyond what the job reads and writes" in m
                   for m in findings), findings


WIDE_POLICY_ARN = "arn:aws:iam::123456789012:policy/scorer-extra"
ATTACHMENT_ROUTES = {
    "a RolePolicyAttachment": ("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "role", "policyArn", False),
    "a PolicyAttachment": ("aws:iam/policyAttachment:PolicyAttachment", "roles", "policyArn", True),
    "a RolePolicyAttachmentsExclusive": ("aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive",
                                         "roleName", "policyArns", True),
    "the role's managedPolicyArns": ("", "", "managedPolicyArns", True),
}
"""Each way Pulumi's AWS provider gives a role a managed policy: the attaching resource's type, its inputs naming
the role and the policy, and whether those take lists."""


def _with_managed_policy(runs, route: str, arn: str, document: dict | None) -> list:
    """`runs` with the scorer's role given the managed policy `arn` by `route`, and with a Policy of the stack of that
    ARN holding `document` unless it is None (an AWS-managed or another stack's policy)."""
    runs = copy.deepcopy(list(runs))
    service = next(run for run in runs if any(r.name.endswith("-batch-scoring-scorer") for r in run.resources))
    role = next(r for r in service.resources if r.name.endswith("-batch-scoring-scorer"))
    type_, role_input, policy_input, lists = ATTACHMENT_ROUTES[route]
    added = []
    if document is not None:
        added.append(RegisteredResource(
            urn=f"{service.stack_urn}::extra-policy", id="extra", type="aws:iam/policy:Policy", name="extra-policy",
            parent=service.stack_urn, custom=True, remote=False, inputs={"policy": json.dumps(document)},
            outputs={"arn": arn}))
    if type_:
        name = role.outputs.get("name") or role.id
        added.append(RegisteredResource(
            urn=f"{service.stack_urn}::extra-attachment", id="attachment", type=type_, name="extra-attachment",
            parent=service.stack_urn, custom=True, remote=False,
            inputs={role_input: [name] if lists else name, policy_input: [arn] if lists else arn}, outputs={}))
    else:
        role.inputs[policy_input] = [arn]
    service.resources.extend(added)
    return runs


@pytest.mark.parametrize("route", list(ATTACHMENT_ROUTES))
def test_a_managed_policy_given_to_a_batch_role_is_read_or_reported(dev, route):
    wide = {"Version": "2012-10-17", "Statement": [
        {"Sid": "DeleteAnything", "Effect": "Allow", "Action": "s3:DeleteObject", "Resource": "*"}]}
    read = [f.message for f in requirement_findings(_with_managed_policy(dev, route, WIDE_POLICY_ARN, wide))
            if check_id(f) == "batch-job-s3-access"]
    assert any("DeleteAnything allows s3:DeleteObject on *" in m for m in read), read
    aws_managed = "arn:aws:iam::aws:policy/AmazonS3FullAccess"
    unread = [f.message for f in requirement_findings(_with_managed_policy(dev, route, aws_managed, None))
              if check_id(f) == "batch-job-s3-access"]
    assert any(f"has {aws_managed} attached, a policy this check cannot read" in m for m in unread), unread


def test_the_data_key_statement_must_hold_only_through_s3_with_or_without_a_key_to_take_the_region_from():
    from policies.documents import _through_s3

    key = "arn:aws:kms:ap-southeast-1:123456789012:key/abc"
    via = {"Condition": {"StringEquals": {"kms:ViaService": "s3.ap-southeast-1.amazonaws.com"}}}
    assert _through_s3(via, key) and _through_s3(via, "")
    assert not _through_s3(via, key.replace("ap-southeast-1", "eu-west-1"))
    assert not _through_s3({"Condition": {"StringEquals": {"kms:ViaService": "logs.ap-southeast-1.amazonaws.com"}}}, "")
    assert not _through_s3({}, "")


def test_a_batch_role_may_read_the_folder_of_served_bundles_but_never_a_whole_bucket():
    from policies.documents import _serving_prefix

    assert _serving_prefix("s3://art/models/serving/dev/0a1b/") == "s3://art/models/serving/dev"
    assert _serving_prefix("s3://art/0a1b/") == "s3://art/0a1b/"
    assert _serving_prefix("s3://art/") == "s3://art/"


FAILING_FIXTURES: dict[str, list[tuple[str, Edit]]] = {
    "cloudtrail-encrypt": [
        ("statement removed", _audit_key_statements(without("CloudTrailEncryptsLogs"))),
        ("another trail's aws:SourceArn", _audit_key_statements(_other_trail)),
        (
            "no aws:SourceArn condition",
            _audit_key_statements(
                _set(
                    "CloudTrailEncryptsLogs",
                    Condition={
                        "StringLike": {
                            "kms:EncryptionContext:aws:cloudtrail:arn": "arn:aws:cloudtrail:*:123456789012:trail/*"
                        }
                    },
                )
            ),
        ),
    ],
    "cloudtrail-describe-key": [
        ("statement removed", _audit_key_statements(without("CloudTrailDescribesKey"))),
        (
            "DescribeKey only under the encryption context",
            _audit_key_statements(_describe_key_under_encryption_context),
        ),
    ],
    "cloudtrail-decrypt": [("statement removed", _audit_key_statements(without("CloudTrailDecryptsWithBucketKey")))],
    "cloudwatch-logs-key": [
        ("statement removed", _key_statements(without("CloudWatchLogsUseKey"))),
        (
            "StringLike instead of ArnLike",
            _key_statements(
                _set(
                    "CloudWatchLogsUseKey",
                    Condition={
                        "StringLike": {
                            "kms:EncryptionContext:aws:logs:arn": "arn:aws:logs:ap-southeast-1:123456789012:*"
                        }
                    },
                )
            ),
        ),
        (
            "another account's groups",
            _key_statements(
                _set(
                    "CloudWatchLogsUseKey",
                    Condition={
                        "ArnLike": {"kms:EncryptionContext:aws:logs:arn": "arn:aws:logs:ap-southeast-1:999999999999:*"}
                    },
                )
            ),
        ),
        (
            "Describe* left out",
            _key_statements(
                _set(
                    "CloudWatchLogsUseKey",
                    Action=["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*"],
                )
            ),
        ),
    ],
    "sns-cloudwatch-alarms": [("principal removed", _key_statements(_without_principal("cloudwatch.amazonaws.com")))],
    "sns-eventbridge": [
        ("statement removed", _key_statements(without("EventBridgePublishesToEncryptedTopic"))),
        (
            "scoped by aws:SourceAccount",
            _key_statements(
                _set(
                    "EventBridgePublishesToEncryptedTopic",
                    Condition={"StringEquals": {"aws:SourceAccount": "123456789012"}},
                )
            ),
        ),
    ],
    "sns-budgets": [("principal removed", _key_statements(_without_principal("budgets.amazonaws.com")))],
    "sagemaker-vpc": [("statement removed", _sagemaker_without("JobNetworkInterfacesInTheVpc"))],
    "sagemaker-kms": [
        ("volume key grant removed", _sagemaker_without("GrantDataKeyForJobVolume")),
        (
            "volume key grant only for AWS resources",
            lambda runs: edit_document(runs, "-ml-sagemaker-access", _set(
                "GrantDataKeyForJobVolume", Condition={"Bool": {"kms:GrantIsForAWSResource": "true"}})),
        ),
        ("output key removed", _sagemaker_without("EncryptJobOutput")),
    ],
    "sagemaker-ecr": [
        ("login removed", _sagemaker_without("EcrLogin")),
        ("layer checks removed", _sagemaker_without("PullTrainingImage")),
    ],
    "lb-controller-policy": [
        (
            "one statement dropped",
            lambda runs: edit_document(runs, "-lb-controller-policy", _controller_policy_changed),
        ),
    ],
    "vpc-flow-logs-role": [
        ("DescribeLogGroups removed", lambda runs: edit_document(runs, "-flow-logs-write", _without_action(
            "logs:DescribeLogGroups"))),
        ("writes another group", lambda runs: edit_document(runs, "-flow-logs-write", _streams_of_another_group)),
    ],
    "fluent-bit-log-group": [
        ("another group", lambda runs: edit_document(runs, "-log-shipping-write-logs", _shipper_writes_elsewhere)),
        (
            "values ship elsewhere",
            lambda runs: edit_inputs(
                runs, "-log-shipping-release", lambda i: i["values"]["cloudWatchLogs"].update(logGroupName="/other")
            ),
        ),
    ],
    "cluster-autoscaler-permissions": [
        ("resize statement removed", _autoscaler_without("ResizeThisClustersNodeGroups")),
        ("describe statement removed", _autoscaler_without("DescribeNodeGroupsAndInstanceTypes")),
        ("DescribeNodegroup removed", _autoscaler_without("ReadManagedNodeGroupLabelsAndTaints")),
        (
            "resize scoped to another cluster's tag",
            lambda runs: edit_document(runs, "-cluster-autoscaler-scale-node-groups", _resize_other_clusters),
        ),
    ],
    "batch-job-s3-access": [
        ("predictions write removed", _scorer_without("WritePredictions")),
        ("silver read removed", _scorer_without("ReadSilverZone")),
        ("silver listing removed", _scorer_without("ListSilverZone")),
        ("bundle read removed", _scorer_without("ReadServedBundle")),
        ("data key removed", _scorer_without("UseDataKeyThroughS3")),
        ("data key through another service", _scorer_edited(_kms_not_through_s3)),
        ("writes anywhere in the lake", _scorer_edited(_scorer_writes_the_whole_lake)),
        ("may delete predictions", _scorer_edited(_scorer_may_delete)),
        (
            "service account names a role nobody creates",
            lambda runs: edit_inputs(runs, "-batch-scoring-service-account", _annotate_other_role),
        ),
    ],
    "irsa-trust": [
        (
            "trust names another service account",
            lambda runs: edit_document(runs, "-inference-model-reader", _trust_another_service_account),
        ),
        (
            "service account names a role nobody creates",
            lambda runs: edit_inputs(runs, "-inference-service-account", _annotate_other_role),
        ),
    ],
}


def test_every_documented_requirement_has_a_failing_fixture():
    assert set(FAILING_FIXTURES) == {r.id for r in REQUIREMENTS}


@pytest.mark.parametrize(
    "row, edit",
    [pytest.param(row, edit, id=f"{row}: {case}") for row, cases in FAILING_FIXTURES.items() for case, edit in cases],
)
def test_a_document_missing_what_the_service_documents_is_reported(dev, row, edit):
    findings = [f for f in requirement_findings(edit(dev)) if f.check == DOCUMENTED and check_id(f) == row]
    assert findings, f"{row} reported nothing"
    requirement = next(r for r in REQUIREMENTS if r.id == row)
    assert all(requirement.doc in f.fix for f in findings)


def test_each_requirement_cites_an_https_page():
    for requirement in REQUIREMENTS:
        assert requirement.doc.startswith("https://"), requirement.id
