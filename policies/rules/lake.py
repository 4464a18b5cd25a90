"""Querying the lake: Athena workgroups that hold their own settings, encrypt results and bound each scan, and Glue
tables that stay inside the stack's lake.

An Athena workgroup's settings bind a query only when the workgroup enforces them; otherwise a client may send its
own result location and encryption (https://docs.aws.amazon.com/athena/latest/ug/workgroups-settings-override.html).
pulumi-aws defaults `enforce_workgroup_configuration` to true, so only an explicit false fails.

A Glue table's storage location is an S3 URI computed from the lake bucket's name, so before a deploy it may be
unknown; what is known is where its value came from. The table rule asks that the location was computed from a
bucket of this stack (the input's dependencies, as pulumi-policy reports them), or names one by its `bucket`
input, and that every projected partition (`storage.location.template`) lies under that location.
"""

from __future__ import annotations

from collections.abc import Sequence

from infra.config import MIN_SCAN_CUTOFF_BYTES
from policies.model import Resource, ResourceRule, StackRule
from policies.rules.s3 import BUCKETS

WORKGROUP = "aws:athena/workgroup:Workgroup"
CATALOG_TABLE = "aws:glue/catalogTable:CatalogTable"
KMS_RESULT_ENCRYPTION = {"SSE_KMS", "CSE_KMS"}
TEMPLATE = "storage.location.template"


def results_encrypted_and_enforced(resource: Resource) -> list[str]:
    problems = []
    if resource.get("configuration", "enforceWorkgroupConfiguration", default=True) is not True:
        problems.append("lets clients override its settings (result location, encryption)")
    encryption = resource.get("configuration", "resultConfiguration", "encryptionConfiguration", default={})
    option = encryption.get("encryptionOption")
    if option not in KMS_RESULT_ENCRYPTION:
        problems.append(f"writes query results encrypted with {option or 'nothing'}, not a KMS key")
    elif not encryption.get("kmsKeyArn"):
        problems.append(f"encrypts query results with {option} but names no KMS key")
    return problems


def scans_bounded(resource: Resource) -> list[str]:
    cutoff = resource.get("configuration", "bytesScannedCutoffPerQuery")
    if cutoff is None:
        return ["lets a query scan without limit (no bytes-scanned cutoff)"]
    if float(cutoff) >= MIN_SCAN_CUTOFF_BYTES:
        return []
    return [f"sets a cutoff of {cutoff} bytes, below Athena's minimum of {MIN_SCAN_CUTOFF_BYTES:,} bytes"]


def _location_problems(table: Resource, buckets: Sequence[Resource]) -> list[str]:
    location = table.get("storageDescriptor", "location")
    if not location:
        return ["has no storage location"]
    from_stack = any(
        bucket.urn and bucket.urn in table.dependencies.get("storageDescriptor", ()) for bucket in buckets
    ) or any(bucket.get("bucket") and str(location).startswith(f"s3://{bucket.get('bucket')}/") for bucket in buckets)
    problems = [] if from_stack else [f"reads {location}, which is in no bucket of this stack"]
    template = table.get("parameters", TEMPLATE)
    if template and not str(template).startswith(str(location)):
        problems.append(f"projects its partitions to {template}, outside its location {location}")
    return problems


def tables_in_the_stack_lake(resources: Sequence[Resource]) -> list[tuple[str, str]]:
    buckets = [r for r in resources if r.type in BUCKETS]
    return [
        (table.name, problem)
        for table in resources
        if table.type == CATALOG_TABLE
        for problem in _location_problems(table, buckets)
    ]


RULES = [
    ResourceRule(
        "athena-results-kms-enforced",
        "Make the Athena workgroup enforce its settings and encrypt results with the platform's KMS key "
        "(enforce_workgroup_configuration=True, encryption_option='SSE_KMS', kms_key_arn=...).",
        frozenset({WORKGROUP}),
        results_encrypted_and_enforced,
    ),
    ResourceRule(
        "athena-scan-cutoff",
        "Bound the bytes one query may scan (bytes_scanned_cutoff_per_query, from retail:lakeCatalog).",
        frozenset({WORKGROUP}),
        scans_bounded,
    ),
    StackRule(
        "glue-table-in-stack-lake",
        "Point Glue tables at the stack's own lake bucket, with projected partitions under the table's location "
        "(infra.lake_catalog).",
        tables_in_the_stack_lake,
    ),
]
