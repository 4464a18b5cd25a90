"""Product tiers: read exactly from single-product baskets, estimated through the label rule, fallen back on the
hierarchy for unseen products; the rule's thresholds fitted from the baskets."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ml.features import BasketFeaturizer
from ml.schema import BASKET_KEY, LABEL
from ml.tiers import ESTIMATED, EXACT, LA, MM, UM, UNSEEN, XX, LabelRule, ProductTiers, tier_column

TRUE_RULE = LabelRule(la_above=0.2, um_below=-0.2, xx_share=0.75)
NAMES = ("LA", "MM", "UM", "XX")


def basket_lines(baskets: list[list[str]], tiers: dict[str, int], classes: dict[str, str] | None = None):
    """Lines of the given baskets (lists of product codes), labelled by TRUE_RULE from the products' tiers."""
    rows = []
    for b, products in enumerate(baskets):
        counts = np.zeros((1, 4))
        for product in products:
            counts[0, tiers[product]] += 1
        label = NAMES[TRUE_RULE.labels(counts)[0]]
        for product in products:
            klass = (classes or {}).get(product, f"CL{product}")
            rows.append({BASKET_KEY: f"B{b}", "PROD_CODE": product, "PROD_CODE_10": klass,
                         "PROD_CODE_20": "DEP1", "PROD_CODE_30": "G1", "PROD_CODE_40": "D1", LABEL: label})
    return pl.DataFrame(rows)


def tier_of(tiers: ProductTiers, product: str) -> tuple[str, int]:
    row = tiers.products_.filter(pl.col("PROD_CODE") == product).row(0, named=True)
    probabilities = [row[tier_column(t)] for t in NAMES]
    return NAMES[int(np.argmax(probabilities))], row["tier_kind"]


def test_a_product_bought_alone_takes_its_baskets_label_exactly():
    lines = basket_lines([["a"], ["b"], ["c"], ["a", "b"]], {"a": LA, "b": MM, "c": UM})
    tiers = ProductTiers().fit(lines)
    assert [tier_of(tiers, p) for p in "abc"] == [("LA", EXACT), ("MM", EXACT), ("UM", EXACT)]


def test_a_product_never_bought_alone_is_estimated_through_the_label_rule():
    """`u` is LA, never alone: with two MM products beside it the basket comes out LA only if `u` is LA."""
    rng = np.random.default_rng(0)
    tiers_true = {"m1": MM, "m2": MM, "m3": MM, "l1": LA, "p1": UM, "u": LA}
    baskets = [[p] for p in ("m1", "m2", "m3", "l1", "p1")] * 3
    baskets += [["u", *rng.choice(["m1", "m2", "m3", "p1"], 2)] for _ in range(30)]
    tiers = ProductTiers().fit(basket_lines(baskets, tiers_true))
    assert tier_of(tiers, "u") == ("LA", ESTIMATED)
    confidence = tiers.products_.filter(pl.col("PROD_CODE") == "u")["tier_confidence"].item()
    assert confidence > 0.9


def test_the_rule_thresholds_are_recovered_from_fully_known_baskets():
    rng = np.random.default_rng(1)
    products = {f"P{i}": int(t) for i, t in enumerate(rng.choice([LA, MM, UM, XX], 60, p=[0.2, 0.55, 0.2, 0.05]))}
    singles = [[p] for p in products]
    mixed = [list(rng.choice(list(products), rng.integers(2, 12))) for _ in range(3000)]
    tiers = ProductTiers().fit(basket_lines(singles + mixed, products))
    assert tiers.rule_.la_above == pytest.approx(0.2, abs=0.05)
    assert tiers.rule_.um_below == pytest.approx(-0.2, abs=0.05)


