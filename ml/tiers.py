"""Product price tiers inferred from training baskets, and the label rule they obey.

On the real file (shared/data/FACTS.md, "What decides the label") every product has a
stable tier (LA, MM, UM, XX); a basket's label is a function of its LINE COUNTS per tier
(d = (LA lines - UM lines) / lines: above about 0.2 LA, below about -0.2 UM, nearly only
XX lines XX, else MM); and in every basket of a single product the label IS that
product's tier. A product's spread of basket labels is not its tier: an MM product sits
in LA and UM baskets all the time. So the tiers are inferred, not averaged:

1. exact: a product bought alone in a training basket takes that basket's label
   (the majority, should single baskets disagree);
2. the rule's thresholds are fitted on the training baskets whose every product is exact;
3. estimated: every other product takes the tier that makes the most of its training
   baskets come out with their own label through the rule, given the other lines'
   tiers (coordinate ascent over the unknown products, a few rounds, starting from
   the tier mix of the product's class); its confidence is the margin by which that
   tier explains more of its baskets than the next best, as a share of its baskets;
4. unseen (at transform time): a product the training lines never had takes the tier
   mix of its class, else department, group, division, else the whole catalogue's.

`ProductTiers` follows the scikit-learn contract (`fit` learns, `line_tiers` applies,
fitted state in attributes ending in `_`) and is saved as Parquet and JSON by the
featurizer that holds it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TypedDict

import numpy as np
import polars as pl
from numpy.typing import NDArray

from ml.schema import BASKET_KEY, HIERARCHY, LABEL, LABELS

TIERS = LABELS
"""LA, MM, UM, XX: a product's tier uses the labels' names."""
LA, MM, UM, XX = range(4)
EXACT, ESTIMATED, UNSEEN = range(3)
"""How a line's tier is known (`tier_kind`)."""
HIGHER_LEVELS = HIERARCHY[1:]
"""Class, department, group, division: where an unseen product's tier mix comes from."""
ROUNDS = 4
GRID = np.round(np.arange(0.0, 1.0001, 0.01), 2)


class TierParams(TypedDict):
    rounds: int
    smoothing: float


class TierRule(TypedDict):
    la_above: float
    um_below: float
    xx_share: float


class TierCoverage(TypedDict):
    products: int
    exact: int
    estimated: int
    exact_line_share: float


class TierState(TypedDict):
    """`ProductTiers.state()`: what the featurizer's JSON holds of the tiers (their tables are Parquet)."""

    params: TierParams
    rule: TierRule
    prior: dict[str, float]
    coverage: TierCoverage


def tier_column(tier: str) -> str:
    return f"tier_p_{tier}"


