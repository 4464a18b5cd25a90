"""LakeJobProvider against EMR Serverless and S3 served by moto on 127.0.0.1: the StartJobRun request (also checked
against botocore's model), the wait until the run is final, failures carrying EMR Serverless's details, the manifest
check, and which changes start a new run.

moto 5 answers StartJobRun and GetJobRun and ends every run SUCCESS at once; the `runs` fixture shapes the server's
answers (in this process, where the server runs) so a run can stay RUNNING for a few polls, or end FAILED or
CANCELLED with details. botocore ships no waiter for emr-serverless, which the bounded poll is there for.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field

import boto3
import botocore.session
import pytest
from botocore.exceptions import ClientError
from moto.core.exceptions import JsonRESTError
from moto.emrserverless.models import EMRServerlessBackend

from infra.config import LakeEngineConfig, parse_section
from infra.providers.kinds import LAKE_JOB
from infra.providers.lake_job import (
    ENTRY_POINT,
    IMAGE_PYTHON,
    OUTPUTS,
    LakeJobFailed,
    LakeJobProvider,
    client_token,
    job_arguments,
    job_digest,
    manifest_uri,
    spark_parameters,
    start_request,
)
from tests.botocore_shapes import model_problems, parameter_problems
from tests.providers.conftest import REGION, SECRET, as_the_provider_host_loads_it

ROLE = "arn:aws:iam::123456789012:role/retail-dev-lake-engine-job"


class ConflictException(JsonRESTError):
    def __init__(self, message: str) -> None:
        super().__init__("ConflictException", message)

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
    cancel_calls: int = 0
    _left: dict[str, int] = field(default_factory=dict)
    by_token: dict[str, object] = field(default_factory=dict)
    refuse_tokens: set[str] = field(default_factory=set)
    """Tokens StartJobRun answers with ConflictException (as if used for another request)."""
    start_calls: int = 0

    def age(self) -> None:
        """Make every run started so far an earlier attempt: created an hour ago."""
        for run in self.by_token.values():
            run.created_at -= dt.timedelta(hours=1)


@pytest.fixture
def runs(moto_endpoint, monkeypatch) -> RunOutcomes:
    outcomes = RunOutcomes()
    start, get, cancel = (EMRServerlessBackend.start_job_run, EMRServerlessBackend.get_job_run,
                          EMRServerlessBackend.cancel_job_run)

    def start_job_run(self, *args, **kwargs):
        # StartJobRun is idempotent by client token on AWS (its API reference); moto 5 starts a run each time
        outcomes.start_calls += 1
        if kwargs["client_token"] in outcomes.refuse_tokens:
            raise ConflictException("client token already used")
        if kwargs["client_token"] in outcomes.by_token:
            return outcomes.by_token[kwargs["client_token"]]
        job_run = start(self, *args, **kwargs)
        job_run.created_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)  # moto dates every run at midnight
        job_run.state, job_run.state_details = outcomes.state, outcomes.details
        outcomes._left[job_run.id] = outcomes.polls_running
        outcomes.by_token[kwargs["client_token"]] = job_run
        return job_run

    def get_job_run(self, application_id, job_run_id):
        outcomes.get_calls += 1
        job_run = get(self, application_id, job_run_id)
        if outcomes._left.get(job_run_id, 0) > 0:
            outcomes._left[job_run_id] -= 1
            job_run.state = "RUNNING"
        elif job_run_id in outcomes._left and job_run.state == "RUNNING":  # not cancelled meanwhile
            job_run.state = outcomes.state
        return job_run

    def cancel_job_run(self, application_id, job_run_id):
        outcomes.cancel_calls += 1
        outcomes._left[job_run_id] = 0  # a cancelled run runs no more
        return cancel(self, application_id, job_run_id)

    monkeypatch.setattr(EMRServerlessBackend, "start_job_run", start_job_run)
    monkeypatch.setattr(EMRServerlessBackend, "cancel_job_run", cancel_job_run)
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
        "arguments": job_arguments(raw, lake, RUN, 10),
        "spark_parameters": spark_parameters(LakeEngineConfig()),
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
        "--raw", f"{lake}/raw/2026-01/transactions.csv", "--lake", lake, "--run-id", RUN, "--max-memory-gb", "10"]
    assert run["tags"] == {"project": "retail-mlops", "lake-run": RUN, "lake-job": job_digest(props(application, lake))}
    assert created.outs["job_run_id"] == created.id and created.outs["state"] == "SUCCESS"
    assert created.outs["manifest_uri"] == f"{lake}/manifests/{RUN}.json"


def conf(parameters: str) -> dict[str, str]:
    words = parameters.split()
    assert words[::2] == ["--conf"] * (len(words) // 2)
    return dict(word.split("=", 1) for word in words[1::2])


def test_driver_and_executors_run_the_image_s_python_3_11():
    settings = conf(spark_parameters(LakeEngineConfig()))
    assert {key: settings[key] for key in ("spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON",
                                           "spark.emr-serverless.driverEnv.PYSPARK_PYTHON",
                                           "spark.executorEnv.PYSPARK_PYTHON")} == dict.fromkeys(
        ("spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON", "spark.emr-serverless.driverEnv.PYSPARK_PYTHON",
         "spark.executorEnv.PYSPARK_PYTHON"), IMAGE_PYTHON)


def test_python_s_polars_gets_the_memory_overhead_and_one_thread_per_core():
    """Polars runs outside the JVM heap: the heap is small, the overhead large; the job's --max-memory-gb is the
    driver's overhead less the JVM's own off-heap use; Polars' threads match the cores of the process it runs in."""
    sizes = LakeEngineConfig(driverMemoryGb=2, driverPythonMemoryGb=14, executorMemoryGb=6, executorPythonMemoryGb=10,
                             executorCores=2)
    settings = conf(spark_parameters(sizes))
    assert (settings["spark.driver.memory"], settings["spark.driver.memoryOverhead"]) == ("2g", "14g")
    assert (settings["spark.executor.memory"], settings["spark.executor.memoryOverhead"]) == ("6g", "10g")
    assert (settings["spark.driver.cores"], settings["spark.executor.cores"]) == ("4", "2")
    assert settings["spark.emr-serverless.driverEnv.POLARS_MAX_THREADS"] == "4"
    assert settings["spark.executorEnv.POLARS_MAX_THREADS"] == "1"
    assert sizes.job_memory_gb == 12
    assert job_arguments("r", "l", "x", sizes.job_memory_gb)[-2:] == ["--max-memory-gb", "12"]