def test_an_unseen_product_falls_back_to_its_class_tier_mix():
    classes = {"a": "CL1", "b": "CL1", "c": "CL2", "new": "CL1"}
    tiers = ProductTiers().fit(basket_lines([["a"], ["b"], ["c"]], {"a": UM, "b": UM, "c": LA}, classes))
    tiers.compile()
    query = pl.DataFrame({"PROD_CODE": ["new"], "PROD_CODE_10": ["CL1"], "PROD_CODE_20": ["DEP1"],
                          "PROD_CODE_30": ["G1"], "PROD_CODE_40": ["D1"]})
    row = tiers.line_tiers(query.lazy()).collect().row(0, named=True)
    assert row["tier_kind"] == UNSEEN
    assert row[tier_column("UM")] > row[tier_column("LA")] and row[tier_column("UM")] > row[tier_column("MM")]


def test_the_label_rule_counts_lines_not_products():
    counts = np.array([[3, 2, 0, 0], [1, 8, 1, 0], [0, 1, 4, 0], [0, 0, 0, 5], [2, 0, 0, 8]], dtype=float)
    assert TRUE_RULE.labels(counts).tolist() == [LA, MM, UM, XX, XX]


@pytest.fixture(scope="module")
def small_lines(small_csv) -> pl.DataFrame:
    from ml.ingest import read
    from ml.validate import validate

    return validate(read(small_csv)[1]).lines


def test_basket_features_give_the_line_count_shares_and_how_the_tiers_are_known(small_lines, tmp_path):
    featurizer = BasketFeaturizer(folds=2).fit(small_lines)
    features = featurizer.transform(small_lines.head(5_000))
    shares = features.select([f"tier_share_{t}" for t in NAMES]).to_numpy().sum(axis=1)
    known = features.select("tier_exact_lines", "tier_estimated_lines", "tier_unseen_lines").to_numpy().sum(axis=1)
    assert np.allclose(shares, 1.0) and np.allclose(known, 1.0)
    featurizer.save(tmp_path / "featurizer")
    again = BasketFeaturizer.load(tmp_path / "featurizer").transform(small_lines.head(5_000))
    assert again.equals(features), "the saved featurizer transforms exactly as the fitted one"


def test_the_baseline_featurizer_has_no_tier_features(small_lines):
    baseline = BasketFeaturizer(tier_inference=False, folds=2).fit(small_lines)
    assert baseline.tiers_ is None
    assert not [n for n in baseline.feature_names_ if n.startswith("tier_")]


def test_the_fitted_xx_threshold_reproduces_its_own_baskets():
    """3 XX + 1 MM lines (0.75 XX) is MM, 4 XX + 1 MM (0.8) is XX: the threshold must fall between, and be applied
    with the comparison it was fitted with."""
    tiers = {"x1": XX, "x2": XX, "x3": XX, "x4": XX, "m": MM}
    baskets = [[p] for p in tiers] + [["x1", "x2", "x3", "m"]] * 50 + [["x1", "x2", "x3", "x4", "m"]] * 50
    lines = basket_lines(baskets, tiers)
    fitted = ProductTiers().fit(lines).rule_
    assert 0.75 <= fitted.xx_share < 0.8
    counts = np.array([[0, 1, 0, 3], [0, 1, 0, 4]], dtype=float)
    assert fitted.labels(counts).tolist() == [MM, XX]


def test_equally_good_thresholds_resolve_to_the_default_or_the_middle_of_their_plateau():
    """Baskets at d = 0 and d = 0.5: every threshold in [0, 0.5) separates them, the default 0.2 among them. With
    MM baskets at d = 0.25 the plateau is [0.25, 0.5) and the fit takes its middle, not the edge a basket sits on."""
    counts = np.array([[0, 2, 0, 0]] * 20 + [[1, 1, 0, 0]] * 20, dtype=float)
    labels = np.array([MM] * 20 + [LA] * 20)
    assert LabelRule.fit(counts, labels).la_above == 0.2
    counts = np.array([[1, 3, 0, 0]] * 20 + [[1, 1, 0, 0]] * 20, dtype=float)
    assert LabelRule.fit(counts, labels).la_above == pytest.approx(0.37, abs=0.011)


