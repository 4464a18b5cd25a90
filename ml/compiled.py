"""The fitted featurizer as flat arrays, and a NumPy transform that gives the same rows.

`BasketFeaturizer.transform` runs one Polars lazy query: right for millions of lines, but
planning it costs milliseconds, which is most of a single-basket request. At load time
`CompiledFeaturizer` turns the fitted state into lookups (a product's evidence, tier and
price level as rows of matrices; each hierarchy level's fallbacks; category prices;
vocabularies as code -> index), and its transform is a handful of array operations over
the lines, with per-basket sums, minima and maxima as `np.*.reduceat` over contiguous
lines (sums of per-product values as one sparse product, see `_basket_sums`). Both paths
share one definition: the same fitted state, the same fallbacks (product, then class,
department, group, division, then the prior), and the featurizer's `feature_names_`
decides the column order; tests/test_compiled.py checks that the two agree to float32
precision.

Products are resolved once per distinct code in a batch (thousands, not millions); what
depends on the product alone is summed per basket from them, the rest gathered to the
lines; a product's hierarchy is taken from its first line in the batch.
Two front ends make the encoded batch: `encode_frame` for a lines DataFrame (vectorised
with Polars, for batch scoring) and `encode_columns` for plain values (`BasketColumns`, no
frame built, for the API).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, repeat
from typing import Any

import numpy as np
import polars as pl
from scipy.sparse import csr_matrix

from ml.features import (
    CATEGORY,
    CHEAP_INDEX,
    DIVISION,
    HEADER_CATEGORICALS,
    HEADER_NUMERICS,
    PASSTHROUGH,
    PRICE_CLIP,
    BasketFeaturizer,
    require_finite,
)
from ml.schema import BASKET_KEY, HIERARCHY, LABEL, LABELS
from ml.tiers import ESTIMATED, EXACT, HIGHER_LEVELS, LA, TIERS, UM, UNSEEN, tier_column

NO_CARD = "CUST_PRICE_SENSITIVITY"
"""A basket without a loyalty card has no customer segment (`no_card`)."""
LINE_FIELDS = (*HIERARCHY, "QUANTITY", "SPEND")
"""The values of a line the featurizer reads."""
SPARSE_LINES = 512
"""Batches of at least this many lines sum per-product values by a sparse product (see `_basket_sums`); measured
break-even between 100 lines (13 us against 46 us) and 1,000 (94 us against 66 us)."""


@dataclass(frozen=True)
class BasketColumns:
    """Baskets as plain values, a list per field: `header` holds a value per basket for each of
    HEADER_CATEGORICALS and HEADER_NUMERICS (None: missing); `lines` a value per line for each of LINE_FIELDS,
    a basket's lines contiguous; basket i's lines are `offsets[i]:offsets[i + 1]`."""

    header: dict[str, list[Any]]  # str, int or None by field
    lines: dict[str, list[Any]]  # str (codes), int (QUANTITY) or float (SPEND) by field
    offsets: list[int]

    @property
    def baskets(self) -> int:
        return len(self.offsets) - 1

    @classmethod
    def of_records(cls, headers: Sequence[Mapping[str, Any]],
                   lines: Sequence[Sequence[Sequence[Any]]]) -> BasketColumns:
        """From a header mapping per basket and its lines as tuples in LINE_FIELDS order."""
        flat = [line for basket in lines for line in basket]
        return cls(
            header={c: [h[c] for h in headers] for c in (*HEADER_CATEGORICALS, *HEADER_NUMERICS)},
            lines={name: [line[i] for line in flat] for i, name in enumerate(LINE_FIELDS)},
            offsets=cls.offsets_of(len(basket) for basket in lines),
        )

    @staticmethod
    def offsets_of(lengths: Iterable[int]) -> list[int]:
        """`offsets` of baskets with these numbers of lines, in order."""
        return list(accumulate(lengths, initial=0))

    @classmethod
    def concat(cls, parts: Sequence[BasketColumns]) -> BasketColumns:
        """The baskets of `parts`, in order."""
        if len(parts) == 1:
            return parts[0]
        offsets, start = [0], 0
        for part in parts:
            offsets.extend(start + o for o in part.offsets[1:])
            start += part.offsets[-1]
        return cls(
            header={c: [v for part in parts for v in part.header[c]] for c in parts[0].header},
            lines={c: [v for part in parts for v in part.lines[c]] for c in parts[0].lines},
            offsets=offsets,
        )


@dataclass(frozen=True)
class Lookup:
    """Codes of one table and its value columns; row `len(codes)` is all NaN (the code is not in the table)."""

    index: dict[str, int]
    values: np.ndarray

    @classmethod
    def of(cls, table: pl.DataFrame, key: str, columns: Sequence[str]) -> Lookup:
        return cls.joined([(table, columns)], key)[0]

    @classmethod
    def joined(cls, tables: Sequence[tuple[pl.DataFrame, Sequence[str]]], key: str) -> tuple[Lookup, list[slice]]:
        """Tables keyed by the same kind of code as one lookup: their columns side by side (NaN where a code is
        not in that table), so one pass over a batch's codes serves them all; with each table's column slice."""
        index: dict[str, int] = {}
        for table, _ in tables:
            for code in table[key].to_list():
                index.setdefault(code, len(index))
        widths = [len(columns) for _, columns in tables]
        values = np.full((len(index) + 1, sum(widths)), np.nan)
        slices = [slice(start - width, start) for start, width in zip(accumulate(widths), widths, strict=True)]
        for (table, columns), part in zip(tables, slices, strict=True):
            rows = np.fromiter(map(index.__getitem__, table[key].to_list()), np.int64, table.height)
            values[rows, part] = table.select(columns).to_numpy().astype(np.float64).reshape(table.height, len(columns))
        return cls(index, values), slices

    def gather(self, codes: Sequence[Any]) -> np.ndarray:
        missing = len(self.index)
        return self.values[np.fromiter(map(self.index.get, codes, repeat(missing)), np.int64, len(codes))]


@dataclass(frozen=True)
class HigherLevels:
    """The class, department, group and division codes of a batch's distinct products, read only for the
    products that need a fallback: product i's code at HIGHER_LEVELS[depth] is `lines[depth][first_line[i]]`."""

    lines: Sequence[Sequence[str]]  # per HIGHER_LEVELS level, a code per line (or per product)
    first_line: Sequence[int]  # per product, the line its codes are read from

    def codes(self, depth: int, products: Iterable[int]) -> list[str]:
        column, first = self.lines[depth], self.first_line
        return [column[first[i]] for i in products]


