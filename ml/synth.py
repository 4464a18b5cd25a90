"""Synthetic transactions in the exact format of the dunnhumby `transaction.csv`.

The generator reproduces the structure shared/data/FACTS.md measures on the real file
("How the label behaves", "What decides the label"), so that a pipeline tuned here
meets the difficulty of the real file rather than an easier one:

* every product has a stable price tier (about 66% MM, 14% LA, 13% UM, 3% XX by
  product), mixed per product class so the hierarchy carries some tier evidence;
  value-tier unit prices sit below their category's median, the others a little above;
* the label is a function of the basket's line counts per tier (`label_of_counts`):
  with d = (LA lines - UM lines) / lines, d above `LA_ABOVE` gives LA, below
  `UM_BELOW` gives UM, at least `XX_MIN_SHARE` of XX lines gives XX, anything else
  MM. Spend and quantity play no part, and every single-product basket (about one
  in five) carries its product's tier;
* a basket leans towards value or premium (its shopper's lean plus the trip's), and
  each line's tier is drawn from a capped mix: value and premium lines rarely share
  a basket, but an LA basket is mostly MM lines, so MM products sit in LA and UM
  baskets all the time and many baskets lie near the thresholds;
* products have audiences: within its tier, a product is bought more in baskets that
  lean its audience's way, so a product's spread of basket labels does not reveal
  its tier (single-product baskets do);
* products launch over the weeks (`SynthConfig.new_product_share`) and popularity
  has a tail of rarely bought products, so the latest weeks hold products whose tier
  the earlier weeks do not reveal;
* seg_1 is a noisy copy of the shopper's lean and agrees with the label about half
  the time; basket type drives the number of lines and size follows the line count;
* the mix drifts: value shopping falls and unclassifiable (XX) shopping doubles;
* optionally (`SynthConfig.drift_week`), the market shifts at a known week, for replaying
  monitoring: from that week a share of products are repositioned into another price tier
  (their unit prices follow the new tier, and the labels of the baskets holding them the
  new tier: concept drift) and every basket leans further towards value (covariate drift).
  Nothing before that week changes, nor any file generated without a drift.

The constants below are calibrated with bench/calibration.py, which prints the
structure and the baseline's holdout macro-F1 next to the real file's numbers.
Everything is vectorised with NumPy and written with Arrow's CSV writer; the catalogue
and the transactions are drawn from separate streams of one seed, so `product_truth`
returns the catalogue behind a generated file without generating it again.

Large files are generated in chunks (`generate_chunks`, `write_synthetic`), so memory is
bounded by the chunk, not by the file: a chunk is a run of whole weeks holding about
`chunk_rows` rows (rows in proportion to its days), drawn and written before the next.
What is shared by the whole file (catalogue, shoppers, stores, customers' codes and
segments) is drawn once; each chunk's baskets and lines come from a stream of their own.
A file of at most `chunk_rows` rows is one chunk drawn from the single transactions
stream, exactly as before chunks existed, so every such file is unchanged; a larger one
is the same for the same seed, rows and `chunk_rows`. `generate`, which returns the whole
table (the demo, the benchmarks), is the chunks put together, so a seed and a row count give
the same rows whichever way they are made.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from numpy.typing import NDArray

from ml.calendar import dunnhumby_weekday, week_code_of
from ml.schema import (
    CODED_COLUMNS,
    DOMAINS,
    ORIGINAL_COLUMNS,
    SEG_1_DECODE,
    SEG_1_ENCODE,
    SEG_2_DECODE,
    SEG_2_ENCODE,
)

TIERS = ("LA", "MM", "UM", "XX")
LA, MM, UM, XX = range(4)
FIRST_DAY = dt.date(2006, 4, 10)  # Monday of week 200607
N_WEEKS = 117
ROWS_PER_BASKET = 6.4  # the real file's mean lines per basket

# The label rule, on line counts per tier (FACTS: "What decides the label").
LA_ABOVE = 0.2  # d = (LA lines - UM lines) / lines above this: LA
UM_BELOW = -0.2  # d below this: UM
XX_MIN_SHARE = 0.8  # a basket of (nearly) only XX lines: XX

# Product tiers by product (FACTS: about 66% MM, 14% LA, 13% UM, 3% XX).
PRODUCT_TIER_MIX = np.array([0.14, 0.66, 0.13, 0.03]) / 0.96
CLASS_TIER_CONCENTRATION = 12.0  # Dirichlet concentration of a class's tier mix
TIER_PRICE_FACTOR = np.array([0.80, 1.0, 1.08, 1.0])  # unit price against the category's

# A line's tier, by its basket's lean x (> 0 leans to value): LA with probability
# TIER_CAP * sigmoid(LEAN_SLOPE * (x - LEAN_CENTRE)), UM the same with -x, XX as below,
# MM the rest. Value and premium lines rarely share a basket (a depth-3 tree on the
# line-count shares explains 99.4% of labels, as on the real file), and even a strongly
# value-leaning basket is mostly MM lines, many of them near the thresholds (so
# spend- or quantity-weighted shares explain only about 0.90 / 0.93).
TIER_CAP = 0.42
LEAN_SLOPE = 2.1
LEAN_CENTRE = 0.7
SHOPPER_LEAN_SD = 1.35  # spread of shoppers' leans
TRIP_LEAN_SD = 0.6  # spread of one shopper's baskets around their lean
LEAN_DRIFT = 0.3  # the lean falls by this over the data set: less value shopping
XX_START = 0.04  # share of XX lines in ordinary baskets at the start ...
XX_GROWTH = 3.5  # ... growing by this factor over the data set (XX baskets double)
XX_TRIP = 0.25  # share of XX lines in baskets of type XX
# Products: within its tier, a product's weight in a basket of lean x is
# popularity * exp(AUDIENCE_STRENGTH * audience * x), so products with a value audience
# (MM ones included) gather LA labels: label spreads blur the tiers, as on the real file.
AUDIENCE_STRENGTH = 0.9
AUDIENCE_BINS = np.linspace(-2.25, 2.25, 10)  # basket leans are bucketed for sampling
POPULARITY_SD = 0.85  # lognormal spread of popularity: a tail of rare products, yet
# about 95% of products are bought alone at least once at full size (FACTS: 4,722 of 4,997)
GROUP_PRICE = 1.3  # median unit price of a category (GBP) ...
GROUP_PRICE_SD = 0.55  # ... varying by category (lognormal)
PRICE_SD = 0.45  # a product's unit price around its category's and tier's (lognormal)
SEG_1_NOISE = 0.3  # share of card customers whose seg_1 is drawn at random
CHUNK_ROWS = 3_000_000  # rows generated at a time by `write_synthetic` (about 1 GB); files up to this are one chunk
CSV_BATCH_ROWS = 200_000  # rows Arrow's CSV writer formats at a time (and a CR LF file is rewritten at a time)


@dataclass(frozen=True)
class SynthConfig:
    """Sizes and shape of the synthetic data set. The default rows are those of the real file's smaller copies (2.7 to
    3.1 million rows, FACTS.md): about 418,000 baskets, where the real file holds about 475,000 (bench/score.py
    scores 3,050,000 rows for that)."""

    rows: int = 2_700_000
    seed: int = 7
    customers: int = 5_000
    stores: int = 760
    products: int = 5_000
    classes: int = 250  # PROD_CODE_10
    departments: int = 90  # PROD_CODE_20
    groups: int = 31  # PROD_CODE_30, the "category" of unit-price comparisons
    divisions: int = 9  # PROD_CODE_40
    no_card_share: float = 0.20
    weeks: int = N_WEEKS
    new_product_share: float = 0.15  # products launched after the first week
    # The injected drift (see `_drifted_tiers`): from week `drift_week` (counted from 0, the first week; None:
    # no drift), `drift_retier_share` of the LA/MM/UM products move to another of those tiers and every
    # basket's lean rises by `drift_lean`.
    drift_week: int | None = None
    drift_retier_share: float = 0.3
    drift_lean: float = 0.5

    @property
    def drift_day(self) -> int | None:
        """The first drifted day, in days since the first day of the data set (None: no drift)."""
        return None if self.drift_week is None else self.drift_week * 7


@dataclass
class Catalogue:
    """Products (index = product) and the codes of every hierarchy level."""

    tier: np.ndarray  # index into TIERS
    unit_price: np.ndarray  # base unit price
    parent: dict[str, np.ndarray]  # level -> parent code index per product
    popularity: np.ndarray
    audience: np.ndarray  # > 0: bought more in value-leaning baskets
    launch_day: np.ndarray  # days since the first day of the data set
    codes: dict[str, np.ndarray]  # level (PROD_CODE included) -> codes


@dataclass
class _Baskets:
    """What was drawn per basket (index = basket)."""

    n: int
    basket_type: np.ndarray
    lines: np.ndarray
    day: np.ndarray  # days since the first day of the data set
    customer: np.ndarray  # -1 for no-card baskets
    store: np.ndarray
    lean: np.ndarray


@dataclass
class _Shoppers:
    lean: np.ndarray  # per card customer
    home_stores: np.ndarray  # per card customer, 3 stores
    store_format: np.ndarray  # per store
    store_region: np.ndarray  # per store


@dataclass(frozen=True)
class _Span:
    """The whole weeks of one chunk, as days since the first day [first_day, stop_day), and its rows."""

    first_day: int
    stop_day: int
    rows: int


@dataclass(frozen=True)
class _Streams:
    """Where a chunk's draws come from: `baskets` for its baskets and lines, `people` for what the whole file shares
    (drawn again, identically, by every chunk). One stream for both in a file of one chunk."""

    baskets: np.random.Generator
    people: np.random.Generator


@dataclass
class _Lines:
    """What was drawn per line (index = line)."""

    basket: np.ndarray
    product: np.ndarray
    quantity: np.ndarray
    spend: np.ndarray


def _streams(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent generators for the catalogue and for the transactions."""
    catalogue_seed, transactions_seed = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(catalogue_seed), np.random.default_rng(transactions_seed)


