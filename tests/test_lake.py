"""The lake: zones and manifests, on a local folder and on S3 through the same code."""

from __future__ import annotations

from pathlib import Path

import boto3
import polars as pl

from ml.lake import Lake
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


def test_gold_is_partitioned_by_region_and_basket_type(small_run):
    lake = Lake(small_run.settings.lake_root)
    gold = lake.read_partitioned("gold", small_run.result.run_id, "baskets")
    folders = {p.name.split("=")[0] for p in
               (Path(lake.base) / "gold" / small_run.result.run_id / "baskets").glob("*/*")}
    assert folders == {"BASKET_TYPE"}
    assert gold["STORE_REGION"].n_unique() > 1
    assert gold.height == small_run.result.validation.baskets_accepted


def test_pipeline_runs_unchanged_on_an_s3_lake(moto_endpoint, small_csv, tmp_path):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="retail-lake", CreateBucketConfiguration={"LocationConstraint": "ap-southeast-1"})
    settings = settings_under(tmp_path, lake_root="s3://retail-lake/dev")
    result = run_pipeline(small_csv, settings, StageTimer(quiet=True))
    keys = {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket="retail-lake")
            for o in page.get("Contents", [])}
    run = result.run_id
    assert f"dev/manifests/{run}.json" in keys
    assert f"dev/silver/{run}/lines.parquet" in keys
    assert any(k.startswith(f"dev/gold/{run}/baskets/STORE_REGION=") for k in keys)
    assert any(k.startswith("dev/raw/") and k.endswith("transaction.csv") for k in keys)
    lines = Lake(settings.lake_root).read_parquet("silver", run, "lines.parquet")
    assert lines.height == result.validation.rows_accepted
    assert result.manifest_uri == f"s3://retail-lake/dev/manifests/{run}.json"
    assert isinstance(lines, pl.DataFrame)