def test_baskets_that_are_all_xx_leave_the_default_thresholds():
    counts = np.array([[0, 0, 0, 1], [0, 0, 0, 3]], dtype=float)
    rule = LabelRule.fit(counts, np.array([XX, XX]))
    assert (rule.la_above, rule.um_below) == (LabelRule().la_above, LabelRule().um_below)
    tiers = ProductTiers().fit(basket_lines([["x"], ["x", "y"]], {"x": XX, "y": XX}))
    assert tier_of(tiers, "x") == ("XX", EXACT)


def test_a_product_whose_baskets_every_tier_explains_has_no_confidence():
    """`u` beside four MM products: whatever its tier, d stays within [-0.2, 0.2] and XX stays a minority, so
    every basket comes out MM and nothing decides `u`'s tier."""
    tiers = {"m1": MM, "m2": MM, "m3": MM, "m4": MM, "u": LA}
    baskets = [[p] for p in ("m1", "m2", "m3", "m4")] + [["u", "m1", "m2", "m3", "m4"]] * 10
    fitted = ProductTiers().fit(basket_lines(baskets, tiers))
    assert tier_of(fitted, "u")[1] == ESTIMATED
    assert fitted.products_.filter(pl.col("PROD_CODE") == "u")["tier_confidence"].item() == 0.0


def test_refits_of_the_same_lines_in_any_order_agree_exactly(small_lines):
    first = ProductTiers().fit(small_lines)
    shuffled = ProductTiers().fit(small_lines.sample(fraction=1.0, shuffle=True, seed=3))
    assert first.products_.equals(shuffled.products_)
    assert first.rule_ == shuffled.rule_
    assert all(first.levels_[level].sort(level).equals(shuffled.levels_[level].sort(level)) for level in first.levels_)


def test_out_of_fold_features_do_not_depend_on_the_lines_order(small_lines):
    lines = small_lines.head(60_000)
    features = BasketFeaturizer(folds=3).fit_transform(lines).sort(BASKET_KEY)
    again = BasketFeaturizer(folds=3).fit_transform(lines.sample(fraction=1.0, shuffle=True, seed=5)).sort(BASKET_KEY)
    # Means over a basket's lines sum in the lines' order: equal up to the last bits, nothing more.
    assert_frame_equal(features, again, check_exact=False, rel_tol=1e-12, abs_tol=1e-12)


def test_features_stay_finite_without_xx_baskets_and_with_a_free_category(small_lines):
    """No XX basket in training would make the XX prior 0 (lift p / 0); a category whose every line costs 0 would
    make its median price 0 (price / 0). Both must still give finite features, which logistic regression needs."""
    lines = small_lines.filter(pl.col(LABEL) != "XX")
    free = lines["PROD_CODE_30"][0]
    lines = lines.with_columns(pl.when(pl.col("PROD_CODE_30") == free).then(0.0).otherwise(pl.col("SPEND"))
                               .alias("SPEND"))
    featurizer = BasketFeaturizer(folds=2)
    features = featurizer.fit_transform(lines)
    assert np.isfinite(featurizer.matrix(features)).all()
    assert np.isfinite(featurizer.matrix(featurizer.transform(small_lines.head(3_000)))).all()


def test_one_training_basket_is_enough_to_fit(small_lines):
    one = small_lines.filter(pl.col(BASKET_KEY) == small_lines[BASKET_KEY][0])
    featurizer = BasketFeaturizer(folds=3)
    features = featurizer.fit_transform(one)
    assert features.height == 1 and np.isfinite(featurizer.matrix(features)).all()


def test_the_model_input_refuses_non_finite_values_naming_the_column(small_lines):
    featurizer = BasketFeaturizer(folds=2).fit(small_lines)
    features = featurizer.transform(small_lines.head(2_000)).with_columns(pl.lit(float("nan")).alias("tier_d"))
    with pytest.raises(ValueError, match="non-finite feature values in tier_d"):
        featurizer.matrix(features)