@pytest.mark.parametrize(("sizes", "reported"), [
    ({"driverMemoryGb": 20, "driverPythonMemoryGb": 12}, "driverMemoryGb \\+ driverPythonMemoryGb must be 8-30 GB"),
    ({"executorCores": 1, "executorMemoryGb": 4, "executorPythonMemoryGb": 8}, "2-8 GB in 1 GB steps for 1 vCPU"),
    ({"executorCores": 8, "executorMemoryGb": 9, "executorPythonMemoryGb": 8}, "16-60 GB in 4 GB steps .*got 17"),
    ({"driverCores": 16, "driverMemoryGb": 24, "driverPythonMemoryGb": 12}, "32-120 GB in 8 GB steps .*got 36"),
    ({"executorPythonMemoryGb": 2}, "executorPythonMemoryGb"),
    ({"driverCores": 3}, "driverCores"),
])
def test_worker_sizes_emr_serverless_would_refuse_are_refused_in_the_stack_file(sizes, reported):
    with pytest.raises(ValueError, match=reported):
        parse_section(LakeEngineConfig, sizes, "retail:lakeEngine")


@pytest.mark.parametrize("sizes", [
    {"executorCores": 8, "executorMemoryGb": 12, "executorPythonMemoryGb": 8},
    {"driverCores": 16, "driverMemoryGb": 28, "driverPythonMemoryGb": 12},
    {"executorCores": 4, "executorMemoryGb": 9, "executorPythonMemoryGb": 8},
])
def test_worker_sizes_on_a_memory_step_are_taken(sizes):
    taken = parse_section(LakeEngineConfig, sizes, "retail:lakeEngine")
    assert taken.model_dump(by_alias=True, include=set(taken.model_fields_set)) == sizes


def test_the_request_matches_botocore_s_model_of_start_job_run():
    request = start_request(props("00fabcdefghij012", "s3://lake-raw/lake"))
    shape = botocore.session.get_session().get_service_model("emr-serverless").operation_model("StartJobRun")
    assert parameter_problems(request, shape.input_shape) == []
    assert model_problems(request, shape.input_shape, "StartJobRun") == []


