"""Calibration: the synthetic file's structure and difficulty next to the real file's.

The synthetic generator must be as hard as the real dunnhumby file (issue 10: the
baseline pipeline scored macro-F1 0.911 on the real file's latest 27 weeks but 0.998
on the old synthetic file). This prints, for a synthetic file of `--rows` rows, what
shared/data/FACTS.md measured on the real file next to the same measurement here:
label shares and drift, single-product baskets and their purity, how many products
and holdout lines the training weeks reveal, how well the true line-count tier shares
explain the label (and spend- or quantity-weighted shares do not), and the holdout
macro-F1 of the baseline featurizer (`tier_inference=False`) with the project's
XGBoost training, and of the tier-inference featurizer.

    .venv/bin/python bench/calibration.py [--rows 2700000] [--seed 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
from rich.console import Console
from rich.table import Table
from sklearn.tree import DecisionTreeClassifier

from ml.calendar import week_index_expr
from ml.evaluate import compute_metrics
from ml.families import FAMILIES
from ml.features import BasketFeaturizer
from ml.ingest import SOURCE_FILE, SOURCE_LINE, to_canonical
from ml.schema import BASKET_KEY, LABEL, TRAINABLE_LABELS
from ml.split import split_lines
from ml.synth import TIERS, SynthConfig, generate, product_truth
from ml.validate import validate
from ml.xgb_search import search_xgboost

HOLDOUT_WEEKS = 27  # as the pipeline's default and FACTS' measurements
VALIDATION_WEEKS = 8
CLASSES = list(TRAINABLE_LABELS)


@dataclass(frozen=True)
class Measure:
    """One row of the table: what it is, FACTS' value on the real file (None: not measured)."""

    key: str
    title: str
    real: float | None
    fmt: str = "{:.3f}"


MEASURES = (
    Measure("share_MM", "label share MM (baskets)", 0.51),
    Measure("share_UM", "label share UM", 0.24),
    Measure("share_LA", "label share LA", 0.23),
    Measure("share_XX", "label share XX", 0.019),
    Measure("la_first_year", "LA share, first 52 weeks", 0.26),
    Measure("la_last_year", "LA share, last 52 weeks", 0.22),
    Measure("xx_last_over_first", "XX share, last / first 52 weeks", 2.0, "{:.2f}"),
    Measure("lines_mean", "lines per basket, mean", 6.4, "{:.2f}"),
    Measure("lines_median", "lines per basket, median", 4.0, "{:.0f}"),
    Measure("seg1_agreement", "seg_1 agrees with the label", 0.50),
    Measure("la_price_index", "LA products' unit price / category median", 0.83),
    Measure("mm_um_price_index", "MM/UM products' unit price / category median", 1.05),
    Measure("single_share", "single-product baskets / baskets", 91_210 / 473_028),
    Measure("single_purity", "single-product baskets labelled with the tier", 1.0),
    Measure("products_in_single", "products in a single-product basket (all weeks)", 4_722 / 4_997),
    Measure("products_in_single_train", "products in a training single-product basket", None),
    Measure("holdout_lines_unseen", "holdout lines: product unseen in training", None),
    Measure("holdout_lines_unrevealed", "holdout lines: no training single-product basket", None),
    Measure("mm_lines_in_la_um", "MM-product lines in LA or UM baskets", None),
    Measure("tier_from_label_spread", "product tier from its label spread (CV tree)", None),
    Measure("tree3_lines", "depth-3 tree on line-count tier shares", 0.994, "{:.4f}"),
    Measure("tree10_lines", "depth-10 tree on line-count tier shares", 1.0, "{:.4f}"),
    Measure("tree_spend", "best tree on spend-weighted shares (<=)", 0.90),
    Measure("tree_quantity", "best tree on quantity-weighted shares (<=)", 0.93),
    Measure("rule_on_read_tiers_f1", "rule on tiers read from training singles, macro-F1", None),
    Measure("baseline_macro_f1", "baseline featurizer + XGBoost, holdout macro-F1", 0.911),
    Measure("baseline_accuracy", "baseline featurizer + XGBoost, holdout accuracy", None),
    Measure("tiers_macro_f1", "tier-inference featurizer + XGBoost, holdout macro-F1", 0.993),
)


def canonical_lines(table: pa.Table) -> pl.DataFrame:
    """Typed, validated lines as the pipeline's ingest and validate stages make them."""
    text = pl.from_arrow(table).select(pl.all().cast(pl.String))
    raw = to_canonical(text, "coded").with_columns(
        pl.lit("synthetic").alias(SOURCE_FILE), (pl.int_range(pl.len(), dtype=pl.Int64) + 2).alias(SOURCE_LINE)
    )
    return validate(raw).lines


