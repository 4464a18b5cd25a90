"""Small readers for the recorded resources' inputs, and the lake catalog's program the lake tests share."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pulumi_aws as aws

from infra.config import LakeCatalogConfig
from infra.lake_catalog import LakeCatalog, LakeCatalogArgs
from infra.mocks import ACCOUNT_ID
from infra.offline import OfflineRun, RegisteredResource, run_offline
from ml.lake_queries import LAKE_QUERIES

LAKE_REGION = "ap-southeast-1"
DATA_KEY = f"arn:aws:kms:{LAKE_REGION}:{ACCOUNT_ID}:key/data"


def build(program: Callable[[], Any]) -> OfflineRun:
    """Run `program` (typically one component) under the shared mocks; keep what it registered."""

    def wrapped() -> None:
        program()

    return run_offline(wrapped, project="retail-mlops", stack="test")


def lake_catalog_run(environment: str = "test", settings: LakeCatalogConfig | None = None) -> OfflineRun:
    """The lake catalog component over a lake bucket of its own program, so the tables' inputs depend on that
    bucket."""

    def program() -> None:
        bucket = aws.s3.Bucket("lake-raw")
        LakeCatalog("catalog", LakeCatalogArgs(
            environment=environment, account_id=ACCOUNT_ID, region=LAKE_REGION, lake_bucket=bucket.bucket,
            lake_bucket_arn=bucket.arn, data_kms_key_arn=DATA_KEY, queries=LAKE_QUERIES,
            settings=settings or LakeCatalogConfig()))

    return build(program)


def policy_of(resource: RegisteredResource, key: str = "policy") -> dict:
    """The JSON policy document a resource was given, parsed."""
    return json.loads(resource.inputs[key])


def statements(resource: RegisteredResource, key: str = "policy") -> list[dict]:
    return policy_of(resource, key)["Statement"]


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]
