"""The pieces of `retail lake build --cloud`: inputs from the platform's outputs and the raw input's listing (on moto's
S3), the run id, the image tag, and the program under the mock runtime judged by the policy pack.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import boto3
import botocore.session
import pulumi
import pytest

from infra.config import LakeEngineConfig, parse_section
from infra.offline import preview_stack
from infra.providers.kinds import LAKE_JOB
from infra.providers.lake_job import ENTRY_POINT
from infra.providers.lake_program import (
    LAKE_PROJECT,
    LakeEngineMissing,
    RawObject,
    input_fingerprint,
    lake_image_tag,
    lake_offline_run,
    lake_run_id,
    raw_listing,
    require_lake_outputs,
    require_raw_in_lake,
    stop_for_new_image,
)
from policies.catalog import RULES
from policies.enforcement import load_levels
from policies.evaluate import evaluate, mandatory
from policies.offline import resources_of
from tests.botocore_shapes import model_problems, parameter_problems
from tests.policies.programs import edited
from tests.providers.conftest import REGION
from tests.training.code_checkout import checkout

APPLICATION = "aws:emrserverless/application:Application"
JANUARY = dt.datetime(2026, 1, 5, 8, 30, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _neutral_pulumi_runtime():
    yield
    pulumi.runtime.reset_options()
    pulumi.runtime.set_all_config({})


@pytest.fixture(scope="module")
def platforms() -> dict:
    """The dev and prod platform stacks' offline outputs, as the lake program reads them."""
    outputs = {stack: preview_stack(stack).stack_outputs for stack in ("dev", "prod")}
    pulumi.runtime.reset_options()
    return outputs


def job_of(run) -> dict:
    return next(r.inputs for r in run.resources if r.inputs.get("kind") == LAKE_JOB)


def test_the_program_is_its_own_project_with_the_application_and_one_run(platforms):
    run = lake_offline_run("dev", platforms["dev"])
    assert (run.project, run.stack) == (LAKE_PROJECT, "lake-dev")
    (application,) = run.of_type(APPLICATION)
    assert application.parent == run.of_type("retail:infra:LakeApplication")[0].urn
    assert job_of(run)["application_id"] == application.id


def test_the_application_runs_the_lake_image_in_the_platform_s_private_subnets_and_security_group(platforms):
    outputs = platforms["dev"]
    (application,) = lake_offline_run("dev", outputs).of_type(APPLICATION)
    spec = application.inputs
    assert spec["networkConfiguration"] == {"subnetIds": outputs["privateSubnetIds"],
                                            "securityGroupIds": [outputs["lakeEngineSecurityGroupId"]]}
    assert spec["imageConfiguration"]["imageUri"].startswith(f"{outputs['repositoryUrls']['lake']}:lake-")
    assert (spec["releaseLabel"], spec["type"], spec["architecture"]) == ("emr-7.9.0", "spark", "X86_64")
    assert spec["autoStopConfiguration"] == {"enabled": True, "idleTimeoutMinutes": 15}
    assert "initialCapacities" not in spec, "no pre-initialized capacity bills between runs"
    logging = spec["monitoringConfiguration"]["cloudwatchLoggingConfiguration"]
    assert logging["logGroupName"] == outputs["lakeEngineLogGroupName"] and logging["enabled"] is True
    # Without logTypes EMR Serverless would publish the driver's stdout and stderr only.
    assert logging["logTypes"] == [{"name": "SPARK_DRIVER", "values": ["STDOUT", "STDERR"]},
                                   {"name": "SPARK_EXECUTOR", "values": ["STDOUT", "STDERR"]}]


def test_the_run_writes_the_platform_s_lake_as_the_platform_s_job_role(platforms):
    outputs = platforms["dev"]
    job = job_of(lake_offline_run("dev", outputs))
    lake = outputs["lakeRoot"]
    assert job["role_arn"] == outputs["lakeJobRoleArn"] and job["entry_point"] == ENTRY_POINT
    assert job["arguments"] == ["--raw", f"{lake}/raw/offline/transactions.csv", "--lake", lake,
                                "--run-id", job["run_id"]]
    assert job["manifest_uri"] == f"{lake}/manifests/{job['run_id']}.json"
    assert job["execution_timeout_minutes"] == 120


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_lake_stack_breaks_no_rule_at_the_platform_stack_s_levels(platforms, stack):
    run = lake_offline_run(stack, platforms[stack])
    assert evaluate(RULES, resources_of(run), load_levels(RULES, stack)) == []


