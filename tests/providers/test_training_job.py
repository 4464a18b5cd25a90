"""TrainingJobProvider against SageMaker served by moto on 127.0.0.1."""

from __future__ import annotations

import time

import boto3
import pytest

from infra.providers.kinds import TRAINING_JOB
from infra.providers.training_job import (
    OUTPUTS,
    TrainingJobAbandoned,
    TrainingJobFailed,
    TrainingJobProvider,
    abandoned,
    create_request,
    fingerprint,
    job_name,
)
from tests.providers.conftest import REGION, SECRET, as_the_provider_host_loads_it

KEY = "arn:aws:kms:ap-southeast-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
IMAGE = (
    "123456789012.dkr.ecr.ap-southeast-1.amazonaws.com/retail-dev-registry/training"
    "@sha256:" + "ab" * 32
)
PROPS = {
    "kind": TRAINING_JOB,
    "name_prefix": "retail-dev-train",
    "region": REGION,
    "role_arn": "arn:aws:iam::123456789012:role/sagemaker",
    "image_uri": IMAGE,
    "train_uri": "s3://lake-gold/gold/",
    "output_uri": "s3://artifacts/training/",
    "checkpoint_uri": "s3://artifacts/checkpoints/",
    "data_hash": "data-1",
    "code_version": "code-1",
    "hyperparameters": {"families": "xgboost", "xgb-trials": 4},
    "volume_kms_key_id": KEY,
    "output_kms_key_id": KEY,
    "subnet_ids": ["subnet-a", "subnet-b"],
    "security_group_ids": ["sg-1"],
    "enable_network_isolation": False,
    "metric_definitions": {"xgboost_holdout_macro_f1": "xgboost_holdout_macro_f1=([0-9.]+);"},
    "instance_type": "ml.m5.xlarge",
    "instance_count": 1,
    "volume_size_gb": 30,
    "use_spot": True,
    "max_runtime_seconds": 3600,
    "max_wait_seconds": 7200,
    "tags": {"project": "retail-mlops"},
    "poll_seconds": 0.01,
    "timeout_seconds": 30,
}


def describe(name: str) -> dict:
    return boto3.client("sagemaker", region_name=REGION).describe_training_job(TrainingJobName=name)