def test_botocore_has_no_emr_serverless_waiter_so_the_provider_polls():
    """Guards our decision to poll GetJobRun ourselves (wait_for): should botocore ship a waiter, use it instead."""
    assert boto3.client("emr-serverless", region_name=REGION).waiter_names == []


def test_create_waits_while_the_run_is_running(runs, application, lake):
    write_manifest(lake)
    runs.polls_running = 3
    created = LakeJobProvider().create(props(application, lake))
    assert created.outs["state"] == "SUCCESS"
    assert runs.get_calls == 4


@pytest.mark.parametrize("state", ["FAILED", "CANCELLED"])
def test_a_run_that_fails_is_an_error_with_emr_serverless_s_details_and_the_log_group(runs, application, lake, state):
    runs.polls_running = 1  # a run just started is not final yet
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
    assert client_token(props(application, lake)) == client_token(props(application, lake, poll_seconds=5))
    assert client_token(props(application, lake)) != client_token(props(application, lake, run_id="other"))
    assert len(client_token(props(application, lake))) <= 64


@pytest.mark.parametrize(("key", "value"), [("tags", {"owner": "x"}), ("execution_timeout_minutes", 240),
                                            ("new_run", "2026-11-27")])
def test_everything_start_job_run_sends_and_new_run_are_in_the_client_token(application, key, value):
    """A token names one request: the same token is never sent with other tags or another timeout."""
    lake = "s3://lake-raw/lake"
    assert client_token(props(application, lake)) != client_token(props(application, lake, **{key: value}))
    sent = start_request(props(application, lake))
    assert set(sent) - {"clientToken"} <= {"applicationId", "executionRoleArn", "name", "jobDriver",
                                           "executionTimeoutMinutes", "tags"}


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


def test_an_up_after_a_failed_run_starts_the_run_again_instead_of_getting_the_failed_one_back(runs, application, lake):
    """The client token of the same inputs gives back the failed run (assumed idempotency); a run created before the
    StartJobRun call is that earlier attempt, so the run is started again with the token salted by its id."""
    runs.polls_running, runs.state, runs.details = 1, "FAILED", "ExitCode: 1"
    with pytest.raises(LakeJobFailed, match="ended FAILED"):
        LakeJobProvider().create(props(application, lake))
    (failed,) = runs.by_token.values()
    runs.age()
    with pytest.raises(LakeJobFailed, match="ended FAILED"):
        LakeJobProvider().create(props(application, lake))  # fails again: a third attempt follows the chain
    assert len(runs.by_token) == 2
    runs.age()
    runs.state, runs.details = "SUCCESS", None
    write_manifest(lake)
    created = LakeJobProvider().create(props(application, lake))
    assert created.outs["state"] == "SUCCESS" and len(runs.by_token) == 3
    assert created.id not in {run.id for run in list(runs.by_token.values())[:2]} and created.id != failed.id


def test_an_up_after_a_run_that_timed_out_resumes_waiting_for_the_same_run(runs, application, lake):
    write_manifest(lake)
    runs.polls_running = 10_000
    with pytest.raises(TimeoutError):
        LakeJobProvider().create(props(application, lake, timeout_seconds=0.05))
    (going,) = runs.by_token.values()
    runs._left[going.id] = 2
    created = LakeJobProvider().create(props(application, lake))
    assert created.id == going.id and created.outs["state"] == "SUCCESS" and len(runs.by_token) == 1


def test_delete_waits_for_a_cancelling_run_without_cancelling_it_again(runs, application, lake, monkeypatch):
    write_manifest(lake)
    created = LakeJobProvider().create(props(application, lake))
    (run,) = runs.by_token.values()
    states = ["CANCELLED", "CANCELLING", "CANCELLING"]
    get = EMRServerlessBackend.get_job_run

    def get_job_run(self, application_id, job_run_id):
        found = get(self, application_id, job_run_id)
        found.state = states.pop() if states else found.state
        return found

    monkeypatch.setattr(EMRServerlessBackend, "get_job_run", get_job_run)
    LakeJobProvider().delete(created.id, props(application, lake))
    assert runs.cancel_calls == 0 and states == [] and run.state == "CANCELLED"


