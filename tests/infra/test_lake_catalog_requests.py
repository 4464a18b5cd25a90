"""The lake catalog's Glue tables and database, Athena workgroup and named queries, as the requests AWS receives,
pass the Glue and Athena service models botocore ships (members, required members, types, enums, lengths, patterns).

pulumi-aws builds the requests itself; the test maps each resource's inputs onto the operation's input shape
(CreateTable's TableInput, CreateDatabase's DatabaseInput, CreateWorkGroup, CreateNamedQuery), matching member names
without regard to case (`serDeInfo` is SerdeInfo, `enforceWorkgroupConfiguration` EnforceWorkGroupConfiguration) and
renaming the two inputs the provider names otherwise (`kmsKeyArn` is KmsKey, a named query's `query` QueryString).
A member the shape lacks is reported, not dropped. The checks themselves are tests/botocore_shapes.py's.
"""

from __future__ import annotations

from typing import Any

import botocore.session
import pytest
from botocore.model import Shape

from infra.offline import OfflineRun
from tests.botocore_shapes import model_problems, parameter_problems

from .helpers import lake_catalog_run

RENAMED = {"kmsKeyArn": "KmsKey", "query": "QueryString"}
"""pulumi-aws inputs whose request member has another name."""
PROVIDER_ONLY = {"forceDestroy", "region", "tagsAll"}
"""Inputs the provider acts on itself; no request member carries them."""
SESSION = botocore.session.get_session()


def shape(service: str, operation: str) -> Shape:
    return SESSION.get_service_model(service).operation_model(operation).input_shape


def to_request(value: Any, shape: Shape) -> Any:
    """`value` (pulumi-aws inputs, camelCase) with the member names of `shape`, and integers as integers."""
    if shape.type_name == "structure" and isinstance(value, dict):
        members = {name.lower(): name for name in shape.members}
        request = {}
        for key, item in value.items():
            if key in PROVIDER_ONLY:
                continue
            member = RENAMED.get(key) or members.get(key.lower(), key)
            request[member] = to_request(item, shape.members[member]) if member in shape.members else item
        return request
    if shape.type_name == "list":
        return [to_request(item, shape.member) for item in value]
    if shape.type_name == "map":
        return {key: to_request(item, shape.value) for key, item in value.items()}
    if shape.type_name in ("integer", "long") and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def problems(request: dict, shape: Shape) -> list[str]:
    return parameter_problems(request, shape) + model_problems(request, shape, shape.name)


@pytest.fixture(scope="module")
def run() -> OfflineRun:
    return lake_catalog_run("ephemeral-pr-42")


def create_table(inputs: dict) -> dict:
    table = {key: value for key, value in inputs.items() if key != "databaseName"}
    return {"DatabaseName": inputs["databaseName"],
            "TableInput": to_request(table, shape("glue", "CreateTable").members["TableInput"])}


def test_each_table_is_a_valid_create_table_request(run):
    tables = run.of_type("aws:glue/catalogTable:CatalogTable")
    assert len(tables) == 3
    for table in tables:
        assert problems(create_table(table.inputs), shape("glue", "CreateTable")) == [], table.name


def test_the_database_is_a_valid_create_database_request(run):
    (database,) = run.of_type("aws:glue/catalogDatabase:CatalogDatabase")
    operation = shape("glue", "CreateDatabase")
    request = {"DatabaseInput": to_request(database.inputs, operation.members["DatabaseInput"])}
    assert problems(request, operation) == []


def test_the_workgroup_is_a_valid_create_workgroup_request(run):
    (workgroup,) = run.of_type("aws:athena/workgroup:Workgroup")
    operation = shape("athena", "CreateWorkGroup")
    request = to_request(workgroup.inputs, operation)
    assert problems(request, operation) == []
    assert request["Configuration"]["ResultConfiguration"]["EncryptionConfiguration"]["EncryptionOption"] == "SSE_KMS"


def test_each_named_query_is_a_valid_create_named_query_request(run):
    operation = shape("athena", "CreateNamedQuery")
    for query in run.of_type("aws:athena/namedQuery:NamedQuery"):
        assert problems(to_request(query.inputs, operation), operation) == [], query.name


@pytest.mark.parametrize(
    ("operation", "request_", "reported"),
    [
        (("athena", "CreateWorkGroup"), {"Name": "retail dev", "Configuration": {"BytesScannedCutoffPerQuery": 10}},
         ["does not match", "below the minimum 10000000"]),
        (("glue", "CreateTable"), {"DatabaseName": "d", "TableInput": {"Name": "t", "StorageDescriptor": {
            "Columns": [{"Name": "x" * 256, "Type": "string"}], "SerDeInfo": {}}}},
         ["length 256", "not a member of StorageDescriptor"]),
    ],
    ids=["bad workgroup", "bad table"],
)
def test_the_check_reports_what_the_service_would_refuse(operation, request_, reported):
    found = problems(request_, shape(*operation))
    assert all(any(text in problem for problem in found) for text in reported), found
