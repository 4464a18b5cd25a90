"""The compiled (NumPy) featurizer gives the Polars featurizer's rows: same baskets, same order, same values to
float32 precision, on lines that hold unseen products, unknown divisions and categories, and baskets out of order."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from ml.compiled import SPARSE_LINES, BasketColumns, CompiledFeaturizer
from ml.features import HEADER_CATEGORICALS, HEADER_NUMERICS, BasketFeaturizer
from ml.ingest import read
from ml.schema import BASKET_KEY, HIERARCHY
from ml.split import split_lines
from ml.synth import SynthConfig, generate, write_csv
from ml.validate import validate


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """Training and later lines of a synthetic file large enough for 10,000 later baskets."""
    path = tmp_path_factory.mktemp("compiled") / "transaction.csv"
    write_csv(generate(SynthConfig(rows=300_000, seed=11)), path)
    return split_lines(validate(read(path)[1]).lines, 27)


@pytest.fixture(scope="module", params=[True, False], ids=["tiers", "baseline"])
def fitted(request, split) -> BasketFeaturizer:
    return BasketFeaturizer(folds=2, tier_inference=request.param).fit(split.train)


def _later(split, baskets: int) -> pl.DataFrame:
    keys = split.holdout[BASKET_KEY].unique(maintain_order=True).head(baskets)
    return split.holdout.filter(pl.col(BASKET_KEY).is_in(keys.implode()))


def _differences(fitted: BasketFeaturizer, lines: pl.DataFrame) -> list[str]:
    """How the compiled featurizer's rows differ from the Polars featurizer's on `lines`: basket order, shape,
    dtype, values beyond float32 precision (rtol 2e-6, atol 1e-6); empty when they agree."""
    expected_rows = fitted.transform(lines)
    batch, keys = CompiledFeaturizer(fitted).encode_frame(lines)
    compiled = CompiledFeaturizer(fitted).transform(batch)
    expected = fitted.matrix(expected_rows)
    if keys[BASKET_KEY].to_list() != expected_rows[BASKET_KEY].to_list():
        return ["the baskets come in another order"]
    if compiled.shape != expected.shape or compiled.dtype != np.float32:
        return [f"shape {compiled.shape} {compiled.dtype}, expected {expected.shape} float32"]
    far = ~np.isclose(compiled, expected, rtol=2e-6, atol=1e-6)
    return [f"{fitted.feature_names_[j]} of basket {i}: {compiled[i, j]} against {expected[i, j]}"
            for i, j in zip(*np.nonzero(far), strict=True)][:10]


def test_ten_thousand_later_baskets_give_the_same_matrix(fitted, split):
    lines = _later(split, 10_000)
    assert lines[BASKET_KEY].n_unique() == 10_000
    assert not _differences(fitted, lines)


def test_lines_out_of_basket_order_give_the_same_rows_in_the_same_order(fitted, split):
    assert not _differences(fitted, _later(split, 500).sample(fraction=1.0, shuffle=True, seed=2))


def test_unseen_products_classes_divisions_and_values_fall_back_alike(fitted, split):
    lines = _later(split, 400).with_row_index("_i").with_columns(
        pl.when(pl.col("_i") % 7 == 0).then(pl.lit("PRD9999999")).otherwise(pl.col("PROD_CODE")).alias("PROD_CODE"),
        pl.when(pl.col("_i") % 11 == 0).then(pl.lit("CL99999")).otherwise(pl.col("PROD_CODE_10")).alias("PROD_CODE_10"),
        pl.when(pl.col("_i") % 13 == 0).then(pl.lit("G99999")).otherwise(pl.col("PROD_CODE_30")).alias("PROD_CODE_30"),
        pl.when(pl.col("_i") % 17 == 0).then(pl.lit("D99999")).otherwise(pl.col("PROD_CODE_40")).alias("PROD_CODE_40"),
        pl.when(pl.col("_i") % 19 == 0).then(pl.col("SPEND") * 5_000).when(pl.col("_i") % 23 == 0).then(0.0)
        .otherwise(pl.col("SPEND")).alias("SPEND"),  # price indices beyond both clip bounds
        pl.when(pl.col("_i") % 5 == 0).then(None).otherwise(pl.col("CUST_PRICE_SENSITIVITY"))
        .alias("CUST_PRICE_SENSITIVITY"),
    ).drop("_i")
    # A product's hierarchy is its first line's on both paths; make it one per product, as in real data.
    chains = lines.select(HIERARCHY).unique(subset="PROD_CODE", keep="first", maintain_order=True)
    lines = lines.drop(HIERARCHY[1:]).join(chains, on="PROD_CODE", maintain_order="left")
    assert not _differences(fitted, lines)


def test_columns_and_frames_encode_the_same_batch(fitted, split):
    lines = _later(split, 300)
    compiled = CompiledFeaturizer(fitted)
    batch, _ = compiled.encode_frame(lines)
    headers, baskets = [], []
    for _, group in lines.group_by(BASKET_KEY, maintain_order=True):
        headers.append(group.row(0, named=True))
        baskets.append(group.select(*HIERARCHY, "QUANTITY", "SPEND").rows())
    assert {*HEADER_CATEGORICALS, *HEADER_NUMERICS} <= set(headers[0])
    columns = BasketColumns.of_records(headers, baskets)
    np.testing.assert_array_equal(compiled.transform(compiled.encode_columns(columns)), compiled.transform(batch))


def test_a_basket_alone_gets_the_row_it_gets_in_a_large_batch(fitted, split):
    """A batch of SPARSE_LINES lines or more sums per-product values as a sparse product, a small one by gathering
    them to the lines: a basket's row must not depend on which (as when the API scores one basket)."""
    lines = _later(split, 200)
    assert lines.height >= SPARSE_LINES
    compiled = CompiledFeaturizer(fitted)
    batch, keys = compiled.encode_frame(lines)
    together = compiled.transform(batch)
    for i, key in enumerate(keys[BASKET_KEY].to_list()[:40]):
        alone = compiled.transform(compiled.encode_frame(lines.filter(pl.col(BASKET_KEY) == key))[0])
        np.testing.assert_allclose(alone[0], together[i], rtol=2e-6, atol=1e-6, err_msg=f"basket {key}")