def test_delete_of_a_running_run_waits_until_it_is_cancelled(runs, application, lake):
    write_manifest(lake)
    created = LakeJobProvider().create(props(application, lake))
    runs._left[created.id] = 2  # RUNNING twice more: once before the cancel, once after
    LakeJobProvider().delete(created.id, props(application, lake))
    assert runs.cancel_calls == 1 and runs._left[created.id] == 0
    assert job_run(application, created.id)["state"] == "CANCELLED"


@pytest.mark.parametrize("gone", ["run", "application"])
def test_a_run_or_application_that_is_gone_is_read_as_gone_and_deleted_as_nothing(runs, application, lake, gone):
    write_manifest(lake)
    created = LakeJobProvider().create(props(application, lake))
    client = boto3.client("emr-serverless", region_name=REGION)
    if gone == "application":
        from moto.emrserverless.models import emrserverless_backends

        client.stop_application(applicationId=application)
        client.delete_application(applicationId=application)
        # AWS answers GetJobRun of a deleted application's run ResourceNotFoundException; moto 5 keeps the runs
        emrserverless_backends["123456789012"][REGION].job_runs.pop(application)
    run_id = "00fnosuchrun" if gone == "run" else created.id
    read = LakeJobProvider().read(run_id, props(application, lake))
    assert read.id == "" and not read.outs
    LakeJobProvider().delete(run_id, props(application, lake))
    assert runs.cancel_calls == 0


def test_a_new_run_that_fails_at_once_is_this_create_s_failure_not_an_earlier_attempt(runs, application, lake):
    """Its state does not make a run an earlier attempt: created since the call, it is the new run, FAILED or not."""
    runs.state, runs.details = "FAILED", "ExitCode: 1"
    with pytest.raises(LakeJobFailed, match="ended FAILED: ExitCode: 1"):
        LakeJobProvider().create(props(application, lake))
    assert runs.start_calls == 1 and len(runs.by_token) == 1


def test_earlier_failed_attempts_are_walked_past_at_most_three_starts_then_new_run_starts_one(runs, application,
                                                                                            lake):
    runs.state, runs.details = "FAILED", "ExitCode: 1"
    for _ in range(3):
        with pytest.raises(LakeJobFailed, match="ended FAILED"):
            LakeJobProvider().create(props(application, lake))
        runs.age()
    runs.start_calls = 0
    with pytest.raises(LakeJobFailed, match=r"gave back 3 earlier runs .*--new-run"):
        LakeJobProvider().create(props(application, lake))
    assert runs.start_calls == 3 and len(runs.by_token) == 3
    runs.state, runs.details = "SUCCESS", None
    write_manifest(lake)
    created = LakeJobProvider().create(props(application, lake, new_run="2026-11-27"))
    assert created.outs["state"] == "SUCCESS" and len(runs.by_token) == 4


def test_an_earlier_success_without_its_manifest_says_how_to_start_a_new_run_and_new_run_does(runs, application,
                                                                                              lake):
    with pytest.raises(LakeJobFailed, match="cannot be read .*get this run back.*--new-run"):
        LakeJobProvider().create(props(application, lake))
    (first,) = runs.by_token.values()
    runs.age()
    with pytest.raises(LakeJobFailed, match=f"job run {first.id} ended SUCCESS but its manifest"):
        LakeJobProvider().create(props(application, lake))
    assert len(runs.by_token) == 1, "the same inputs get the same run back"
    write_manifest(lake)
    created = LakeJobProvider().create(props(application, lake, new_run="again"))
    assert created.id != first.id and len(runs.by_token) == 2


def test_a_token_refused_as_used_is_salted_and_sent_once_more(runs, application, lake):
    write_manifest(lake)
    runs.refuse_tokens.add(client_token(props(application, lake)))
    created = LakeJobProvider().create(props(application, lake))
    assert created.outs["state"] == "SUCCESS" and runs.start_calls == 2
    runs.refuse_tokens.add(client_token(props(application, lake), "+conflict"))
    with pytest.raises(ClientError, match="ConflictException"):
        LakeJobProvider().create(props(application, lake))



