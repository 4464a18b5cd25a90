"""The split is leak-free and the featurizer learns from training rows only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ml.calendar import week_index_expr
from ml.features import BasketFeaturizer
from ml.pipeline import build_gold
from ml.schema import BASKET_KEY, LABEL
from ml.split import split_lines
from ml.validate import validate
from tests.helpers import canonical_text

HOLDOUT_WEEKS = 20


@pytest.fixture(scope="module")
def lines() -> pl.DataFrame:
    return validate(canonical_text(30_000, seed=21)).lines


@pytest.fixture(scope="module")
def split(lines):
    return split_lines(lines, HOLDOUT_WEEKS)


def test_no_basket_is_on_both_sides(split):
    train = set(split.train[BASKET_KEY].unique())
    holdout = set(split.holdout[BASKET_KEY].unique())
    assert train and holdout
    assert not train & holdout


def test_holdout_weeks_are_strictly_later_than_training_weeks(split):
    last_train = split.train.select(week_index_expr(pl.col("SHOP_WEEK")).max()).item()
    first_holdout = split.holdout.select(week_index_expr(pl.col("SHOP_WEEK")).min()).item()
    assert first_holdout > last_train
    assert split.holdout["SHOP_WEEK"].n_unique() == HOLDOUT_WEEKS


def test_every_line_lands_on_exactly_one_side(lines, split):
    assert split.train.height + split.holdout.height == lines.height


def test_split_refuses_a_holdout_that_leaves_no_training_weeks(lines):
    with pytest.raises(ValueError, match="leaves no training weeks"):
        split_lines(lines, 500)


def test_featurizer_is_fitted_on_training_rows_only(split):
    featurizer = BasketFeaturizer().fit(split.train)
    assert featurizer.fitted_rows_ == split.train.height
    assert featurizer.fitted_weeks_[1] < split.first_holdout_week
    # Evidence tables and price levels know only products seen in training.
    train_products = set(split.train["PROD_CODE"].unique())
    assert set(featurizer.evidence_.tables["PROD_CODE"]["PROD_CODE"]) == train_products
    assert set(featurizer.product_price_index_["PROD_CODE"]) == train_products
    for column, vocabulary in featurizer.vocabularies_.items():
        assert set(vocabulary) == set(split.train[column].drop_nulls().unique())


def test_features_do_not_read_the_label_of_the_baskets_they_describe(split):
    featurizer = BasketFeaturizer().fit(split.train)
    flipped = split.holdout.with_columns(pl.lit("UM").alias(LABEL))
    assert featurizer.transform(split.holdout).drop(LABEL).equals(featurizer.transform(flipped).drop(LABEL))


def test_gold_training_rows_use_out_of_fold_evidence(lines):
    gold = build_gold(lines, HOLDOUT_WEEKS, seed=0)
    train = gold.baskets.filter(pl.col("split") == "train")
    in_fold = gold.featurizer.transform(
        lines.filter(pl.col(BASKET_KEY).is_in(train[BASKET_KEY].implode()))
    ).sort(BASKET_KEY)
    out_of_fold = train.sort(BASKET_KEY)
    # The same baskets, but evidence learned without each basket's own label differs.
    assert not np.allclose(in_fold["mean_p_LA"].to_numpy(), out_of_fold["mean_p_LA"].to_numpy())
    assert set(gold.baskets["split"].unique()) == {"train", "holdout"}


def test_unseen_products_fall_back_to_their_hierarchy(split):
    featurizer = BasketFeaturizer().fit(split.train)
    basket = split.holdout.filter(pl.col(BASKET_KEY) == split.holdout[BASKET_KEY][0])
    renamed = basket.with_columns(pl.lit("PRD0999999").alias("PROD_CODE"))
    features = featurizer.transform(renamed)
    assert features["share_unseen_products"].item() == 1.0
    class_evidence = featurizer.evidence_.tables["PROD_CODE_10"]
    expected = class_evidence.filter(pl.col("PROD_CODE_10").is_in(renamed["PROD_CODE_10"].implode()))
    assert features["max_p_LA"].item() == pytest.approx(
        renamed.join(expected, on="PROD_CODE_10")["p_LA"].max()
    )


def test_saved_transformer_gives_identical_features_when_reloaded(split, tmp_path: Path):
    featurizer = BasketFeaturizer().fit(split.train)
    before = featurizer.transform(split.holdout)
    featurizer.save(tmp_path / "featurizer")
    reloaded = BasketFeaturizer.load(tmp_path / "featurizer")
    after = reloaded.transform(split.holdout)
    assert after.equals(before)
    assert np.array_equal(featurizer.matrix(before), reloaded.matrix(after))
    assert reloaded.feature_names_ == featurizer.feature_names_
