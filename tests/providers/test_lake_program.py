"""The pieces of `retail lake build --cloud`: inputs from the platform's outputs and the raw input's listing (on moto's
S3), the run id, the image tag, and the program under the mock runtime judged by the policy pack.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import subprocess
from pathlib import Path

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
    LakeInputs,
    RawObject,
    declared_application,
    input_fingerprint,
    lake_image_build_args,
    lake_image_tag,
    lake_offline_run,
    lake_run_id,
    raw_listing,
    require_lake_outputs,
    require_raw_in_lake,
    stop_for_update,
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
                                "--run-id", job["run_id"], "--max-memory-gb", "10"]
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
    settings = LakeEngineConfig()
    tag = lake_image_tag(repo, settings)
    assert tag.startswith("lake-emr-7.9.0-") and len(tag) == len("lake-emr-7.9.0-") + 16
    assert lake_image_tag(repo, LakeEngineConfig(releaseLabel="emr-7.10.0")).startswith("lake-emr-7.10.0-")
    assert lake_image_tag(repo, LakeEngineConfig(baseImageTag="20250801")) != tag
    (repo / "Dockerfile.lake").write_text((repo / "Dockerfile.lake").read_text() + "# changed\n")
    assert lake_image_tag(repo, settings) != tag
    changed_tag = lake_image_tag(repo, settings)
    (repo / "ml" / "spark_lake_note.py").write_text("# a new module of the job's package\n")
    assert lake_image_tag(repo, settings) != changed_tag


def committed_repository(folder: Path) -> tuple[Path, str]:
    """A git repository with one commit of one tracked file; and that commit."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]
    folder.mkdir()
    (folder / "a.txt").write_text("one\n")
    for command in (["init", "-q"], ["add", "a.txt"], ["commit", "-q", "-m", "one"]):
        subprocess.run([*git, *command], cwd=folder, check=True)
    return folder, subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
                                  check=True).stdout.strip()


def test_the_image_is_built_on_the_application_s_release_and_names_its_commit(tmp_path, monkeypatch):
    """Dockerfile.lake's FROM takes EMR_RELEASE and EMR_BASE_TAG; ml.lineage.git_commit reads RETAIL_GIT_COMMIT
    inside the image."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    repo, head = committed_repository(tmp_path / "repo")
    args = lake_image_build_args(repo, LakeEngineConfig(releaseLabel="emr-7.10.0", baseImageTag="20250801"))
    assert args == {"EMR_RELEASE": "emr-7.10.0", "EMR_BASE_TAG": "20250801", "RETAIL_GIT_COMMIT": head}


def test_no_image_is_built_from_uncommitted_changes(tmp_path, monkeypatch):
    """The tag hashes the code, not the commit: an image built from a dirty tree would name `<sha>-dirty` for every
    later run on the same code."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    repo, head = committed_repository(tmp_path / "repo")
    (repo / "a.txt").write_text("two\n")
    with pytest.raises(ValueError, match=f"uncommitted changes to tracked files \\(HEAD {head}\\).*--image-uri"):
        lake_image_build_args(repo, LakeEngineConfig())


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


def inputs(**changes) -> LakeInputs:
    base = LakeInputs(stack="dev", region=REGION, subnet_ids=["subnet-1", "subnet-2"], security_group_id="sg-1",
                      role_arn="arn:aws:iam::123456789012:role/job",
                      log_group_name="/aws/emr-serverless/retail-dev-lake",
                      image_uri="lake@sha256:2", lake_root="s3://raw/lake", raw_uri="s3://raw/lake/raw/t.csv",
                      input_fingerprint="f" * 64, run_id="r")
    return dataclasses.replace(base, **changes)


