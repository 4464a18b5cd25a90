"""Gold's hive folders name the partition values as they are (`BASKET_TYPE=Small Shop`), which Athena's enum projection
of ml.schema's domains finds; a value that cannot name a folder and an S3 key as it is is refused before anything is
written; and pyarrow, Polars and DuckDB read these folders and the percent-encoded ones of earlier runs
(`BASKET_TYPE=Small%20Shop`) as the same values.
"""

from __future__ import annotations

import re
from pathlib import Path

import boto3
import duckdb
import polars as pl
import pyarrow.dataset as ds
import pytest
from polars.testing import assert_frame_equal

from ml.lake import HIVE_VALUE, Lake
from ml.lake_sql import connect
from ml.pipeline import PARTITIONS
from ml.schema import DOMAINS

BUCKET = "partition-folders-lake"  # unique among the tests' moto buckets, which share one server


def grid() -> pl.DataFrame:
    """A row for every region and basket type, in an order the partitions do not follow."""
    rows = [{"BASKET_KEY": f"{region}-{kind}", "STORE_REGION": region, "BASKET_TYPE": kind, "n_lines": float(i)}
            for i, (region, kind) in enumerate((r, t) for t in DOMAINS["BASKET_TYPE"] for r in DOMAINS["STORE_REGION"])]
    return pl.DataFrame(rows)


def write_encoded(frame: pl.DataFrame, folder: Path) -> None:
    """The basket table as the lake wrote it before: pyarrow's hive partitioning, which percent-encodes the values."""
    ds.write_dataset(frame.to_arrow(), folder, format="parquet", partitioning=PARTITIONS, partitioning_flavor="hive")


def folders(root: Path) -> set[str]:
    return {path.parent.relative_to(root).as_posix() for path in root.rglob("*.parquet")}


def test_every_value_of_the_partition_columns_names_a_folder_as_it_is():
    for column in PARTITIONS:
        refused = [value for value in DOMAINS[column] if not HIVE_VALUE.fullmatch(value)]
        assert not refused, f"{column}: {refused}"


def test_the_folders_name_the_values_unencoded(tmp_path):
    uri = Lake(str(tmp_path)).write_partitioned(grid(), PARTITIONS, "gold", "run-1", "baskets")
    written = folders(Path(uri))
    assert written == {f"STORE_REGION={r}/BASKET_TYPE={t}" for r in DOMAINS["STORE_REGION"]
                       for t in DOMAINS["BASKET_TYPE"]}
    assert "STORE_REGION=E01/BASKET_TYPE=Small Shop" in written


@pytest.mark.parametrize("value", ["a/b", "x=y", "50%", "Top+Up", "a,b", "", " Small Shop", "Shop.", "tab\there",
                                   None, "__HIVE_DEFAULT_PARTITION__"])
def test_a_value_that_cannot_name_a_folder_is_refused_before_anything_is_written(tmp_path, value):
    frame = grid().with_columns(pl.when(pl.col("BASKET_KEY") == "E02-Top Up").then(pl.lit(value, pl.String))
                                .otherwise(pl.col("BASKET_TYPE")).alias("BASKET_TYPE"))
    with pytest.raises(ValueError, match=re.escape(f"BASKET_TYPE={value!r} cannot name a partition folder as it is")):
        Lake(str(tmp_path)).write_partitioned(frame, PARTITIONS, "gold", "run-1", "baskets")
    assert not (tmp_path / "gold").exists()


def test_pyarrow_polars_and_duckdb_read_unencoded_and_encoded_folders_as_the_same_values(tmp_path):
    frame = grid()
    lake = Lake(str(tmp_path))
    lake.write_partitioned(frame, PARTITIONS, "gold", "unencoded", "baskets")
    write_encoded(frame, tmp_path / "gold" / "encoded" / "baskets")
    assert "STORE_REGION=E01/BASKET_TYPE=Small%20Shop" in folders(tmp_path / "gold" / "encoded" / "baskets")
    expected = frame.sort("BASKET_KEY")
    with connect(str(tmp_path)) as connection:
        for run in ("unencoded", "encoded"):
            by_pyarrow = lake.read_partitioned("gold", run, "baskets")
            by_polars = pl.scan_parquet(tmp_path / "gold" / run / "baskets" / "**" / "*.parquet",
                                        hive_partitioning=True).collect()
            relation = connection.sql(f"SELECT {', '.join(frame.columns)} FROM gold_baskets WHERE run = ?",
                                      params=[run])
            assert isinstance(relation, duckdb.DuckDBPyRelation)
            by_duckdb = pl.DataFrame(relation.to_arrow_table())
            for read in (by_pyarrow, by_polars, by_duckdb):
                assert_frame_equal(read.select(frame.columns).sort("BASKET_KEY"), expected)


def test_on_s3_the_keys_hold_the_values_unencoded_and_read_back(moto_endpoint):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "ap-southeast-1"})
    lake = Lake(f"s3://{BUCKET}/lake")
    lake.write_partitioned(grid(), PARTITIONS, "gold", "run-1", "baskets")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="lake/gold/")["Contents"]}
    assert "lake/gold/run-1/baskets/STORE_REGION=E01/BASKET_TYPE=Small Shop/part-0.parquet" in keys
    assert not [key for key in keys if "%" in key]
    assert not [key for key in keys if key.endswith("/")]  # no folder markers (ml.lake.Lake.ensure_parent)
    assert_frame_equal(lake.read_partitioned("gold", "run-1", "baskets").select(grid().columns).sort("BASKET_KEY"),
                       grid().sort("BASKET_KEY"))
