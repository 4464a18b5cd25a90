"""Basket-level features: one fitted transformer for training and serving.

`BasketFeaturizer` follows the scikit-learn contract: `fit` learns from training lines
only, `transform` turns lines (of any number of baskets, one line per product) into
one feature row per basket, and fitted state lives in attributes ending in `_`. It is
saved as JSON and Parquet (no pickle), so loading it executes no code.

What it learns from training lines:
* product tiers (`ml.tiers.ProductTiers`, on unless `tier_inference=False`, the baseline):
  each product's price tier, exact where it was bought alone, estimated through the
  label rule otherwise, from its hierarchy when unseen; the basket's features are its
  line-count tier shares (what decides the label on the real file), how much of it is
  exact, estimated or unseen, and how sure the estimates are;
* tier evidence: for every product, and every level of its hierarchy, how the labels
  of the baskets it appears in are distributed, smoothed towards the parent level,
  so an unseen product falls back to its class, department, group, division;
* unit-price levels: the median unit price of each category (PROD_CODE_30) and of each
  product, giving a price index of a line against its category;
* vocabularies of the basket's categorical columns and of product divisions.

`fit_transform` builds training features with out-of-fold tiers and tier evidence (each
basket's are learned from the other folds' baskets), so the model never sees evidence
that was computed from its own label, as scikit-learn's TargetEncoder does.

Fitting reads its lines through aggregates, so the lines may be a DataFrame or a lazy scan
of Parquet files. Over a scan, the aggregates run on Polars' streaming engine, which holds
their state: one entry per product, per category or per basket (the tier evidence's basket
labels, `ml.tiers` line counts per basket), never one per line. What holds lines is bounded:
the medians are taken a bucket of products at a time, or by radix selection
(`ml.medians`), and tier estimation holds the (basket, product) pairs of the products
without an exact tier only. `fold_parts` fits and returns the out-of-fold features in
parts of a bounded number of lines (`FeaturePart`): a part's lines are read with the
streaming engine and its features computed with the in-memory engine, whose per-basket
sums run in line order, so the features are the same bits whatever the part size or the
thread count, and those `transform` gives the same lines. `fit_folds` is the same fit without the parts: the
fold of a line and each fold's query, which the Spark job (ml/spark_lake.py) applies to partitions of whole baskets.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from ml.calendar import week_span
from ml.medians import bucketed_medians, selected_median, selected_medians
from ml.schema import BASKET_KEY, HIERARCHY, LABEL, LABELS
from ml.tiers import ESTIMATED, EXACT, LA, TIERS, UM, UNSEEN, ProductTiers, TierLines, tier_column

FORMAT_VERSION = 2
# Hierarchy from the coarsest level to the product itself: evidence is smoothed downwards.
LEVELS = tuple(reversed(HIERARCHY))
CATEGORY = "PROD_CODE_30"
DIVISION = "PROD_CODE_40"
HEADER_CATEGORICALS = (
    "BASKET_SIZE",
    "BASKET_TYPE",
    "BASKET_DOMINANT_MISSION",
    "STORE_FORMAT",
    "STORE_REGION",
    "CUST_PRICE_SENSITIVITY",
    "CUST_LIFESTAGE",
)
HEADER_NUMERICS = ("SHOP_HOUR", "SHOP_WEEKDAY")
CHEAP_INDEX = 0.9  # a line priced below 90% of its category's median counts as cheap
PRICE_CLIP = (1e-3, 1e3)
"""Price indices (a line's unit price over its category's) are clipped to these bounds before their logs."""
MIN_UNIT_PRICE = 0.001
"""The smallest median unit price a price level divides by (see `fit`)."""
# Carried through to the basket table (for the split and the lake partitions), not features.
PASSTHROUGH = ("SHOP_WEEK", "STORE_REGION", "BASKET_TYPE")
ENGINE: Literal["streaming"] = "streaming"
"""The engine the fits' aggregates run on: bounded memory over a scan, the same results over a DataFrame."""


def _p(label: str) -> str:
    return f"p_{label}"


