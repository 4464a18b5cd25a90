"""The lake-query rules: an Athena workgroup must enforce KMS-encrypted results and bound each scan, and a Glue table
must read the stack's own lake bucket with its projected partitions under its location.

Beyond each rule's one passing and one failing example (tests/policies/cases.py): the settings each rule reads
one by one, and the catalog the platform declares (infra/lake_catalog.py, under the mock runtime) passing all three.
"""

from __future__ import annotations

import botocore.session
import pytest

from infra.config import MIN_SCAN_CUTOFF_BYTES, LakeCatalogConfig
from policies.catalog import BY_NAME
from policies.evaluate import evaluate
from policies.offline import resources_of
from tests.infra.helpers import lake_catalog_run
from tests.policies.cases import BUCKET, GLUE_TABLE, LAKE_ROOT, WORKGROUP, changed, res

LAKE_RULES = ("athena-results-kms-enforced", "athena-scan-cutoff", "glue-table-in-stack-lake")
RESULTS = ("configuration", "resultConfiguration", "encryptionConfiguration")


def messages(rule: str, subject) -> list[str]:
    resources = subject if isinstance(subject, list) else [subject]
    return [v.message for v in evaluate([BY_NAME[rule]], resources, {})]


@pytest.mark.parametrize(
    ("change", "reported"),
    [
        (("configuration", "enforceWorkgroupConfiguration", False), "lets clients override its settings"),
        ((*RESULTS, "kmsKeyArn", None), "encrypts query results with SSE_KMS but names no KMS key"),
        ((*RESULTS, "encryptionOption", None), "encrypted with nothing, not a KMS key"),
        (("configuration", "resultConfiguration", None), "encrypted with nothing, not a KMS key"),
    ],
    ids=["clients may override", "no key", "no encryption", "no result configuration"],
)
def test_a_workgroup_that_does_not_enforce_kms_results_fails(change, reported):
    *path, value = change
    (message,) = messages("athena-results-kms-enforced", changed(WORKGROUP, *path, value=value))
    assert reported in message


def test_client_side_kms_encryption_passes_and_the_provider_default_enforces():
    client_side = changed(WORKGROUP, *RESULTS, "encryptionOption", value="CSE_KMS")
    unstated = changed(WORKGROUP, "configuration", "enforceWorkgroupConfiguration", value=None)
    assert messages("athena-results-kms-enforced", client_side) == []
    assert messages("athena-results-kms-enforced", unstated) == []


def test_a_cutoff_below_athena_s_minimum_fails():
    below = changed(WORKGROUP, "configuration", "bytesScannedCutoffPerQuery", value=1024)
    (message,) = messages("athena-scan-cutoff", below)
    assert "sets a cutoff of 1024 bytes, below Athena's minimum of 10,000,000 bytes" in message


def test_athena_s_minimum_is_ten_million_bytes_not_ten_mebibytes():
    athena = botocore.session.get_session().get_service_model("athena")
    assert athena.shape_for("BytesScannedCutoffValue").metadata["min"] == MIN_SCAN_CUTOFF_BYTES == 10_000_000
    at, under = (changed(WORKGROUP, "configuration", "bytesScannedCutoffPerQuery", value=value)
                 for value in (10_000_000, 9_999_999))
    assert messages("athena-scan-cutoff", at) == []
    assert len(messages("athena-scan-cutoff", under)) == 1
    assert LakeCatalogConfig(bytes_scanned_cutoff_per_query=10_000_000).bytes_scanned_cutoff_per_query == 10_000_000
    with pytest.raises(ValueError, match="at least 10,000,000 bytes, Athena's minimum, got 9,999,999"):
        LakeCatalogConfig(bytes_scanned_cutoff_per_query=9_999_999)


def test_a_table_that_names_a_stack_bucket_by_its_name_passes_without_dependencies():
    named = res(BUCKET.type, "lake-raw", bucket="lake-raw")
    table = res(GLUE_TABLE.type, GLUE_TABLE.name, **GLUE_TABLE.props)  # no dependencies
    assert messages("glue-table-in-stack-lake", [named, table]) == []


def test_a_table_projecting_partitions_outside_its_location_fails():
    elsewhere = changed(GLUE_TABLE, "parameters", "storage.location.template", value="s3://other/silver/${run}/")
    (message,) = messages("glue-table-in-stack-lake", [BUCKET, elsewhere])
    assert "projects its partitions to s3://other/silver/${run}/, outside its location" in message


def test_a_table_without_a_location_fails():
    (message,) = messages("glue-table-in-stack-lake", [BUCKET, changed(GLUE_TABLE, "storageDescriptor", value={})])
    assert "has no storage location" in message


def test_a_table_in_a_bucket_of_another_stack_fails_naming_the_location():
    other = res(GLUE_TABLE.type, GLUE_TABLE.name, **GLUE_TABLE.props)
    (message,) = messages("glue-table-in-stack-lake", [BUCKET, other])
    assert f"reads {LAKE_ROOT}/silver/, which is in no bucket of this stack" in message


def test_the_lake_catalog_passes_the_lake_rules():
    resources = resources_of(lake_catalog_run())
    assert {r.type for r in resources} >= {"aws:athena/workgroup:Workgroup", "aws:glue/catalogTable:CatalogTable"}
    assert evaluate([BY_NAME[name] for name in LAKE_RULES], resources, {}) == []