@dataclass(frozen=True)
class LabelRule:
    """The label of a basket from its line counts per tier (columns LA, MM, UM, XX)."""

    la_above: float = 0.2
    um_below: float = -0.2
    xx_share: float = 0.75
    """A basket is XX when MORE than this share of its lines are XX (fitted and applied with ">")."""

    def labels(self, counts: np.ndarray) -> np.ndarray:
        lines = np.maximum(counts.sum(axis=1), 1e-9)
        d = (counts[:, LA] - counts[:, UM]) / lines
        label = np.full(len(counts), MM)
        label[d > self.la_above] = LA
        label[d < self.um_below] = UM
        label[counts[:, XX] / lines > self.xx_share] = XX
        return label

    @classmethod
    def fit(cls, counts: np.ndarray, labels: np.ndarray, baskets: np.ndarray | None = None) -> LabelRule:
        """Thresholds that best reproduce `labels` from `counts` (each searched on a 0.01 grid); `baskets`: how many
        baskets each row stands for (one each without it)."""
        if len(labels) == 0:
            return cls()
        weights = np.ones(len(labels), dtype=np.int64) if baskets is None else np.asarray(baskets, dtype=np.int64)
        lines = np.maximum(counts.sum(axis=1), 1e-9)
        d = (counts[:, LA] - counts[:, UM]) / lines
        xx = counts[:, XX] / lines

        default = cls()

        def best(values: NDArray[np.float64], target: NDArray[np.bool_], weight: NDArray[np.int64],
                 candidates: NDArray[np.float64], above: bool, fallback: float) -> float:
            """The threshold that reproduces `target` best, compared as `labels` does: `fallback` (the rule's
            default, "about 0.2" on the real file) when it is among the best or there is nothing to fit, else the
            middle of the longest run of best candidates."""
            if not len(values):
                return fallback
            # Whole baskets counted, then one division: the share np.mean gives of one row per basket, bit for bit.
            total = weight.sum()
            hits = np.array([weight[(values > c) == target if above else (values < c) == target].sum() / total
                             for c in candidates])
            best_ones = hits == hits.max()
            at_fallback = np.flatnonzero(np.isclose(candidates, fallback))
            if len(at_fallback) and best_ones[at_fallback[0]]:
                return fallback
            return float(candidates[_middle_of_longest_run(best_ones)])

        classified = labels != XX
        return cls(
            la_above=best(d[classified], labels[classified] == LA, weights[classified], GRID[:61], True,
                          default.la_above),
            um_below=best(d[classified], labels[classified] == UM, weights[classified], -GRID[:61], False,
                          default.um_below),
            xx_share=best(xx, labels == XX, weights, GRID[50:], True, default.xx_share),
        )


