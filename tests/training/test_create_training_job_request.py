"""The CreateTrainingJob request `retail train --cloud` makes with its defaults, checked against SageMaker's model."""

from __future__ import annotations

import copy
import time

import pytest

from infra.offline import run_offline
from infra.providers.kinds import TRAINING_JOB
from infra.providers.program import TRAINING_PROJECT
from infra.providers.training_job import create_request, job_name
from tests.training.sagemaker_contract import botocore_problems, documented_problems, model_problems

OLD_VOLUME_KEY = "alias/retail-dev-kms-data"
"""What the CLI used to send as VolumeKmsKeyId."""


@pytest.fixture
def request_from_cli_defaults(train) -> dict:
    """The request the TrainingJob provider would send for the program the CLI built (no options but the manifest)."""
    run = train()
    assert run.result.exit_code == 0, run.result.output
    offline = run_offline(run.training.program, project=TRAINING_PROJECT, stack="train-dev")
    props = next(r.inputs for r in offline.resources if r.inputs.get("kind") == TRAINING_JOB)
    return create_request(job_name(props, time.time()), props)


def test_the_request_passes_botocores_parameter_validation(request_from_cli_defaults):
    assert botocore_problems(request_from_cli_defaults) == []


def test_the_request_meets_the_models_enums_patterns_and_lengths(request_from_cli_defaults):
    assert model_problems(request_from_cli_defaults) == []


def test_the_request_meets_the_documented_formats(request_from_cli_defaults):
    request = request_from_cli_defaults
    assert documented_problems(request) == []
    assert request["ResourceConfig"]["VolumeKmsKeyId"].startswith("arn:aws:kms:")
    assert "@sha256:" in request["AlgorithmSpecification"]["TrainingImage"]
    assert request["EnableManagedSpotTraining"] is True and request["VpcConfig"]["Subnets"]


def test_the_old_alias_as_volume_key_fails_the_documented_format(request_from_cli_defaults):
    request = copy.deepcopy(request_from_cli_defaults)
    request["ResourceConfig"]["VolumeKmsKeyId"] = OLD_VOLUME_KEY
    assert model_problems(request) == []  # the model's pattern admits it: only the documentation rules it out
    assert documented_problems(request) == [
        f"ResourceConfig.VolumeKmsKeyId: {OLD_VOLUME_KEY!r} is not a KMS key id or the ARN of a KMS key (no alias)"
    ]


@pytest.mark.parametrize(
    ("change", "check", "expected"),
    [
        (lambda r: r["AlgorithmSpecification"].update(TrainingInputMode="Files"), model_problems,
         "TrainingInputMode: 'Files' is not one of"),
        (lambda r: r.update(TrainingJobName="x" * 64), model_problems, "TrainingJobName: length 64 is above"),
        (lambda r: r["VpcConfig"].update(Subnets=[]), model_problems, "Subnets: 0 items is below the minimum 1"),
        (lambda r: r["HyperParameters"].update(xgb_trials=4), botocore_problems, "Invalid type for parameter"),
        (lambda r: r.pop("OutputDataConfig"), botocore_problems, "Missing required parameter"),
        (lambda r: r["StoppingCondition"].update(MaxWaitTimeInSeconds=60), documented_problems,
         "MaxWaitTimeInSeconds >= MaxRuntimeInSeconds"),
        (lambda r: r.update(RoleArn="arn:aws:iam::123456789012:user/ci"), documented_problems, "an IAM role ARN"),
    ],
)
def test_each_check_reports_a_request_that_breaks_it(request_from_cli_defaults, change, check, expected):
    request = copy.deepcopy(request_from_cli_defaults)
    change(request)
    assert any(expected in problem for problem in check(request)), check(request)