def _basket_table(lines: pl.DataFrame, truth: pl.DataFrame) -> pl.DataFrame:
    """One row per basket: label, week, lines, seg_1, and line/spend/quantity counts per true tier."""
    tiered = lines.join(truth.select("PROD_CODE", "tier"), on="PROD_CODE", how="left")
    per_tier = []
    for t in TIERS:
        is_t = pl.col("tier") == t
        per_tier += [
            is_t.sum().alias(f"lines_{t}"),
            pl.when(is_t).then(pl.col("SPEND")).otherwise(0.0).sum().alias(f"spend_{t}"),
            pl.when(is_t).then(pl.col("QUANTITY")).otherwise(0).sum().alias(f"quantity_{t}"),
        ]
    return tiered.group_by(BASKET_KEY).agg(
        pl.first(LABEL).alias("label"),
        pl.first("SHOP_WEEK"),
        pl.first("CUST_PRICE_SENSITIVITY").alias("seg_1"),
        pl.len().alias("lines"),
        pl.first("PROD_CODE").alias("first_product"),
        pl.first("tier").alias("first_tier"),
        *per_tier,
    ).with_columns(week_index_expr(pl.col("SHOP_WEEK")).alias("week_index"))


def _tree_accuracy(baskets: pl.DataFrame, prefix: str, depth: int) -> float:
    """In-sample accuracy of a depth-limited tree on a basket's tier shares by `prefix`."""
    totals = baskets.select([pl.col(f"{prefix}_{t}").cast(pl.Float64) for t in TIERS]).to_numpy()
    shares = totals / np.maximum(totals.sum(axis=1, keepdims=True), 1e-9)
    y = baskets["label"].to_numpy()
    return float(DecisionTreeClassifier(max_depth=depth, random_state=0).fit(shares, y).score(shares, y))


def _label_shares(baskets: pl.DataFrame) -> dict[str, float]:
    counts = dict(baskets.group_by("label").len().iter_rows())
    return {t: counts.get(t, 0) / baskets.height for t in TIERS}


def price_index_by_tier(lines: pl.DataFrame, truth: pl.DataFrame) -> tuple[float, float]:
    """Median unit price / category median of LA products, and of MM and UM products (FACTS: 0.83 and 1.05)."""
    unit = lines.select("PROD_CODE", "PROD_CODE_30", (pl.col("SPEND") / pl.col("QUANTITY")).alias("unit"))
    category = unit.group_by("PROD_CODE_30").agg(pl.col("unit").median().alias("category"))
    product = (
        unit.group_by("PROD_CODE", "PROD_CODE_30").agg(pl.col("unit").median().alias("price"))
        .join(category, on="PROD_CODE_30")
        .join(truth, on="PROD_CODE")
        .with_columns((pl.col("price") / pl.col("category")).alias("index"))
    )
    return (
        float(product.filter(pl.col("tier") == "LA")["index"].median()),
        float(product.filter(pl.col("tier").is_in(["MM", "UM"]))["index"].median()),
    )


def _tier_from_label_spread(lines: pl.DataFrame, baskets: pl.DataFrame, truth: pl.DataFrame) -> float:
    """Cross-validated accuracy of a small tree reading a product's tier from the label
    shares of the multi-line baskets it sits in (products seen in 20 or more)."""
    from sklearn.model_selection import cross_val_score

    multi = baskets.filter(pl.col("lines") > 1).select(BASKET_KEY, "label")
    spread = (
        lines.select(BASKET_KEY, "PROD_CODE").join(multi, on=BASKET_KEY)
        .group_by("PROD_CODE")
        .agg(pl.len().alias("n"), *[(pl.col("label") == t).mean().alias(t) for t in TIERS])
        .filter(pl.col("n") >= 20)
        .join(truth, on="PROD_CODE")
    )
    x = spread.select(TIERS).to_numpy()
    y = spread["tier"].to_numpy()
    tree = DecisionTreeClassifier(max_depth=4, min_samples_leaf=10, random_state=0)
    return float(cross_val_score(tree, x, y, cv=5).mean())


