"""LakeCatalog: the Glue tables resolve to the lake root and read what the project's writers write, the Athena
workgroup enforces SSE-KMS results with the data key and a scan limit, the named queries are the saved queries,
and the query role may read the three zones and write results only (parliament finds nothing).

The tables' columns are checked against files the project's own code writes here: silver lines validated and
landed by ml.validate and ml.lake, a basket table from ml.pipeline's gold and Lake.write_partitioned, and
prediction rows from ml.prediction_log.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from infra.config import BatchScoringConfig, LakeCatalogConfig, PlatformConfig, parse_section, read_stack_file
from infra.lake_catalog import ENGINE_VERSION, database_name, workgroup_name
from infra.lake_tables import RUN, TABLES, glue_type
from infra.mocks import ACCOUNT_ID
from infra.offline import OfflineRun
from infra.platform import lake_catalog
from ml.lake import Lake
from ml.lake_queries import LAKE_QUERIES
from ml.pipeline import PARTITIONS, build_gold
from ml.prediction_log import prediction_rows, write_whole
from ml.schema import DOMAINS
from ml.validate import validate
from policies.documents import Need, allows, parliament_findings, rendered_documents
from tests.helpers import canonical_text

from .conftest import PROJECT_DIR
from .helpers import DATA_KEY, LAKE_REGION, lake_catalog_run, statements

REGION = LAKE_REGION
SETTINGS = LakeCatalogConfig(bytes_scanned_cutoff_per_query=2 * 1024**3, results_expiry_days=3)
RUN_ID = "20260101T000000Z-0a1b2c3d"


def catalog(environment: str = "test", settings: LakeCatalogConfig = SETTINGS) -> OfflineRun:
    return lake_catalog_run(environment, settings)


@pytest.fixture(scope="module")
def run() -> OfflineRun:
    return catalog()


@pytest.fixture(scope="module")
def lake_bucket(run) -> str:
    return run.named("lake-raw").outputs["bucket"]


@pytest.fixture(scope="module")
def root(lake_bucket) -> str:
    return f"s3://{lake_bucket}/lake"


@pytest.fixture(scope="module")
def tables(run) -> dict[str, dict]:
    return {t.inputs["name"]: t.inputs for t in run.of_type("aws:glue/catalogTable:CatalogTable")}


@pytest.fixture(scope="module")
def workgroup(run) -> dict:
    (group,) = run.of_type("aws:athena/workgroup:Workgroup")
    return group.inputs


@pytest.fixture(scope="module")
def results_bucket(run) -> str:
    return run.named("catalog-results-bucket").outputs["bucket"]


def template_of(table: dict) -> str:
    return table["parameters"]["storage.location.template"]


# ----------------------------------------------------------------------------- tables


def test_three_parquet_tables_in_the_stack_s_database(run, tables):
    (database,) = run.of_type("aws:glue/catalogDatabase:CatalogDatabase")
    assert set(tables) == {"silver_lines", "gold_baskets", "predictions"}
    for table in tables.values():
        assert table["databaseName"] == database.inputs["name"] == "retail_test"
        assert table["tableType"] == "EXTERNAL_TABLE"
        storage = table["storageDescriptor"]
        assert storage["serDeInfo"]["serializationLibrary"].endswith(".parquet.serde.ParquetHiveSerDe")
        assert storage["inputFormat"].endswith(".parquet.MapredParquetInputFormat")


def test_each_table_projects_its_runs_folder_below_the_lake_root(tables, root):
    assert {name: (t["storageDescriptor"]["location"], template_of(t)) for name, t in tables.items()} == {
        "silver_lines": (f"{root}/silver/", f"{root}/silver/${{run}}/lines/"),
        "gold_baskets": (f"{root}/gold/",
                         f"{root}/gold/${{run}}/baskets/STORE_REGION=${{store_region}}/BASKET_TYPE=${{basket_type}}/"),
        "predictions": (f"{root}/predictions/", f"{root}/predictions/${{run}}/baskets/"),
    }


def test_the_run_is_an_injected_projection_and_every_partition_has_a_placeholder(tables):
    for table in tables.values():
        parameters = table["parameters"]
        keys = [key["name"] for key in table["partitionKeys"]]
        assert keys[0] == RUN and parameters["projection.enabled"] == "true"
        assert parameters[f"projection.{RUN}.type"] == "injected"
        assert all(f"${{{key}}}" in template_of(table) and f"projection.{key}.type" in parameters for key in keys)
        assert template_of(table).endswith("/")


def test_the_tables_depend_on_the_lake_bucket(run):
    bucket = run.named("lake-raw").urn
    for table in run.of_type("aws:glue/catalogTable:CatalogTable"):
        assert bucket in table.property_dependencies["storageDescriptor"]


def test_the_catalog_s_tables_are_the_local_lake_s(tables):
    from ml.lake_sql import TABLES as LOCAL_TABLES

    assert [(t.name, t.zone, t.folder) for t in TABLES] == [(t.name, t.zone, t.folder) for t in LOCAL_TABLES]


def test_every_saved_query_reads_declared_tables_only():
    declared = {t.name for t in TABLES}
    for query in LAKE_QUERIES:
        named = set(re.findall(r"\bFROM\s+(\w+)", query.sql, re.IGNORECASE)) - {"run_lines", "baskets"}
        assert named and named <= declared, (query.name, named)


# ----------------------------------------------------------------------------- columns against the writers


@pytest.fixture(scope="module")
def validated():
    return validate(canonical_text(3_000))


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Lake:
    return Lake(str(tmp_path_factory.mktemp("lake")))


def file_columns(path: Path) -> list[dict[str, str]]:
    return [{"name": f.name.lower(), "type": glue_type(f.type)} for f in pq.read_schema(path)]


def resolved(template: str, root: str, values: dict[str, str]) -> str:
    path = template.removeprefix(root + "/")
    for key, value in values.items():
        path = path.replace(f"${{{key}}}", value)
    return path


def test_silver_lines_are_the_columns_and_folder_of_a_landed_run(tables, root, validated, lake):
    lines_uri, _ = lake.write_silver(RUN_ID, validated.lines, validated.quarantine)
    table = tables["silver_lines"]
    assert table["storageDescriptor"]["columns"] == file_columns(Path(lines_uri))
    assert lines_uri.startswith(f"{lake.base}/{resolved(template_of(table), root, {RUN: RUN_ID})}")


def test_gold_declares_the_fixed_columns_of_the_basket_table_and_leaves_out_the_fitted_ones(tables, root, validated,
                                                                                            lake):
    baskets = build_gold(validated.lines, 4, 0).baskets
    lake.write_partitioned(baskets, PARTITIONS, "gold", RUN_ID, "baskets")
    files = sorted(Path(lake.base, "gold", RUN_ID, "baskets").rglob("*.parquet"))
    written = {c["name"]: c["type"] for c in file_columns(files[0])}
    declared = {c["name"]: c["type"] for c in tables["gold_baskets"]["storageDescriptor"]["columns"]}
    assert {name: written.get(name) for name in declared} == declared
    left_out = set(written) - set(declared)
    assert left_out and all(re.fullmatch(r"share_d\d{5}", c) or "=" in c for c in left_out), sorted(left_out)


def test_gold_s_enums_are_the_domains_and_name_the_folders_the_lake_writes(tables, root, lake):
    grid = pl.DataFrame([{"STORE_REGION": r, "BASKET_TYPE": t, "x": 1.0}
                         for r in DOMAINS["STORE_REGION"] for t in DOMAINS["BASKET_TYPE"]])
    lake.write_partitioned(grid, PARTITIONS, "gold", "grid", "baskets")
    table = tables["gold_baskets"]
    values = {key: table["parameters"][f"projection.{key}.values"].split(",")
              for key in ("store_region", "basket_type")}
    projected = {resolved(template_of(table), root, {RUN: "grid", "store_region": region, "basket_type": kind})
                 for region in values["store_region"] for kind in values["basket_type"]}
    written = Path(lake.base, "gold", "grid").rglob("*.parquet")
    folders = {f"{path.parent.relative_to(lake.base).as_posix()}/" for path in written}
    assert projected == folders
    assert values == {"store_region": list(DOMAINS["STORE_REGION"]), "basket_type": list(DOMAINS["BASKET_TYPE"])}
    assert "gold/grid/baskets/STORE_REGION=E01/BASKET_TYPE=Small Shop/" in folders  # unencoded, as Athena projects it


def test_predictions_are_the_columns_of_the_prediction_log_rows(tables, lake):
    identity = {"model_version": "1", "model_family": "decision_tree", "bundle_sha256": "0" * 64}
    rows = prediction_rows(["1"], [200745], np.array([[0.2, 0.5, 0.3]]), ["LA", "MM", "UM"], identity, "batch",
                           "champion", dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    path = Path(lake.base, "predictions", RUN_ID, "baskets", "week=200745", "part-0000.parquet")
    write_whole(lake.fs, path.as_posix(), rows.to_arrow())
    assert tables["predictions"]["storageDescriptor"]["columns"] == file_columns(path)
    assert {"name": "scored_at", "type": "timestamp"} in file_columns(path)


# ----------------------------------------------------------------------------- workgroup, results, queries


def test_the_workgroup_enforces_sse_kms_results_with_the_data_key_in_its_own_bucket(workgroup, results_bucket):
    configuration = workgroup["configuration"]
    assert workgroup["name"] == "retail-test-lake"
    assert configuration["enforceWorkgroupConfiguration"] is True
    assert configuration["resultConfiguration"] == {
        "outputLocation": f"s3://{results_bucket}/results/",
        "encryptionConfiguration": {"encryptionOption": "SSE_KMS", "kmsKeyArn": DATA_KEY},
    }
    assert configuration["engineVersion"] == {"selectedEngineVersion": ENGINE_VERSION}
    assert configuration["publishCloudwatchMetricsEnabled"] is True
    assert configuration["bytesScannedCutoffPerQuery"] == SETTINGS.bytes_scanned_cutoff_per_query


def test_results_expire_and_are_encrypted_with_the_data_key(run):
    (lifecycle,) = [r for r in run.of_type("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")]
    (rule,) = lifecycle.inputs["rules"]
    assert rule["expiration"] == {"days": SETTINGS.results_expiry_days}
    (sse,) = run.of_type("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    assert sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"] == DATA_KEY


@pytest.mark.parametrize("force_destroy", [False, True])
def test_teardown_follows_the_stack_s_setting(force_destroy):
    run = catalog(settings=LakeCatalogConfig(force_destroy=force_destroy))
    (group,) = run.of_type("aws:athena/workgroup:Workgroup")
    assert group.inputs["forceDestroy"] is force_destroy
    assert run.named("catalog-results-bucket").inputs["forceDestroy"] is force_destroy


def test_the_named_queries_are_the_saved_queries_in_the_workgroup_and_database(run):
    named = {q.inputs["name"]: q.inputs for q in run.of_type("aws:athena/namedQuery:NamedQuery")}
    assert {name: (q["query"], q["description"]) for name, q in named.items()} == {
        q.name: (q.sql, q.description) for q in LAKE_QUERIES}
    assert {(q["database"], q["workgroup"]) for q in named.values()} == {("retail_test", "retail-test-lake")}


# ----------------------------------------------------------------------------- who may query


@pytest.fixture(scope="module")
def query_policy(run) -> list[dict]:
    return statements(run.named("catalog-query-access"))


def test_parliament_finds_nothing_in_the_query_policy_or_the_role_s_trust(run):
    documents = rendered_documents([run])
    assert {d.resource.name for d in documents} >= {"catalog-query-access", "catalog-query"}
    assert [f for d in documents for f in parliament_findings(d)] == []


def test_the_role_carries_the_policy_and_trusts_this_account_only(run):
    (attachment,) = run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert attachment.inputs["policyArn"] == run.named("catalog-query-access").outputs["arn"]
    assert attachment.inputs["role"] == run.named("catalog-query").outputs["name"]
    (trust,) = json.loads(run.named("catalog-query").inputs["assumeRolePolicy"])["Statement"]
    assert trust["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"} and trust["Action"] == "sts:AssumeRole"


def test_the_policy_reads_the_tables_folders_and_writes_results_only(query_policy, lake_bucket, results_bucket):
    def allowed(action: str, arn: str, **context: str) -> bool:
        return allows(query_policy, Need((action,), resources=(arn,), context=context)) == []

    lake = f"arn:aws:s3:::{lake_bucket}/lake"
    for zone in ("silver", "gold", "predictions"):
        assert allowed("s3:ListBucket", f"arn:aws:s3:::{lake_bucket}", **{"s3:prefix": f"lake/{zone}/{RUN_ID}/"})
    for table in (f"silver/{RUN_ID}/lines/part-0.parquet",
                  f"gold/{RUN_ID}/baskets/STORE_REGION=E01/BASKET_TYPE=Small Shop/part-0.parquet",
                  "predictions/20260101T000000Z-1a2b3c4d/baskets/week=200745/part-0000.parquet"):
        assert allowed("s3:GetObject", f"{lake}/{table}"), table
    for outside in ("raw/abc/transaction.csv", "manifests/run.json", "monitoring/report.json",
                    f"silver/{RUN_ID}/quarantine/part-0.parquet",  # rejected raw rows
                    f"gold/{RUN_ID}/featurizer/featurizer.json", f"gold/{RUN_ID}/lineage.json",
                    "predictions/20260101T000000Z-1a2b3c4d/quarantine/part-0000.parquet",
                    "predictions/20260101T000000Z-1a2b3c4d/manifest.json",
                    "predictions/service/week=200745/part-20260101T000000000000Z-abc-000001.parquet"):
        assert not allowed("s3:GetObject", f"{lake}/{outside}"), outside
    assert not allowed("s3:ListBucket", f"arn:aws:s3:::{lake_bucket}", **{"s3:prefix": "lake/raw/"})
    assert not any(allowed(action, f"{lake}/silver/x") for action in ("s3:PutObject", "s3:DeleteObject"))
    assert allowed("s3:PutObject", f"arn:aws:s3:::{results_bucket}/results/abc.csv")
    assert not allowed("s3:DeleteObject", f"arn:aws:s3:::{results_bucket}/results/abc.csv")


def test_the_data_key_is_used_through_s3_only(query_policy):
    def allowed(service: str) -> bool:
        need = Need(("kms:Decrypt", "kms:GenerateDataKey"), resources=(DATA_KEY,),
                    context={"kms:ViaService": f"{service}.{REGION}.amazonaws.com"})
        return allows(query_policy, need) == []

    assert allowed("s3") and not allowed("athena") and not allowed("glue")


def test_queries_run_in_this_workgroup_and_read_this_database_s_tables_only(query_policy):
    def allowed(action: str, arn: str) -> bool:
        return allows(query_policy, Need((action,), resources=(arn,))) == []

    athena, glue = f"arn:aws:athena:{REGION}:{ACCOUNT_ID}:", f"arn:aws:glue:{REGION}:{ACCOUNT_ID}:"
    assert allowed("athena:StartQueryExecution", f"{athena}workgroup/retail-test-lake")
    assert all(allowed(action, "*") for action in ("athena:ListDataCatalogs", "athena:ListWorkGroups"))
    assert allowed("athena:ListDatabases", f"{athena}datacatalog/AwsDataCatalog")
    assert not allowed("athena:StartQueryExecution", f"{athena}workgroup/primary")
    assert not allowed("athena:CreateNamedQuery", f"{athena}workgroup/retail-test-lake")
    assert all(allowed("glue:GetTable", f"{glue}table/retail_test/{t.name}") for t in TABLES)
    assert not allowed("glue:GetTable", f"{glue}table/retail_prod/silver_lines")
    assert not allowed("glue:UpdateTable", f"{glue}table/retail_test/silver_lines")


# ----------------------------------------------------------------------------- names and stacks


def test_names_are_athena_s_and_differ_between_stacks():
    stacks = ["dev", "prod", "ephemeral-pr-42", "ephemeral-pr_42", "Ephemeral.PR.42", "ephemeral-" + "x" * 90]
    databases = [database_name(s) for s in stacks]
    assert databases[:2] == ["retail_dev", "retail_prod"]
    assert all(re.fullmatch(r"[a-z][a-z0-9_]{0,254}", d) for d in databases)
    assert len(set(databases)) == len(stacks)
    assert all(re.fullmatch(r"[A-Za-z0-9._-]{1,128}", workgroup_name(s)) for s in stacks)


def test_two_ephemeral_stacks_declare_distinct_databases_and_workgroups():
    def names(stack: str) -> tuple[str, str]:
        run = catalog(stack)
        (database,) = run.of_type("aws:glue/catalogDatabase:CatalogDatabase")
        (group,) = run.of_type("aws:athena/workgroup:Workgroup")
        return database.inputs["name"], group.inputs["name"]

    first, second = names("ephemeral-pr-41"), names("ephemeral-pr-42")
    assert first[0] != second[0] and first[1] != second[1]


@pytest.mark.parametrize("stack", ["dev", "prod", "ephemeral"])
def test_the_catalog_reads_the_lake_root_batch_scoring_writes(stack):
    platform = read_stack_file(PROJECT_DIR, stack).config
    service = read_stack_file(PROJECT_DIR / "service", stack).config
    catalog_settings = parse_section(LakeCatalogConfig, json.loads(platform.get("retail:lakeCatalog", "{}")), "x")
    scoring = parse_section(BatchScoringConfig, json.loads(service.get("retail:batchScoring", "{}")), "x")
    assert catalog_settings.enabled
    assert (catalog_settings.lake_zone, catalog_settings.lake_prefix) == (scoring.lake_zone, scoring.lake_prefix)


def test_a_stack_may_turn_the_catalog_off():
    config = PlatformConfig(project="retail-mlops", environment="dev", region=REGION, owner="o", cost_center="c",
                            cluster={"public_access_cidrs": ["10.0.0.0/8"]},
                            lake_catalog=LakeCatalogConfig(enabled=False))
    assert lake_catalog(config, ACCOUNT_ID, None, None, None) is None  # type: ignore[arg-type]


def test_the_platform_exports_where_to_run_the_saved_queries(dev):
    outputs = dev.stack_outputs
    assert (outputs["lakeDatabase"], outputs["lakeWorkgroup"]) == ("retail_dev", "retail-dev-lake")
    role = dev.named("retail-dev-lake-catalog-query")
    assert outputs["lakeQueryRoleArn"] == role.outputs["arn"]
    assert outputs["lakeQueryResults"] == f"s3://{dev.named('retail-dev-lake-catalog-results-bucket').outputs['bucket']}/results/"
    tables = {t.inputs["name"]: t.inputs for t in dev.of_type("aws:glue/catalogTable:CatalogTable")}
    root = f"s3://{outputs['lakeBuckets']['raw']}/lake"
    assert tables["silver_lines"]["parameters"]["storage.location.template"] == f"{root}/silver/${{run}}/lines/"
