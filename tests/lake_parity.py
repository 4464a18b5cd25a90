"""The comparison of the Spark job's output with the local path's, shared by tests/test_spark_lake.py and
bench/spark_lake.py --compare: the same rows, every value equal bit for bit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
from polars.testing import assert_frame_equal

from ml.ingest import SOURCE_FILE, SOURCE_LINE
from ml.lake import Lake
from ml.schema import BASKET_KEY

PARTITION_COLUMNS = ("STORE_REGION", "BASKET_TYPE")


def same_rows(left: pl.DataFrame, right: pl.DataFrame, by: list[str]) -> None:
    """AssertionError unless the frames hold the same rows (in `left`'s column order, sorted by `by`), every value
    equal bit for bit."""
    assert sorted(left.columns) == sorted(right.columns), (left.columns, right.columns)
    right = right.select(left.columns).cast(dict(left.schema))  # type: ignore[arg-type]
    assert_frame_equal(left.sort(by, maintain_order=True), right.sort(by, maintain_order=True), check_exact=True)


def same_featurizer(left: Path, right: Path) -> None:
    """AssertionError unless two saved featurizers hold the same files: the same JSON, every table bit for bit."""
    names = sorted(p.name for p in left.iterdir())
    assert names == sorted(p.name for p in right.iterdir())
    assert json.loads((left / "featurizer.json").read_text()) == json.loads((right / "featurizer.json").read_text())
    for name in names:
        if name.endswith(".parquet"):
            assert_frame_equal(pl.read_parquet(left / name), pl.read_parquet(right / name), check_exact=True)


def _run(root: Path) -> dict[str, Any]:
    """The one run's manifest of a local lake."""
    manifests = sorted((root / "manifests").glob("*.json"))
    assert len(manifests) == 1, manifests
    manifest: dict[str, Any] = json.loads(manifests[0].read_text())
    return manifest


def same_lakes(local: Path, spark: Path) -> dict[str, int]:
    """AssertionError unless a local lake's one run (`retail pipeline run`) and a Spark job's one run hold the same
    silver lines, quarantine, gold rows (per BASKET_KEY, every column), featurizer, validation report and gold
    counts; the rows compared, when they do."""
    left, right = _run(local), _run(spark)
    lines = pl.read_parquet(local / "silver" / left["run_id"] / "lines" / "*.parquet")
    same_rows(lines, pl.read_parquet(spark / "silver" / right["run_id"] / "lines" / "*.parquet"), by=lines.columns)
    quarantine = pl.read_parquet(local / "silver" / left["run_id"] / "quarantine" / "*.parquet")
    same_rows(quarantine, pl.read_parquet(spark / "silver" / right["run_id"] / "quarantine" / "*.parquet"),
              by=[SOURCE_FILE, SOURCE_LINE])
    gold = [Lake(str(root)).read_partitioned("gold", run["run_id"], "baskets")
            .with_columns(pl.col(PARTITION_COLUMNS).cast(pl.String)) for root, run in ((local, left), (spark, right))]
    same_rows(gold[0], gold[1], by=[BASKET_KEY])
    same_featurizer(local / "gold" / left["run_id"] / "featurizer", spark / "gold" / right["run_id"] / "featurizer")
    assert left["validation"] == right["validation"]
    counts = [{k: v for k, v in run["zones"]["gold"].items() if k != "baskets"} for run in (left, right)]
    assert counts[0] == counts[1], counts
    assert left["input"]["sha256"] == right["input"]["sha256"]
    return {"silver lines": lines.height, "quarantined": quarantine.height, "gold rows": gold[0].height}
