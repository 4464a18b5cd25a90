"""Offline checks of a CreateTrainingJob request against SageMaker's own service model and its documentation.

Three layers, each a list of problems (empty: the request passes):

- `botocore_problems`: botocore's ParamValidator on the operation's input shape, what boto3
  checks before sending (tests/botocore_shapes.py);
- `model_problems`: what ParamValidator leaves to the service (tests/botocore_shapes.py): enum
  values, patterns, maximum lengths, list sizes and values;
- `documented_problems`: formats the API reference states in prose that the model's
  patterns do not capture (`DOCUMENTED_FORMATS`), e.g. VolumeKmsKeyId being a key id or
  key ARN, while its pattern `[a-zA-Z0-9:/_-]*` also admits an alias.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import botocore.session
import regex

from tests.botocore_shapes import model_problems as shape_model_problems
from tests.botocore_shapes import parameter_problems

SAGEMAKER = botocore.session.get_session().get_service_model("sagemaker")
INPUT_SHAPE = SAGEMAKER.operation_model("CreateTrainingJob").input_shape

KEY_ID = r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})"
REGION = r"[a-z]{2}(-[a-z]+)+-\d"
KEY_ARN = rf"arn:aws[a-z-]*:kms:{REGION}:\d{{12}}:key/{KEY_ID}"
ALIAS = r"alias/[a-zA-Z0-9/_-]+"
ALIAS_ARN = rf"arn:aws[a-z-]*:kms:{REGION}:\d{{12}}:{ALIAS}"
ECR_IMAGE = rf"\d{{12}}\.dkr\.ecr\.{REGION}\.amazonaws\.com/[a-z0-9._/-]+(:[\w.-]{{1,128}}|@sha256:[0-9a-f]{{64}})"


def _matches(pattern: str) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, str) and regex.fullmatch(pattern, value) is not None


def _spot_waits_long_enough(request: dict) -> bool:
    if not request.get("EnableManagedSpotTraining"):
        return True
    stopping = request.get("StoppingCondition", {})
    return stopping.get("MaxWaitTimeInSeconds", -1) >= stopping.get("MaxRuntimeInSeconds", 86400)


DOCUMENTED_FORMATS: list[tuple[str, Callable[[Any], bool], str]] = [
    ("TrainingJobName", _matches(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"),
     "1-63 letters, digits and hyphens, starting and ending with a letter or digit"),
    ("RoleArn", _matches(r"arn:aws[a-z-]*:iam::\d{12}:role/[a-zA-Z_0-9+=,.@/-]+"), "an IAM role ARN"),
    ("AlgorithmSpecification.TrainingImage", _matches(ECR_IMAGE),
     "an ECR image path, registry/repository[:tag] or registry/repository[@digest]"),
    ("ResourceConfig.VolumeKmsKeyId", _matches(f"{KEY_ID}|{KEY_ARN}"),
     "a KMS key id or the ARN of a KMS key (no alias)"),
    ("OutputDataConfig.KmsKeyId", _matches(f"{KEY_ID}|{KEY_ARN}|{ALIAS}|{ALIAS_ARN}"),
     "a KMS key id, key ARN, alias name or alias ARN"),
    ("VpcConfig.Subnets", lambda ids: all(_matches(r"subnet-[0-9a-f]{8,17}")(i) for i in ids), "subnet ids"),
    ("", _spot_waits_long_enough, "with managed spot training, MaxWaitTimeInSeconds >= MaxRuntimeInSeconds"),
    ("", lambda r: not r.get("EnableManagedSpotTraining") or bool(r.get("CheckpointConfig", {}).get("S3Uri")),
     "managed spot training keeps checkpoints (CheckpointConfig.S3Uri)"),
]


def botocore_problems(request: dict) -> list[str]:
    return parameter_problems(request, INPUT_SHAPE)


def model_problems(request: dict) -> list[str]:
    return shape_model_problems(request, INPUT_SHAPE, "CreateTrainingJob")


def _at(request: dict, path: str) -> Any:
    value: Any = request
    for part in path.split(".") if path else ():
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def documented_problems(request: dict) -> list[str]:
    problems = []
    for path, valid, expected in DOCUMENTED_FORMATS:
        value = _at(request, path)
        if path and value is None:
            continue
        if not valid(value if path else request):
            problems.append(f"{path or 'request'}: {value!r} is not {expected}" if path else f"request: not {expected}")
    return problems
