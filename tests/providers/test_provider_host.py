"""The dynamic providers as Pulumi runs them: serialized with the resource, then created by a fresh provider host.

`pulumi.dynamic.Resource` pickles its provider with dill into the `__provider` input; the
engine hands that input back to the dynamic provider plugin, a separate Python process
(`python -m pulumi.dynamic`, a gRPC ResourceProvider) that unpickles it and calls
`create`. Here the program runs under the mock runtime (which records `__provider` as
the engine would store it), the provider host starts in a new interpreter with nothing
but the AWS settings that point at moto, and Create goes to it over gRPC.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import grpc
import pulumi
import pytest
from pulumi.runtime import rpc
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

from infra.offline import run_offline
from infra.providers.model_version import ModelVersion
from infra.providers.training_job import TrainingJob
from tests.providers.conftest import REGION
from tests.providers.test_training_job import IMAGE, KEY

REPO = Path(__file__).resolve().parents[2]
PROVIDER_KEY = "__provider"


def aws_test_env(moto_endpoint: str, **extra: str) -> dict[str, str]:
    """A provider host's whole environment: PATH, moto's endpoint with fake credentials, and `extra`."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        **extra,
    }


@contextmanager
def started_host(executable: str, cwd: Path, env: dict[str, str]) -> Iterator[provider_pb2_grpc.ResourceProviderStub]:
    """`<executable> -m pulumi.dynamic` in `cwd` with exactly `env`, configured and reached over gRPC; killed after."""
    host = subprocess.Popen([executable, "-u", "-m", "pulumi.dynamic"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = host.stdout.readline()  # the host prints its port, then serves
        assert line.strip().isdigit(), f"the provider host did not start: {line!r} {host.stderr.read()}"
        with grpc.insecure_channel(f"127.0.0.1:{int(line)}") as channel:
            stub = provider_pb2_grpc.ResourceProviderStub(channel)
            stub.Configure(provider_pb2.ConfigureRequest())
            yield stub
    finally:
        host.kill()
        host.wait()


@pytest.fixture
def provider_host(moto_endpoint, tmp_path) -> Iterator[provider_pb2_grpc.ResourceProviderStub]:
    """`python -m pulumi.dynamic` in a new interpreter, outside the repository, reached over gRPC."""
    # the project on the path, as the venv's editable install puts it on the provider host's
    with started_host(sys.executable, tmp_path, aws_test_env(moto_endpoint, PYTHONPATH=str(REPO))) as stub:
        yield stub


@pytest.fixture(autouse=True)
def _neutral_pulumi_runtime():
    yield
    pulumi.runtime.reset_options()
    pulumi.runtime.set_all_config({})


def registered_inputs(make_resource) -> tuple[str, dict]:
    """URN and inputs (with `__provider`) of the one dynamic resource `make_resource` registers."""
    run = run_offline(make_resource, project="retail-mlops-training", stack="train-test")
    (resource,) = [r for r in run.resources if PROVIDER_KEY in r.inputs]
    return resource.urn, resource.inputs


def wire(properties: dict):
    """Properties as the engine sends them to a provider (a protobuf Struct), as the provider host serializes them."""
    loop = asyncio.new_event_loop()  # not asyncio.run: that would unset this thread's loop, which Pulumi's runtime uses
    try:
        return loop.run_until_complete(rpc.serialize_properties(properties, {}))
    finally:
        loop.close()


def create(stub, urn: str, inputs: dict) -> tuple[str, dict]:
    properties = wire(inputs)
    response = stub.Create(provider_pb2.CreateRequest(urn=urn, properties=properties))
    return response.id, rpc.deserialize_properties(response.properties)


def test_the_pickled_training_job_provider_refers_to_the_project_only_by_module(jobs):
    _, inputs = registered_inputs(training_job)
    pickled = base64.b64decode(inputs[PROVIDER_KEY])
    assert b"infra.providers.training_job" in pickled and b"tests." not in pickled


def test_a_fresh_provider_host_creates_the_training_job_against_sagemaker(jobs, provider_host):
    jobs.metrics = {"xgboost_holdout_macro_f1": 0.9}
    urn, inputs = registered_inputs(training_job)
    job_name, outs = create(provider_host, urn, inputs)
    job = boto3.client("sagemaker", region_name=REGION).describe_training_job(TrainingJobName=job_name)
    assert job["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert job["ResourceConfig"]["VolumeKmsKeyId"] == KEY
    assert outs["metrics"] == {"xgboost_holdout_macro_f1": 0.9} and outs["status"] == "Completed"
    assert outs[PROVIDER_KEY] == inputs[PROVIDER_KEY]


def test_a_fresh_provider_host_registers_a_version_and_its_delete_keeps_it(model_group, provider_host):
    urn, inputs = registered_inputs(lambda: model_version(model_group))
    arn, outs = create(provider_host, urn, inputs)
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    assert sagemaker.describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"]["family"] == "xgboost"
    provider_host.Delete(provider_pb2.DeleteRequest(id=arn, urn=urn, properties=wire(outs)))
    assert sagemaker.describe_model_package(ModelPackageName=arn)["ModelApprovalStatus"] == "Approved"


def training_job() -> None:
    TrainingJob(
        "retail-test-train",
        region=REGION,
        role_arn="arn:aws:iam::123456789012:role/sagemaker",
        image_uri=IMAGE,
        train_uri="s3://lake-gold/gold/run-1/",
        output_uri="s3://artifacts/training/",
        checkpoint_uri="s3://artifacts/checkpoints/",
        data_hash="data-1",
        code_version="code-1",
        hyperparameters={"families": "xgboost"},
        kms_key_id=KEY,
        subnet_ids=["subnet-a"],
        security_group_ids=["sg-1"],
        metric_definitions={"xgboost_holdout_macro_f1": "xgboost_holdout_macro_f1=([0-9.]+);"},
        poll_seconds=0.01,
        timeout_seconds=30,
    )


def model_version(group: str) -> None:
    ModelVersion(
        "retail-test-model",
        region=REGION,
        group_name=group,
        model_artifact_uri="s3://artifacts/training/job/output/model.tar.gz",
        image_uri="123456789012.dkr.ecr.ap-southeast-1.amazonaws.com/retail-test-registry/inference:0.1.0",
        metrics={"xgboost_holdout_accuracy": 0.8},
        lineage={"data_hash": "data-1", "code_version": "code-1", "training_job_arn": "arn"},
        family="xgboost",
        approval_status="Approved",
    )
