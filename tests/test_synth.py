"""The synthetic generator: exact export format, determinism and the structure of FACTS.md."""

from __future__ import annotations

import polars as pl
import pytest

from ml.schema import CODED_COLUMNS, ORIGINAL_COLUMNS, SEG_1_DECODE
from ml.synth import SynthConfig, generate, with_original_header, write_csv

ROWS = 60_000


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return pl.from_arrow(generate(SynthConfig(rows=ROWS, seed=1)))


@pytest.fixture(scope="module")
def baskets(frame) -> pl.DataFrame:
    return frame.group_by("BASKET_ID").agg(
        pl.len().alias("lines"), pl.first("BASKET_PRICE_SENSITIVITY").alias("label"),
        pl.first("seg_1"), pl.first("BASKET_SIZE"), pl.first("CUST_CODE"),
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


def test_label_shares_resemble_the_real_file(baskets):
    shares = dict(baskets.group_by("label").len().with_columns(pl.col("len") / baskets.height).iter_rows())
    assert 0.45 < shares["MM"] < 0.57
    assert 0.18 < shares["LA"] < 0.30
    assert 0.18 < shares["UM"] < 0.30
    assert 0.005 < shares["XX"] < 0.05


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


def test_value_products_are_cheaper_than_their_category(frame):
    unit = frame.with_columns((pl.col("SPEND") / pl.col("QUANTITY")).alias("unit"))
    category = unit.group_by("PROD_CODE_30").agg(pl.col("unit").median().alias("category"))
    product = unit.group_by("PROD_CODE", "PROD_CODE_30").agg(
        pl.col("unit").median().alias("price"),
        (pl.col("BASKET_PRICE_SENSITIVITY") == "LA").mean().alias("la_share"),
    ).join(category, on="PROD_CODE_30").with_columns((pl.col("price") / pl.col("category")).alias("index"))
    value = product.filter(pl.col("la_share") > 0.6)["index"].median()
    other = product.filter(pl.col("la_share") < 0.2)["index"].median()
    assert value < 0.92 < other


def test_value_shopping_drifts_down_over_time(frame):
    per_basket = frame.group_by("BASKET_ID").agg(pl.first("SHOP_WEEK"), pl.first("BASKET_PRICE_SENSITIVITY"))
    early = per_basket.filter(pl.col("SHOP_WEEK") < 200652)
    late = per_basket.filter(pl.col("SHOP_WEEK") > 200801)
    la_early = (early["BASKET_PRICE_SENSITIVITY"] == "LA").mean()
    la_late = (late["BASKET_PRICE_SENSITIVITY"] == "LA").mean()
    assert la_late < la_early
