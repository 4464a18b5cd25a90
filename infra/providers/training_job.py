"""`TrainingJob`: a SageMaker training job running the project's training image, as a Pulumi resource.

The image is built from this repository (`Dockerfile.training`) and named by digest;
SageMaker runs it as `docker run <image> train` with the hyperparameters as strings in
/opt/ml/input/config/hyperparameters.json (`ml/sagemaker_entry.py` reads them). There is
no script mode: no code tarball, no `sagemaker_program`. The volume and the output are
encrypted with the data KMS key, which CreateTrainingJob needs as a key id or key ARN
(`VolumeKmsKeyId` takes no alias), so the key is checked before SageMaker is called.

The job is created and waited for in `create`; its outputs are the model artifact URI and
the final metric values. A job is immutable, so a change of what it learns from (data
hash, code version, hyperparameters, image, training channel, instance count: several
instances fit XGBoost over merged histogram sketches, another model) replaces the resource
with a new job; other changes (instance type, spot, tags, ...) are recorded without
retraining and apply to the next job. Deleting the resource stops a job still running; finished jobs
stay in SageMaker's history (SageMaker has no delete for them).

With `instance_count` > 1 the image trains XGBoost distributed (ml/cluster.py): the `train`
channel stays FullyReplicated (each host keeps its basket-hash share of it, ml/channel_share.py
says why not ShardedByS3Key), and the hosts' traffic, which carries histograms of the training
data, is encrypted (EnableInterContainerTrafficEncryption; SageMaker Developer Guide, "Protect
Communications Between ML Compute Instances in a Distributed Training Job",
https://docs.aws.amazon.com/sagemaker/latest/dg/train-encrypt.html: it costs time in proportion to
the traffic and does not affect one-instance jobs); the policy rule
`sagemaker-training-inter-container-encryption` requires it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from typing import Any

import pulumi
from botocore.exceptions import ClientError, WaiterError
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

from infra.providers import clients
from infra.providers.kinds import TRAINING_JOB
from infra.providers.runs import run_diff, run_update

MAX_HYPERPARAMETER = 256
"""CreateTrainingJob's documented limit for each hyperparameter key and value."""
REPLACE_ON = ("data_hash", "code_version", "hyperparameters", "image_uri", "train_uri", "role_arn", "instance_count")
"""Inputs that change what the job learns or how: a change retrains (replaces the resource)."""
OUTPUTS = ("job_name", "job_arn", "model_artifact_uri", "metrics", "status", "billable_seconds")
FINISHED = {"Completed", "Failed", "Stopped"}
MAX_NAME = 63


class TrainingJobFailed(Exception):
    """The job ended Failed or Stopped; the message carries SageMaker's failure reason."""


class TrainingJobAbandoned(Exception):
    """The provider stopped waiting before the job ended (a timeout, a refused call); the message says whether a
    stop was requested."""


def fingerprint(props: dict[str, Any]) -> str:
    """Short hash of the inputs that decide what is learnt; part of the job's name."""
    payload = json.dumps({key: props.get(key) for key in REPLACE_ON}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:10]


def job_name(props: dict[str, Any], now: float) -> str:
    """`<prefix>-<fingerprint of the inputs>-<creation time in ms>`, within SageMaker's 63 characters: two creates
    of the same inputs (a retry) a second apart or less still get two names, as SageMaker requires."""
    suffix = f"-{fingerprint(props)}-{int(now * 1000)}"
    return props["name_prefix"][: MAX_NAME - len(suffix)].rstrip("-") + suffix


ADOPTED_WHEN_EQUAL = ("ResourceConfig", "EnableManagedSpotTraining", "StoppingCondition", "OutputDataConfig",
                      "VpcConfig")
"""What a running job must have as this create would send it to be waited for in its stead: the fingerprint in its
name covers the inputs that replace a job (REPLACE_ON: image, hyperparameters, channel, role, data and code), not the
instances, spot, limits, output or network."""