def test_create_starts_a_spot_job_of_the_projects_image_in_the_vpc_with_kms(jobs):
    result = TrainingJobProvider().create(dict(PROPS))
    job = describe(result.id)
    assert job["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert job["EnableManagedSpotTraining"] is True
    assert job["CheckpointConfig"] == {"S3Uri": "s3://artifacts/checkpoints/"}
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert job["ResourceConfig"]["VolumeKmsKeyId"] == KEY and job["OutputDataConfig"]["KmsKeyId"] == KEY
    assert job["VpcConfig"] == {"Subnets": ["subnet-a", "subnet-b"], "SecurityGroupIds": ["sg-1"]}
    assert job["InputDataConfig"][0]["ChannelName"] == "train"


def test_hyperparameters_reach_the_image_as_plain_strings_without_script_mode_keys(jobs):
    job = describe(TrainingJobProvider().create(dict(PROPS)).id)
    assert job["HyperParameters"] == {"families": "xgboost", "xgb-trials": "4"}


@pytest.mark.parametrize("key", ["alias/retail-dev-kms-data", "arn:aws:kms:ap-southeast-1:123456789012:alias/data"])
def test_a_kms_alias_is_refused_before_calling_sagemaker(jobs, key):
    before = len(_job_names())
    with pytest.raises(ValueError, match="is not a KMS key id or key ARN .* dataKeyArn"):
        TrainingJobProvider().create(dict(PROPS) | {"volume_kms_key_id": key})
    assert len(_job_names()) == before


def _job_names() -> list[str]:
    pages = boto3.client("sagemaker", region_name=REGION).get_paginator("list_training_jobs").paginate()
    return [job["TrainingJobName"] for page in pages for job in page["TrainingJobSummaries"]]


def test_a_bare_key_id_is_accepted_for_the_volume():
    request = create_request("job", dict(PROPS) | {"volume_kms_key_id": "1234abcd-12ab-34cd-56ef-1234567890ab"})
    assert request["ResourceConfig"]["VolumeKmsKeyId"] == "1234abcd-12ab-34cd-56ef-1234567890ab"


def test_a_spot_wait_shorter_than_the_runtime_is_refused():
    with pytest.raises(ValueError, match="max_wait_seconds 600 is below max_runtime_seconds 3600"):
        create_request("job", dict(PROPS) | {"max_wait_seconds": 600})


def test_create_outputs_the_model_artifact_and_the_final_metrics(jobs):
    jobs.metrics = {"xgboost_holdout_macro_f1": 0.91}
    result = TrainingJobProvider().create(dict(PROPS))
    assert result.outs["model_artifact_uri"] == f"s3://artifacts/training/{result.id}/output/model.tar.gz"
    assert result.outs["metrics"] == {"xgboost_holdout_macro_f1": 0.91}
    assert result.outs["status"] == "Completed"


def test_create_waits_while_the_job_is_in_progress(jobs):
    jobs.polls_in_progress = 3
    result = TrainingJobProvider().create(dict(PROPS))
    assert result.outs["status"] == "Completed"
    # The waiter's polls: three in progress, one completed; then one DescribeTrainingJob for the outputs.
    assert jobs.describe_calls == 5


def test_a_failed_job_is_an_error_with_sagemakers_failure_reason(jobs):
    jobs.status, jobs.failure_reason = "Failed", "AlgorithmError: unknown families: lightgbm"
    with pytest.raises(TrainingJobFailed, match=r"ended Failed: AlgorithmError: unknown families: lightgbm"):
        TrainingJobProvider().create(dict(PROPS))


def test_a_job_that_outlives_the_timeout_is_stopped_and_the_error_says_so(jobs):
    """Pulumi records nothing when `create` raises: a job left running would bill unseen."""
    jobs.polls_in_progress = 1000
    with pytest.raises(TrainingJobAbandoned, match=r"still InProgress after 0 s\); a stop was requested") as raised:
        TrainingJobProvider().create(dict(PROPS) | {"timeout_seconds": 0.05})
    name = str(raised.value).removeprefix("waiting for SageMaker training job ").split()[0]
    assert name.startswith(f"{PROPS['name_prefix']}-") and describe(name)["TrainingJobStatus"] == "Stopped"


def left_running(jobs, monkeypatch, props: dict) -> str:
    """A job of `props` that an interrupted `pulumi up` left InProgress (started a minute ago); it completes when
    next described."""
    from moto.sagemaker.models import SageMakerModelBackend

    jobs.status = "InProgress"
    name = job_name(props, time.time() - 60)
    boto3.client("sagemaker", region_name=REGION).create_training_job(**create_request(name, props))
    jobs.status = "Completed"
    describe = SageMakerModelBackend.describe_training_job

    def finishing(self, training_job_name):
        self.training_jobs[training_job_name].training_job_status = "Completed"
        return describe(self, training_job_name)

    monkeypatch.setattr(SageMakerModelBackend, "describe_training_job", finishing)
    return name


def test_a_job_an_interrupted_up_left_running_is_waited_for_not_started_again(jobs, monkeypatch):
    left = left_running(jobs, monkeypatch, PROPS)
    before = set(_job_names())
    result = TrainingJobProvider().create(dict(PROPS))
    assert result.id == left and result.outs["status"] == "Completed"
    assert set(_job_names()) == before  # no job started


def test_a_running_job_of_the_same_inputs_on_other_instances_is_not_taken_for_this_one(jobs, monkeypatch):
    """The name's fingerprint covers the inputs that replace a job only; the instances are compared as described."""
    left = left_running(jobs, monkeypatch, PROPS | {"instance_type": "ml.m5.2xlarge"})
    before = set(_job_names())
    result = TrainingJobProvider().create(dict(PROPS))
    assert result.id != left and set(_job_names()) - before == {result.id}


def test_a_running_job_of_other_inputs_is_not_taken_for_this_one(jobs, monkeypatch):
    left = left_running(jobs, monkeypatch, PROPS | {"data_hash": "data-2"})
    before = set(_job_names())
    result = TrainingJobProvider().create(dict(PROPS))
    assert result.id != left and set(_job_names()) - before == {result.id} and fingerprint(PROPS) in result.id


def refused_stop(status: str | None) -> str:
    """What `abandoned` says when StopTrainingJob is refused and DescribeTrainingJob answers `status` (None: it is
    refused too)."""
    from botocore.exceptions import ClientError
    from botocore.stub import Stubber

    client = boto3.client("sagemaker", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        stubber.add_client_error("stop_training_job", service_error_code="ExpiredTokenException",
                                 http_status_code=400)
        if status is None:
            stubber.add_client_error("describe_training_job", service_error_code="ExpiredTokenException",
                                     http_status_code=400)
        else:
            stubber.add_response("describe_training_job", describe_response(status))
        return abandoned(client, "retail-dev-train-x", ClientError({"Error": {"Code": "ExpiredTokenException"}},
                                                                   "DescribeTrainingJob"))


def describe_response(status: str) -> dict:
    import datetime as dt

    now = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)
    return {"TrainingJobName": "retail-dev-train-x", "TrainingJobArn": "arn:aws:sagemaker:x:1:training-job/x",
            "ModelArtifacts": {"S3ModelArtifacts": ""}, "TrainingJobStatus": status, "SecondaryStatus": status,
            "AlgorithmSpecification": {"TrainingInputMode": "File"}, "ResourceConfig": {
                "InstanceCount": 1, "VolumeSizeInGB": 30}, "StoppingCondition": {}, "CreationTime": now}


def test_a_job_whose_stop_and_describe_are_refused_is_named_with_the_command_that_stops_it():
    said = refused_stop(None)
    assert "stopping it failed too (ClientError" in said
    assert said.endswith("stop it with `aws sagemaker stop-training-job --training-job-name retail-dev-train-x`")


@pytest.mark.parametrize("status", ["Completed", "Stopping", "Failed"])
def test_a_job_that_ended_before_its_stop_is_said_to_have_ended(status):
    said = refused_stop(status)
    assert f"it is {status} now (the stop was refused" in said and "stop-training-job" not in said


def test_a_job_still_running_whose_stop_is_refused_is_named_with_the_command_that_stops_it():
    assert refused_stop("InProgress").endswith("--training-job-name retail-dev-train-x`")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("data_hash", "data-2"),
        ("code_version", "code-2"),
        ("hyperparameters", {"families": "xgboost,logistic_regression"}),
        ("image_uri", IMAGE.replace("ab", "cd")),
    ],
)
def test_a_change_of_data_code_hyperparameters_or_image_replaces_the_job(key, value):
    diff = TrainingJobProvider().diff("job", dict(PROPS), dict(PROPS) | {key: value})
    assert diff.changes and diff.replaces == [key]