def started(emr, declared: dict | None = None) -> str:
    """A STARTED application on the server; with `declared`, holding those settings as GetApplication answers them
    (moto keeps no image, architecture or logging of its own: they are set on its model, in this process)."""
    from moto.emrserverless.models import emrserverless_backends

    declared = declared or {}
    application_id = emr.create_application(
        name="retail-dev-lake", releaseLabel=declared.get("releaseLabel", "emr-7.9.0"), type="SPARK",
        **{key: declared[key] for key in ("maximumCapacity", "autoStartConfiguration", "autoStopConfiguration",
                                          "networkConfiguration") if key in declared})["applicationId"]
    model = emrserverless_backends["123456789012"][REGION].applications[application_id]
    if declared:
        model.architecture = declared["architecture"]
        model.image_configuration = declared["imageConfiguration"] | {"resolvedImageDigest": "sha256:2"}
        model.monitoring_configuration = declared["monitoringConfiguration"]
    return application_id


def state(emr, application_id: str) -> str:
    return emr.get_application(applicationId=application_id)["application"]["state"]


def test_the_declared_application_is_what_the_program_declares(platforms):
    """declared_application (GetApplication's shape) and LakeApplication (Pulumi's) are written apart: they agree."""
    outputs = platforms["dev"]
    (application,) = lake_offline_run("dev", outputs).of_type(APPLICATION)
    spec = application.inputs
    logging = spec["monitoringConfiguration"]["cloudwatchLoggingConfiguration"]
    declared = declared_application(inputs(subnet_ids=outputs["privateSubnetIds"],
                                           security_group_id=outputs["lakeEngineSecurityGroupId"],
                                           log_group_name=outputs["lakeEngineLogGroupName"],
                                           image_uri=spec["imageConfiguration"]["imageUri"]))
    for key in ("maximumCapacity", "autoStopConfiguration", "autoStartConfiguration", "releaseLabel", "architecture",
                "networkConfiguration", "imageConfiguration"):
        assert declared[key] == spec[key], key
    cloudwatch = declared["monitoringConfiguration"]["cloudWatchLoggingConfiguration"]
    assert cloudwatch == {**logging, "logTypes": {entry["name"]: entry["values"] for entry in logging["logTypes"]}}


def test_nothing_is_stopped_for_the_first_up_a_gone_application_or_one_as_declared(emr):
    declared = declared_application(inputs())
    assert stop_for_update(emr, None, declared) == []
    assert stop_for_update(emr, "00fnosuchapplication", declared) == []
    application_id = started(emr, declared)
    assert stop_for_update(emr, application_id, declared) == []
    assert state(emr, application_id) == "STARTED", "a new run on the same application needs no update"


@pytest.mark.parametrize(("change", "reported"), [
    ({"image_uri": "lake@sha256:3"}, "imageConfiguration"),
    ({"settings": LakeEngineConfig(maxCpu="32 vCPU")}, "maximumCapacity"),
    ({"settings": LakeEngineConfig(idleTimeoutMinutes=30)}, "autoStopConfiguration"),
    ({"settings": LakeEngineConfig(releaseLabel="emr-7.10.0")}, "releaseLabel"),
    ({"subnet_ids": ["subnet-3"]}, "networkConfiguration"),
    ({"log_group_name": "/aws/emr-serverless/other"}, "monitoringConfiguration"),
])
def test_any_setting_update_application_changes_stops_the_started_application_first(emr, change, reported):
    application_id = started(emr, declared_application(inputs()))
    assert stop_for_update(emr, application_id, declared_application(inputs(**change)), poll_seconds=0.01) == [
        reported]
    assert state(emr, application_id) == "STOPPED"


def test_a_stopped_application_is_left_as_it_is(emr, monkeypatch):
    from moto.emrserverless.models import EMRServerlessBackend

    application_id = started(emr)
    emr.stop_application(applicationId=application_id)
    monkeypatch.setattr(EMRServerlessBackend, "stop_application", lambda self, application_id: pytest.fail("stopped"))
    assert stop_for_update(emr, application_id, declared_application(inputs())) != []


@pytest.mark.parametrize(("passing", "then", "stopped"), [("STARTING", "STARTED", True),
                                                          ("STOPPING", "STOPPED", False),
                                                          ("CREATING", "CREATED", False)])