@dataclass(frozen=True)
class ResolvedProducts:
    """Per distinct product of a batch: what a line of it contributes, already through the fallbacks."""

    p: np.ndarray  # (n, 4) label evidence, LABELS order
    log_lift: np.ndarray  # (n, 4) log(p / prior)
    top_lift: np.ndarray  # (n,) index of the largest lift
    unseen: np.ndarray  # (n,) 1.0 when the evidence has no row for the product itself
    tier: np.ndarray  # (n, 4) tier probabilities, TIERS order
    tier_kind: np.ndarray  # (n,) EXACT / ESTIMATED / UNSEEN
    tier_confidence: np.ndarray  # (n,)
    product_index: np.ndarray  # (n,) product price / category price; NaN: the line's own index stands in


@dataclass(frozen=True)
class EncodedBatch:
    """Baskets as arrays: basket i's lines are `offsets[i]:offsets[i + 1]` (every basket has a line)."""

    offsets: np.ndarray  # (baskets + 1,) int64
    line_product: np.ndarray  # (lines,) index into `products`
    products: ResolvedProducts
    quantity: np.ndarray  # (lines,) float64
    spend: np.ndarray  # (lines,) float64
    category_price: np.ndarray  # (lines,) the median unit price of the line's own category (PROD_CODE_30)
    division: np.ndarray  # (lines,) the line's own division: index into the vocabulary's, then unknown ones
    numerics: dict[str, np.ndarray]  # HEADER_NUMERICS -> (baskets,) float64
    categorical: dict[str, np.ndarray]  # HEADER_CATEGORICALS -> (baskets,) vocabulary index; -1 unknown or null
    no_card: np.ndarray  # (baskets,) float64
    divisions: int  # how many divisions `division` counts (vocabulary + unknown)

    @property
    def baskets(self) -> int:
        return len(self.offsets) - 1