def test_an_application_outside_the_vpc_is_a_mandatory_violation(platforms):
    run = edited(lake_offline_run("prod", platforms["prod"]), "retail-prod-lake-spark", ("networkConfiguration",), None)
    violations = mandatory(evaluate(RULES, resources_of(run), load_levels(RULES, "prod")))
    assert [(v.rule, v.message) for v in violations] == [
        ("emr-serverless-in-vpc", "runs its workers outside the VPC (no subnets and no security group)")]


def test_a_platform_without_the_lake_engine_is_refused_naming_what_is_missing(platforms):
    outputs = platforms["dev"] | {"lakeJobRoleArn": "", "lakeRoot": ""}
    with pytest.raises(LakeEngineMissing, match=r"no \(or empty\) output\(s\) lakeRoot, lakeJobRoleArn: deploy "
                                                r"the current platform with retail:lakeEngine enabled"):
        require_lake_outputs("dev", outputs)


@pytest.mark.parametrize("raw", ["s3://other-bucket/raw/t.csv", "s3://lake-raw/lake/silver/t.csv",
                                 "s3://lake-raw/lake/raw/", "s3://lake-raw/lake-2/raw/t.csv"])
def test_raw_input_outside_the_lake_s_raw_zone_is_refused_saying_where_to_copy_it(raw):
    with pytest.raises(ValueError, match=r"not under the lake's raw zone s3://lake-raw/lake/raw/: .*aws s3 cp"):
        require_raw_in_lake(raw, "s3://lake-raw/lake")


def test_raw_input_in_the_raw_zone_is_its_bucket_and_prefix():
    assert require_raw_in_lake("s3://lake-raw/lake/raw/2026-01/", "s3://lake-raw/lake") == ("lake-raw",
                                                                                           "lake/raw/2026-01/")


@pytest.fixture
def raw_bucket(moto_endpoint, request):
    bucket = f"raw-{hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:12]}"
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    for key in ("lake/raw/2026-01/transactions_202601.csv", "lake/raw/2026-01/transactions_202602.csv.gz",
                "lake/raw/2026-01/a.csv", "lake/raw/2026-01/notes.txt", "lake/raw/2026-01/old/transactions_202552.csv",
                "lake/raw/2026-01x/c.csv", "lake/raw/2025/a.csv"):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    return s3, bucket


def test_the_listing_holds_what_the_job_reads_a_folder_s_weekly_files_or_the_file_named(raw_bucket):
    """The job's own rule (ml.score.transaction_files): a folder's direct children named transactions_YYYYWW.csv,
    or the one file the URI names."""
    s3, bucket = raw_bucket
    for prefix in ("lake/raw/2026-01", "lake/raw/2026-01/"):
        assert [o.key for o in raw_listing(s3, bucket, prefix)] == [
            "lake/raw/2026-01/transactions_202601.csv", "lake/raw/2026-01/transactions_202602.csv.gz"]
    assert [o.key for o in raw_listing(s3, bucket, "lake/raw/2026-01x/c.csv")] == ["lake/raw/2026-01x/c.csv"]


def test_a_raw_folder_without_weekly_files_is_refused_before_a_paid_run(raw_bucket):
    s3, bucket = raw_bucket
    for prefix in ("lake/raw/2025/", "lake/raw/2026-01x", "lake/raw/none.csv"):
        with pytest.raises(ValueError, match=rf"s3://{bucket}/{prefix} is neither a file nor a folder holding "
                                             "weekly files named transactions_YYYYWW.csv"):
            raw_listing(s3, bucket, prefix)


def listing(etag: str = "e1", newest: dt.datetime = JANUARY) -> list[RawObject]:
    return [RawObject("lake/raw/a.csv", 10, "e0", JANUARY - dt.timedelta(days=3)),
            RawObject("lake/raw/b.csv", 20, etag, newest)]


def test_the_run_id_is_the_newest_file_s_time_and_the_same_for_the_same_input_and_image():
    objects = listing()
    run = lake_run_id(objects, input_fingerprint(objects), "lake@sha256:1")
    assert run.startswith("20260105T083000Z-") and len(run.split("-")[1]) == 8
    assert lake_run_id(list(reversed(objects)), input_fingerprint(list(reversed(objects))), "lake@sha256:1") == run


def test_new_data_or_a_new_image_is_a_new_run():
    base = lake_run_id(listing(), input_fingerprint(listing()), "lake@sha256:1")
    assert lake_run_id(listing("e2"), input_fingerprint(listing("e2")), "lake@sha256:1") != base
    assert lake_run_id(listing(), input_fingerprint(listing()), "lake@sha256:2") != base


