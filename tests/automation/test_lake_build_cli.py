"""`retail lake build` up to its boundaries: with --cloud, the platform stack read, the raw input listed and the lake
image built and pushed (S3 and ECR on moto, docker and Pulumi recorded), and the lake stack brought up in its own
project with the policy pack; without it, ml.spark_lake.main called with the contract's arguments.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
import types
from pathlib import Path

import boto3
import pulumi
import pytest
from typer.testing import CliRunner

from cli import train as train_cli
from cli.main import app
from infra import automation
from infra.config import LakeEngineConfig
from infra.offline import run_offline
from infra.providers.kinds import LAKE_JOB
from infra.providers.lake_program import LAKE_PROJECT, lake_image_tag
from tests.providers.test_lake_program import run_running, started
from tests.training.code_checkout import checkout
from tests.training.fakes import PLATFORM_OUTPUTS, REGION, REGISTRY, RecordingDocker, RunnerFactory, push_manifest

ROOT = Path(__file__).resolve().parents[2]
LAKE_OUTPUTS = {"lakeJobRoleArn": "arn:aws:iam::123456789012:role/retail-dev-lake-engine-job-1a2b3c4",
                "lakeEngineSecurityGroupId": "sg-0a1b2c3d4e5f60003",
                "lakeEngineLogGroupName": "/aws/emr-serverless/retail-dev-lake"}


@pytest.fixture(autouse=True)
def _neutral_pulumi_runtime():
    yield
    pulumi.runtime.reset_options()
    pulumi.runtime.set_all_config({})


@pytest.fixture
def platform(moto_endpoint, request) -> dict:
    """A deployed dev platform of this test's own on moto: outputs with the lake engine's, its `lake` repository, and
    two weekly raw files under the lake's raw zone."""
    suffix = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:7]
    raw = f"retail-dev-lake-raw-{suffix}"
    repositories = {i: f"{REGISTRY}/retail-dev-registry-{suffix}/{i}" for i in ("inference", "training", "lake")}
    ecr = boto3.client("ecr", region_name=REGION)
    for url in repositories.values():
        ecr.create_repository(repositoryName=url.split("/", 1)[1], imageTagMutability="IMMUTABLE")
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=raw, CreateBucketConfiguration={"LocationConstraint": REGION})
    for name in ("transactions_202601.csv", "transactions_202602.csv"):
        s3.put_object(Bucket=raw, Key=f"lake/raw/2026-01/{name}", Body=b"BASKET_ID,SPEND\n1,2.5\n")
    return json.loads(json.dumps(PLATFORM_OUTPUTS)) | LAKE_OUTPUTS | {
        "lakeBuckets": {**PLATFORM_OUTPUTS["lakeBuckets"], "raw": raw},
        "repositoryUrls": repositories,
        "lakeRoot": f"s3://{raw}/lake",
    }


@pytest.fixture
def build(platform, monkeypatch, tmp_path):
    """Run `retail lake build --cloud --stack dev --project-dir <copy> ...`; Pulumi CLI 'installed'."""
    repo = checkout(tmp_path / "repo", extra=("Pulumi.yaml", "Pulumi.dev.yaml", "Dockerfile.lake"))
    monkeypatch.setattr(automation.shutil, "which", lambda name: f"/usr/local/bin/{name}")

    def invoke(*args: str, outputs: dict | None = None, lake_outputs: dict | None = None):
        runners = RunnerFactory(outputs_by_stack={"dev": platform if outputs is None else outputs,
                                                  "lake-dev": lake_outputs or {}})
        docker = RecordingDocker()
        monkeypatch.setattr(train_cli, "stack_runner", runners)
        monkeypatch.setattr(train_cli, "docker_runner", lambda: docker)
        result = CliRunner().invoke(app, ["lake", "build", "--cloud", "--stack", "dev", "--project-dir", str(repo),
                                          *args])
        return types.SimpleNamespace(result=result, runners=runners, docker=docker, repo=repo)

    return invoke


def lake_runner(run):
    (runner,) = [r for r in run.runners.runners if r.program is not None]
    return runner


def job_inputs(run) -> dict:
    """The LakeJob's inputs, from running the program the CLI handed to Pulumi (mock runtime)."""
    offline = run_offline(lake_runner(run).program, project=LAKE_PROJECT, stack="lake-dev")
    return next(r.inputs for r in offline.resources if r.inputs.get("kind") == LAKE_JOB)