def _middle_of_longest_run(flags: np.ndarray) -> int:
    """Index of the middle of the longest run of True in `flags` (the first such run on a tie); `flags` has one.

    Equally good thresholds form a plateau between the data's values; its middle leaves the
    widest margin on both sides, where the first maximum would sit on a basket's exact value.
    """
    padded = np.concatenate(([False], flags, [False])).astype(np.int8)
    starts = np.flatnonzero(np.diff(padded) == 1)
    ends = np.flatnonzero(np.diff(padded) == -1)
    longest = int(np.argmax(ends - starts))
    return int((starts[longest] + ends[longest] - 1) // 2)


@dataclass(frozen=True)
class TierLines:
    """Labelled training lines as tier inference reads them, found once and shared by the fits on some of their
    baskets (the out-of-fold fits, `without_fold`).

    What is held is per product, never per line: each product's chain, lines per fold and votes of the baskets it
    was bought alone in. The rest is asked of the lines by each fit (`ProductTiers.fit`), as streaming group-bys:
    the line counts per tier of each basket, and the (basket, product) pairs of the products without an exact tier
    only, the one part of the lines the estimation needs.
    """

    lines: pl.LazyFrame
    """BASKET_KEY, PROD_CODE, `label` (index into TIERS) and `_fold` of each labelled line."""
    chains: pl.DataFrame
    """Per product (row = product index): PROD_CODE and its higher levels, the commonest chain over all lines."""
    product_lines: pl.DataFrame
    """p (product index), _fold, lines."""
    votes: pl.DataFrame
    """p, label, _fold, baskets: the baskets of that one product with that label."""

    @classmethod
    def from_lines(cls, lines: pl.DataFrame | pl.LazyFrame, fold: pl.Expr | None = None) -> TierLines:
        """From labelled lines, a frame or a scan; `fold`: each line's fold (an expression of BASKET_KEY)."""
        labelled = lines.lazy().filter(pl.col(LABEL).is_in(TIERS)).select(
            *HIERARCHY, BASKET_KEY,
            pl.col(LABEL).replace_strict({t: i for i, t in enumerate(TIERS)}, return_dtype=pl.Int8).alias("label"),
            (pl.lit(0) if fold is None else fold).cast(pl.Int32).alias("_fold"),
        )
        chains, product_lines = pl.collect_all(
            [labelled.group_by(*HIERARCHY).agg(pl.len().alias("n")),
             labelled.group_by("PROD_CODE", "_fold").agg(pl.len().alias("lines"))],
            engine="streaming",
        )
        # A product seen under several parent chains keeps its commonest; equally common ones, the smallest codes.
        chains = chains.sort(["n", *HIERARCHY], descending=[True, *[False] * len(HIERARCHY)])
        chains = chains.unique("PROD_CODE", keep="first", maintain_order=True).drop("n").sort("PROD_CODE")
        index = chains.select("PROD_CODE").with_row_index("p")
        # A basket of one product: its least and greatest product index are the same (two integers per basket held
        # while grouping, rather than its set of products).
        votes = (
            labelled.join(index.lazy(), on="PROD_CODE")
            .group_by(BASKET_KEY)
            .agg(pl.col("p").min().alias("_low"), pl.col("p").max().alias("_high"), pl.first("label"),
                 pl.first("_fold"))
            .filter(pl.col("_low") == pl.col("_high"))
            .group_by(pl.col("_low").alias("p"), "label", "_fold").agg(pl.len().alias("baskets"))
            .collect(engine="streaming")
        )
        return cls(
            lines=labelled.select(BASKET_KEY, "PROD_CODE", "label", "_fold"),
            chains=chains,
            product_lines=product_lines.join(index, on="PROD_CODE").select("p", "_fold", "lines"),
            votes=votes,
        )

    def without_fold(self, fold: int) -> TierLines:
        """Only the lines of the baskets of the other folds; products keep their indices."""
        other = pl.col("_fold") != fold
        return replace(self, lines=self.lines.filter(other), product_lines=self.product_lines.filter(other),
                       votes=self.votes.filter(other))


class ProductTiers:
    """Each product's tier (exact, estimated or from its hierarchy) and the label rule; see the module docstring."""

    def __init__(self, rounds: int = ROUNDS, smoothing: float = 5.0):
        self.rounds = rounds
        self.smoothing = smoothing

    # ---- fitting -------------------------------------------------------------------
    def fit(self, lines: pl.DataFrame | pl.LazyFrame | TierLines) -> ProductTiers:
        """Learn from labelled training lines (one row per product in a basket; a frame or a scan), or their
        `TierLines`."""
        data = lines if isinstance(lines, TierLines) else TierLines.from_lines(lines)
        n_all = data.chains.height
        lines_of = _per_product(data.product_lines["p"], data.product_lines["lines"], n_all)
        present = lines_of > 0
        keep = np.cumsum(present) - 1  # product index -> index among the present products
        chains = data.chains.filter(pl.Series(present)).with_row_index("p")
        products = chains.select("p", "PROD_CODE")
        n_products = len(products)

        votes = np.zeros((n_products, 4))
        np.add.at(votes, (keep[data.votes["p"].to_numpy()], data.votes["label"].to_numpy()),
                  data.votes["baskets"].to_numpy())
        exact, purity = self._exact(votes)
        known = exact >= 0
        baskets = self._basket_counts(data.lines, products.with_columns(pl.Series("tier", exact)))
        fully_known = baskets.fully_known
        self.rule_ = LabelRule.fit(fully_known.select(TIERS).to_numpy().astype(float),
                                   fully_known["label"].to_numpy(), fully_known["baskets"].to_numpy())

        start = self._class_start(exact, chains)
        tier, confidence, scores = self._estimate(baskets.unknown_pairs, exact, start)
        lines_present = lines_of[present]
        self.coverage_: TierCoverage = {
            "products": int(n_products),
            "exact": int(known.sum()),
            "estimated": int((~known).sum()),
            "exact_line_share": float(lines_present[known].sum() / max(lines_present.sum(), 1)),
        }
        probabilities = self._probabilities(exact, tier, scores, start)
        self.products_ = pl.DataFrame(
            {
                "PROD_CODE": products["PROD_CODE"],
                **{tier_column(t): probabilities[:, i] for i, t in enumerate(TIERS)},
                "tier_kind": np.where(known, EXACT, ESTIMATED).astype(np.int8),
                "tier_confidence": np.where(known, purity, confidence),
            }
        )
        self.prior_ = _catalogue_mix(np.where(known, exact, tier))
        self.levels_ = self._level_mixes(chains, np.where(known, exact, tier))
        return self

    @staticmethod
    def _basket_counts(lines: pl.LazyFrame, products: pl.DataFrame) -> _BasketCounts:
        """Each basket's lines per exact tier, from the lines (`products`: p, PROD_CODE, tier, -1 for none)."""
        tiers = products.lazy().select("PROD_CODE", pl.col("tier").replace(-1, None))
        per_basket = (
            lines.join(tiers, on="PROD_CODE", how="left")
            .group_by(BASKET_KEY)
            .agg(*[(pl.col("tier") == i).sum().cast(pl.Int32).alias(t) for i, t in enumerate(TIERS)],
                 pl.col("tier").is_null().sum().alias("_unknown"), pl.first("label"))
        )
        unknown = products.lazy().filter(pl.col("tier") < 0).select("PROD_CODE", "p")
        # A basket of exact products is one of few distinct count vectors: counted, not listed.
        fully_known, partly_known, pairs = pl.collect_all(
            [per_basket.filter(pl.col("_unknown") == 0).group_by(*TIERS, "label").agg(pl.len().alias("baskets")),
             per_basket.filter(pl.col("_unknown") > 0).select(BASKET_KEY, *TIERS, "label"),
             lines.join(unknown, on="PROD_CODE").group_by(BASKET_KEY, "p").agg(pl.len().cast(pl.UInt16)
                                                                                .alias("n"))],
            engine="streaming",
        )
        partly_known = partly_known.with_row_index("b")
        pairs = pairs.join(partly_known.select(BASKET_KEY, "b"), on=BASKET_KEY).drop(BASKET_KEY)
        return _BasketCounts(fully_known, _UnknownPairs(
            basket=pairs["b"].to_numpy(), product=pairs["p"].to_numpy(), lines=pairs["n"].to_numpy(),
            label=partly_known["label"].to_numpy(), known_counts=partly_known.select(TIERS).to_numpy().astype(float),
        ))

    @staticmethod
    def _exact(votes: NDArray[np.float64]) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Tier (or -1) and purity per product, from its votes: per tier, the baskets holding that product alone."""
        seen = votes.sum(axis=1)
        exact = np.where(seen > 0, votes.argmax(axis=1), -1)
        purity = np.where(seen > 0, votes.max(axis=1) / np.maximum(seen, 1), 0.0)
        return exact, purity

    @staticmethod
    def _class_start(exact: np.ndarray, chains: pl.DataFrame) -> np.ndarray:
        """Each product's starting tier: its exact tier, else the commonest exact tier of its class (else MM)."""
        frame = chains.select("p", "PROD_CODE_10").with_columns(pl.Series("tier", exact))
        known = frame.filter(pl.col("tier") >= 0)
        commonest = (
            known.group_by("PROD_CODE_10", "tier")
            .len()
            .sort(["len", "tier"], descending=[True, False])  # equally common tiers: the lower tier index
            .unique("PROD_CODE_10", keep="first", maintain_order=True)
        )
        start = frame.join(commonest.select("PROD_CODE_10", pl.col("tier").alias("class_tier")), on="PROD_CODE_10",
                           how="left").sort("p")["class_tier"].fill_null(MM).to_numpy()
        return np.where(exact >= 0, exact, start)

    def _estimate(
        self, pairs: _UnknownPairs, exact: NDArray[np.int64], start: NDArray[np.int64],
    ) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
        """Coordinate ascent over the products without an exact tier (see the module docstring), from their
        (basket, product) pairs."""
        tier = start.copy()
        ub, up, un = pairs.basket, pairs.product, pairs.lines.astype(float)
        label, known_counts = pairs.label, pairs.known_counts
        n_products = len(exact)
        scores = np.zeros((n_products, 4))
        confidence = np.zeros(n_products)
        if not len(ub):
            return tier, confidence, scores
        for _ in range(self.rounds):
            totals = known_counts.copy()
            np.add.at(totals, (ub, tier[up]), un)
            without = totals[ub].copy()
            without[np.arange(len(ub)), tier[up]] -= un
            scores = np.zeros((n_products, 4))
            for t in range(4):
                candidate = without.copy()
                candidate[:, t] += un
                hits = (self.rule_.labels(candidate) == label[ub]).astype(float)
                scores[:, t] = np.bincount(up, weights=hits, minlength=n_products)
            baskets = np.bincount(up, minlength=n_products)
            updated = np.where(exact < 0, scores.argmax(axis=1), tier)
            # Ties (or no basket) keep the current tier, so the class start decides what the baskets cannot.
            tie = scores.max(axis=1) == scores[np.arange(n_products), tier]
            updated = np.where(tie & (exact < 0), tier, updated)
            confidence = _margin(scores, baskets)
            if np.array_equal(updated, tier):
                break
            tier = updated
        return tier, confidence, scores

    def _probabilities(self, exact: NDArray[np.int64], tier: NDArray[np.int64], scores: NDArray[np.float64],
                       start: NDArray[np.int64]) -> NDArray[np.float64]:
        """One-hot for exact tiers; for estimated ones the baskets' votes, smoothed towards the chosen tier."""
        probabilities = np.zeros((len(exact), 4))
        known = exact >= 0
        probabilities[known, exact[known]] = 1.0
        votes = scores[~known] + self.smoothing * np.eye(4)[tier[~known]] * 0.25
        probabilities[~known] = votes / np.maximum(votes.sum(axis=1, keepdims=True), 1e-9)
        return probabilities

    def _level_mixes(self, chains: pl.DataFrame, tier: np.ndarray) -> dict[str, pl.DataFrame]:
        """Tier mix of the products under each code of each higher level, smoothed towards the parent level."""
        onehot = chains.with_columns(
            *[pl.Series(tier_column(t), (tier == i).astype(float)) for i, t in enumerate(TIERS)]
        )
        catalogue = self.prior_
        tables: dict[str, pl.DataFrame] = {}
        parent: str | None = None
        for level in reversed(HIGHER_LEVELS):  # division first, down to class
            keys = [level] if parent is None else [level, parent]
            counts = onehot.group_by(keys).agg(pl.len().alias("n"), *[pl.col(tier_column(t)).sum() for t in TIERS])
            if parent is None:
                base = {t: pl.lit(catalogue[t]) for t in TIERS}
            else:
                counts = counts.join(tables[parent].rename({tier_column(t): f"_parent_{t}" for t in TIERS}),
                                     on=parent, how="left")
                base = {t: pl.col(f"_parent_{t}") for t in TIERS}
            smoothed = [
                ((pl.col(tier_column(t)) + self.smoothing * base[t]) / (pl.col("n") + self.smoothing)).alias(
                    tier_column(t)
                )
                for t in TIERS
            ]
            table = counts.sort(["n", *keys], descending=[True, *[False] * len(keys)])
            tables[level] = table.unique(level, keep="first", maintain_order=True).select(level, *smoothed)
            parent = level
        return tables

    # ---- applying ------------------------------------------------------------------
    def compile(self) -> None:
        """Build the lookups and expressions of `line_tiers` once per fitted state."""
        self._products = self.products_.lazy()
        self._levels = [
            (level, self.levels_[level].rename({tier_column(t): f"{level}:{t}" for t in TIERS}).lazy())
            for level in HIGHER_LEVELS
        ]
        self._resolve = [
            pl.coalesce(
                [pl.col(tier_column(t)), *[pl.col(f"{level}:{t}") for level in HIGHER_LEVELS], pl.lit(self.prior_[t])]
            ).alias(tier_column(t))
            for t in TIERS
        ]

    def line_tiers(self, lines: pl.LazyFrame) -> pl.LazyFrame:
        """Adds `tier_p_<tier>` (probabilities), `tier_kind` (exact/estimated/unseen), `tier_confidence`,
        `tier_likeliest` (index into TIERS) and `tier_top_probability`.

        The lookups run on the input's distinct products (thousands), not on its lines (millions);
        one join then brings the result to every line.
        """
        codes = lines.select(*HIERARCHY).unique(subset="PROD_CODE", keep="first")
        frame = codes.join(self._products, on="PROD_CODE", how="left")
        for level, lookup in self._levels:
            frame = frame.join(lookup, on=level, how="left")
        resolved = frame.select(
            "PROD_CODE",
            *self._resolve,
            pl.col("tier_kind").fill_null(UNSEEN),
            pl.col("tier_confidence").fill_null(0.0),
        ).with_columns(
            pl.concat_list([pl.col(tier_column(t)) for t in TIERS]).list.arg_max().alias("tier_likeliest"),
            pl.max_horizontal([pl.col(tier_column(t)) for t in TIERS]).alias("tier_top_probability"),
        )
        return lines.join(resolved, on="PROD_CODE", how="left", maintain_order="left")

    def tables(self) -> dict[str, pl.DataFrame]:
        """The fitted tables by file stem, for saving."""
        return {"tiers_products": self.products_, **{f"tiers_{lv}": t for lv, t in self.levels_.items()}}

    def state(self) -> TierState:
        return {
            "params": {"rounds": self.rounds, "smoothing": self.smoothing},
            "rule": {"la_above": self.rule_.la_above, "um_below": self.rule_.um_below, "xx_share": self.rule_.xx_share},
            "prior": self.prior_,
            "coverage": self.coverage_,
        }

    @classmethod
    def restore(cls, state: TierState, tables: dict[str, pl.DataFrame]) -> ProductTiers:
        self = cls(**state["params"])
        self.rule_ = LabelRule(**state["rule"])
        self.prior_ = state["prior"]
        self.coverage_ = state["coverage"]
        self.products_ = tables["tiers_products"]
        self.levels_ = {level: tables[f"tiers_{level}"] for level in HIGHER_LEVELS}
        self.compile()
        return self


def _margin(scores: np.ndarray, baskets: np.ndarray) -> np.ndarray:
    """How decided each product's tier is: (best - second best score) / its baskets, over LA, MM-or-XX and UM;
    0 for a product whose baskets those explain equally well (a tie the class start settled), or without baskets.

    MM and XX count as one answer: both leave d unchanged, so in a basket of several products they almost always
    explain it equally, and what the label needs of the product (does it push d up, down, or not) is decided.
    """
    grouped = np.column_stack([scores[:, LA], np.maximum(scores[:, MM], scores[:, XX]), scores[:, UM]])
    top_two = -np.sort(-grouped, axis=1)[:, :2]
    return np.where(baskets > 0, (top_two[:, 0] - top_two[:, 1]) / np.maximum(baskets, 1), 0.0)


def _catalogue_mix(tier: np.ndarray) -> dict[str, float]:
    """The products' tier mix, add-one smoothed: defined (uniform) even for a fit without any product."""
    counts = np.bincount(tier, minlength=len(TIERS))
    return {t: float((counts[i] + 1) / (len(tier) + len(TIERS))) for i, t in enumerate(TIERS)}


@dataclass(frozen=True)
class _UnknownPairs:
    """The (basket, product) pairs of the products without an exact tier, baskets numbered among the baskets that
    hold such a product: for each pair its lines, for each basket its label and its lines per exact tier."""

    basket: NDArray[np.uint32]
    product: NDArray[np.uint32]
    lines: NDArray[np.uint16]
    label: NDArray[np.int8]
    known_counts: NDArray[np.float64]


@dataclass(frozen=True)
class _BasketCounts:
    fully_known: pl.DataFrame
    """LA, MM, UM, XX (lines per tier), label, baskets: the baskets of exact products only, by count vector."""
    unknown_pairs: _UnknownPairs


def _per_product(p: pl.Series, values: pl.Series, n: int) -> NDArray[np.int64]:
    """`values` summed per product index `p`, for products 0..n-1."""
    return np.bincount(p.to_numpy(), weights=values.to_numpy(), minlength=n).astype(np.int64)
