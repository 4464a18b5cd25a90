"""Training reads the gold channel in bounded memory: below the cap the model input is the whole table's bit for bit,
above it a seeded sample that the summary and model card report, and the holdout scored in pieces is the holdout
scored whole, by the training stage and by the register stage (the champion on the new holdout's lines).

The channel is built from small synthetic data the way the pipeline lays it out (hive-partitioned basket table,
featurizer, lineage); the old in-memory path (the whole table read through Arrow and Polars, filtered, turned into a
matrix by the featurizer) is the reference.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ml.bundle import load_bundle
from ml.calendar import week_index_expr
from ml.channel import BYTES_PER_TRAINING_BASKET, CLASSES, TRAINING_SHARE, GoldChannel, sample_cap
from ml.evaluate import compute_metrics
from ml.families import FAMILIES, fitted
from ml.lake import arrow_frame
from ml.registry import holdout_macro_f1
from ml.schema import LABEL, TRAINABLE_LABELS
from ml.train import main, score_holdout
from tests.helpers import gold_channel


@pytest.fixture(scope="module")
def channel_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("channel")
    gold = gold_channel(folder)
    gold.holdout_lines.write_parquet(folder / "holdout_lines.parquet")
    (folder / "lineage.json").write_text(json.dumps({"run_id": "test", "validation_weeks": 4}))
    return folder


@pytest.fixture(scope="module")
def channel(channel_dir) -> GoldChannel:
    return GoldChannel(channel_dir)


def whole_side(channel: GoldChannel, split: str) -> tuple[np.ndarray, np.ndarray, pl.DataFrame]:
    """The in-memory path: the whole table, filtered with Polars, the matrix from `BasketFeaturizer.matrix`."""
    baskets = arrow_frame(channel.dataset.to_table())
    frame = baskets.filter(pl.col(LABEL).is_in(CLASSES) & (pl.col("split") == split))
    y = frame[LABEL].replace_strict({c: i for i, c in enumerate(CLASSES)}, return_dtype=pl.Int32).to_numpy()
    return channel.featurizer.matrix(frame), y, frame


def max_memory_for(baskets: int) -> float:
    """The RETAIL_MAX_MEMORY_GB whose cap is `baskets`."""
    return baskets * BYTES_PER_TRAINING_BASKET / (1e9 * TRAINING_SHARE) * (1 + 1e-9)


def train_args(channel_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["--train", str(channel_dir), "--model-dir", str(out / "model"), "--output-data-dir", str(out / "output"),
            "--families", "decision_tree", *extra]


def test_the_cap_grows_in_proportion_to_the_memory_setting():
    assert sample_cap(8.0) == int(8e9 * TRAINING_SHARE / BYTES_PER_TRAINING_BASKET)
    assert sample_cap(4.0) == sample_cap(8.0) // 2
    assert sample_cap(1e-12) == 1
    assert sample_cap(max_memory_for(1234)) == 1234


def test_below_the_cap_the_training_input_is_the_whole_tables_bit_for_bit(channel):
    x, y, frame = whole_side(channel, "train")
    side = channel.train_side(cap=len(y), seed=7, piece_baskets=7)  # many pieces (a row group split), none sampled
    assert (side.used, side.available) == (len(y), len(y))
    assert side.x.dtype == np.float32 and side.x.tobytes() == x.tobytes()
    assert np.array_equal(side.y, y)
    weeks = frame.select(week_index_expr(pl.col("SHOP_WEEK"))).to_series().to_numpy()
    assert np.array_equal(side.week_index, weeks) and side.last_week_index == weeks.max()


def test_above_the_cap_a_seeded_sample_of_the_training_baskets_is_read_in_table_order(channel):
    x, y, frame = whole_side(channel, "train")
    cap = len(y) // 3
    side = channel.train_side(cap=cap, seed=7, piece_baskets=7)
    assert (side.used, side.available) == (cap, len(y))
    rows = {row.tobytes(): i for i, row in enumerate(x)}
    positions = [rows[row.tobytes()] for row in side.x]
    assert positions == sorted(positions), "the sample keeps the table's order"
    assert np.array_equal(side.y, y[positions])
    weeks = frame.select(week_index_expr(pl.col("SHOP_WEEK"))).to_series().to_numpy()
    assert np.array_equal(side.week_index, weeks[positions]), "each basket keeps its own week"
    assert side.weeks == (frame["SHOP_WEEK"].min(), frame["SHOP_WEEK"].max()), "weeks of the whole side"
    again = channel.train_side(cap=cap, seed=7, piece_baskets=50)
    assert again.x.tobytes() == side.x.tobytes(), "the same seed draws the same sample, whatever the piece size"
    assert channel.train_side(cap=cap, seed=8).x.tobytes() != side.x.tobytes()


def test_the_holdout_scored_in_pieces_is_the_holdout_scored_whole(channel):
    side = channel.train_side(cap=10**9, seed=7)
    models = {f: fitted(FAMILIES[f].build(FAMILIES[f].defaults, 7), side.x, side.y)
              for f in ("decision_tree", "logistic_regression")}
    x, y, frame = whole_side(channel, "holdout")
    pieces = score_holdout(channel, models, piece_baskets=37)
    assert len(y) > 37 * 3, "several pieces"
    assert np.array_equal(pieces.y, y)
    for family, model in models.items():
        assert np.array_equal(pieces.predictions[family], model.predict_proba(x).argmax(axis=1))
    assert pieces.columns.equals(frame.select(pieces.columns.columns))
    assert np.array_equal(pieces.weeks, frame["SHOP_WEEK"].to_numpy())


def test_a_run_above_the_cap_trains_on_a_sample_and_says_so(channel_dir, channel, tmp_path, capsys):
    available = channel.count("train")
    cap = available // 2
    summary = main(train_args(channel_dir, tmp_path, "--max-memory-gb", repr(max_memory_for(cap))))
    data = summary["data"]
    assert data["train_sample"] | {"max_memory_gb": None} == {
        "available": available, "used": cap, "sampled": True, "cap": cap, "seed": 7, "max_memory_gb": None}
    assert (data["train_baskets"], data["train_baskets_used"]) == (available, cap)
    assert data["holdout_baskets"] == channel.count("holdout"), "the holdout is scored whole"
    assert f"uniform sample of {cap:,} of the {available:,} training baskets" in capsys.readouterr().out
    card = (tmp_path / "output" / "model_card.md").read_text()
    assert f"trained on {cap} baskets of weeks" in card
    assert f"Those {cap} baskets are a seeded uniform sample of the {available} baskets of the training weeks" in card


def test_a_run_below_the_cap_uses_every_training_basket_and_says_so(channel_dir, channel, tmp_path):
    summary = main(train_args(channel_dir, tmp_path))
    available = channel.count("train")
    assert summary["data"]["train_sample"]["sampled"] is False
    assert summary["data"]["train_baskets"] == summary["data"]["train_baskets_used"] == available
    assert "uniform sample" not in (tmp_path / "output" / "model_card.md").read_text()
    exact = main(train_args(channel_dir, tmp_path / "exact", "--max-memory-gb", repr(max_memory_for(available))))
    assert exact["data"]["train_sample"]["cap"] == available and not exact["data"]["train_sample"]["sampled"]
    assert exact["metrics"] == summary["metrics"], "a cap the side just fits changes nothing"


def test_unclassified_baskets_are_counted_from_the_label_column_alone(channel):
    table = arrow_frame(channel.dataset.to_table())
    assert channel.unclassified() == table.filter(~pl.col(LABEL).is_in(CLASSES) | pl.col(LABEL).is_null()).height
    assert channel.count("train") + channel.count("holdout") + channel.unclassified() == table.height


def test_the_register_stage_scores_the_holdout_lines_in_buckets_as_it_scores_them_whole(channel_dir, tmp_path):
    main(train_args(channel_dir, tmp_path))
    bundle = load_bundle(tmp_path / "model")
    path = channel_dir / "holdout_lines.parquet"
    lines = pl.read_parquet(path).filter(pl.col(LABEL).is_in(list(TRAINABLE_LABELS)))
    features, probabilities = bundle.predict_proba(lines)
    truth = features[LABEL].replace_strict({c: i for i, c in enumerate(bundle.classes)}).to_numpy()
    whole = compute_metrics(truth, probabilities.argmax(axis=1), bundle.classes).macro_f1
    held = pl.scan_parquet(path).select(pl.len()).collect().item()
    assert holdout_macro_f1(bundle, path, rows_per_piece=held) == whole
    assert holdout_macro_f1(bundle, path, rows_per_piece=held // 7) == whole, "seven buckets"


def test_a_sample_without_a_class_is_refused_with_the_setting_to_raise(channel):
    available = channel.count("train")
    with pytest.raises(ValueError, match=rf"the sample of 1 of the {available:,} training baskets has no "
                                         r"(LA|MM|UM), (LA|MM|UM) basket.*raise RETAIL_MAX_MEMORY_GB"):
        channel.train_side(cap=1, seed=7)  # one basket holds one class of three