def structure(lines: pl.DataFrame, truth: pl.DataFrame, holdout_weeks: int = HOLDOUT_WEEKS) -> dict[str, float]:
    """Every structural measurement of MEASURES, from validated lines and the true tiers."""
    baskets = _basket_table(lines, truth)
    shares = _label_shares(baskets)
    first_week, last_week = int(baskets["week_index"].min()), int(baskets["week_index"].max())
    first_year = _label_shares(baskets.filter(pl.col("week_index") < first_week + 52))
    last_year = _label_shares(baskets.filter(pl.col("week_index") > last_week - 52))
    carded = baskets.filter(pl.col("seg_1").is_not_null())
    singles = baskets.filter(pl.col("lines") == 1)
    first_holdout = last_week - holdout_weeks + 1
    train_singles = singles.filter(pl.col("week_index") < first_holdout)
    train_lines = lines.join(baskets.select(BASKET_KEY, "week_index"), on=BASKET_KEY).filter(
        pl.col("week_index") < first_holdout
    )
    holdout = lines.join(baskets.select(BASKET_KEY, "week_index"), on=BASKET_KEY).filter(
        pl.col("week_index") >= first_holdout
    )
    seen = train_lines["PROD_CODE"].unique().implode()
    revealed = train_singles["first_product"].unique().implode()
    mm_lines = lines.join(truth.filter(pl.col("tier") == "MM"), on="PROD_CODE").join(
        baskets.select(BASKET_KEY, "label"), on=BASKET_KEY
    )
    la_index, mm_um_index = price_index_by_tier(lines, truth)
    return {
        **{f"share_{t}": shares[t] for t in TIERS},
        "la_first_year": first_year["LA"],
        "la_last_year": last_year["LA"],
        "xx_last_over_first": last_year["XX"] / max(first_year["XX"], 1e-9),
        "lines_mean": float(baskets["lines"].mean()),
        "lines_median": float(baskets["lines"].median()),
        "seg1_agreement": float((carded["seg_1"] == carded["label"]).mean()),
        "la_price_index": la_index,
        "mm_um_price_index": mm_um_index,
        "single_share": singles.height / baskets.height,
        "single_purity": float((singles["label"] == singles["first_tier"]).mean()),
        "products_in_single": singles["first_product"].n_unique() / lines["PROD_CODE"].n_unique(),
        "products_in_single_train": train_singles["first_product"].n_unique() / train_lines["PROD_CODE"].n_unique(),
        "holdout_lines_unseen": float((~holdout["PROD_CODE"].is_in(seen)).mean()),
        "holdout_lines_unrevealed": float((~holdout["PROD_CODE"].is_in(revealed)).mean()),
        "mm_lines_in_la_um": float(mm_lines["label"].is_in(["LA", "UM"]).mean()),
        "tier_from_label_spread": _tier_from_label_spread(lines, baskets, truth),
        "tree3_lines": _tree_accuracy(baskets, "lines", 3),
        "tree10_lines": _tree_accuracy(baskets, "lines", 10),
        "tree_spend": max(_tree_accuracy(baskets, "spend", d) for d in (3, 10)),
        "tree_quantity": max(_tree_accuracy(baskets, "quantity", d) for d in (3, 10)),
        "rule_on_read_tiers_f1": _rule_on_read_tiers(baskets, lines, first_holdout),
    }


def _rule_on_read_tiers(baskets: pl.DataFrame, lines: pl.DataFrame, first_holdout: int) -> float:
    """Holdout macro-F1 of the label rule on tiers read from training single-product
    baskets (MM where training shows no single basket): a bound on tier inference."""
    from ml.synth import label_of_counts

    read = (
        baskets.filter((pl.col("lines") == 1) & (pl.col("week_index") < first_holdout))
        .group_by("first_product").agg(pl.col("label").mode().first().alias("read_tier"))
        .rename({"first_product": "PROD_CODE"})
    )
    held = baskets.filter((pl.col("week_index") >= first_holdout) & pl.col("label").is_in(CLASSES))
    counts = (
        lines.join(held.select(BASKET_KEY), on=BASKET_KEY)
        .join(read, on="PROD_CODE", how="left")
        .with_columns(pl.col("read_tier").fill_null("MM"))
        .group_by(BASKET_KEY)
        .agg(*[(pl.col("read_tier") == t).sum().alias(t) for t in TIERS])
        .join(held.select(BASKET_KEY, "label"), on=BASKET_KEY)
    )
    predicted = np.array(TIERS)[label_of_counts(counts.select(TIERS).to_numpy())]
    y_true = np.array([CLASSES.index(c) for c in counts["label"]])
    y_pred = np.array([CLASSES.index(c) if c in CLASSES else CLASSES.index("MM") for c in predicted])
    return compute_metrics(y_true, y_pred, CLASSES).macro_f1