def test_a_featurizer_whose_features_it_cannot_compute_is_refused(fitted):
    fitted.feature_names_ = [*fitted.feature_names_, "a_feature_from_elsewhere"]
    try:
        with pytest.raises(ValueError, match="does not compute a_feature_from_elsewhere"):
            CompiledFeaturizer(fitted)
    finally:
        fitted.feature_names_ = fitted.feature_names_[:-1]


SMALL = {"xgboost": {"n_estimators": 20}, "random_forest": {"n_estimators": 12}}


@pytest.mark.parametrize("family", ["xgboost", "random_forest", "decision_tree", "logistic_regression"])
def test_the_served_probabilities_equal_predict_proba_for_every_family(tmp_path, family):
    """`_probability_function` skips scikit-learn's per-call checks (and the forest's joblib dispatch): for a
    saved and loaded model of each family, it gives `predict_proba`'s answer, for one row and for many, float32 or
    float64, and a row of the wrong width is still refused."""
    from ml.bundle import _probability_function
    from ml.families import FAMILIES, fitted, load_model, save_model

    rng = np.random.default_rng(0)
    x, y = rng.random((400, 6)).astype(np.float32), rng.integers(0, 3, 400)
    x[::7, 2] = 0.5  # repeated values: ties in the trees' splits
    model = fitted(FAMILIES[family].build({**FAMILIES[family].defaults, **SMALL.get(family, {})}, 7), x, y)
    loaded = load_model(family, save_model(family, model, tmp_path))
    probabilities = _probability_function(loaded)
    for rows in (x, x[:1], x[5:6].astype(np.float64)):
        expected = model.predict_proba(rows)
        if family == "xgboost":
            np.testing.assert_allclose(probabilities(rows), expected, rtol=1e-6, atol=1e-7)
        else:
            np.testing.assert_array_equal(probabilities(rows), expected)
    with pytest.raises(ValueError, match="features"):
        probabilities(x[:3, :5])


def test_a_product_under_two_categories_in_one_batch_prices_each_line_by_its_own(fitted, split):
    """Category prices and divisions are the line's own: another basket naming the same product under another
    category and division (a reclassified product, or another client's request coalesced into the same call) must
    not change this basket's features."""
    lines = _later(split, 200)
    shared = lines.group_by("PROD_CODE").agg(pl.col(BASKET_KEY).n_unique().alias("n")).filter(pl.col("n") > 1)
    product = shared["PROD_CODE"][0]
    other = lines.filter(pl.col("PROD_CODE") != product).row(0, named=True)
    second = lines.filter(pl.col("PROD_CODE") == product)[BASKET_KEY].unique(maintain_order=True)[1]
    moved = lines.with_columns(
        *[pl.when((pl.col("PROD_CODE") == product) & (pl.col(BASKET_KEY) == second)).then(pl.lit(other[c]))
          .otherwise(pl.col(c)).alias(c) for c in ("PROD_CODE_30", "PROD_CODE_40")]
    )
    assert not _differences(fitted, moved)