def test_the_image_tag_follows_ml_the_lock_and_dockerfile_lake(tmp_path):
    repo = checkout(tmp_path / "repo", extra=("Dockerfile.lake",))
    tag = lake_image_tag(repo)
    assert tag.startswith("lake-") and len(tag) == len("lake-") + 16
    (repo / "Dockerfile.lake").write_text((repo / "Dockerfile.lake").read_text() + "# changed\n")
    assert lake_image_tag(repo) != tag
    changed_tag = lake_image_tag(repo)
    (repo / "ml" / "spark_lake_note.py").write_text("# a new module of the job's package\n")
    assert lake_image_tag(repo) != changed_tag


def test_the_application_is_a_create_application_request_botocore_s_model_accepts(platforms):
    # AWS's id formats (the mocks' ids are the logical names, longer than AWS's 32 characters)
    outputs = platforms["prod"] | {"privateSubnetIds": ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"],
                                   "lakeEngineSecurityGroupId": "sg-0a1b2c3d4e5f60003"}
    (application,) = lake_offline_run("prod", outputs).of_type(APPLICATION)
    spec = application.inputs
    logging = spec["monitoringConfiguration"]["cloudwatchLoggingConfiguration"]
    request = {
        "name": spec["name"], "releaseLabel": spec["releaseLabel"], "type": spec["type"], "clientToken": "t",
        "architecture": spec["architecture"], "maximumCapacity": spec["maximumCapacity"],
        "autoStartConfiguration": spec["autoStartConfiguration"],
        # Pulumi's wire format carries every number as a double; the provider sends the schema's integer
        "autoStopConfiguration": {**spec["autoStopConfiguration"],
                                  "idleTimeoutMinutes": int(spec["autoStopConfiguration"]["idleTimeoutMinutes"])},
        "networkConfiguration": spec["networkConfiguration"], "imageConfiguration": spec["imageConfiguration"],
        # pulumi-aws spells it cloudwatchLoggingConfiguration, its logTypes a list of {name, values}; the API
        # cloudWatchLoggingConfiguration, logTypes a map of name to values
        "monitoringConfiguration": {"cloudWatchLoggingConfiguration": {
            **logging, "logTypes": {entry["name"]: entry["values"] for entry in logging["logTypes"]}}},
    }
    shape = botocore.session.get_session().get_service_model("emr-serverless").operation_model(
        "CreateApplication").input_shape
    assert parameter_problems(request, shape) == [] and model_problems(request, shape, "CreateApplication") == []


@pytest.mark.parametrize(("key", "value"), [("maxCpu", "0 vCPU"), ("maxMemory", "0 GB"), ("maxDisk", "20")])
def test_a_capacity_emr_serverless_would_refuse_is_refused_in_the_stack_file(key, value):
    with pytest.raises(ValueError, match=f"retail:lakeEngine.{key}"):
        parse_section(LakeEngineConfig, {key: value}, "retail:lakeEngine")


@pytest.fixture
def emr(moto_endpoint):
    return boto3.client("emr-serverless", region_name=REGION)


def started(emr) -> str:
    return emr.create_application(name="retail-dev-lake", releaseLabel="emr-7.9.0", type="SPARK")["applicationId"]


def test_nothing_is_stopped_for_the_first_up_the_same_image_or_a_stopped_application(emr):
    application_id = started(emr)
    assert stop_for_new_image(emr, {}, "lake@sha256:2") is False
    assert stop_for_new_image(emr, {"applicationId": application_id, "imageUri": "lake@sha256:2"},
                              "lake@sha256:2") is False
    emr.stop_application(applicationId=application_id)
    assert stop_for_new_image(emr, {"applicationId": application_id, "imageUri": "lake@sha256:1"},
                              "lake@sha256:2") is False


def test_a_started_application_is_stopped_before_it_takes_a_new_image(emr):
    application_id = started(emr)
    previous = {"applicationId": application_id, "imageUri": "lake@sha256:1"}
    assert stop_for_new_image(emr, previous, "lake@sha256:2", poll_seconds=0.01) is True
    assert emr.get_application(applicationId=application_id)["application"]["state"] == "STOPPED"


def test_an_application_that_does_not_stop_is_an_error_saying_to_try_again(emr, monkeypatch):
    from moto.emrserverless.models import EMRServerlessBackend

    monkeypatch.setattr(EMRServerlessBackend, "stop_application", lambda self, application_id: None)
    previous = {"applicationId": started(emr), "imageUri": "lake@sha256:1"}
    with pytest.raises(TimeoutError, match="is still STARTED 0 s after StopApplication"):
        stop_for_new_image(emr, previous, "lake@sha256:2", poll_seconds=0.01, timeout_seconds=0.05)