def _tier_aggregations() -> list[pl.Expr]:
    """A basket's line-count tier shares: expected (every line's tier probabilities), from exact tiers only, and
    from each line's likeliest tier; the d that decides the label on the real file; and how the tiers are known."""
    probability = {t: pl.col(tier_column(t)) for t in TIERS}
    likeliest = pl.col("tier_likeliest")
    exact = pl.col("tier_kind") == EXACT
    features = [probability[t].mean().alias(f"tier_share_{t}") for t in TIERS]
    features += [(likeliest == i).mean().alias(f"tier_hard_share_{t}") for i, t in enumerate(TIERS)]
    features += [(exact & (likeliest == i)).mean().alias(f"tier_exact_share_{t}") for i, t in enumerate(TIERS)]
    features += [
        (probability["LA"] - probability["UM"]).mean().alias("tier_d"),
        ((likeliest == LA).cast(pl.Float64) - (likeliest == UM).cast(pl.Float64)).mean().alias("tier_hard_d"),
        exact.mean().alias("tier_exact_lines"),
        (pl.col("tier_kind") == ESTIMATED).mean().alias("tier_estimated_lines"),
        (pl.col("tier_kind") == UNSEEN).mean().alias("tier_unseen_lines"),
        (1 - pl.col("tier_top_probability")).mean().alias("tier_uncertainty"),
        pl.col("tier_confidence").min().alias("tier_min_confidence"),
    ]
    return features


@dataclass
class TierEvidence:
    """Smoothed label distribution per code, for each hierarchy level."""

    prior: dict[str, float]
    tables: dict[str, pl.DataFrame]  # level -> [code, p_LA, p_MM, p_UM, p_XX]

    @classmethod
    def fit(cls, lines: pl.DataFrame | pl.LazyFrame, smoothing: float) -> TierEvidence:
        """Learn from labelled lines: each line counts its basket's label for its product."""
        onehot = lines.lazy().select(
            *LEVELS, *[(pl.col(LABEL) == c).cast(pl.Float64).alias(_p(c)) for c in LABELS]
        )
        baskets = lines.lazy().group_by(BASKET_KEY).agg(pl.first(LABEL)).group_by(LABEL).len()
        keys_of = {level: [level] if parent is None else [level, parent]
                   for level, parent in zip(LEVELS, (None, *LEVELS[:-1]), strict=True)}
        # One group-by per chain of codes (about one per product), summed up to each level: the sums are of 0/1, so
        # exact in any order.
        basket_labels, chains = pl.collect_all(
            [baskets, onehot.group_by(LEVELS).agg(pl.len().alias("n"), *[pl.col(_p(c)).sum() for c in LABELS])],
            engine=ENGINE,
        )
        level_counts = [chains.group_by(keys).agg(pl.col("n").sum(), *[pl.col(_p(c)).sum() for c in LABELS])
                        for keys in keys_of.values()]
        # Add-one smoothing: a label no training basket has (or no basket at all) still gets a positive prior,
        # so the lifts (p / prior) and their logs stay finite.
        label_counts = dict(basket_labels.iter_rows())
        n_baskets = sum(label_counts.values())
        prior = {c: (label_counts.get(c, 0) + 1) / (n_baskets + len(LABELS)) for c in LABELS}
        tables: dict[str, pl.DataFrame] = {}
        parent: str | None = None
        for level, counts in zip(LEVELS, level_counts, strict=True):
            keys = keys_of[level]
            if parent is None:
                base = [pl.lit(prior[c]) for c in LABELS]
            else:
                counts = counts.join(
                    tables[parent].rename({_p(c): f"_parent_{c}" for c in LABELS}), on=parent, how="left"
                )
                base = [pl.col(f"_parent_{c}") for c in LABELS]
            smoothed = [
                ((pl.col(_p(c)) + smoothing * b) / (pl.col("n") + smoothing)).alias(_p(c))
                for c, b in zip(LABELS, base, strict=True)
            ]
            # A code seen under several parents keeps the evidence of its commonest chain (equally common: the
            # smallest parent code, so refits of the same lines agree).
            table = counts.sort(["n", *keys], descending=[True, *[False] * len(keys)])
            tables[level] = table.unique(level, keep="first", maintain_order=True).select(level, *smoothed)
            parent = level
        return cls(prior=prior, tables=tables)

    def __post_init__(self) -> None:
        # Built once: request-sized inputs make expression building a visible cost.
        self._lookups = [
            self.tables[level].rename({_p(c): f"{level}:{c}" for c in LABELS}).lazy() for level in LEVELS
        ]
        deepest = list(reversed(LEVELS))
        self._resolve = [
            *[
                pl.coalesce([*[pl.col(f"{lv}:{c}") for lv in deepest], pl.lit(self.prior[c])]).alias(_p(c))
                for c in LABELS
            ],
            pl.col(f"PROD_CODE:{LABELS[0]}").is_null().cast(pl.Float64).alias("unseen_product"),
        ]
        self._lift = [
            (pl.coalesce([*[pl.col(f"{lv}:{c}") for lv in deepest], pl.lit(self.prior[c])]) / self.prior[c])
            .alias(f"lift_{c}")
            for c in LABELS
        ]

    def line_probabilities(self, lines: pl.LazyFrame) -> pl.LazyFrame:
        """Adds p_<label> and lift_<label> per line from the deepest known level, and
        `unseen_product`. The lookups run on the input's distinct products, then one join
        brings them to the lines."""
        frame = lines.select(*LEVELS).unique(subset="PROD_CODE", keep="first")
        for level, lookup in zip(LEVELS, self._lookups, strict=True):
            frame = frame.join(lookup, on=level, how="left")
        resolved = frame.select("PROD_CODE", *self._resolve, *self._lift)
        return lines.join(resolved, on="PROD_CODE", how="left", maintain_order="left")


