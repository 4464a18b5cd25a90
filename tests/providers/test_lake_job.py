"""LakeJobProvider against EMR Serverless and S3 served by moto on 127.0.0.1: the StartJobRun request (also checked
against botocore's model), the wait until the run is final, failures carrying EMR Serverless's details, the manifest
check, and which changes start a new run.

moto 5 answers StartJobRun and GetJobRun and ends every run SUCCESS at once; the `runs` fixture shapes the server's
answers (in this process, where the server runs) so a run can stay RUNNING for a few polls, or end FAILED or
CANCELLED with details. botocore ships no waiter for emr-serverless, which the bounded poll is there for.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import boto3
import botocore.session
import pytest
from moto.emrserverless.models import EMRServerlessBackend

from infra.providers.kinds import LAKE_JOB
from infra.providers.lake_job import (
    ENTRY_POINT,
    IMAGE_PYTHON,
    OUTPUTS,
    LakeJobFailed,
    LakeJobProvider,
    client_token,
    job_arguments,
    manifest_uri,
    spark_parameters,
    start_request,
)
from tests.botocore_shapes import model_problems, parameter_problems
from tests.providers.conftest import REGION, SECRET, as_the_provider_host_loads_it

ROLE = "arn:aws:iam::123456789012:role/retail-dev-lake-engine-job"
IMAGE = "123456789012.dkr.ecr.ap-southeast-1.amazonaws.com/retail-dev-registry/lake@sha256:" + "cd" * 32
RUN = "20260105T000000Z-1a2b3c4d"


@dataclass
class RunOutcomes:
    """What the next job runs do on the server."""

    state: str = "SUCCESS"
    details: str | None = None
    polls_running: int = 0
    """How many GetJobRun calls report RUNNING before the final state."""
    get_calls: int = 0
    _left: dict[str, int] = field(default_factory=dict)


@pytest.fixture
def runs(moto_endpoint, monkeypatch) -> RunOutcomes:
    outcomes = RunOutcomes()
    start, get = EMRServerlessBackend.start_job_run, EMRServerlessBackend.get_job_run

    def start_job_run(self, *args, **kwargs):
        job_run = start(self, *args, **kwargs)
        job_run.state, job_run.state_details = outcomes.state, outcomes.details
        outcomes._left[job_run.id] = outcomes.polls_running
        return job_run

    def get_job_run(self, application_id, job_run_id):
        outcomes.get_calls += 1
        job_run = get(self, application_id, job_run_id)
        if outcomes._left.get(job_run_id, 0) > 0:
            outcomes._left[job_run_id] -= 1
            job_run.state = "RUNNING"
        elif job_run_id in outcomes._left and job_run.state == "RUNNING":
            job_run.state = outcomes.state
        return job_run

    monkeypatch.setattr(EMRServerlessBackend, "start_job_run", start_job_run)
    monkeypatch.setattr(EMRServerlessBackend, "get_job_run", get_job_run)
    return outcomes


@pytest.fixture
def lake(moto_endpoint, request) -> str:
    """A lake root in a bucket of this test's own on the server."""
    bucket = f"lake-{hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:12]}"
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    return f"s3://{bucket}/lake"


@pytest.fixture
def application(moto_endpoint) -> str:
    client = boto3.client("emr-serverless", region_name=REGION)
    return client.create_application(name="retail-dev-lake", releaseLabel="emr-7.9.0", type="SPARK")["applicationId"]


def props(application: str, lake: str, **changes) -> dict:
    raw = f"{lake}/raw/2026-01/transactions.csv"
    base = {
        "kind": LAKE_JOB,
        "name_prefix": "retail-dev-lake-run",
        "region": REGION,
        "application_id": application,
        "role_arn": ROLE,
        "image_uri": IMAGE,
        "entry_point": ENTRY_POINT,
        "arguments": job_arguments(raw, lake, RUN),
        "spark_parameters": spark_parameters(),
        "raw_uri": raw,
        "input_fingerprint": "f" * 64,
        "lake_root": lake,
        "run_id": RUN,
        "manifest_uri": manifest_uri(lake, RUN),
        "log_group": "/aws/emr-serverless/retail-dev-lake",
        "execution_timeout_minutes": 120,
        "tags": {"project": "retail-mlops"},
        "poll_seconds": 0.01,
        "timeout_seconds": 30,
    }
    return base | changes