def test_an_application_passing_between_states_is_waited_for(emr, monkeypatch, passing, then, stopped):
    """STARTING: wait until STARTED, then stop; STOPPING and CREATING: wait, without StopApplication."""
    from moto.emrserverless.models import EMRServerlessBackend

    application_id = started(emr)
    left, stops = [passing, passing], []
    get = EMRServerlessBackend.get_application

    def get_application(self, application_id):
        application = get(self, application_id)
        if left:
            left.pop()
            application.state = passing if left else then
        return application

    def stop_application(self, application_id):
        stops.append(application_id)
        self.applications[application_id].state = "STOPPED"

    monkeypatch.setattr(EMRServerlessBackend, "get_application", get_application)
    monkeypatch.setattr(EMRServerlessBackend, "stop_application", stop_application)
    assert stop_for_update(emr, application_id, declared_application(inputs()), poll_seconds=0.01) != []
    assert stops == ([application_id] if stopped else [])


def test_an_application_that_does_not_stop_is_an_error_saying_to_try_again(emr, monkeypatch):
    from moto.emrserverless.models import EMRServerlessBackend

    monkeypatch.setattr(EMRServerlessBackend, "stop_application", lambda self, application_id: None)
    with pytest.raises(TimeoutError, match="is still STARTED 0 s after StopApplication"):
        stop_for_update(emr, started(emr), declared_application(inputs()), poll_seconds=0.01, timeout_seconds=0.05)


def run_running(application_id: str, job_run_id: str) -> None:
    """Put a run of the server in RUNNING (moto's runs are SUCCESS at once)."""
    from moto.emrserverless.models import emrserverless_backends

    (run,) = [r for r in emrserverless_backends["123456789012"][REGION].job_runs[application_id] if r.id == job_run_id]
    run.state = "RUNNING"


def test_an_application_with_unfinished_runs_is_not_stopped_and_the_runs_are_named(emr):
    """StopApplication needs every run final: a RUNNING one is named with how to cancel it, and nothing is stopped."""
    declared = declared_application(inputs())
    application_id = started(emr, declared)
    running = emr.start_job_run(applicationId=application_id, executionRoleArn="arn:aws:iam::123456789012:role/job",
                                clientToken="t1", jobDriver={"sparkSubmit": {"entryPoint": "s3://b/e.py"}})["jobRunId"]
    run_running(application_id, running)
    with pytest.raises(ValueError, match=rf"job runs are not finished: {running} \(RUNNING\).*cancel-job-run "
                                         rf"--application-id {application_id}"):
        stop_for_update(emr, application_id, declared_application(inputs(image_uri="lake@sha256:3")), poll_seconds=0.01)
    assert state(emr, application_id) == "STARTED"


def test_finished_runs_do_not_keep_the_application_from_stopping(emr):
    application_id = started(emr, declared_application(inputs()))
    run = emr.start_job_run(applicationId=application_id, executionRoleArn="arn:aws:iam::123456789012:role/job",
                            clientToken="t2", jobDriver={"sparkSubmit": {"entryPoint": "s3://b/e.py"}})["jobRunId"]
    emr.cancel_job_run(applicationId=application_id, jobRunId=run)
    assert stop_for_update(emr, application_id, declared_application(inputs(image_uri="lake@sha256:3")),
                           poll_seconds=0.01) == ["imageConfiguration"]


def test_a_terminated_application_is_an_error_saying_to_drop_it_from_the_state(emr):
    """A TERMINATED application can be neither updated nor run on, changed settings or not."""
    declared = declared_application(inputs())
    application_id = started(emr, declared)
    emr.stop_application(applicationId=application_id)
    emr.delete_application(applicationId=application_id)
    assert state(emr, application_id) == "TERMINATED"
    with pytest.raises(ValueError, match="is TERMINATED .*pulumi state delete"):
        stop_for_update(emr, application_id, declared)