def _drift_stream(seed: int) -> np.random.Generator:
    """A third stream, for the injected drift only: a drift changes nothing the other two streams draw."""
    return np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[2])


def _chunk_streams(seed: int, chunk: int) -> _Streams:
    """The streams of one chunk of a file of several: a fourth stream of the seed, the same for every chunk, for
    what the file shares, and a child of a fifth per chunk for its baskets."""
    people, baskets = np.random.SeedSequence(seed).spawn(5)[3:]
    return _Streams(baskets=np.random.default_rng(baskets.spawn(chunk + 1)[chunk]),
                    people=np.random.default_rng(people))


def _spans(cfg: SynthConfig, chunk_rows: int) -> list[_Span]:
    """Runs of whole weeks of about `chunk_rows` rows each (at most one per week), their rows adding up to
    `cfg.rows`; one span of every day when the file fits in a chunk."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, not {chunk_rows}")
    chunks = min(-(-cfg.rows // chunk_rows), cfg.weeks)
    days = cfg.weeks * 7
    day_edges = np.round(np.linspace(0, cfg.weeks, chunks + 1)).astype(np.int64) * 7
    row_edges = np.round(cfg.rows * day_edges / days).astype(np.int64)
    return [_Span(int(day_edges[i]), int(day_edges[i + 1]), int(row_edges[i + 1] - row_edges[i]))
            for i in range(chunks)]


def _drifted_tiers(cfg: SynthConfig, cat: Catalogue) -> np.ndarray:
    """Every product's tier from the drift week on: `cfg.drift_retier_share` of the LA/MM/UM products moved
    to one of the other two of those tiers, chosen evenly; XX products stay XX."""
    rng = _drift_stream(cfg.seed)
    moved = (rng.random(cfg.products) < cfg.drift_retier_share) & (cat.tier != XX)
    shifted = (cat.tier + rng.integers(1, 3, cfg.products)) % 3  # LA, MM, UM are 0, 1, 2
    drifted: NDArray[np.int64] = np.where(moved, shifted, cat.tier)
    return drifted


def _codes(prefix: str, n: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """n distinct codes `prefix` + `width` digits, sorted."""
    numbers = np.sort(rng.choice(10**width, size=n, replace=False))
    return np.array([f"{prefix}{x:0{width}d}" for x in numbers], dtype=object)


def _assign_parents(n_children: int, n_parents: int, rng: np.random.Generator) -> np.ndarray:
    """Parent index for each child, every parent getting at least one child."""
    parents = np.concatenate([np.arange(n_parents), rng.integers(0, n_parents, n_children - n_parents)])
    rng.shuffle(parents)
    return parents


def catalogue(cfg: SynthConfig) -> Catalogue:
    """The products of the data set drawn with `cfg.seed` (the same for any `cfg.rows`)."""
    rng, _ = _streams(cfg.seed)
    class_of_product = _assign_parents(cfg.products, cfg.classes, rng)
    dept_of_class = _assign_parents(cfg.classes, cfg.departments, rng)
    group_of_dept = _assign_parents(cfg.departments, cfg.groups, rng)
    division_of_group = _assign_parents(cfg.groups, cfg.divisions, rng)
    class_mix = rng.dirichlet(PRODUCT_TIER_MIX * CLASS_TIER_CONCENTRATION, size=cfg.classes)
    cumulative = class_mix.cumsum(axis=1)[class_of_product]
    tier = (rng.random(cfg.products)[:, None] > cumulative).sum(axis=1).clip(0, 3)
    group_of_product = group_of_dept[dept_of_class[class_of_product]]
    group_price = rng.lognormal(np.log(GROUP_PRICE), GROUP_PRICE_SD, cfg.groups)
    unit_price = group_price[group_of_product] * TIER_PRICE_FACTOR[tier] * rng.lognormal(0, PRICE_SD, cfg.products)
    popularity = rng.lognormal(0.0, POPULARITY_SD, cfg.products)
    audience = rng.normal(0.0, 1.0, cfg.products)
    days = cfg.weeks * 7
    launched_later = rng.random(cfg.products) < cfg.new_product_share
    launch_day = np.where(launched_later, rng.integers(1, days, cfg.products), 0)
    parent = {
        "PROD_CODE_10": class_of_product,
        "PROD_CODE_20": dept_of_class[class_of_product],
        "PROD_CODE_30": group_of_product,
        "PROD_CODE_40": division_of_group[group_of_product],
    }
    codes = {
        "PROD_CODE": _codes("PRD09", cfg.products, 5, rng),
        "PROD_CODE_10": _codes("CL", cfg.classes, 5, rng),
        "PROD_CODE_20": _codes("DEP", cfg.departments, 5, rng),
        "PROD_CODE_30": _codes("G", cfg.groups, 5, rng),
        "PROD_CODE_40": _codes("D", cfg.divisions, 5, rng),
    }
    return Catalogue(tier, unit_price, parent, popularity, audience, launch_day, codes)


def product_truth(cfg: SynthConfig) -> pa.Table:
    """PROD_CODE, its tier and its launch day: what a generated file does not show."""
    cat = catalogue(cfg)
    return pa.table({
        "PROD_CODE": pa.array(cat.codes["PROD_CODE"], type=pa.string()),
        "tier": pa.array(np.array(TIERS, dtype=object)[cat.tier], type=pa.string()),
        "launch_day": pa.array(cat.launch_day),
    })


def label_of_counts(counts: np.ndarray) -> np.ndarray:
    """The label (index into TIERS) of baskets from their line counts per tier (n x 4)."""
    counts = np.asarray(counts, dtype=np.float64)
    lines = counts.sum(axis=1)
    d = (counts[:, LA] - counts[:, UM]) / np.maximum(lines, 1)
    label = np.where(d > LA_ABOVE, LA, np.where(d < UM_BELOW, UM, MM))
    return np.where(counts[:, XX] >= XX_MIN_SHARE * lines, XX, label)


def _pick_by_weight(weights: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling of indices proportional to `weights` from uniforms `u`."""
    cdf = np.cumsum(weights)
    picked: NDArray[np.intp] = np.searchsorted(cdf, u * cdf[-1], side="right").clip(0, len(weights) - 1)
    return picked