def require_finite(matrix: np.ndarray, names: list[str]) -> np.ndarray:
    """`matrix`, or ValueError naming the columns that hold NaN or infinite values."""
    finite = np.isfinite(matrix)
    if not finite.all():
        columns = [names[i] for i in np.flatnonzero(~finite.all(axis=0))]
        raise ValueError(f"non-finite feature values in {', '.join(columns)} ({int((~finite).sum())} values)")
    return matrix


class BasketFeaturizer:
    """Lines in, one feature row per basket out; see the module docstring."""

    def __init__(self, smoothing: float = 20.0, folds: int = 5, seed: int = 0, tier_inference: bool = True):
        self.smoothing = smoothing
        self.folds = folds
        self.seed = seed
        self.tier_inference = tier_inference

    # ---- fitting -------------------------------------------------------------------
    def fit(self, lines: pl.DataFrame | pl.LazyFrame, tier_lines: TierLines | None = None,
            rows_per_piece: int | None = None) -> BasketFeaturizer:
        """Learn tiers, evidence, price levels and vocabularies from training lines only (a frame or a scan).
        `tier_lines`: the lines' `TierLines`, if found already; `rows_per_piece`: the most lines the product
        medians hold at once (all of them without it)."""
        lines = lines.lazy()
        self.evidence_ = TierEvidence.fit(lines, self.smoothing)
        self.tiers_ = self._fit_tiers(tier_lines if tier_lines is not None else lines)
        divisions, span, *vocabularies = pl.collect_all(
            [
                lines.select(pl.col(DIVISION).unique()),
                lines.select(pl.len().alias("rows"), pl.col("SHOP_WEEK").min().alias("first"),
                             pl.col("SHOP_WEEK").max().alias("last")),
                *[lines.select(pl.col(c).unique()) for c in HEADER_CATEGORICALS],
            ],
            engine=ENGINE,
        )
        rows = int(span["rows"].item())
        # Price levels divide by these medians: a zero one (a category given away) would make the price features
        # infinite or NaN, so such categories fall back to the global median, itself floored at a tenth of a cent.
        unit = lines.select(CATEGORY, "PROD_CODE", (pl.col("SPEND") / pl.col("QUANTITY")).alias("unit"))
        median = selected_median(unit, "unit")
        category = selected_medians(unit, [CATEGORY], "unit", "category_price")
        product = bucketed_medians(unit, ["PROD_CODE", CATEGORY], "unit", "product_price", rows,
                                   rows_per_piece or max(rows, 1))
        self.global_unit_price_ = max(median or 0.0, MIN_UNIT_PRICE)  # None without lines
        self.category_price_ = category.filter(pl.col("category_price") >= MIN_UNIT_PRICE).sort(CATEGORY)
        self.product_price_index_ = (
            product.join(self.category_price_, on=CATEGORY)
            .select("PROD_CODE", CATEGORY, (pl.col("product_price") / pl.col("category_price")).alias("product_index"))
            .sort("PROD_CODE", CATEGORY)
            .unique("PROD_CODE", keep="first", maintain_order=True)
            .drop(CATEGORY)
        )
        self.vocabularies_ = {
            c: sorted(v for v in values[c].to_list() if v is not None)
            for c, values in zip(HEADER_CATEGORICALS, vocabularies, strict=True)
        }
        self.divisions_ = sorted(divisions[DIVISION].to_list())
        self.fitted_rows_ = rows
        self.fitted_weeks_ = week_span(span["first"].append(span["last"]))
        self.feature_names_ = []
        self._compile()
        # One line, taken with the streaming engine (which stops there; the in-memory engine would read the scan).
        probe = self._plan(lines.head(1).collect(engine=ENGINE).lazy(), self.evidence_, self.tiers_, kept=[]).collect()
        self.feature_names_ = [c for c in probe.columns if c != BASKET_KEY]
        self._compile()
        return self

    def fit_transform(self, lines: pl.DataFrame) -> pl.DataFrame:
        """Fit on the lines, and return their features with out-of-fold tier evidence (fold by fold)."""
        return pl.concat([part.collect() for part in self.fold_parts(lines.lazy())])

    def fold_parts(self, lines: pl.LazyFrame, rows_per_piece: int | None = None) -> list[FeaturePart]:
        """Fit on the lines (a frame made lazy, or a scan); the features of each fold's baskets, with evidence and
        tiers learned from the other folds, fold by fold, each fold dealt into parts of about `rows_per_piece`
        lines by a hash of BASKET_KEY (a part per fold without it)."""
        folds = self.fit_folds(lines, rows_per_piece)
        pieces = _pieces(self.fitted_rows_ / self.folds, rows_per_piece)
        return [FeaturePart(lines.filter((folds.fold == k) & (self._piece(pieces) == j)), featurize)
                for k, featurize in enumerate(folds.featurize) for j in range(pieces)]

    def fit_folds(self, lines: pl.LazyFrame, rows_per_piece: int | None = None) -> FoldFeaturizers:
        """Fit on the lines (a frame made lazy, or a scan) as `fold_parts` does, and return what turns each fold's
        lines into their out-of-fold features, without reading the lines to featurize: `fold_parts` deals the
        lines into parts, the distributed job (ml/spark_lake.py) applies the same queries to partitions of whole
        baskets."""
        fold = self._fold()
        tier_lines = TierLines.from_lines(lines, fold) if self.tier_inference else None
        self.fit(lines, tier_lines, rows_per_piece)
        labelled = lines.select(BASKET_KEY, LABEL, *LEVELS, fold.alias("_fold"))
        kept = self._kept(lines.collect_schema().names())
        featurize: list[Featurize] = []
        for k in range(self.folds):
            evidence = TierEvidence.fit(labelled.filter(pl.col("_fold") != k), self.smoothing)
            tiers = self._fit_tiers(tier_lines.without_fold(k)) if tier_lines is not None else None
            featurize.append(partial(self._plan, evidence=evidence, tiers=tiers, kept=kept))
        return FoldFeaturizers(fold, featurize)

    def parts(self, lines: pl.LazyFrame, rows: int, rows_per_piece: int | None = None) -> list[FeaturePart]:
        """`transform` of `rows` lines (a frame made lazy, or a scan) in parts of about `rows_per_piece` lines, dealt
        by a hash of BASKET_KEY."""
        pieces = _pieces(rows, rows_per_piece)
        featurize = partial(self._plan, evidence=self.evidence_, tiers=self.tiers_,
                            kept=self._kept(lines.collect_schema().names()))
        return [FeaturePart(lines.filter(self._piece(pieces) == j), featurize) for j in range(pieces)]

    def _fold(self) -> pl.Expr:
        """A basket's fold, from its key."""
        return pl.col(BASKET_KEY).hash(seed=self.seed) % self.folds

    def _piece(self, pieces: int) -> pl.Expr:
        """A basket's piece of its fold: the same hash as the fold's, its quotient, so pieces split folds evenly."""
        return pl.col(BASKET_KEY).hash(seed=self.seed) // self.folds % pieces

    def _fit_tiers(self, data: pl.LazyFrame | TierLines) -> ProductTiers | None:
        if not self.tier_inference:
            return None
        tiers = ProductTiers().fit(data)
        tiers.compile()
        return tiers

    # ---- applying ------------------------------------------------------------------
    def transform(self, lines: pl.DataFrame) -> pl.DataFrame:
        """One row per basket: BASKET_KEY, pass-through columns, then `feature_names_`."""
        return self.plan(lines.lazy()).collect()

    def plan(self, lines: pl.LazyFrame) -> pl.LazyFrame:
        """`transform` as a lazy query (over a scan, for the streaming engine)."""
        return self._plan(lines, self.evidence_, self.tiers_, self._kept(lines.collect_schema().names()))

    def matrix(self, features: pl.DataFrame) -> np.ndarray:
        """The model input for `transform`'s output, columns in `feature_names_` order.

        Raises ValueError naming the columns if any value is NaN or infinite: the featurizer is built to keep
        every feature finite, and some families (logistic regression) cannot take anything else.
        """
        return require_finite(features.select(self.feature_names_).to_numpy().astype(np.float32, copy=False),
                              self.feature_names_)

    @staticmethod
    def _kept(columns: list[str]) -> list[str]:
        return [c for c in (*PASSTHROUGH, LABEL) if c in columns]

    def _plan(
        self, lines: pl.LazyFrame, evidence: TierEvidence, tiers: ProductTiers | None, kept: list[str]
    ) -> pl.LazyFrame:
        """The whole transform as one lazy query, so Polars runs it in one go."""
        if tiers is not None:
            lines = tiers.line_tiers(lines)
        line_index = (pl.col("SPEND") / pl.col("QUANTITY")) / pl.col("category_price").fill_null(
            self.global_unit_price_
        )
        frame = (
            evidence.line_probabilities(lines)
            .join(self._category_price, on=CATEGORY, how="left", maintain_order="left")
            .join(self._product_index, on="PROD_CODE", how="left", maintain_order="left")
            .with_columns(
                line_index.clip(*PRICE_CLIP).alias("price_index"),
                pl.col("product_index").fill_null(line_index).clip(*PRICE_CLIP).alias("product_index"),
            )
            .with_columns(self._top_lift)
        )
        header = [pl.first(c) for c in kept if c not in self._header_columns]
        tier_features = self._tier_aggregations if tiers is not None else []
        baskets = frame.group_by(BASKET_KEY, maintain_order=True).agg(*self._aggregations, *tier_features, *header)
        return baskets.with_columns(self._onehots).select(BASKET_KEY, *kept, *self._finish)

    def _compile(self) -> None:
        """Build the expressions of `_plan` once per fitted state."""
        self._category_price = self.category_price_.lazy()
        self._product_index = self.product_price_index_.lazy()
        self._top_lift = pl.concat_list([pl.col(f"lift_{c}") for c in LABELS]).list.arg_max().alias("top_lift")
        self._header_columns = (*HEADER_CATEGORICALS, *HEADER_NUMERICS)
        evidence = []
        for i, c in enumerate(LABELS):
            p = pl.col(_p(c))
            evidence += [
                p.mean().alias(f"mean_p_{c}"),
                p.max().alias(f"max_p_{c}"),
                p.min().alias(f"min_p_{c}"),
                pl.col(f"lift_{c}").log().mean().alias(f"mean_log_lift_{c}"),
                (pl.col("top_lift") == i).mean().alias(f"share_top_{c}"),
            ]
        price = [
            pl.col("price_index").log().mean().alias("mean_log_price_index"),
            pl.col("price_index").log().min().alias("min_log_price_index"),
            pl.col("price_index").log().max().alias("max_log_price_index"),
            (pl.col("price_index") < CHEAP_INDEX).mean().alias("share_cheap_lines"),
            pl.col("product_index").log().mean().alias("mean_log_product_index"),
        ]
        composition = [
            pl.len().cast(pl.Float64).alias("n_lines"),
            pl.col("QUANTITY").sum().cast(pl.Float64).alias("total_quantity"),
            pl.col("SPEND").sum().log1p().alias("log_total_spend"),
            pl.col("SPEND").mean().alias("mean_line_spend"),
            pl.col("unseen_product").mean().alias("share_unseen_products"),
            pl.col(DIVISION).n_unique().cast(pl.Float64).alias("n_divisions"),
            *[(pl.col(DIVISION) == d).mean().alias(f"share_{d}") for d in self.divisions_],
        ]
        self._aggregations = [*[pl.first(c) for c in self._header_columns], *evidence, *price, *composition]
        self._tier_aggregations = _tier_aggregations()
        self._onehots = [
            *[
                pl.col(c).eq_missing(v).cast(pl.Float64).alias(f"{c}={v}")
                for c in HEADER_CATEGORICALS
                for v in self.vocabularies_[c]
            ],
            pl.col("CUST_PRICE_SENSITIVITY").is_null().cast(pl.Float64).alias("no_card"),
        ]
        if self.feature_names_:
            self._finish = [pl.col(c).cast(pl.Float64) for c in self.feature_names_]
        else:  # while fitting: every computed column except the raw categoricals, in order
            self._finish = [pl.exclude(BASKET_KEY, *HEADER_CATEGORICALS).cast(pl.Float64)]

    # ---- persistence ---------------------------------------------------------------
    def save(self, folder: Path) -> list[Path]:
        """Write the fitted state as JSON plus Parquet tables; returns the files written."""
        folder.mkdir(parents=True, exist_ok=True)
        tables = {
            **{f"evidence_{level}": t for level, t in self.evidence_.tables.items()},
            "category_price": self.category_price_,
            "product_price_index": self.product_price_index_,
            **(self.tiers_.tables() if self.tiers_ is not None else {}),
        }
        written = []
        for name, table in tables.items():
            path = folder / f"{name}.parquet"
            table.write_parquet(path)
            written.append(path)
        state = {
            "format_version": FORMAT_VERSION,
            "params": {
                "smoothing": self.smoothing, "folds": self.folds, "seed": self.seed,
                "tier_inference": self.tier_inference,
            },
            "tiers": self.tiers_.state() if self.tiers_ is not None else None,
            "prior": self.evidence_.prior,
            "global_unit_price": self.global_unit_price_,
            "vocabularies": self.vocabularies_,
            "divisions": self.divisions_,
            "feature_names": self.feature_names_,
            "fitted_rows": self.fitted_rows_,
            "fitted_weeks": list(self.fitted_weeks_),
        }
        state_path = folder / "featurizer.json"
        state_path.write_text(json.dumps(state, indent=2))
        return [state_path, *written]

    @classmethod
    def load(cls, folder: Path) -> BasketFeaturizer:
        state = json.loads((folder / "featurizer.json").read_text())
        if state["format_version"] != FORMAT_VERSION:
            raise ValueError(f"{folder}: featurizer format {state['format_version']}, expected {FORMAT_VERSION}")
        self = cls(**state["params"])
        self.evidence_ = TierEvidence(
            prior=state["prior"],
            tables={level: pl.read_parquet(folder / f"evidence_{level}.parquet") for level in LEVELS},
        )
        self.category_price_ = pl.read_parquet(folder / "category_price.parquet")
        self.product_price_index_ = pl.read_parquet(folder / "product_price_index.parquet")
        self.tiers_ = None
        if state["tiers"] is not None:
            tables = {path.stem: pl.read_parquet(path) for path in folder.glob("tiers_*.parquet")}
            self.tiers_ = ProductTiers.restore(state["tiers"], tables)
        self.global_unit_price_ = state["global_unit_price"]
        self.vocabularies_ = state["vocabularies"]
        self.divisions_ = state["divisions"]
        self.feature_names_ = state["feature_names"]
        self.fitted_rows_ = state["fitted_rows"]
        self.fitted_weeks_ = tuple(state["fitted_weeks"])
        self._compile()
        return self


Featurize = Callable[[pl.LazyFrame], pl.LazyFrame]
"""Lines of whole baskets in, one feature row per basket out (a fitted state's `_plan`)."""


@dataclass(frozen=True)
class FoldFeaturizers:
    """The out-of-fold features of training lines: a line's fold (from its basket's key), and per fold the query
    fitted on the other folds' lines."""

    fold: pl.Expr
    featurize: list[Featurize]


@dataclass(frozen=True)
class FeaturePart:
    """Some baskets' lines (a filter of the lines, a scan perhaps) and the query that turns them into features."""

    lines: pl.LazyFrame
    featurize: Featurize

    def collect(self) -> pl.DataFrame:
        """The part's features: its lines read with the streaming engine (a scan is filtered as it is read), then
        featurized with the in-memory engine, whose per-basket sums run in line order whatever the thread count.
        Baskets come in the order of their first line."""
        held = self.lines.collect(engine=ENGINE)
        return self.featurize(held.lazy()).collect()


def _pieces(rows: float, rows_per_piece: int | None) -> int:
    """Into how many pieces `rows` lines go for pieces of at most about `rows_per_piece` (one without a limit)."""
    return 1 if rows_per_piece is None else max(1, math.ceil(rows / max(rows_per_piece, 1)))
