"""The moto server as SageMaker for the provider tests, with the job outcomes a test asks for.

moto 5.2 completes every training job at once and lacks StopTrainingJob and
DeleteModelPackage. The providers still talk HTTP to the server; these fixtures shape
the server's state (in this process, where ThreadedMotoServer runs) so a test can have
a job that runs for a few polls, fails with a reason, or reports metrics, and they add
the two missing calls with AWS's documented behaviour (stop: status Stopped; delete: the
version is gone), so a provider that stopped or deregistered would be seen doing it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import boto3
import dill
import pytest
from moto.sagemaker.models import SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse
from pulumi.dynamic import ResourceProvider
from pulumi.dynamic.dynamic import serialize_provider

REGION = "ap-southeast-1"
ARTIFACTS = "package-facts-artifacts"
"""The artifacts bucket of the registry tests: training jobs' reports and local bundles."""
SECRET = "provider-test-secret-0123456789abcdef"
"""An AWS secret key no provider may carry into its pickle (moto accepts any)."""


def as_the_provider_host_loads_it(provider: ResourceProvider) -> tuple[ResourceProvider, bytes]:
    """`provider` serialized as `pulumi.dynamic.Resource` stores it, then loaded as the provider host's
    `get_provider` does (base64, dill); returns the loaded provider and the pickled bytes."""
    pickled = base64.b64decode(serialize_provider(provider))
    return dill.loads(pickled), pickled


@dataclass
class JobOutcomes:
    """What the next training jobs do on the server."""

    status: str = "Completed"
    failure_reason: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    polls_in_progress: int = 0
    """How many DescribeTrainingJob calls report InProgress before the final status."""
    describe_calls: int = 0
    _left: dict[str, int] = field(default_factory=dict)


@pytest.fixture
def jobs(moto_endpoint, monkeypatch) -> JobOutcomes:
    outcomes = JobOutcomes()
    create, describe = SageMakerModelBackend.create_training_job, SageMakerModelBackend.describe_training_job

    def create_training_job(self, training_job_name, *args, **kwargs):
        job = create(self, training_job_name, *args, **kwargs)
        job.training_job_status = job.secondary_status = outcomes.status
        job.final_metric_data_list = [
            {"MetricName": name, "Value": value, "Timestamp": job.creation_time}
            for name, value in outcomes.metrics.items()
        ]
        if outcomes.failure_reason:
            job.failure_reason = outcomes.failure_reason
        outcomes._left[training_job_name] = outcomes.polls_in_progress
        return job

    def describe_training_job(self, training_job_name):
        outcomes.describe_calls += 1
        response = dict(describe(self, training_job_name))
        if outcomes._left.get(training_job_name, 0) > 0:
            outcomes._left[training_job_name] -= 1
            response["TrainingJobStatus"] = "InProgress"
        return response

    def stop_training_job(self):
        job = self.sagemaker_backend.training_jobs[self._get_param("TrainingJobName")]
        job.training_job_status = "Stopped"
        outcomes._left.pop(job.training_job_name, None)
        return "{}"

    monkeypatch.setattr(SageMakerModelBackend, "create_training_job", create_training_job)
    monkeypatch.setattr(SageMakerModelBackend, "describe_training_job", describe_training_job)
    monkeypatch.setattr(SageMakerResponse, "stop_training_job", stop_training_job, raising=False)
    return outcomes


@pytest.fixture
def model_group(moto_deletes_model_packages, request) -> str:
    """A fresh model package group on the server (DeleteModelPackage added, see the module docstring)."""
    name = f"group-{request.node.name.replace('_', '-')[-50:]}".strip("-")
    boto3.client("sagemaker", region_name=REGION).create_model_package_group(ModelPackageGroupName=name)
    return name


def job_report(*, run: str, macro_f1: float | None, gate_passed: bool = True, family: str = "xgboost") -> bytes:
    """A training job's `output.tar.gz` as SageMaker uploads SM_OUTPUT_DATA_DIR, holding `summary.json` in the
    shape ml/train.py writes it (winner, the winner's metrics, gate, the gold channel's lineage) at its root."""
    import io
    import json
    import tarfile

    metrics = {"accuracy": 0.8} | ({} if macro_f1 is None else {"macro_f1": macro_f1})
    summary = json.dumps({"winner": family, "metrics": metrics, "gate": {"passed": gate_passed, "checks": []},
                          "lineage": {"run_id": run}}).encode()
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as archive:
        member = tarfile.TarInfo("summary.json")
        member.size = len(summary)
        archive.addfile(member, io.BytesIO(summary))
    return packed.getvalue()


@pytest.fixture
def artifacts(moto_endpoint):
    """The artifacts bucket (`ARTIFACTS`) on the moto server; an S3 client."""
    s3 = boto3.client("s3", region_name=REGION)
    if ARTIFACTS not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=ARTIFACTS, CreateBucketConfiguration={"LocationConstraint": REGION})
    return s3
