"""The gold basket table from a scan of silver lines, written a fold at a time, equals the one built in memory.

The featurizer fits from aggregates (group-bys on the streaming engine) and `plan_gold` returns the basket table
as lazy parts; over a scan of Parquet silver lines, sunk part by part with the streaming engine as the pipeline
does, the features, their order, the fitted tables and the split facts must be those `build_gold` gives on the
same lines as a frame. The lazy split refuses lines whose basket has weeks on both sides.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ml.features import ENGINE, NO_SHARED_SCANS
from ml.pipeline import build_gold, plan_gold
from ml.schema import BASKET_KEY
from ml.split import split_lines, split_weeks
from ml.validate import validate
from tests.helpers import canonical_text

HOLDOUT_WEEKS = 20


@pytest.fixture(scope="module")
def silver(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("silver") / "lines.parquet"
    validate(canonical_text(40_000, seed=8)).lines.write_parquet(path)
    return path


def saved(featurizer, folder: Path) -> dict[str, object]:
    """What a saved featurizer holds: its JSON state and its tables."""
    featurizer.save(folder)
    return {f.name: pl.read_parquet(f) if f.suffix == ".parquet" else json.loads(f.read_text())
            for f in sorted(folder.iterdir())}


def test_gold_from_a_scan_written_by_parts_equals_gold_built_in_memory(silver, tmp_path):
    in_memory = build_gold(pl.read_parquet(silver), HOLDOUT_WEEKS, seed=7)
    plans = plan_gold(pl.scan_parquet(silver), HOLDOUT_WEEKS, seed=7)
    parts = []
    for i, part in enumerate(plans.parts):
        part.sink_parquet(tmp_path / f"part-{i}.parquet", engine=ENGINE, optimizations=NO_SHARED_SCANS)
        parts.append(pl.read_parquet(tmp_path / f"part-{i}.parquet"))
    assert_frame_equal(pl.concat(parts), in_memory.baskets)
    assert plans.facts == in_memory.facts
    assert_frame_equal(plans.holdout_lines.collect(), in_memory.holdout_lines)
    from_scan, from_frame = saved(plans.featurizer, tmp_path / "scan"), saved(in_memory.featurizer, tmp_path / "frame")
    assert from_scan.keys() == from_frame.keys()
    for name, value in from_frame.items():
        if isinstance(value, pl.DataFrame):
            assert_frame_equal(from_scan[name], value)
        else:
            assert from_scan[name] == value, name


def test_the_lazy_split_puts_the_lines_where_the_split_in_memory_does(silver):
    lines = pl.read_parquet(silver)
    eager, lazy = split_lines(lines, HOLDOUT_WEEKS), split_weeks(pl.scan_parquet(silver), HOLDOUT_WEEKS)
    for eager_side, lazy_side in ((eager.train, lazy.train), (eager.holdout, lazy.holdout)):
        assert_frame_equal(lazy_side.collect().sort(BASKET_KEY, "PROD_CODE", "SPEND"),
                           eager_side.sort(BASKET_KEY, "PROD_CODE", "SPEND"))
    assert (lazy.last_train_week, lazy.first_holdout_week) == (eager.last_train_week, eager.first_holdout_week)
    assert (lazy.train_lines, lazy.holdout_lines) == (eager.train.height, eager.holdout.height)


def test_the_lazy_split_refuses_a_basket_with_weeks_on_both_sides(silver):
    lines = pl.read_parquet(silver)
    last_week = lines["SHOP_WEEK"].max()
    held_basket = lines.filter(pl.col("SHOP_WEEK") == last_week)[BASKET_KEY][0]
    straddling = pl.concat([lines, lines.filter(pl.col(BASKET_KEY) == held_basket).head(1).with_columns(
        pl.lit(lines["SHOP_WEEK"].min()).alias("SHOP_WEEK"))])
    with pytest.raises(ValueError, match="1 baskets have lines on both sides"):
        split_weeks(straddling.lazy(), HOLDOUT_WEEKS)