def test_the_lake_stack_comes_up_in_its_own_project_with_the_platform_stack_s_policy_levels(build, platform):
    run = build("--raw", f"{platform['lakeRoot']}/raw/2026-01/")
    assert run.result.exit_code == 0, run.result.output
    lake = lake_runner(run)
    assert lake.project_name == LAKE_PROJECT and lake.project_at_up == LAKE_PROJECT
    assert lake.calls == [("create_stack", "lake-dev"), ("set_config", "lake-dev"), ("outputs", "lake-dev"),
                          ("up", "lake-dev", "dev.json")]
    assert lake.config["lake-dev"] == ({"aws:region": REGION}, {})
    assert not lake.work_dir.is_relative_to(run.repo) and not lake.work_dir.exists()
    (platform_runner,) = [r for r in run.runners.runners if r.program is None]
    assert platform_runner.calls == [("select_stack", "dev"), ("outputs", "dev")]


def test_the_lake_image_is_built_from_dockerfile_lake_and_the_run_names_it_by_digest(build, platform):
    run = build("--raw", f"{platform['lakeRoot']}/raw/2026-01/")
    assert run.result.exit_code == 0, run.result.output
    (build_args,) = [args for args, _ in run.docker.calls if args[:2] == ["buildx", "build"]]
    assert build_args[build_args.index("--file") + 1] == str(run.repo / "Dockerfile.lake")
    tag = lake_image_tag(run.repo, LakeEngineConfig())
    assert build_args[build_args.index("--tag") + 1] == f"{platform['repositoryUrls']['lake']}:{tag}"
    passed = [build_args[i + 1] for i, arg in enumerate(build_args) if arg == "--build-arg"]
    assert passed[:2] == ["EMR_RELEASE=emr-7.9.0", "EMR_BASE_TAG=20250425"] and len(passed) == 3
    assert passed[2].startswith("RETAIL_GIT_COMMIT=")
    assert job_inputs(run)["image_uri"].startswith(f"{platform['repositoryUrls']['lake']}@sha256:")


def test_the_run_reads_the_raw_folder_and_its_id_follows_the_listing(build, platform):
    raw = f"{platform['lakeRoot']}/raw/2026-01/"
    job = job_inputs(build("--raw", raw, "--image-uri", f"{platform['repositoryUrls']['lake']}@sha256:{'ab' * 32}"))
    assert job["raw_uri"] == raw and job["lake_root"] == platform["lakeRoot"]
    assert job["role_arn"] == LAKE_OUTPUTS["lakeJobRoleArn"]
    today = dt.datetime.now(dt.UTC)
    assert job["run_id"].startswith(f"{today:%Y%m%dT}")  # the files' modification time: moto stamps them now
    assert job["manifest_uri"] == f"{platform['lakeRoot']}/manifests/{job['run_id']}.json"


def test_a_given_image_is_used_as_is_without_docker(build, platform):
    image = f"{platform['repositoryUrls']['lake']}@sha256:{'ab' * 32}"
    run = build("--raw", f"{platform['lakeRoot']}/raw/2026-01/transactions_202601.csv", "--image-uri", image)
    assert run.result.exit_code == 0, run.result.output
    assert run.docker.calls == [] and job_inputs(run)["image_uri"] == image


def test_the_manifest_to_train_on_is_printed_last(build, platform):
    manifest = f"{platform['lakeRoot']}/manifests/20260105T000000Z-1a2b3c4d.json"
    run = build("--raw", f"{platform['lakeRoot']}/raw/2026-01/", "--image-uri",
                f"{platform['repositoryUrls']['lake']}@sha256:{'ab' * 32}",
                lake_outputs={"manifestUri": manifest, "runId": "20260105T000000Z-1a2b3c4d", "jobRunId": "00f1"})
    assert run.result.exit_code == 0, run.result.output
    assert run.result.output.strip().splitlines()[-1] == f"manifest={manifest}"
    assert f"retail train --cloud --stack dev --manifest {manifest}" in " ".join(run.result.output.split())


@pytest.mark.parametrize("raw", ["s3://elsewhere/t.csv", "s3://{raw}/lake/silver/t.csv"])
def test_raw_input_outside_the_lake_s_raw_zone_exits_2_before_anything_runs(build, platform, raw):
    run = build("--raw", raw.format(raw=platform["lakeBuckets"]["raw"]))
    assert run.result.exit_code == 2
    assert "not under the lake's raw zone" in run.result.output
    assert [r for r in run.runners.runners if r.program is not None] == [] and run.docker.calls == []