def start_beside(application: str, lake: str, runs: RunOutcomes, state: str = "RUNNING", untagged: bool = False,
                 **changes) -> str:
    """A run of the lake run `RUN` started outside the provider with another client token (as if EMR Serverless had
    forgotten the provider's), left in `state`, without its `lake-job` tag if `untagged` (a run started before the
    tag); its id."""
    client = boto3.client("emr-serverless", region_name=REGION)
    request = start_request(props(application, lake, **changes)) | {"clientToken": "an-expired-attempt"}
    if untagged:
        request["tags"] = {k: v for k, v in request["tags"].items() if k != "lake-job"}
    run_id = client.start_job_run(**request)["jobRunId"]
    runs.by_token["an-expired-attempt"].state = state
    runs._left[run_id] = 10_000 if state == "RUNNING" else 0
    runs.start_calls = 0
    return run_id


def test_a_run_of_the_same_lake_run_still_going_is_this_create_s_run_whatever_its_token(runs, application, lake):
    """The token keeps a retried create from starting a second run only while EMR Serverless remembers it."""
    twin = start_beside(application, lake, runs)
    with pytest.raises(TimeoutError, match=f"job run {twin} .* is still RUNNING"):
        LakeJobProvider().create(props(application, lake, timeout_seconds=0.05))
    assert runs.start_calls == 0


@pytest.mark.parametrize("changes", [{"arguments": job_arguments("s3://x/raw/other.csv", "s3://x/lake", RUN, 10)},
                                     {"role_arn": ROLE + "-2"}])
def test_a_run_of_the_same_lake_run_sent_another_job_is_refused_and_named(runs, application, lake, changes):
    twin = start_beside(application, lake, runs, **changes)
    with pytest.raises(LakeJobFailed, match=rf"job run {twin} .* writes the same lake run \({RUN}\) and was started "
                                            r"with another job \(RUNNING\).*cancel-job-run"):
        LakeJobProvider().create(props(application, lake))
    assert runs.start_calls == 0


def test_a_run_of_the_same_lake_run_being_cancelled_is_refused_not_joined(runs, application, lake):
    twin = start_beside(application, lake, runs, state="CANCELLING")
    with pytest.raises(LakeJobFailed, match=rf"job run {twin} .* is being cancelled \(CANCELLING\)"):
        LakeJobProvider().create(props(application, lake))
    assert runs.start_calls == 0


@pytest.mark.parametrize("state", ["FAILED", "CANCELLED", "SUCCESS"])
def test_finished_runs_of_the_same_lake_run_leave_the_start_to_the_token(runs, application, lake, state):
    write_manifest(lake)
    start_beside(application, lake, runs, state=state)
    created = LakeJobProvider().create(props(application, lake))
    assert created.outs["state"] == "SUCCESS" and runs.start_calls == 1


def test_a_twin_is_told_the_same_job_by_its_tag_even_if_its_job_driver_comes_back_rewritten(runs, application, lake):
    """GetJobRun's API reference does not promise the jobDriver back as sent: the `lake-job` tag decides."""
    twin = start_beside(application, lake, runs)
    runs.by_token["an-expired-attempt"].job_driver["sparkSubmit"]["sparkSubmitParameters"] += " "
    with pytest.raises(TimeoutError, match=f"job run {twin} .* is still RUNNING"):
        LakeJobProvider().create(props(application, lake, timeout_seconds=0.05))
    assert runs.start_calls == 0


@pytest.mark.parametrize(("changes", "joined"), [({}, True), ({"role_arn": ROLE + "-2"}, False)])
def test_an_untagged_twin_is_told_the_same_job_by_its_role_and_job_driver(runs, application, lake, changes, joined):
    twin = start_beside(application, lake, runs, untagged=True, **changes)
    expected = (pytest.raises(TimeoutError, match=f"job run {twin} .* is still RUNNING") if joined
                else pytest.raises(LakeJobFailed, match=f"job run {twin} .* was started with another job"))
    with expected:
        LakeJobProvider().create(props(application, lake, timeout_seconds=0.05))
    assert runs.start_calls == 0


def test_a_long_name_prefix_is_cut_and_the_run_id_kept_whole(application):
    name = start_request(props(application, "s3://x/lake", name_prefix="p" * 300))["name"]
    assert len(name) == 256 and name.endswith(f"-{RUN}")