def running_job(client: Any, props: dict[str, Any]) -> str | None:
    """The newest job of these inputs (the same name up to its creation time, and the same request in
    ADOPTED_WHEN_EQUAL) still InProgress: one an interrupted `pulumi up` left running, which Pulumi never recorded.
    None when there is none; a running job of other settings is left as it is (`retail infra leaks` lists it)."""
    stem = job_name(props, time.time()).rsplit("-", 1)[0] + "-"
    pages = client.get_paginator("list_training_jobs").paginate(
        NameContains=stem, StatusEquals="InProgress", SortBy="CreationTime", SortOrder="Descending")
    for name in (job["TrainingJobName"] for page in pages for job in page["TrainingJobSummaries"]):
        if not name.startswith(stem):
            continue
        sent, running = create_request(name, props), client.describe_training_job(TrainingJobName=name)
        if all(_same(sent.get(key), running.get(key)) for key in ADOPTED_WHEN_EQUAL):
            return name
    return None


def _same(sent: Any, described: Any) -> bool:
    """Whether a DescribeTrainingJob value holds what the request sent (the description adds fields of its own)."""
    if isinstance(sent, dict) and isinstance(described, dict):
        return all(_same(value, described.get(key)) for key, value in sent.items())
    if isinstance(sent, list) and isinstance(described, list):
        return len(sent) == len(described) and all(map(_same, sent, described))
    return bool(sent == described or (sent is None and not described))


KMS_KEY_ID = re.compile(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})")
KMS_KEY_ARN = re.compile(r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+")


def kms_key(value: str, field: str) -> str:
    """`value` if it is a KMS key id or key ARN (what VolumeKmsKeyId accepts), else a ValueError saying so."""
    if KMS_KEY_ID.fullmatch(value) or KMS_KEY_ARN.fullmatch(value):
        return value
    raise ValueError(
        f"{field} {value!r} is not a KMS key id or key ARN (SageMaker refuses aliases there): "
        "pass the platform stack's dataKeyArn output"
    )


CHANNEL_DISTRIBUTION = "FullyReplicated"
"""Every host gets the whole gold folder, on one instance or several (ml/channel_share.py deals the baskets)."""


def create_request(name: str, props: dict[str, Any]) -> dict[str, Any]:
    """The CreateTrainingJob request: the project's image, spot with checkpoints, KMS, VPC."""
    instances = int(props.get("instance_count", 1))
    if instances < 1:
        raise ValueError(f"instance_count {instances}: a training job runs on at least one instance")
    hyperparameters = {key: str(value) for key, value in (props.get("hyperparameters") or {}).items()}
    too_long = sorted(k for k, v in hyperparameters.items() if max(len(k), len(v)) > MAX_HYPERPARAMETER)
    if too_long:
        raise ValueError(f"hyperparameter(s) {', '.join(too_long)}: SageMaker limits each key and value to "
                         f"{MAX_HYPERPARAMETER} characters")
    stopping = {"MaxRuntimeInSeconds": int(props["max_runtime_seconds"])}
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "RoleArn": props["role_arn"],
        "AlgorithmSpecification": {
            "TrainingImage": props["image_uri"],
            "TrainingInputMode": "File",
            "MetricDefinitions": [
                {"Name": n, "Regex": rx} for n, rx in (props.get("metric_definitions") or {}).items()
            ],
        },
        "HyperParameters": hyperparameters,
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": props["train_uri"],
                        "S3DataDistributionType": CHANNEL_DISTRIBUTION,
                    }
                },
            }
        ],
        "OutputDataConfig": {
            "S3OutputPath": props["output_uri"],
            "KmsKeyId": kms_key(props["output_kms_key_id"], "output_kms_key_id"),
        },
        "ResourceConfig": {
            "InstanceType": props["instance_type"],
            "InstanceCount": instances,
            "VolumeSizeInGB": int(props.get("volume_size_gb", 30)),
            "VolumeKmsKeyId": kms_key(props["volume_kms_key_id"], "volume_kms_key_id"),
        },
        "EnableNetworkIsolation": bool(props.get("enable_network_isolation", False)),
        "EnableInterContainerTrafficEncryption": bool(props.get("inter_container_encryption", instances > 1)),
        "EnableManagedSpotTraining": bool(props.get("use_spot", True)),
        "Tags": [{"Key": k, "Value": str(v)} for k, v in (props.get("tags") or {}).items()]
        + [{"Key": "data-hash", "Value": props["data_hash"]}, {"Key": "code-version", "Value": props["code_version"]}],
    }
    if request["EnableManagedSpotTraining"]:
        stopping["MaxWaitTimeInSeconds"] = int(props["max_wait_seconds"])
        if stopping["MaxWaitTimeInSeconds"] < stopping["MaxRuntimeInSeconds"]:
            raise ValueError(
                f"max_wait_seconds {stopping['MaxWaitTimeInSeconds']} is below max_runtime_seconds "
                f"{stopping['MaxRuntimeInSeconds']}: spot training waits at least as long as it may run"
            )
        request["CheckpointConfig"] = {"S3Uri": props["checkpoint_uri"]}
    request["StoppingCondition"] = stopping
    if props.get("subnet_ids"):
        request["VpcConfig"] = {
            "Subnets": list(props["subnet_ids"]),
            "SecurityGroupIds": list(props["security_group_ids"]),
        }
    return request


