"""The lake job's engine in the platform stack (infra/lake_engine.py `LakeEngine`, under the mock runtime): a job role
that reads the lake's raw zone (writing nothing there) and writes only its silver/, gold/ and manifests/ prefixes, an
HTTPS-only security group, an encrypted log group, and the lake image repository's pull permission for EMR
Serverless; the stack outputs `retail lake build --cloud` reads; `retail:lakeEngine` parsed strictly and turned off
cleanly.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from infra.config import LakeEngineConfig, PlatformConfig, parse_section
from infra.lake_engine import IMAGE_PULL_ACTIONS
from infra.platform import lake_engine
from policies.documents import Need, allows
from tests.infra.helpers import statements

ENGINE = "retail-dev-lake-engine"
CONTEXT = {"kms:ViaService": "s3.ap-southeast-1.amazonaws.com"}


def lake_bucket(dev) -> str:
    return dev.stack_outputs["lakeBuckets"]["raw"]


def job_policy(dev) -> list[dict]:
    return statements(dev.named(f"{ENGINE}-job-access"))


def objects(dev, *keys: str) -> tuple[str, ...]:
    return tuple(f"arn:aws:s3:::{lake_bucket(dev)}/{key}" for key in keys)


def test_every_child_is_named_from_the_component_and_parented_to_it(dev):
    (component,) = dev.of_type("retail:infra:LakeEngine")
    children = dev.children(component.urn)
    assert {c.type for c in children} == {
        "aws:cloudwatch/logGroup:LogGroup", "aws:iam/role:Role", "aws:iam/rolePolicy:RolePolicy",
        "aws:ec2/securityGroup:SecurityGroup", "aws:ecr/repositoryPolicy:RepositoryPolicy"}
    assert all(c.name.startswith(f"{ENGINE}-") for c in children)


def test_the_job_role_writes_a_run_s_silver_gold_and_manifest(dev):
    written = objects(dev, "lake/silver/20260105T000000Z-1a2b3c4d/lines/part-0.parquet",
                      "lake/gold/20260105T000000Z-1a2b3c4d/baskets/STORE_REGION=E02/BASKET_TYPE=Top Up/p.parquet",
                      "lake/manifests/20260105T000000Z-1a2b3c4d.json")
    need = Need(("s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"), resources=written)
    assert allows(job_policy(dev), need) == []


def test_the_job_role_reads_raw_silver_and_gold(dev):
    read = objects(dev, "lake/raw/2026-01/transactions.csv", "lake/silver/r/lines/part-0.parquet",
                   "lake/gold/r/featurizer/featurizer.json")
    assert allows(job_policy(dev), Need(("s3:GetObject",), resources=read)) == []


@pytest.mark.parametrize("key", ["lake/raw/2026-01/transactions.csv", "lake/raw/cd52a3009b6e6d66/_source.json",
                                 "lake/predictions/p.parquet", "lake/reports/r.html", "lake/x.json",
                                 "other/silver/r.parquet"])
def test_the_job_role_writes_nothing_outside_silver_gold_and_manifests(dev, key):
    """The job's contract (ml.spark_lake.put_raw): an input in the lake's raw zone is recorded where it is and nothing
    is written under raw/; tests/infra/test_lake_job_requests.py checks the requests the job's code makes."""
    need = Need(("s3:PutObject", "s3:DeleteObject"), resources=objects(dev, key))
    assert allows(job_policy(dev), need) == [f"{a} on {need.resources[0]}" for a in need.actions]


def test_the_job_role_deletes_only_spark_s_task_files_under_silver_and_gold(dev):
    gold_scratch = objects(dev, "lake/gold/r/baskets/_temporary/0/part-0.parquet")
    assert allows(job_policy(dev), Need(("s3:DeleteObject",), resources=gold_scratch)) == []
    manifest = objects(dev, "lake/manifests/r.json")
    assert allows(job_policy(dev), Need(("s3:DeleteObject",), resources=manifest)) != []


def test_the_job_role_touches_no_other_bucket(dev):
    other = tuple(f"arn:aws:s3:::{dev.stack_outputs['lakeBuckets'][zone]}/lake/silver/r.parquet"
                  for zone in ("silver", "gold", "artifacts"))
    assert len(allows(job_policy(dev), Need(("s3:GetObject", "s3:PutObject"), resources=other))) == 6


@pytest.mark.parametrize("prefix", ["lake/raw/2026-01/", "lake/silver/r/lines/", "lake/manifests/", ""])
def test_the_job_role_lists_the_lake_bucket_so_a_missing_key_reads_as_404(dev, prefix):
    """S3 answers a HEAD of a missing key with 404 only to a caller allowed s3:ListBucket on the bucket with no
    `s3:prefix` (HeadObject's API reference), and Spark's S3 client asks whether an output path exists before it
    overwrites it."""
    context = {"s3:prefix": prefix} if prefix else {}
    need = Need(("s3:ListBucket",), resources=(f"arn:aws:s3:::{lake_bucket(dev)}",), context=context)
    assert allows(job_policy(dev), need) == []