class CompiledFeaturizer:
    """`BasketFeaturizer.transform` as array operations; see the module docstring."""

    def __init__(self, featurizer: BasketFeaturizer):
        self.feature_names = list(featurizer.feature_names_)
        self.global_unit_price = featurizer.global_unit_price_
        evidence = featurizer.evidence_
        self._prior = np.array([evidence.prior[c] for c in LABELS])
        evidence_columns = [f"p_{c}" for c in LABELS]
        self._evidence_levels = [Lookup.of(evidence.tables[lv], lv, evidence_columns) for lv in HIGHER_LEVELS]
        tiers = featurizer.tiers_
        self.has_tiers = tiers is not None
        product_tables = [(evidence.tables["PROD_CODE"], evidence_columns),
                          (featurizer.product_price_index_, ["product_index"])]
        if tiers is not None:
            tier_columns = [tier_column(t) for t in TIERS]
            self._tier_prior = np.array([tiers.prior_[t] for t in TIERS])
            product_tables.append((tiers.products_, [*tier_columns, "tier_kind", "tier_confidence"]))
            self._tier_levels = [Lookup.of(tiers.levels_[lv], lv, tier_columns) for lv in HIGHER_LEVELS]
        # a product's evidence, price index and tier in one row: one lookup per distinct code of a batch
        self._products, (self._evidence_part, self._index_part, *tier_part) = Lookup.joined(product_tables, "PROD_CODE")
        self._tier_part = tier_part[0] if tier_part else None
        prices = featurizer.category_price_
        self._category_price = dict(zip(prices[CATEGORY].to_list(), prices["category_price"].to_list(), strict=True))
        self.divisions = list(featurizer.divisions_)
        self._division_index = {d: i for i, d in enumerate(self.divisions)}
        self.vocabularies = {c: {v: i for i, v in enumerate(featurizer.vocabularies_[c])} for c in HEADER_CATEGORICALS}
        self._positions: dict[tuple[str, ...], np.ndarray] = {}  # each block's columns in the model input
        # One probe basket lays out the blocks and refuses a featurizer whose features the blocks do not match.
        probe = {**dict.fromkeys(HEADER_CATEGORICALS), **dict.fromkeys(HEADER_NUMERICS, 0)}
        self.transform(self.encode_columns(BasketColumns.of_records([probe], [[("_", "_", "_", "_", "_", 1.0, 1.0)]])))

    # ---- products --------------------------------------------------------------------
    def resolve(self, codes: Sequence[str], higher: HigherLevels) -> ResolvedProducts:
        """Distinct products `codes`, each with its higher levels (class, department, group, division), through
        the fallbacks (an unseen product's from its first line, as the Polars path takes them)."""
        n = len(codes)
        known = self._products.gather(codes)  # NaN in a table's columns: products that table has no row for
        own_evidence = known[:, self._evidence_part]
        p = self._first_known(own_evidence, higher, self._evidence_levels, self._prior)
        lift = p / self._prior
        if self._tier_part is not None:
            tiers = known[:, self._tier_part]
            tier = self._first_known(tiers[:, :4], higher, self._tier_levels, self._tier_prior)
            kind = np.where(np.isnan(tiers[:, 4]), UNSEEN, tiers[:, 4]).astype(np.int64)
            confidence = np.nan_to_num(tiers[:, 5], nan=0.0)
        else:
            tier, kind, confidence = np.zeros((n, 4)), np.full(n, UNSEEN), np.zeros(n)
        return ResolvedProducts(
            p=p,
            log_lift=np.log(lift),
            top_lift=lift.argmax(axis=1) if n else np.zeros(0, np.int64),
            unseen=np.isnan(own_evidence[:, 0]).astype(np.float64),
            tier=tier,
            tier_kind=kind,
            tier_confidence=confidence,
            product_index=known[:, self._index_part][:, 0],
        )

    @staticmethod
    def _first_known(values: np.ndarray, higher: HigherLevels, levels: list[Lookup], prior: np.ndarray) -> np.ndarray:
        """Rows missing from the product table (NaN) from the first level, class first, that knows their code;
        else the prior."""
        values = values.copy()
        for depth, level in enumerate(levels):
            missing = np.flatnonzero(np.isnan(values[:, 0]))
            if not len(missing):
                return values
            values[missing] = level.gather(higher.codes(depth, missing.tolist()))
        values[np.isnan(values[:, 0])] = prior
        return values

    def _batch_divisions(self, codes: Iterable[str]) -> dict[str, int]:
        """Division code -> index for a batch: the vocabulary's, then each unknown one of `codes` in order."""
        divisions = dict(self._division_index)
        for code in codes:
            divisions.setdefault(code, len(divisions))
        return divisions

    # ---- front ends ------------------------------------------------------------------
    def encode_columns(self, columns: BasketColumns) -> EncodedBatch:
        """Baskets as plain values (see `BasketColumns`)."""
        lines, header = columns.lines, columns.header
        codes = lines["PROD_CODE"]
        distinct = list(dict.fromkeys(codes))  # in order of first line
        index = dict(zip(distinct, range(len(distinct)), strict=True))
        line_product = np.fromiter(map(index.__getitem__, codes), np.int64, len(codes))
        # products are numbered in order of first line, so product i's first line is where the running maximum
        # of the line's product number first reaches i
        first_line = np.flatnonzero(np.diff(np.maximum.accumulate(line_product), prepend=-1)).tolist()
        higher = HigherLevels([lines[level] for level in HIGHER_LEVELS], first_line)
        divisions = self._batch_divisions(dict.fromkeys(lines[DIVISION]))
        return EncodedBatch(
            offsets=np.asarray(columns.offsets, dtype=np.int64),
            line_product=line_product,
            products=self.resolve(distinct, higher),
            quantity=np.asarray(lines["QUANTITY"], dtype=np.float64),
            spend=np.asarray(lines["SPEND"], dtype=np.float64),
            category_price=np.fromiter(map(self._category_price.get, lines[CATEGORY], repeat(self.global_unit_price)),
                                       np.float64, len(codes)),
            division=np.fromiter(map(divisions.__getitem__, lines[DIVISION]), np.int64, len(codes)),
            numerics={c: np.asarray(header[c], dtype=np.float64) for c in HEADER_NUMERICS},
            categorical={c: np.fromiter(map(self.vocabularies[c].get, header[c], repeat(-1)), np.int64,
                                        columns.baskets)
                         for c in HEADER_CATEGORICALS},
            no_card=np.array([v is None for v in header[NO_CARD]], dtype=np.float64),
            divisions=len(divisions),
        )

    def encode_frame(self, lines: pl.DataFrame) -> tuple[EncodedBatch, pl.DataFrame]:
        """Lines of any number of baskets (one row per product line), and per basket, in the order of its first
        line: BASKET_KEY and the pass-through columns present (as `BasketFeaturizer.transform` keeps them)."""
        lines, starts = _contiguous(lines)
        offsets = np.concatenate([starts, [lines.height]]).astype(np.int64)
        distinct = lines.select(HIERARCHY).unique(subset="PROD_CODE", keep="first", maintain_order=True)
        codes = distinct["PROD_CODE"].to_list()
        products = self.resolve(codes, HigherLevels([distinct[level].to_list() for level in HIGHER_LEVELS],
                                                    range(distinct.height)))
        divisions = self._batch_divisions(lines[DIVISION].unique(maintain_order=True).to_list())
        line_product = lines["PROD_CODE"].cast(pl.Enum(codes)).to_physical().to_numpy().astype(np.int64)
        header = lines[starts]
        kept = [c for c in (BASKET_KEY, *PASSTHROUGH, LABEL) if c in lines.columns]
        batch = EncodedBatch(
            offsets=offsets,
            line_product=line_product,
            products=products,
            quantity=lines["QUANTITY"].cast(pl.Float64).to_numpy(),
            spend=lines["SPEND"].cast(pl.Float64).to_numpy(),
            category_price=lines[CATEGORY].replace_strict(self._category_price, default=self.global_unit_price,
                                                          return_dtype=pl.Float64).to_numpy(),
            division=lines[DIVISION].replace_strict(divisions, return_dtype=pl.Int64).to_numpy(),
            numerics={c: header[c].cast(pl.Float64).to_numpy() for c in HEADER_NUMERICS},
            categorical={
                c: header[c].replace_strict(self.vocabularies[c], default=-1, return_dtype=pl.Int64)
                .fill_null(-1).to_numpy()
                for c in HEADER_CATEGORICALS
            },
            no_card=header[NO_CARD].is_null().cast(pl.Float64).to_numpy(),
            divisions=len(divisions),
        )
        return batch, header.select(kept)

    # ---- transform -------------------------------------------------------------------
    def transform(self, batch: EncodedBatch) -> np.ndarray:
        """The model input: one float32 row per basket, columns in `feature_names` order (as `matrix`, and like
        it refusing NaN or infinite values).

        A basket's features take a few reductions whatever their number: the means of what depends on the product
        alone as one (products x values) matrix summed per basket (`_basket_sums`), never gathered to the lines;
        the sums, maxima and minima of line values as `reduceat` over them stacked as rows (a row per value:
        along rows `reduceat` is ~4x faster than down the columns of a (lines x values) matrix, 34 ms against
        138 ms for 35 values of 400k lines). Each block lands in its columns at once."""
        out = np.empty((batch.baskets, len(self.feature_names)), dtype=np.float32)
        if batch.baskets:
            for names, block in self._blocks(batch):
                out[:, self._positions[names]] = block
        return require_finite(out, self.feature_names)

    def _blocks(self, batch: EncodedBatch) -> list[tuple[tuple[str, ...], np.ndarray]]:
        products, line = batch.products, batch.line_product
        starts, lines = batch.offsets[:-1], np.diff(batch.offsets).astype(np.float64)

        line_index = (batch.spend / batch.quantity) / batch.category_price
        price_index = np.clip(line_index, *PRICE_CLIP)
        known_index = products.product_index[line]
        # Line values summed per basket, one per row; the first four are means.
        rows = np.empty((5, len(line)))
        log_price = np.log(price_index, out=rows[0])
        np.less(price_index, CHEAP_INDEX, out=rows[1])
        np.log(np.clip(np.where(np.isnan(known_index), line_index, known_index), *PRICE_CLIP), out=rows[2])
        rows[3], rows[4] = batch.spend, batch.quantity
        sums = np.add.reduceat(rows, starts, axis=1)
        # Line values whose basket maxima (the first five) and minima (all) are features.
        extremes = np.empty((6 if self.has_tiers else 5, len(line)))
        np.take(products.p.T, line, axis=1, out=extremes[:4])
        extremes[4] = log_price
        if self.has_tiers:
            extremes[5] = products.tier_confidence[line]
        product_values, product_names = self._product_means(products)

        extreme_names = [*(f"_p_{c}" for c in LABELS), "_log_price_index"]
        blocks = [
            ((*product_names, "mean_log_price_index", "share_cheap_lines", "mean_log_product_index",
              "mean_line_spend"),
             np.column_stack([_basket_sums(product_values, line, batch.offsets), sums[:4].T]) / lines[:, None]),
            (("total_quantity", "log_total_spend"), np.column_stack([sums[4], np.log1p(sums[3])])),
            (tuple(f"max{name}" for name in extreme_names), np.maximum.reduceat(extremes[:5], starts, axis=1).T),
            ((*(f"min{name}" for name in extreme_names), *(["tier_min_confidence"] if self.has_tiers else [])),
             np.minimum.reduceat(extremes, starts, axis=1).T),
        ]

        division = batch.division
        basket = np.repeat(np.arange(batch.baskets), np.diff(batch.offsets))
        per_division = np.bincount(basket * batch.divisions + division, minlength=batch.baskets * batch.divisions)
        per_division = per_division.reshape(batch.baskets, batch.divisions)
        blocks += [
            (("n_lines", "n_divisions", "no_card", *HEADER_NUMERICS),
             np.column_stack([lines, (per_division > 0).sum(axis=1), batch.no_card,
                              *[batch.numerics[c] for c in HEADER_NUMERICS]])),
            (tuple(f"share_{d}" for d in self.divisions), per_division[:, : len(self.divisions)] / lines[:, None]),
        ]
        for c in HEADER_CATEGORICALS:
            vocabulary = self.vocabularies[c]
            blocks.append((tuple(f"{c}={v}" for v in vocabulary),
                           batch.categorical[c][:, None] == np.arange(len(vocabulary))))
        if not self._positions:
            self._index_blocks([names for names, _ in blocks])
        return blocks

    def _index_blocks(self, block_names: list[tuple[str, ...]]) -> None:
        """Where each block's columns go; the blocks must cover `feature_names` exactly."""
        computed = [name for names in block_names for name in names]
        missing = sorted(set(self.feature_names) - set(computed))
        if missing:
            raise ValueError(f"the compiled featurizer does not compute {', '.join(missing)}")
        extra = sorted(set(computed) - set(self.feature_names))
        if extra:
            raise ValueError(f"the compiled featurizer computes features the model does not take: {', '.join(extra)}")
        position = {name: i for i, name in enumerate(self.feature_names)}
        for names in block_names:
            self._positions[names] = np.array([position[name] for name in names], dtype=np.int64)

    def _product_means(self, products: ResolvedProducts) -> tuple[np.ndarray, list[str]]:
        """What each distinct product contributes to the basket means that depend on the product alone (evidence,
        lift, unseen, tiers: as `ml.features` computes them per line), one row per product, and their names."""
        p, labels = products.p, np.arange(len(LABELS))
        columns = [
            (p, [f"mean_p_{c}" for c in LABELS]),
            (products.log_lift, [f"mean_log_lift_{c}" for c in LABELS]),
            (products.top_lift[:, None] == labels, [f"share_top_{c}" for c in LABELS]),
            (products.unseen, ["share_unseen_products"]),
        ]
        if self.has_tiers:
            columns += self._tier_means(products)
        values = np.column_stack([v.astype(np.float64, copy=False) for v, _ in columns])
        return values, [name for _, names in columns for name in names]

    @staticmethod
    def _tier_means(products: ResolvedProducts) -> list[tuple[np.ndarray, list[str]]]:
        """The per-product values whose basket means `ml.features._tier_aggregations` computes."""
        tier, kind = products.tier, products.tier_kind
        hard = tier.argmax(axis=1)[:, None] == np.arange(len(TIERS))
        exact = kind == EXACT
        return [
            (tier, [f"tier_share_{t}" for t in TIERS]),
            (hard, [f"tier_hard_share_{t}" for t in TIERS]),
            (hard & exact[:, None], [f"tier_exact_share_{t}" for t in TIERS]),
            (tier[:, LA] - tier[:, UM], ["tier_d"]),
            (hard[:, LA].astype(np.float64) - hard[:, UM], ["tier_hard_d"]),
            (exact, ["tier_exact_lines"]),
            (kind == ESTIMATED, ["tier_estimated_lines"]),
            (kind == UNSEEN, ["tier_unseen_lines"]),
            (1.0 - tier.max(axis=1), ["tier_uncertainty"]),
        ]