def test_a_platform_without_the_lake_engine_exits_2_saying_what_to_deploy(build, platform):
    run = build("--raw", f"{platform['lakeRoot']}/raw/2026-01/", outputs=platform | {"lakeJobRoleArn": ""})
    assert run.result.exit_code == 2
    assert "lakeJobRoleArn" in run.result.output and "retail:lakeEngine enabled" in run.result.output


@pytest.mark.parametrize("flag", [["--lake", "s3://b/lake"], ["--run-id", "r"], ["--master", "local[2]"]])
def test_local_only_options_with_cloud_exit_2(build, platform, flag):
    run = build("--raw", f"{platform['lakeRoot']}/raw/2026-01/", *flag)
    assert run.result.exit_code == 2 and "for a local run only" in run.result.output


def test_without_the_pulumi_cli_the_cloud_build_exits_2_saying_how_to_install_it(monkeypatch):
    monkeypatch.setattr(automation.shutil, "which", lambda _: None)
    result = CliRunner().invoke(app, ["lake", "build", "--cloud", "--raw", "s3://b/lake/raw/t.csv"])
    assert result.exit_code == 2
    assert "The Pulumi CLI is required for `retail lake build --cloud`" in result.output


@pytest.fixture
def spark_lake(monkeypatch) -> list[list[str]]:
    """ml.spark_lake with a `main` that records its argv (the job itself is tested with ml/)."""
    calls: list[list[str]] = []
    module = types.ModuleType("ml.spark_lake")
    module.main = lambda argv=None: calls.append(list(argv)) or {}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ml.spark_lake", module)
    return calls


def test_a_local_build_runs_the_job_in_process_with_the_contract_s_arguments(spark_lake, tmp_path):
    result = CliRunner().invoke(app, ["lake", "build", "--raw", "data/t.csv", "--lake", str(tmp_path / "lake"),
                                      "--run-id", "r1", "--master", "local[2]"])
    assert result.exit_code == 0, result.output
    assert spark_lake == [["--raw", "data/t.csv", "--lake", str(tmp_path / "lake"), "--run-id", "r1",
                           "--master", "local[2]"]]


def test_a_local_build_defaults_to_the_configured_lake_root_and_a_local_master(spark_lake, monkeypatch, tmp_path):
    # Without a master the job would take spark-submit's defaults (200 shuffle partitions, a UI, progress bars).
    monkeypatch.setenv("RETAIL_LAKE_ROOT", str(tmp_path / "configured"))
    result = CliRunner().invoke(app, ["lake", "build", "--raw", "data/t.csv"])
    assert result.exit_code == 0, result.output
    assert spark_lake == [["--raw", "data/t.csv", "--lake", str(tmp_path / "configured"), "--master", "local[*]"]]


def started_application(platform: dict, image: str) -> str:
    """A STARTED lake application on the server, holding what the program declares for `image` (the dev stack file's
    retail:lakeEngine, the platform's network and log group)."""
    from infra.providers.lake_program import RawObject, declared_application, lake_engine_config, lake_inputs

    raw = RawObject("lake/raw/2026-01/transactions_202601.csv", 1, "e", dt.datetime.now(dt.UTC))
    inputs = lake_inputs("dev", platform, raw_uri=f"{platform['lakeRoot']}/raw/2026-01/", objects=[raw],
                         image_uri=image, settings=lake_engine_config(ROOT, "dev"), tags={}, region=REGION)
    application_id = started(boto3.client("emr-serverless", region_name=REGION), declared_application(inputs))
    assert application_state(application_id) == "STARTED"
    return application_id


def application_state(application_id: str) -> str:
    client = boto3.client("emr-serverless", region_name=REGION)
    return client.get_application(applicationId=application_id)["application"]["state"]


def test_a_new_image_stops_the_started_application_before_the_up_that_updates_it(build, platform):
    image = f"{platform['repositoryUrls']['lake']}@sha256:{'ab' * 32}"
    application_id = started_application(platform, image.replace("ab", "cd"))
    run = build("--raw", f"{platform['lakeRoot']}/raw/2026-01/", "--image-uri", image,
                lake_outputs={"applicationId": application_id})
    assert run.result.exit_code == 0, run.result.output
    assert application_state(application_id) == "STOPPED"
    assert "Stopped the lake application so that it can be updated (imageConfiguration)" in run.result.output