def _basket_lines(basket_type: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Line count by basket type: Small Shop 1-3 (a third single), Top Up ~7, Full Shop ~20+."""
    n = len(basket_type)
    small = 1 + rng.negative_binomial(1.2, 0.40, n)
    top_up = 3 + rng.negative_binomial(3, 0.4, n)
    full = np.rint(rng.lognormal(np.log(19), 0.55, n)).astype(np.int64)
    lines = np.select([basket_type == 0, basket_type == 1, basket_type == 2], [small, top_up, full], 1)
    return lines.clip(1, 90)


def _basket_size(lines: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """S for 1-2 lines, M for up to 9 (some short baskets are M too), L beyond."""
    size = np.where(lines <= 2, 0, np.where(lines <= 9, 1, 2))
    upgrade = (size == 0) & (rng.random(len(lines)) < 0.25)
    return np.where(upgrade, 1, size)


def _shoppers(cfg: SynthConfig, rng: np.random.Generator) -> _Shoppers:
    store_format = _pick_by_weight(np.array([0.58, 0.25, 0.10, 0.07]), rng.random(cfg.stores))
    return _Shoppers(
        lean=rng.normal(0.0, SHOPPER_LEAN_SD, cfg.customers),
        home_stores=rng.integers(0, cfg.stores, (cfg.customers, 3)),
        store_format=store_format,
        store_region=rng.integers(0, 12, cfg.stores),
    )


def _baskets(cfg: SynthConfig, span: _Span, shoppers: _Shoppers, streams: _Streams) -> _Baskets:
    """Basket types and line counts summing to `span.rows`, shoppers, stores, days in the span, leans."""
    rng, people = streams.baskets, streams.people
    # Draw more baskets than needed, then keep just enough to reach the requested rows.
    drafted = int(span.rows / ROWS_PER_BASKET * 1.3) + 10
    basket_type = _pick_by_weight(np.array([0.55, 0.33, 0.11, 0.01]), rng.random(drafted))
    lines = _basket_lines(basket_type, rng)
    n = min(drafted, max(1, int(np.searchsorted(np.cumsum(lines), span.rows, side="left")) + 1))
    basket_type, lines = basket_type[:n], lines[:n]
    lines[-1] -= max(0, int(lines.sum()) - span.rows)

    # Baskets per card customer: median 39, at most about 900 (FACTS).
    activity = np.minimum(people.lognormal(np.log(39), 1.1, cfg.customers), 950)
    has_card = rng.random(n) >= cfg.no_card_share
    customer = np.where(has_card, _pick_by_weight(activity, rng.random(n)), -1)
    store_weight = people.lognormal(0, 0.6, cfg.stores) * np.array([1.6, 1.0, 0.7, 2.0])[shoppers.store_format]
    store = np.where(
        has_card,
        shoppers.home_stores[np.maximum(customer, 0), rng.integers(0, 3, n)],
        _pick_by_weight(store_weight, rng.random(n)),
    )
    day = np.sort(rng.integers(span.first_day, span.stop_day, n))
    progress = day / max(cfg.weeks * 7 - 1, 1)
    shopper_lean = np.where(has_card, shoppers.lean[np.maximum(customer, 0)], rng.normal(0, SHOPPER_LEAN_SD, n))
    lean = shopper_lean + rng.normal(0, TRIP_LEAN_SD, n) + LEAN_DRIFT * (0.5 - progress)
    if cfg.drift_day is not None:
        lean = lean + cfg.drift_lean * (day >= cfg.drift_day)
    return _Baskets(n, basket_type, lines, day, customer, store, lean)


def _tier_preferences(baskets: _Baskets, days: int) -> np.ndarray:
    """Per-basket probabilities of an LA/MM/UM/XX line (see TIER_CAP)."""
    progress = baskets.day / max(days - 1, 1)
    xx = np.where(baskets.basket_type == 3, XX_TRIP, XX_START * XX_GROWTH**progress)

    def side(lean: np.ndarray) -> NDArray[np.float64]:
        share: NDArray[np.float64] = (1 - xx) * TIER_CAP / (1 + np.exp(-LEAN_SLOPE * (lean - LEAN_CENTRE)))
        return share

    la, um = side(baskets.lean), side(-baskets.lean)
    preferences: NDArray[np.float64] = np.stack([la, 1 - xx - la - um, um, xx], axis=1)
    return preferences


def _choose_products(
    cat: Catalogue, tier: np.ndarray, lean: np.ndarray, day: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """A product of the wanted tier per line, launched by the line's day, favouring
    products whose audience matches the basket's lean (bucketed, one CDF per bucket)."""
    bucket = np.digitize(lean, AUDIENCE_BINS)
    centres = np.concatenate([[AUDIENCE_BINS[0]], (AUDIENCE_BINS[1:] + AUDIENCE_BINS[:-1]) / 2, [AUDIENCE_BINS[-1]]])
    key = bucket * 4 + tier
    order = np.argsort(key, kind="stable")
    bounds = np.searchsorted(key[order], np.arange(len(centres) * 4 + 1))
    product = np.empty(len(tier), dtype=np.int64)
    u = rng.random(len(tier))
    for t in range(4):
        # Products of the tier in launch order: those on sale by a day are a prefix.
        members = np.flatnonzero(cat.tier == t)
        members = members[np.argsort(cat.launch_day[members], kind="stable")]
        launched = cat.launch_day[members]
        for b, centre in enumerate(centres):
            rows = order[bounds[b * 4 + t]:bounds[b * 4 + t + 1]]
            if len(rows) == 0:
                continue
            cdf = np.cumsum(cat.popularity[members] * np.exp(AUDIENCE_STRENGTH * cat.audience[members] * centre))
            on_sale = np.searchsorted(launched, day[rows], side="right")
            picked = np.searchsorted(cdf, u[rows] * cdf[np.maximum(on_sale, 1) - 1], side="right")
            product[rows] = members[np.minimum(picked, np.maximum(on_sale, 1) - 1)]
    return product


def _lines(cfg: SynthConfig, cat: Catalogue, baskets: _Baskets, rng: np.random.Generator) -> _Lines:
    """A tier per line from its basket's preferences, a product of that tier, quantity, spend."""
    basket = np.repeat(np.arange(baskets.n), baskets.lines)
    prefs = _tier_preferences(baskets, cfg.weeks * 7)[basket]
    tier = (rng.random(len(basket))[:, None] > prefs.cumsum(axis=1)).sum(axis=1).clip(0, 3)
    product = _choose_products(cat, tier, baskets.lean[basket], baskets.day[basket], rng)
    n = len(product)
    quantity = 1 + (rng.random(n) > 0.82) * (1 + rng.negative_binomial(0.5, 0.22, n))
    # Rare bulk lines: up to ~1,700 units, but no line above ~2,600 GBP (FACTS' outliers).
    bulk = np.minimum(rng.integers(20, 1700, n), np.maximum(20, 2600 // cat.unit_price[product]).astype(np.int64))
    quantity = np.where(rng.random(n) < 2e-5, bulk, quantity)
    promo = rng.choice([1.0, 1.0, 1.0, 0.9, 0.75], n)
    spend = np.round(quantity * cat.unit_price[product] * promo * rng.lognormal(0, 0.04, n), 2)
    return _Lines(basket=basket, product=product, quantity=quantity, spend=spend)


def generate(cfg: SynthConfig, chunk_rows: int = CHUNK_ROWS) -> pa.Table:
    """The synthetic transactions as one Arrow table in the coded column layout: the chunks `write_synthetic` writes
    (one for at most `chunk_rows` rows), put together."""
    return pa.concat_tables(generate_chunks(cfg, chunk_rows))


def generate_chunks(cfg: SynthConfig, chunk_rows: int = CHUNK_ROWS) -> Iterator[pa.Table]:
    """The synthetic transactions, a run of whole weeks of about `chunk_rows` rows at a time (see the module)."""
    cat = catalogue(cfg)
    _, rng = _streams(cfg.seed)
    shoppers = _shoppers(cfg, rng)
    spans = _spans(cfg, chunk_rows)
    first_basket = 0
    for i, span in enumerate(spans):
        streams = _Streams(baskets=rng, people=rng) if len(spans) == 1 else _chunk_streams(cfg.seed, i)
        baskets = _baskets(cfg, span, shoppers, streams)
        lines = _lines(cfg, cat, baskets, streams.baskets)
        line_tier = cat.tier[lines.product]
        if cfg.drift_day is not None:
            line_tier = _after_drift(cfg, cfg.drift_day, cat, baskets, lines)
        counts = np.zeros((baskets.n, 4), dtype=np.int64)
        np.add.at(counts, (lines.basket, line_tier), 1)
        label = label_of_counts(counts)
        yield _to_table(cfg, streams, cat, shoppers, baskets, lines, label, first_basket)
        first_basket += baskets.n


def _after_drift(cfg: SynthConfig, drift_day: int, cat: Catalogue, baskets: _Baskets, lines: _Lines) -> np.ndarray:
    """Each line's tier with the drift applied from `drift_day`; the spend of a drifted line whose product
    moved tier is repriced (in place) by the ratio of the tiers' price factors."""
    drifted = _drifted_tiers(cfg, cat)
    after = baskets.day[lines.basket] >= drift_day
    before_tier, after_tier = cat.tier[lines.product], drifted[lines.product]
    ratio = np.where(after, TIER_PRICE_FACTOR[after_tier] / TIER_PRICE_FACTOR[before_tier], 1.0)
    lines.spend = np.round(lines.spend * ratio, 2)
    tier: NDArray[np.int64] = np.where(after, after_tier, before_tier)
    return tier


def _segment_codes(
    cfg: SynthConfig, shopper_lean: np.ndarray, rng: np.random.Generator
) -> tuple[NDArray[np.object_], NDArray[np.object_]]:
    """seg_1 (noisy copy of the lean's tercile, some XX) and seg_2 (life stage, 10% blank) per customer."""
    cut = 0.43 * SHOPPER_LEAN_SD  # terciles of a normal distribution
    tercile = np.where(shopper_lean > cut, LA, np.where(shopper_lean < -cut, UM, MM))
    noisy = np.where(rng.random(cfg.customers) < SEG_1_NOISE, rng.integers(0, 3, cfg.customers), tercile)
    seg1_values = np.array([SEG_1_ENCODE[t] for t in TIERS], dtype=object)
    seg1 = seg1_values[np.where(rng.random(cfg.customers) < 0.02, XX, noisy)]
    stages = np.array([SEG_2_ENCODE[s] for s in DOMAINS["CUST_LIFESTAGE"]], dtype=object)
    seg2 = stages[rng.integers(0, len(stages), cfg.customers)]
    seg2[rng.random(cfg.customers) < 0.10] = None
    return seg1, seg2


def _hours(n: int, rng: np.random.Generator) -> np.ndarray:
    hours = np.arange(8, 22)
    weight = np.array([3, 5, 7, 9, 11, 12, 12, 11, 10, 8, 6, 4, 3, 5], dtype=float)
    picked: NDArray[np.int64] = hours[_pick_by_weight(weight, rng.random(n))]
    return picked


def _to_table(
    cfg: SynthConfig,
    streams: _Streams,
    cat: Catalogue,
    shoppers: _Shoppers,
    baskets: _Baskets,
    lines: _Lines,
    label: np.ndarray,
    first_basket: int,
) -> pa.Table:
    """The chunk's rows; its baskets are numbered from `first_basket` (the baskets of the chunks before it)."""
    rng, people = streams.baskets, streams.people
    b = lines.basket
    days = [FIRST_DAY + dt.timedelta(days=d) for d in range(cfg.weeks * 7)]
    day_week = np.array([week_code_of(d) for d in days])
    day_date = np.array([int(d.strftime("%Y%m%d")) for d in days])
    day_weekday = np.array([dunnhumby_weekday(d) for d in days])

    week = day_week[baskets.day]
    # BASKET_ID: 15 digits, "99" + week sequence + a running number.
    basket_id = 99 * 10**13 + (baskets.day // 7) * 10**10 + first_basket + np.arange(baskets.n)
    hour = _hours(baskets.n, rng)

    seg1, seg2 = _segment_codes(cfg, shoppers.lean, people)
    customer_codes = _codes("CUST", cfg.customers, 10, people)
    card = baskets.customer >= 0
    cust_idx = np.maximum(baskets.customer, 0)

    def basket_strings(values: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
        per_basket = pa.array(values, type=pa.string(), mask=None if mask is None else ~mask)
        return per_basket.take(pa.array(b))

    size_names = np.array(DOMAINS["BASKET_SIZE"], dtype=object)
    type_names = np.array(DOMAINS["BASKET_TYPE"], dtype=object)
    mission = _missions(baskets.basket_type, rng)
    store_codes = _codes("STORE", cfg.stores, 5, people)
    formats = np.array(DOMAINS["STORE_FORMAT"], dtype=object)
    regions = np.array(DOMAINS["STORE_REGION"], dtype=object)
    product_idx = pa.array(lines.product)
    columns = {
        "SHOP_WEEK": pa.array(week[b]),
        "SHOP_DATE": pa.array(day_date[baskets.day][b]),
        "SHOP_WEEKDAY": pa.array(day_weekday[baskets.day][b]),
        "SHOP_HOUR": pa.array(hour[b]),
        "QUANTITY": pa.array(lines.quantity),
        "SPEND": pa.array(lines.spend),
        "PROD_CODE": pa.array(cat.codes["PROD_CODE"], type=pa.string()).take(product_idx),
    }
    for level in ("PROD_CODE_10", "PROD_CODE_20", "PROD_CODE_30", "PROD_CODE_40"):
        columns[level] = pa.array(cat.codes[level][cat.parent[level]], type=pa.string()).take(product_idx)
    columns["CUST_CODE"] = basket_strings(customer_codes[cust_idx], card)
    columns["seg_1"] = basket_strings(seg1[cust_idx], card)
    seg2_basket = seg2[cust_idx]
    columns["seg_2"] = basket_strings(seg2_basket, card & (seg2_basket != None))  # noqa: E711
    columns["BASKET_ID"] = pa.array(basket_id[b])
    columns["BASKET_SIZE"] = basket_strings(size_names[_basket_size(baskets.lines, rng)])
    columns["BASKET_PRICE_SENSITIVITY"] = basket_strings(np.array(TIERS, dtype=object)[label])
    columns["BASKET_TYPE"] = basket_strings(type_names[baskets.basket_type])
    columns["BASKET_DOMINANT_MISSION"] = basket_strings(mission)
    columns["STORE_CODE"] = basket_strings(store_codes[baskets.store])
    columns["STORE_FORMAT"] = basket_strings(formats[shoppers.store_format[baskets.store]])
    columns["STORE_REGION"] = basket_strings(regions[shoppers.store_region[baskets.store]])
    return pa.table([columns[c] for c in CODED_COLUMNS], names=list(CODED_COLUMNS))


def _missions(basket_type: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    names = np.array(DOMAINS["BASKET_DOMINANT_MISSION"], dtype=object)
    by_type = np.array(
        [
            [0.40, 0.25, 0.20, 0.15, 0.0],  # Small Shop
            [0.30, 0.25, 0.35, 0.10, 0.0],  # Top Up
            [0.10, 0.20, 0.65, 0.05, 0.0],  # Full Shop
            [0.0, 0.0, 0.0, 0.0, 1.0],  # XX
        ]
    )
    cdf = by_type.cumsum(axis=1)[basket_type]
    missions: NDArray[np.object_] = names[(rng.random(len(basket_type))[:, None] > cdf).sum(axis=1).clip(0, 4)]
    return missions


def with_original_header(table: pa.Table) -> pa.Table:
    """The same table with the original dunnhumby segment columns and decoded values."""
    seg1 = _recode(table["seg_1"], SEG_1_DECODE)
    seg2 = _recode(table["seg_2"], SEG_2_DECODE)
    return table.set_column(12, ORIGINAL_COLUMNS[12], seg1).set_column(13, ORIGINAL_COLUMNS[13], seg2)


def _recode(column: pa.ChunkedArray, mapping: dict[str, str]) -> pa.ChunkedArray:
    keys = pa.array(list(mapping))
    values = pa.array(list(mapping.values()))
    return pc.take(values, pc.index_in(column, value_set=keys))


def write_csv(table: pa.Table, path: Path, crlf: bool = False) -> None:
    """Write the table as CSV (gzip when the name ends in .gz), unquoted like the export."""
    write_csv_chunks([table], path, crlf)


def write_csv_chunks(tables: Iterable[pa.Table], path: Path, crlf: bool = False) -> int:
    """Write tables of the same columns one after the other as one CSV (see `write_csv`), the header once; returns
    the rows. With `crlf`, lines end in CR LF: Arrow's writer ends them in LF, so each batch of `CSV_BATCH_ROWS` rows
    is written to memory and its line ends replaced (copies of a batch are held, not of the table)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    options = pacsv.WriteOptions(include_header=False, quoting_style="none", batch_size=CSV_BATCH_ROWS)
    sink = pa.OSFile(str(path), "wb")
    stream = pa.CompressedOutputStream(sink, "gzip") if path.suffix == ".gz" else sink
    rows, header_written = 0, False
    newline = b"\r\n" if crlf else b"\n"
    with stream:
        for table in tables:
            if not header_written:
                stream.write((",".join(table.column_names)).encode() + newline)
                header_written = True
            if crlf:
                for batch in table.to_batches(CSV_BATCH_ROWS):
                    buffer = pa.BufferOutputStream()
                    pacsv.write_csv(batch, buffer, options)
                    stream.write(buffer.getvalue().to_pybytes().replace(b"\n", b"\r\n"))
                    del buffer
            else:
                pacsv.write_csv(table, stream, options)
            rows += table.num_rows
    return rows


def write_synthetic(cfg: SynthConfig, output: Path, *, original_header: bool = False, weekly: bool = False,
                    crlf: bool = False, chunk_rows: int = CHUNK_ROWS) -> tuple[int, list[Path]]:
    """Generate and write the data set a chunk at a time: one CSV (.csv or .csv.gz), or with `weekly` one file per
    week in the folder `output`; returns the rows and the files written. Memory is bounded by `chunk_rows`."""
    tables = (with_original_header(t) if original_header else t for t in generate_chunks(cfg, chunk_rows))
    if not weekly:
        return write_csv_chunks(tables, output, crlf), [output]
    rows, files = 0, []
    for table in tables:  # a chunk holds whole weeks: no week's file is written twice
        files += write_weekly(table, output, crlf)
        rows += table.num_rows
    return rows, files


def write_weekly(table: pa.Table, folder: Path, crlf: bool = False) -> list[Path]:
    """One `transactions_YYYYWW.csv` per shop week, as the original distribution."""
    folder.mkdir(parents=True, exist_ok=True)
    weeks = table["SHOP_WEEK"].to_numpy()
    written = []
    for week in np.unique(weeks):
        path = folder / f"transactions_{week}.csv"
        write_csv(table.filter(pa.array(weeks == week)), path, crlf=crlf)
        written.append(path)
    return written