def write_manifest(lake: str) -> None:
    bucket, _, key = manifest_uri(lake, RUN).removeprefix("s3://").partition("/")
    boto3.client("s3", region_name=REGION).put_object(Bucket=bucket, Key=key, Body=json.dumps({"run_id": RUN}))


def job_run(application: str, run_id: str) -> dict:
    client = boto3.client("emr-serverless", region_name=REGION)
    return client.get_job_run(applicationId=application, jobRunId=run_id)["jobRun"]


def test_create_starts_the_image_s_entry_point_with_the_contract_s_arguments_as_the_job_role(runs, application, lake):
    write_manifest(lake)
    created = LakeJobProvider().create(props(application, lake))
    run = job_run(application, created.id)
    assert run["executionRole"] == ROLE
    spark = run["jobDriver"]["sparkSubmit"]
    assert spark["entryPoint"] == "local:///opt/retail/ml/spark_lake.py"
    assert spark["entryPointArguments"] == [
        "--raw", f"{lake}/raw/2026-01/transactions.csv", "--lake", lake, "--run-id", RUN]
    assert run["tags"] == {"project": "retail-mlops", "lake-run": RUN}
    assert created.outs["job_run_id"] == created.id and created.outs["state"] == "SUCCESS"
    assert created.outs["manifest_uri"] == f"{lake}/manifests/{RUN}.json"


def test_driver_and_executors_run_the_image_s_python_3_11():
    parameters = spark_parameters().split()
    assert parameters[::2] == ["--conf"] * 3
    assert sorted(parameters[1::2]) == sorted(
        f"{setting}={IMAGE_PYTHON}" for setting in ("spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON",
                                                    "spark.emr-serverless.driverEnv.PYSPARK_PYTHON",
                                                    "spark.executorEnv.PYSPARK_PYTHON"))


def test_the_request_matches_botocore_s_model_of_start_job_run():
    request = start_request(props("00fabcdefghij012", "s3://lake-raw/lake"))
    shape = botocore.session.get_session().get_service_model("emr-serverless").operation_model("StartJobRun")
    assert parameter_problems(request, shape.input_shape) == []
    assert model_problems(request, shape.input_shape, "StartJobRun") == []


def test_botocore_has_no_emr_serverless_waiter_so_the_provider_polls():
    assert boto3.client("emr-serverless", region_name=REGION).waiter_names == []


def test_create_waits_while_the_run_is_running(runs, application, lake):
    write_manifest(lake)
    runs.polls_running = 3
    created = LakeJobProvider().create(props(application, lake))
    assert created.outs["state"] == "SUCCESS"
    assert runs.get_calls == 4


@pytest.mark.parametrize("state", ["FAILED", "CANCELLED"])
def test_a_run_that_fails_is_an_error_with_emr_serverless_s_details_and_the_log_group(runs, application, lake, state):
    runs.state, runs.details = state, "Job failed, ExitCode: 1. Last few exceptions: ValueError: no .csv under raw"
    with pytest.raises(LakeJobFailed, match=rf"ended {state}: Job failed, ExitCode: 1\..*no \.csv under raw.*"
                                            r"/aws/emr-serverless/retail-dev-lake"):
        LakeJobProvider().create(props(application, lake))


def test_a_run_that_outlives_the_timeout_is_an_error_saying_it_still_runs(runs, application, lake):
    runs.polls_running = 10_000
    with pytest.raises(TimeoutError, match="is still RUNNING after 0 s; it keeps running"):
        LakeJobProvider().create(props(application, lake, timeout_seconds=0.05))


def test_a_successful_run_without_its_manifest_is_an_error(runs, application, lake):
    with pytest.raises(LakeJobFailed, match=rf"ended SUCCESS but its manifest {lake}/manifests/{RUN}.json cannot "
                                            "be read"):
        LakeJobProvider().create(props(application, lake))


