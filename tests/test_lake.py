"""The lake: zones and manifests, on a local folder and on S3 through the same code."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import boto3
import polars as pl
from polars.testing import assert_frame_equal

from ml.lake import SILVER_LINES, Lake
from ml.pipeline import run_pipeline
from ml.progress import StageTimer
from tests.conftest import settings_under


def test_raw_zone_keeps_the_input_once_by_content_hash(tmp_path, small_csv):
    lake = Lake(str(tmp_path / "lake"))
    first = lake.put_raw((small_csv,))
    second = lake.put_raw((small_csv,))
    assert first.sha256 == second.sha256
    stored = list((tmp_path / "lake" / "raw").rglob("transaction.csv"))
    assert len(stored) == 1
    assert stored[0].read_bytes() == small_csv.read_bytes()


def test_a_gzipped_input_is_kept_in_the_raw_zone_as_it_came(tmp_path, small_csv, moto_endpoint):
    """Arrow's output streams gzip a `.gz` path on the fly unless told not to: the raw copy was gzipped twice."""
    packed = tmp_path / "transaction.csv.gz"
    packed.write_bytes(gzip.compress(small_csv.read_bytes()))
    local = Lake(str(tmp_path / "lake")).put_raw((packed,))
    (stored,) = (tmp_path / "lake" / "raw").rglob("transaction.csv.gz")
    assert stored.read_bytes() == packed.read_bytes() and local.bytes == packed.stat().st_size
    boto3.client("s3").create_bucket(Bucket="raw-gz",
                                     CreateBucketConfiguration={"LocationConstraint": "ap-southeast-1"})
    on_s3 = Lake("s3://raw-gz/lake").put_raw((packed,))
    key = f"lake/raw/{on_s3.sha256[:16]}/transaction.csv.gz"
    assert on_s3.sha256 == local.sha256
    assert boto3.client("s3").get_object(Bucket="raw-gz", Key=key)["Body"].read() == packed.read_bytes()
    # The same input again is not copied again: stored copies of its size stay as they are (marked here).
    marker = b"x" * packed.stat().st_size
    boto3.client("s3").put_object(Bucket="raw-gz", Key=key, Body=marker)
    stored.write_bytes(marker)
    assert Lake("s3://raw-gz/lake").put_raw((packed,)) == on_s3
    assert Lake(str(tmp_path / "lake")).put_raw((packed,)) == local
    assert boto3.client("s3").get_object(Bucket="raw-gz", Key=key)["Body"].read() == marker
    assert stored.read_bytes() == marker


def test_gold_is_partitioned_by_region_and_basket_type(small_run):
    lake = Lake(small_run.settings.lake_root)
    gold = lake.read_partitioned("gold", small_run.result.run_id, "baskets")
    folders = {p.name.split("=")[0] for p in
               (Path(lake.base) / "gold" / small_run.result.run_id / "baskets").glob("*/*")}
    assert folders == {"BASKET_TYPE"}
    assert gold["STORE_REGION"].n_unique() > 1
    assert gold.height == small_run.result.validation.baskets_accepted


def test_pipeline_runs_unchanged_on_an_s3_lake(moto_endpoint, small_csv, small_run, tmp_path):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="retail-lake", CreateBucketConfiguration={"LocationConstraint": "ap-southeast-1"})
    # One family: the lake's zones do not depend on how many families are trained.
    settings = settings_under(tmp_path, lake_root="s3://retail-lake/dev", families="decision_tree")
    result = run_pipeline(small_csv, settings, StageTimer(quiet=True))
    keys = {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket="retail-lake")
            for o in page.get("Contents", [])}
    run = result.run_id
    assert f"dev/manifests/{run}.json" in keys
    assert {f"dev/silver/{run}/lines/part-0.parquet", f"dev/silver/{run}/quarantine/part-0.parquet"} <= keys
    assert any(k.startswith(f"dev/gold/{run}/baskets/STORE_REGION=") for k in keys)
    assert any(k.startswith("dev/raw/") and k.endswith("transaction.csv") for k in keys)
    assert not [k for k in keys if k.endswith("/")]  # no folder markers: the lake's roles may not PUT them
    lines = Lake(settings.lake_root).read_parquet("silver", run, SILVER_LINES)
    assert lines.height == result.validation.rows_accepted
    assert result.manifest_uri == f"s3://retail-lake/dev/manifests/{run}.json"
    # The same input through the same code gives the same silver lines on S3 as on a local lake.
    local = Lake(small_run.settings.lake_root).read_parquet("silver", small_run.result.run_id, SILVER_LINES)
    assert_frame_equal(lines, local)
    # RETAIL_FAMILIES chose what was trained.
    assert [row["family"] for row in result.training["leaderboard"]] == ["decision_tree"]


def test_a_frame_round_trips_through_the_lake_with_its_values_and_types(tmp_path):
    frame = pl.DataFrame({
        "BASKET_ID": ["994100100000001", "994100100000002", None],
        "SHOP_DATE": [dt.date(2006, 4, 3), dt.date(2008, 7, 6), dt.date(2007, 2, 28)],
        "QUANTITY": pl.Series([1, 12, 100_000], dtype=pl.Int32),
        "SPEND": [0.01, 1234.5, float("nan")],
        "STORE_REGION": ["E02", "W01", "E02"],
    })
    lake = Lake(str(tmp_path / "lake"))
    uri = lake.write_parquet(frame, "silver", "run-1", SILVER_LINES)
    assert Path(uri).is_file()
    assert_frame_equal(lake.read_parquet("silver", "run-1", SILVER_LINES), frame)
    lake.write_partitioned(frame, ["STORE_REGION"], "gold", "run-1", "baskets")
    back = lake.read_partitioned("gold", "run-1", "baskets")
    # The partition column comes back from the folder names, after the others; rows come back grouped by it.
    assert_frame_equal(back.sort("SHOP_DATE"), frame.sort("SHOP_DATE"), check_column_order=False)
