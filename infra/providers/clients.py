"""boto3 clients for the providers, made inside each provider call (a provider is pickled, a client is not).

`AWS_ENDPOINT_URL` (honoured by boto3 itself) points them at moto in tests.
"""

from __future__ import annotations

from typing import Any

import boto3


def sagemaker(region: str) -> Any:
    return boto3.client("sagemaker", region_name=region)


def ecr(region: str) -> Any:
    return boto3.client("ecr", region_name=region)


def s3(region: str) -> Any:
    return boto3.client("s3", region_name=region)


def emr_serverless(region: str) -> Any:
    return boto3.client("emr-serverless", region_name=region)