def test_a_retried_create_of_the_same_inputs_carries_the_same_client_token(application):
    lake = "s3://lake-raw/lake"
    assert client_token(props(application, lake)) == client_token(props(application, lake, tags={"a": "b"}))
    assert client_token(props(application, lake)) != client_token(props(application, lake, run_id="other"))
    assert len(client_token(props(application, lake))) <= 64


@pytest.mark.parametrize(
    ("key", "value"),
    [("raw_uri", "s3://lake-raw/lake/raw/other.csv"), ("input_fingerprint", "e" * 64), ("image_uri", IMAGE[:-2] + "00"),
     ("run_id", "20260106T000000Z-00000000"), ("lake_root", "s3://other/lake"), ("role_arn", ROLE + "-2"),
     ("application_id", "00fother"), ("spark_parameters", "--conf spark.executor.cores=4")],
)
def test_a_change_of_input_code_lake_or_engine_starts_a_new_run(key, value):
    olds = props("00fabc", "s3://lake-raw/lake")
    result = LakeJobProvider().diff("run-1", olds, olds | {key: value})
    assert result.changes and result.replaces == [key]


@pytest.mark.parametrize(("key", "value"), [("tags", {"owner": "x"}), ("poll_seconds", 60),
                                            ("execution_timeout_minutes", 240), ("timeout_seconds", 99)])
def test_a_change_of_tags_or_timeouts_is_recorded_without_a_new_run(key, value):
    olds = props("00fabc", "s3://lake-raw/lake")
    result = LakeJobProvider().diff("run-1", olds, olds | {key: value})
    assert result.changes and not result.replaces


def test_unchanged_inputs_are_no_change_even_with_outputs_recorded():
    olds = props("00fabc", "s3://lake-raw/lake") | {"job_run_id": "run-1", "state": "SUCCESS"}
    assert not LakeJobProvider().diff("run-1", olds, props("00fabc", "s3://lake-raw/lake")).changes


def test_update_keeps_the_run_s_outputs_and_records_the_new_inputs(runs, application, lake):
    write_manifest(lake)
    created = LakeJobProvider().create(props(application, lake))
    news = props(application, lake, tags={"owner": "lake-team"}) | {key: None for key in OUTPUTS}
    updated = LakeJobProvider().update(created.id, created.outs, news)
    assert updated.outs["tags"] == {"owner": "lake-team"}
    assert {key: updated.outs[key] for key in OUTPUTS} == {key: created.outs[key] for key in OUTPUTS}


def test_read_returns_the_run_s_state(runs, application, lake):
    write_manifest(lake)
    created = LakeJobProvider().create(props(application, lake))
    read = LakeJobProvider().read(created.id, props(application, lake))
    assert read.outs["state"] == "SUCCESS" and read.outs["job_run_arn"].endswith(f"/jobruns/{created.id}")


def test_delete_cancels_a_run_still_going_and_leaves_the_lake_as_it_is(runs, application, lake):
    write_manifest(lake)
    created = LakeJobProvider().create(props(application, lake))
    runs._left[created.id] = 5  # the run is seen RUNNING again
    LakeJobProvider().delete(created.id, props(application, lake))
    runs._left[created.id] = 0
    assert job_run(application, created.id)["state"] == "CANCELLED"
    bucket, _, key = manifest_uri(lake, RUN).removeprefix("s3://").partition("/")
    assert boto3.client("s3", region_name=REGION).head_object(Bucket=bucket, Key=key)


def test_delete_leaves_a_finished_run_alone(runs, application, lake):
    write_manifest(lake)
    created = LakeJobProvider().create(props(application, lake))
    LakeJobProvider().delete(created.id, props(application, lake))
    assert job_run(application, created.id)["state"] == "SUCCESS"


def test_the_provider_pickled_as_pulumi_does_holds_no_client_or_secret_and_starts_runs_alike(
        runs, application, lake, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    write_manifest(lake)
    provider = LakeJobProvider()
    provider.create(props(application, lake))
    loaded, pickled = as_the_provider_host_loads_it(provider)
    assert SECRET.encode() not in pickled and b"botocore" not in pickled
    assert loaded.create(props(application, lake)).outs["state"] == "SUCCESS"