def test_the_job_role_uses_the_data_key_only_through_s3(dev):
    key = (dev.stack_outputs["dataKeyArn"],)
    through_s3 = Need(("kms:Decrypt", "kms:GenerateDataKey"), resources=key, context=CONTEXT)
    directly = Need(("kms:Decrypt",), resources=key)
    assert allows(job_policy(dev), through_s3) == [] and allows(job_policy(dev), directly) != []


def test_the_job_role_writes_its_own_log_group(dev):
    group = dev.named(f"{ENGINE}-logs").outputs["arn"]
    need = Need(("logs:CreateLogStream", "logs:PutLogEvents"), resources=(f"{group}:log-stream:lake/x",))
    assert allows(job_policy(dev), need) == []


def test_only_emr_serverless_of_this_account_assumes_the_job_role(dev):
    (trust,) = statements(dev.named(f"{ENGINE}-job"), "assumeRolePolicy")
    assert trust["Principal"] == {"Service": "emr-serverless.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}


def test_the_security_group_has_no_ingress_and_only_https_out(dev):
    group = dev.named(f"{ENGINE}-sg").inputs
    assert group["ingress"] == []
    assert [(e["protocol"], e["fromPort"], e["toPort"]) for e in group["egress"]] == [("tcp", 443, 443)]


def test_the_log_group_is_encrypted_with_the_logs_key_and_expires(dev):
    group = dev.named(f"{ENGINE}-logs").inputs
    assert group["kmsKeyId"] == dev.stack_outputs["logsKeyArn"]
    assert group["retentionInDays"] == 14
    assert group["name"] == "/aws/emr-serverless/retail-dev-lake"


def test_emr_serverless_may_pull_the_lake_image_for_this_account_s_applications_only(dev):
    policy = dev.named(f"{ENGINE}-image-pull").inputs
    assert policy["repository"] == dev.named("retail-dev-registry-lake").outputs["name"]
    (statement,) = json.loads(policy["policy"])["Statement"]
    assert statement["Principal"] == {"Service": "emr-serverless.amazonaws.com"}
    assert sorted(statement["Action"]) == sorted(IMAGE_PULL_ACTIONS)
    # As the EMR Serverless User Guide's repository policy: aws:SourceArn alone, which names account and region.
    assert statement["Condition"] == {
        "ArnLike": {"aws:SourceArn": "arn:aws:emr-serverless:ap-southeast-1:123456789012:/applications/*"}}


def test_the_stack_exports_what_the_lake_program_reads(dev):
    outputs = dev.stack_outputs
    assert outputs["lakeRoot"] == f"s3://{lake_bucket(dev)}/lake"
    assert outputs["lakeJobRoleArn"] == dev.named(f"{ENGINE}-job").outputs["arn"]
    assert outputs["lakeEngineSecurityGroupId"] == dev.named(f"{ENGINE}-sg").id
    assert outputs["lakeEngineLogGroupName"] == "/aws/emr-serverless/retail-dev-lake"
    assert outputs["repositoryUrls"]["lake"].endswith("/retail-dev-registry/lake")


def test_prod_declares_the_same_engine(prod):
    assert prod.named("retail-prod-lake-engine-sg").inputs["ingress"] == []
    assert prod.stack_outputs["lakeRoot"].endswith("/lake")


def platform_config(**lake_engine_settings) -> PlatformConfig:
    return PlatformConfig(project="retail-mlops", environment="dev", region="ap-southeast-1", owner="o",
                          cost_center="c", cluster={"publicAccessCidrs": ["10.0.0.0/8"]},
                          lake_engine=LakeEngineConfig(**lake_engine_settings))


def test_a_stack_with_the_engine_turned_off_declares_none():
    assert lake_engine(platform_config(enabled=False), "1", None, None, None, None, None) is None  # type: ignore[arg-type]


def test_the_engine_without_a_lake_repository_is_an_error_saying_what_to_add():
    registry = SimpleNamespace(repositories={"inference": None, "training": None})
    with pytest.raises(ValueError, match="retail:registry.repositories has no `lake` repository"):
        lake_engine(platform_config(), "1", None, None, None, registry, None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "reported"),
    [({"releaseLabel": "emr-6.15.0"}, "releaseLabel must be an EMR 7.x release"),
     ({"maxCpu": "16"}, "retail:lakeEngine.maxCpu"),
     ({"idleTimeoutMinutes": 0}, "retail:lakeEngine.idleTimeoutMinutes"),
     ({"architecture": "SPARC"}, "retail:lakeEngine.architecture"),
     ({"subnets": ["a"]}, "retail:lakeEngine.subnets: Extra inputs are not permitted")],
)
def test_a_bad_lake_engine_setting_is_an_error_naming_it(raw, reported):
    with pytest.raises(ValueError, match=reported):
        parse_section(LakeEngineConfig, raw, "retail:lakeEngine")
