"""The synthetic generator: exact export format, determinism and the structure of FACTS.md."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from bench.calibration import price_index_by_tier
from ml.schema import CODED_COLUMNS, ORIGINAL_COLUMNS, SEG_1_DECODE
from ml.synth import (
    TIERS,
    SynthConfig,
    generate,
    label_of_counts,
    product_truth,
    with_original_header,
    write_csv,
)

ROWS = 60_000
CONFIG = SynthConfig(rows=ROWS, seed=1)


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return pl.from_arrow(generate(CONFIG))


@pytest.fixture(scope="module")
def truth() -> pl.DataFrame:
    return pl.from_arrow(product_truth(CONFIG))


@pytest.fixture(scope="module")
def baskets(frame, truth) -> pl.DataFrame:
    tiered = frame.join(truth, on="PROD_CODE", how="left")
    return tiered.group_by("BASKET_ID").agg(
        pl.len().alias("lines"), pl.first("BASKET_PRICE_SENSITIVITY").alias("label"),
        pl.first("seg_1"), pl.first("BASKET_SIZE"), pl.first("CUST_CODE"), pl.first("SHOP_WEEK"),
        pl.first("tier").alias("first_tier"),
        *[(pl.col("tier") == t).sum().alias(t) for t in TIERS],
    )


def test_writes_the_22_coded_columns_in_order_with_the_exact_row_count(frame, tmp_path):
    assert frame.columns == list(CODED_COLUMNS)
    assert frame.height == ROWS
    path = tmp_path / "t.csv"
    write_csv(generate(SynthConfig(rows=500, seed=1)), path)
    assert path.read_text().splitlines()[0] == ",".join(CODED_COLUMNS)


def test_original_header_variant_decodes_the_segments(frame):
    original = pl.from_arrow(with_original_header(generate(SynthConfig(rows=2_000, seed=1))))
    assert original.columns == list(ORIGINAL_COLUMNS)
    assert set(original["CUST_PRICE_SENSITIVITY"].drop_nulls()) <= set(SEG_1_DECODE.values())


def test_same_seed_same_data_other_seed_other_data():
    a = generate(SynthConfig(rows=5_000, seed=4))
    b = generate(SynthConfig(rows=5_000, seed=4))
    c = generate(SynthConfig(rows=5_000, seed=5))
    assert a.equals(b)
    assert not a.equals(c)


def test_the_catalogue_depends_on_the_seed_not_on_the_size():
    assert product_truth(SynthConfig(rows=1_000, seed=4)).equals(product_truth(SynthConfig(rows=90_000, seed=4)))
    assert not product_truth(SynthConfig(seed=4)).equals(product_truth(SynthConfig(seed=5)))


def test_label_shares_resemble_the_real_file(baskets):
    shares = dict(baskets.group_by("label").len().with_columns(pl.col("len") / baskets.height).iter_rows())
    assert 0.45 < shares["MM"] < 0.57
    assert 0.18 < shares["LA"] < 0.30
    assert 0.18 < shares["UM"] < 0.30
    assert 0.005 < shares["XX"] < 0.05


def test_product_tiers_have_the_real_mix_by_product(truth):
    shares = truth.group_by("tier").len().with_columns(pl.col("len") / truth.height)
    shares = dict(shares.iter_rows())
    assert 0.61 < shares["MM"] < 0.76
    assert 0.10 < shares["LA"] < 0.19
    assert 0.09 < shares["UM"] < 0.18
    assert 0.01 < shares["XX"] < 0.06


@pytest.mark.parametrize(
    ("counts", "label"),
    [
        ((1, 4, 0, 0), "MM"),  # d = 0.2 exactly: not above
        ((2, 3, 0, 0), "LA"),
        ((0, 3, 2, 0), "UM"),
        ((3, 2, 2, 3), "MM"),  # d = 0.1
        ((1, 0, 0, 3), "LA"),  # 75% XX is not "nearly only XX"; d = 0.25
        ((0, 1, 0, 4), "XX"),
        ((0, 0, 0, 1), "XX"),
        ((1, 0, 0, 0), "LA"),
        ((0, 1, 0, 0), "MM"),
        ((0, 0, 1, 0), "UM"),
    ],
)
def test_the_label_rule_counts_lines_per_tier(counts, label):
    assert TIERS[label_of_counts(np.array([counts]))[0]] == label


def test_every_label_is_the_rule_on_the_baskets_line_counts(baskets):
    counts = baskets.select(TIERS).to_numpy()
    assert (np.array(TIERS)[label_of_counts(counts)] == baskets["label"].to_numpy()).all()


def test_about_one_basket_in_five_holds_a_single_product_labelled_with_its_tier(baskets):
    singles = baskets.filter(pl.col("lines") == 1)
    assert 0.15 < singles.height / baskets.height < 0.25
    assert (singles["label"] == singles["first_tier"]).all()


def test_mid_market_products_sit_in_value_and_premium_baskets(frame, truth):
    labels = frame.join(truth.filter(pl.col("tier") == "MM"), on="PROD_CODE")["BASKET_PRICE_SENSITIVITY"]
    assert labels.is_in(["LA", "UM"]).mean() > 0.3


def test_value_and_premium_lines_rarely_share_a_basket(baskets):
    assert ((baskets["LA"] > 0) & (baskets["UM"] > 0)).mean() < 0.1


def test_products_launch_over_time(frame, truth):
    first_seen = frame.group_by("PROD_CODE").agg(pl.col("SHOP_WEEK").min())
    assert (first_seen["SHOP_WEEK"] > 200752).sum() > 20
    assert (truth["launch_day"] > 0).mean() > 0.05


def test_customer_segment_is_a_weak_signal(baskets):
    carded = baskets.filter(pl.col("seg_1").is_not_null())
    agreement = (carded["seg_1"].replace(SEG_1_DECODE) == carded["label"]).mean()
    assert 0.35 < agreement < 0.65


def test_about_a_fifth_of_baskets_have_no_card(baskets):
    assert 0.15 < baskets["CUST_CODE"].is_null().mean() < 0.25


def test_basket_size_follows_line_count(baskets):
    assert baskets.filter(pl.col("BASKET_SIZE") == "S")["lines"].max() <= 2
    assert baskets.filter(pl.col("BASKET_SIZE") == "L")["lines"].min() >= 10
    assert 5.5 < baskets["lines"].mean() < 7.5


def test_every_product_has_one_parent_chain(frame):
    chains = frame.select("PROD_CODE", "PROD_CODE_10", "PROD_CODE_20", "PROD_CODE_30", "PROD_CODE_40").unique()
    assert chains["PROD_CODE"].n_unique() == chains.height


def test_value_products_are_cheaper_than_their_category(frame, truth):
    value, other = price_index_by_tier(frame, truth)  # the measurement bench/calibration.py reports
    assert value < 0.9 < 1.0 < other


def test_value_shopping_drifts_down_and_unclassified_up_over_time(baskets):
    early = baskets.filter(pl.col("SHOP_WEEK") < 200707)
    late = baskets.filter(pl.col("SHOP_WEEK") > 200719)
    assert (late["label"] == "LA").mean() < (early["label"] == "LA").mean()
    assert (late["label"] == "XX").mean() > 1.3 * (early["label"] == "XX").mean()