def _basket_sums(values: np.ndarray, line: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per basket, the sum over its lines of the row of `values` of the line's product (`line`: the product of
    each line; basket i's lines are `offsets[i]:offsets[i + 1]`).

    A sparse product of each basket's product counts with `values`, with no (lines x values) matrix: 5 ms for
    31 values of a 400k-line chunk, against 160 ms to gather the rows to the lines and `reduceat` them (60 ms
    with the values as rows). Below SPARSE_LINES lines the gather and `reduceat` are cheaper than making the
    sparse matrix (4 us against 40 us for one basket of 10 lines)."""
    if len(line) < SPARSE_LINES:
        return np.add.reduceat(values[line], offsets[:-1], axis=0)
    counts = csr_matrix((np.ones(len(line)), line, offsets), shape=(len(offsets) - 1, len(values)))
    sums: np.ndarray = counts @ values  # a sparse matrix times a dense array is a dense array
    return sums


def _contiguous(lines: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray]:
    """The lines with each basket's lines together, baskets in the order of their first line (as a group-by that
    keeps order returns them), and where each basket's lines start. Exports keep a basket's lines together, so
    this is usually a cheap check: the runs of equal keys are the baskets when no key starts two runs."""
    starts = _runs(lines[BASKET_KEY])
    if lines[BASKET_KEY].gather(starts).n_unique() == len(starts):
        return lines, starts
    first = lines.with_row_index("_row").group_by(BASKET_KEY).agg(pl.col("_row").min().alias("_first"))
    lines = (lines.with_row_index("_row").join(first, on=BASKET_KEY).sort("_first", "_row")
             .drop("_row", "_first"))
    return lines, _runs(lines[BASKET_KEY])


def _runs(key: pl.Series) -> np.ndarray:
    """Where each run of equal values of `key` starts."""
    if not len(key):
        return np.zeros(0, np.int64)
    return np.flatnonzero(np.concatenate([[True], (key[1:] != key[:-1]).to_numpy()]))