def outputs_of(description: dict[str, Any]) -> dict[str, Any]:
    """What the resource exposes from a DescribeTrainingJob response."""
    return {
        "job_name": description["TrainingJobName"],
        "job_arn": description["TrainingJobArn"],
        "model_artifact_uri": (description.get("ModelArtifacts") or {}).get("S3ModelArtifacts", ""),
        "metrics": {m["MetricName"]: m["Value"] for m in description.get("FinalMetricDataList") or []},
        "status": description["TrainingJobStatus"],
        "billable_seconds": description.get("BillableTimeInSeconds", 0),
    }


def wait_for(client: Any, name: str, poll_seconds: float, timeout_seconds: float) -> dict[str, Any]:
    """Wait for the job to finish with boto3's `training_job_completed_or_stopped` waiter (DescribeTrainingJob every
    `poll_seconds`); raise with SageMaker's reason unless it completed."""
    attempts = math.ceil(timeout_seconds / poll_seconds) + 1  # the waiter does not sleep after its last attempt
    try:
        client.get_waiter("training_job_completed_or_stopped").wait(
            TrainingJobName=name, WaiterConfig={"Delay": poll_seconds, "MaxAttempts": attempts})
    except WaiterError as error:
        last = error.last_response or {}
        if "Error" in last:  # the job is unknown, or the call was refused: SageMaker's error, not a timeout
            raise ClientError(last, "DescribeTrainingJob") from error
        status = last.get("TrainingJobStatus")
        if status not in FINISHED:  # attempts used up: the job is still going
            raise TimeoutError(
                f"SageMaker training job {name} is still {status or 'not finished'} after {timeout_seconds:.0f} s"
            ) from error
    description = client.describe_training_job(TrainingJobName=name)
    status = description["TrainingJobStatus"]
    if status != "Completed":
        reason = description.get("FailureReason") or description.get("SecondaryStatus") or "no reason given"
        raise TrainingJobFailed(
            f"SageMaker training job {name} ended {status}: {reason}. "
            f"Its logs are in CloudWatch under /aws/sagemaker/TrainingJobs/{name}"
        )
    return description


def abandoned(client: Any, name: str, error: BaseException) -> str:
    """Request a stop of job `name`, whose end the provider will not see, and say so; when the stop is refused, the
    job's status (it may have ended meanwhile), or the command that stops it."""
    cause = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    waiting = f"waiting for SageMaker training job {name} failed ({cause})"
    try:
        client.stop_training_job(TrainingJobName=name)
    except Exception as stop_error:  # already failing: report both
        refused = f"{type(stop_error).__name__}: {stop_error}"
        try:
            status = client.describe_training_job(TrainingJobName=name)["TrainingJobStatus"]
        except Exception:  # the same refusal, most likely: the command below is what is left
            status = ""
        if status and status != "InProgress":
            return f"{waiting}; it is {status} now (the stop was refused: {refused}). Run `pulumi up` again"
        return (f"{waiting}, and stopping it failed too ({refused}): Pulumi has no record of it; stop it with "
                f"`aws sagemaker stop-training-job --training-job-name {name}`")
    return (f"{waiting}; a stop was requested (the job goes Stopping, then Stopped), as Pulumi records no job it "
            "did not see finish. Run `pulumi up` again to start a new one")