def test_the_same_application_settings_leave_it_running_for_the_next_run(build, platform):
    image = f"{platform['repositoryUrls']['lake']}@sha256:{'ab' * 32}"
    application_id = started_application(platform, image)
    run = build("--raw", f"{platform['lakeRoot']}/raw/2026-01/", "--image-uri", image,
                lake_outputs={"applicationId": application_id})
    assert run.result.exit_code == 0, run.result.output
    assert application_state(application_id) == "STARTED"
    assert "Stopped" not in run.result.output


def test_an_update_while_a_run_is_unfinished_exits_2_naming_the_run_before_the_up(build, platform):
    image = f"{platform['repositoryUrls']['lake']}@sha256:{'ab' * 32}"
    application_id = started_application(platform, image.replace("ab", "cd"))
    client = boto3.client("emr-serverless", region_name=REGION)
    job_run_id = client.start_job_run(applicationId=application_id, clientToken="busy",
                                      executionRoleArn="arn:aws:iam::123456789012:role/job",
                                      jobDriver={"sparkSubmit": {"entryPoint": "s3://b/e.py"}})["jobRunId"]
    run_running(application_id, job_run_id)
    run = build("--raw", f"{platform['lakeRoot']}/raw/2026-01/", "--image-uri", image,
                lake_outputs={"applicationId": application_id})
    assert run.result.exit_code == 2, run.result.output
    assert "Cannot update the lake application of stack lake-dev" in run.result.output
    assert f"{job_run_id} (RUNNING)" in run.result.output and "cancel-job-run" in run.result.output
    assert "up" not in [call[0] for call in lake_runner(run).calls]
    assert application_state(application_id) == "STARTED"


def test_an_aws_error_while_stopping_the_application_exits_2_saying_so(build, platform, monkeypatch):
    from moto.emrserverless.exceptions import ValidationException
    from moto.emrserverless.models import EMRServerlessBackend

    def refuse(self, application_id):
        raise ValidationException("Application cannot be stopped now")

    monkeypatch.setattr(EMRServerlessBackend, "stop_application", refuse)
    image = f"{platform['repositoryUrls']['lake']}@sha256:{'ab' * 32}"
    application_id = started_application(platform, image.replace("ab", "cd"))
    run = build("--raw", f"{platform['lakeRoot']}/raw/2026-01/", "--image-uri", image,
                lake_outputs={"applicationId": application_id})
    assert run.result.exit_code == 2, run.result.output
    assert "Cannot update the lake application of stack lake-dev" in run.result.output
    assert "Application cannot be stopped now" in run.result.output


def test_a_build_of_the_image_from_uncommitted_changes_exits_2_before_docker(build, platform, monkeypatch):
    from infra.providers import lake_program

    monkeypatch.setattr(lake_program, "git_commit", lambda folder: f"{'f' * 40}-dirty")
    run = build("--raw", f"{platform['lakeRoot']}/raw/2026-01/")
    assert run.result.exit_code == 2, run.result.output
    assert "Cannot build the lake on AWS" in run.result.output and "uncommitted changes" in run.result.output
    assert run.docker.calls == []


def test_uncommitted_changes_may_still_use_the_image_the_registry_has(build, platform, monkeypatch):
    """The commit only matters to an image being built: a dirty checkout whose code has its image already runs."""
    from infra.providers import lake_program

    monkeypatch.setattr(lake_program, "git_commit", lambda folder: f"{'f' * 40}-dirty")
    repository = platform["repositoryUrls"]["lake"]
    first = build("--raw", f"{platform['lakeRoot']}/raw/2026-01/")  # the tag is missing: refused
    assert first.result.exit_code == 2 and "uncommitted changes" in first.result.output
    digest = push_manifest(repository, lake_image_tag(first.repo, LakeEngineConfig()))
    run = build("--raw", f"{platform['lakeRoot']}/raw/2026-01/")
    assert run.result.exit_code == 0, run.result.output
    assert run.docker.calls == [] and job_inputs(run)["image_uri"] == f"{repository}@{digest}"


def test_new_run_reaches_the_lake_job_s_client_token_and_is_for_cloud_runs_only(build, platform):
    run = build("--raw", f"{platform['lakeRoot']}/raw/2026-01/", "--new-run", "2026-11-27")
    assert run.result.exit_code == 0, run.result.output
    assert job_inputs(run)["new_run"] == "2026-11-27"
    assert job_inputs(build("--raw", f"{platform['lakeRoot']}/raw/2026-01/")).get("new_run") is None
    local = CliRunner().invoke(app, ["lake", "build", "--raw", "data/t.csv", "--new-run", "x"])
    assert local.exit_code == 2 and "--new-run: for a run on AWS only" in local.output