def test_a_change_of_instance_type_updates_without_retraining():
    diff = TrainingJobProvider().diff("job", dict(PROPS), dict(PROPS) | {"instance_type": "ml.m5.2xlarge"})
    assert diff.changes and diff.replaces == []


def test_unchanged_inputs_are_no_change_even_with_outputs_recorded():
    olds = dict(PROPS) | {"job_name": "j", "metrics": {"m": 1.0}, "status": "Completed"}
    assert TrainingJobProvider().diff("job", olds, dict(PROPS)).changes is False


def test_update_keeps_the_jobs_outputs_and_records_the_new_inputs(jobs):
    created = TrainingJobProvider().create(dict(PROPS))
    news = dict(PROPS) | {"instance_type": "ml.m5.2xlarge"}
    updated = TrainingJobProvider().update(created.id, created.outs, news)
    assert updated.outs["instance_type"] == "ml.m5.2xlarge"
    assert {k: updated.outs[k] for k in OUTPUTS} == {k: created.outs[k] for k in OUTPUTS}


def test_read_returns_the_jobs_state_from_sagemaker(jobs):
    jobs.metrics = {"xgboost_holdout_macro_f1": 0.8}
    created = TrainingJobProvider().create(dict(PROPS))
    read = TrainingJobProvider().read(created.id, dict(PROPS))
    assert read.id == created.id
    assert read.outs["job_arn"] == describe(created.id)["TrainingJobArn"]
    assert read.outs["metrics"] == {"xgboost_holdout_macro_f1": 0.8}


def test_delete_leaves_a_finished_job_in_sagemakers_history(jobs):
    created = TrainingJobProvider().create(dict(PROPS))
    TrainingJobProvider().delete(created.id, created.outs)
    assert describe(created.id)["TrainingJobStatus"] == "Completed"


def test_delete_stops_a_job_still_running(jobs):
    created = TrainingJobProvider().create(dict(PROPS))
    jobs._left[created.id] = 5
    TrainingJobProvider().delete(created.id, created.outs)
    assert describe(created.id)["TrainingJobStatus"] == "Stopped"


def test_job_names_are_unique_per_start_short_enough_and_carry_the_fingerprint():
    first, second = job_name(PROPS, 1_700_000_000), job_name(PROPS, 1_700_000_000.25)  # a retry within the second
    assert first != second and len(job_name(PROPS | {"name_prefix": "x" * 80}, 1)) <= 63
    assert first.rsplit("-", 2)[1] != job_name(PROPS | {"data_hash": "d2"}, 1_700_000_000).rsplit("-", 2)[1]


def test_a_used_provider_pickled_as_pulumi_does_holds_no_client_or_secret_and_starts_jobs_alike(jobs, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    provider = TrainingJobProvider()
    first = provider.create(dict(PROPS))
    assert vars(provider) == {}
    loaded, pickled = as_the_provider_host_loads_it(provider)
    assert SECRET.encode() not in pickled and b"botocore" not in pickled
    second = loaded.create(PROPS | {"name_prefix": "retail-dev-again"})  # job names are unique per second only
    assert second.id.startswith("retail-dev-again-") and describe(second.id)["TrainingJobStatus"] == "Completed"
    keys = ("AlgorithmSpecification", "HyperParameters", "ResourceConfig", "VpcConfig", "StoppingCondition")
    assert {k: describe(second.id)[k] for k in keys} == {k: describe(first.id)[k] for k in keys}


def test_a_refused_describe_call_is_sagemaker_s_error_not_a_timeout():
    import boto3
    from botocore.exceptions import ClientError
    from botocore.stub import Stubber

    from infra.providers.training_job import wait_for

    client = boto3.client("sagemaker", region_name="ap-southeast-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        stubber.add_client_error("describe_training_job", service_error_code="AccessDeniedException",
                                 http_status_code=400)
        with pytest.raises(ClientError, match="AccessDeniedException"):
            wait_for(client, "retail-dev-train-x", poll_seconds=0.01, timeout_seconds=1)