class TrainingJobProvider(ResourceProvider):
    """Creates, waits for and reads SageMaker training jobs; holds no client (it is pickled)."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        """Start the job and wait for it. A job whose end is not seen (the wait timed out, or a call was refused)
        has a stop requested before the error is raised: Pulumi records a resource only when `create` returns, so a
        job left running would bill unseen, and the next `pulumi up` would start another. An interrupted `pulumi up`
        is not seen here (the provider host ignores Cancel, and signals reach only its main thread, not the one
        running `create`): the next `create` of the same inputs waits for the job that `up` left running
        (`running_job`) instead of starting another."""
        client = clients.sagemaker(props["region"])
        name = running_job(client, props)
        if name is None:
            name = job_name(props, time.time())
            client.create_training_job(**create_request(name, props))
        try:
            description = wait_for(client, name, float(props["poll_seconds"]), float(props["timeout_seconds"]))
        except TrainingJobFailed:
            raise
        except Exception as error:
            raise TrainingJobAbandoned(abandoned(client, name, error)) from error
        return CreateResult(name, {**props, **outputs_of(description)})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return run_diff(olds, news, OUTPUTS, REPLACE_ON)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Only inputs that do not need a new job changed: keep the job's outputs, record the new inputs."""
        return run_update(olds, news, OUTPUTS)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        client = clients.sagemaker(props["region"])
        status = client.describe_training_job(TrainingJobName=id_)["TrainingJobStatus"]
        if status == "InProgress":
            client.stop_training_job(TrainingJobName=id_)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        client = clients.sagemaker(props["region"])
        return ReadResult(id_, {**props, **outputs_of(client.describe_training_job(TrainingJobName=id_))})


class TrainingJob(pulumi.dynamic.Resource):
    """A SageMaker training job of the project's training image; see `create_request` for the inputs it uses.

    `image_uri` should name the image by digest (`infra.images.ensure_image`); `kms_key_id`
    is the data key's id or ARN and encrypts both the volume and the output.
    """

    job_name: pulumi.Output[str]
    job_arn: pulumi.Output[str]
    model_artifact_uri: pulumi.Output[str]
    metrics: pulumi.Output[dict]
    status: pulumi.Output[str]
    billable_seconds: pulumi.Output[int]

    def __init__(
        self,
        name: str,
        *,
        region: pulumi.Input[str],
        role_arn: pulumi.Input[str],
        image_uri: pulumi.Input[str],
        train_uri: pulumi.Input[str],
        output_uri: pulumi.Input[str],
        checkpoint_uri: pulumi.Input[str],
        data_hash: pulumi.Input[str],
        code_version: pulumi.Input[str],
        hyperparameters: pulumi.Input[dict],
        kms_key_id: pulumi.Input[str],
        subnet_ids: pulumi.Input[list],
        security_group_ids: pulumi.Input[list],
        metric_definitions: dict[str, str],
        instance_type: str = "ml.m5.xlarge",
        instance_count: int = 1,
        volume_size_gb: int = 30,
        use_spot: bool = True,
        max_runtime_seconds: int = 3600,
        max_wait_seconds: int = 7200,
        tags: dict[str, str] | None = None,
        poll_seconds: float = 30,
        timeout_seconds: float = 4 * 3600,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "kind": TRAINING_JOB,
            "name_prefix": name,
            "region": region,
            "role_arn": role_arn,
            "image_uri": image_uri,
            "train_uri": train_uri,
            "output_uri": output_uri,
            "checkpoint_uri": checkpoint_uri,
            "data_hash": data_hash,
            "code_version": code_version,
            "hyperparameters": hyperparameters,
            "volume_kms_key_id": kms_key_id,
            "output_kms_key_id": kms_key_id,
            "subnet_ids": subnet_ids,
            "security_group_ids": security_group_ids,
            "enable_network_isolation": False,
            "metric_definitions": metric_definitions,
            "instance_type": instance_type,
            "instance_count": instance_count,
            # The hosts of a multi-instance job exchange histograms of the training data: encrypted.
            "inter_container_encryption": instance_count > 1,
            "volume_size_gb": volume_size_gb,
            "use_spot": use_spot,
            "max_runtime_seconds": max_runtime_seconds,
            "max_wait_seconds": max_wait_seconds,
            "tags": tags or {},
            "poll_seconds": poll_seconds,
            "timeout_seconds": timeout_seconds,
            **{key: None for key in OUTPUTS},
        }
        super().__init__(TrainingJobProvider(), name, props, opts)