def holdout_scores(
    lines: pl.DataFrame, tier_inference: bool, holdout_weeks: int = HOLDOUT_WEEKS, trials: int = 4, seed: int = 7
) -> dict[str, Any]:
    """The project's XGBoost training (bounded search, then the final fit) on one featurizer,
    scored on the latest `holdout_weeks`: as `ml.train` does for its xgboost family."""
    started = time.perf_counter()
    split = split_lines(lines, holdout_weeks)
    featurizer = BasketFeaturizer(seed=seed, tier_inference=tier_inference)
    train = featurizer.fit_transform(split.train).filter(pl.col(LABEL).is_in(CLASSES))
    holdout = featurizer.transform(split.holdout).filter(pl.col(LABEL).is_in(CLASSES))

    def xy(frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        y = frame[LABEL].replace_strict({c: i for i, c in enumerate(CLASSES)}, return_dtype=pl.Int32)
        return featurizer.matrix(frame), y.to_numpy()

    x_train, y_train = xy(train)
    x_holdout, y_holdout = xy(holdout)
    week_index = train.select(week_index_expr(pl.col("SHOP_WEEK"))).to_series().to_numpy()
    validation = week_index > week_index.max() - VALIDATION_WEEKS
    xgboost = FAMILIES["xgboost"]
    search = search_xgboost(x_train, y_train, validation, base=xgboost.defaults, trials=trials, seed=seed)
    model = xgboost.build(search["best_params"], seed).fit(x_train, y_train)
    metrics = compute_metrics(y_holdout, model.predict_proba(x_holdout).argmax(axis=1), CLASSES)
    return {"macro_f1": metrics.macro_f1, "accuracy": metrics.accuracy,
            "per_class": metrics.per_class, "seconds": round(time.perf_counter() - started, 1)}


def calibrate(cfg: SynthConfig, trials: int = 4, with_tiers: bool = True) -> dict[str, Any]:
    """Generate, measure the structure, and score the featurizers; returns every number."""
    seconds = {}
    started = time.perf_counter()
    table = generate(cfg)
    seconds["generate"] = time.perf_counter() - started
    truth = pl.from_arrow(product_truth(cfg)).select("PROD_CODE", "tier")
    lines = canonical_lines(table)
    del table
    started = time.perf_counter()
    measured = structure(lines, truth)
    seconds["structure"] = time.perf_counter() - started
    baseline = holdout_scores(lines, tier_inference=False, trials=trials, seed=cfg.seed)
    measured |= {"baseline_macro_f1": baseline["macro_f1"], "baseline_accuracy": baseline["accuracy"]}
    seconds["baseline"] = baseline["seconds"]
    if with_tiers:
        tiers = holdout_scores(lines, tier_inference=True, trials=trials, seed=cfg.seed)
        measured["tiers_macro_f1"] = tiers["macro_f1"]
        seconds["tiers"] = tiers["seconds"]
    return {"rows": cfg.rows, "seed": cfg.seed, "measured": measured, "baseline": baseline,
            "seconds": {k: round(v, 1) for k, v in seconds.items()}}


def print_table(result: dict[str, Any], console: Console) -> None:
    table = Table(title=f"Synthetic ({result['rows']:,} rows, seed {result['seed']}) vs the real file (FACTS.md)")
    table.add_column("measure")
    table.add_column("synthetic", justify="right")
    table.add_column("real", justify="right")
    for m in MEASURES:
        if m.key not in result["measured"]:
            continue
        real = "n/a" if m.real is None else m.fmt.format(m.real)
        table.add_row(m.title, m.fmt.format(result["measured"][m.key]), real)
    console.print(table)
    console.print(f"seconds: {result['seconds']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=SynthConfig.rows)
    parser.add_argument("--seed", type=int, default=SynthConfig.seed)
    parser.add_argument("--xgb-trials", type=int, default=4, help="bound of the XGBoost search (pipeline default)")
    parser.add_argument("--new-product-share", type=float, default=SynthConfig.new_product_share,
                        help="products launched after the first week: FACTS has no real figure for it, and it drives "
                             "most of the tier-inference errors (products training never saw)")
    parser.add_argument("--baseline-only", action="store_true", help="skip the tier-inference featurizer")
    parser.add_argument("--json", type=str, help="also write the numbers to this file")
    args = parser.parse_args()
    config = SynthConfig(rows=args.rows, seed=args.seed, new_product_share=args.new_product_share)
    result = calibrate(config, args.xgb_trials, not args.baseline_only)
    print_table(result, Console())
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
