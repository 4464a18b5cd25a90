"""The gold basket table from a scan of silver lines, written in parts, is the one built in memory, bit for bit.

`plan_gold` fits the featurizer from aggregates and deals each fold of the training side, and the holdout, into
parts of a bounded number of lines by a hash of the basket key; each part's lines are read from the scan and
featurized in memory. Over a scan of Parquet silver lines, written part by part as the pipeline does, the features
(compared exactly), the fitted tables and the split facts must be those `build_gold` gives on the same lines as a
frame, a part per fold; the bits must not depend on Polars' thread count (two subprocesses, 1 and 2 threads); the
parts must hold about the lines they are sized for. The lazy split refuses lines whose basket has weeks on both
sides.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ml.pipeline import _write_gold, build_gold, plan_gold
from ml.schema import BASKET_KEY
from ml.split import split_lines, split_weeks
from ml.validate import validate
from tests.helpers import canonical_text

HOLDOUT_WEEKS = 20
ROWS_PER_PIECE = 3_000


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


def test_gold_from_a_scan_written_in_parts_is_gold_built_in_memory_bit_for_bit(silver, tmp_path):
    in_memory = build_gold(pl.read_parquet(silver), HOLDOUT_WEEKS, seed=7)
    plans = plan_gold(pl.scan_parquet(silver), HOLDOUT_WEEKS, seed=7, rows_per_piece=ROWS_PER_PIECE)
    from_parts = pl.read_parquet(_write_gold(plans, tmp_path / "gold"))
    assert_frame_equal(from_parts.sort(BASKET_KEY), in_memory.baskets.sort(BASKET_KEY), check_exact=True)
    assert plans.facts == in_memory.facts
    assert_frame_equal(plans.holdout_lines.collect(), in_memory.holdout_lines, check_exact=True)
    from_scan, from_frame = saved(plans.featurizer, tmp_path / "scan"), saved(in_memory.featurizer, tmp_path / "frame")
    assert from_scan.keys() == from_frame.keys()
    for name, value in from_frame.items():
        if isinstance(value, pl.DataFrame):
            assert_frame_equal(from_scan[name], value, check_exact=True)
        else:
            assert from_scan[name] == value, name


def test_a_basket_in_memory_has_the_features_transform_gives_it(silver):
    """Serving (`transform`) computes a holdout basket's features as the gold table holds them."""
    gold = build_gold(pl.read_parquet(silver), HOLDOUT_WEEKS, seed=7)
    holdout = gold.baskets.filter(pl.col("split") == "holdout").drop("split")
    assert_frame_equal(gold.featurizer.transform(gold.holdout_lines), holdout, check_exact=True)


def test_parts_hold_about_the_lines_they_are_sized_for_and_every_line_once(silver):
    lines = pl.read_parquet(silver)
    plans = plan_gold(lines.lazy(), HOLDOUT_WEEKS, seed=7, rows_per_piece=ROWS_PER_PIECE)
    sizes = [part.lines.select(pl.len()).collect().item() for part, _ in plans.parts]
    train_parts = sum(side == "train" for _, side in plans.parts)
    assert train_parts == 5 * -(-plans.facts["train_lines"] // 5 // ROWS_PER_PIECE)
    assert len(plans.parts) - train_parts == -(-plans.facts["holdout_lines"] // ROWS_PER_PIECE)
    assert sum(sizes) == lines.height
    assert max(sizes) < 1.5 * ROWS_PER_PIECE, sizes
    keys = pl.concat([part.lines.select(BASKET_KEY).unique().collect() for part, _ in plans.parts])
    assert keys[BASKET_KEY].is_unique().all(), "a basket is in one part only"


GOLD_AT_THREADS = textwrap.dedent("""
    import sys
    from pathlib import Path
    import polars as pl
    from ml.pipeline import _write_gold, plan_gold
    plans = plan_gold(pl.scan_parquet(sys.argv[1]), int(sys.argv[3]), seed=7, rows_per_piece=int(sys.argv[4]))
    _write_gold(plans, Path(sys.argv[2]))
    print(pl.thread_pool_size())
""")


def test_the_gold_parts_are_the_same_bits_on_one_thread_and_on_two(silver, tmp_path):
    threads = {}
    for n in (1, 2):
        env = {**os.environ, "POLARS_MAX_THREADS": str(n)}
        done = subprocess.run([sys.executable, "-c", GOLD_AT_THREADS, str(silver), str(tmp_path / str(n)),
                               str(HOLDOUT_WEEKS), str(ROWS_PER_PIECE)], capture_output=True, text=True, check=True,
                              env=env)
        threads[n] = int(done.stdout)
    assert threads == {1: 1, 2: 2}
    one, two = sorted((tmp_path / "1").iterdir()), sorted((tmp_path / "2").iterdir())
    assert [p.name for p in one] == [p.name for p in two]
    for a, b in zip(one, two, strict=True):
        assert_frame_equal(pl.read_parquet(a), pl.read_parquet(b), check_exact=True)


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
