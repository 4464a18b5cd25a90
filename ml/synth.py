"""Synthetic transactions in the exact format of the dunnhumby `transaction.csv`.

The generator reproduces the structure described in shared/data/FACTS.md so that a
pipeline tuned here works unchanged on the real file:

* every product has a stable price tier (LA value, MM, UM premium, XX unclassifiable),
  drawn per product class so that the hierarchy carries tier evidence too;
* value-tier unit prices sit below their category's median, premium a little above;
* a basket's label follows from the tiers of its products (mostly value: LA, mostly
  premium: UM, only unclassifiable: XX, otherwise MM);
* shoppers lean towards a tier, and their recorded segment (seg_1) is a noisy copy
  of that lean, so it agrees with the basket label only about half the time;
* basket type drives the number of lines, and size follows the line count;
* the mix drifts: value-tier shopping falls and unclassifiable products grow over time.

Everything is vectorised with NumPy and written with Arrow's CSV writer.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ml.calendar import FISCAL_EPOCH, dunnhumby_weekday, week_code_of
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
FIRST_DAY = dt.date(2006, 4, 10)  # Monday of week 200607
N_WEEKS = 117
ROWS_PER_BASKET = 6.4  # the real file's mean lines per basket


@dataclass(frozen=True)
class SynthConfig:
    """Sizes and shape of the synthetic data set (defaults: the size of the real file)."""

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


@dataclass
class _Catalogue:
    tier: np.ndarray  # product -> tier index
    unit_price: np.ndarray  # product -> base unit price
    parent: dict[str, np.ndarray]  # level -> product index -> parent code index
    popularity: np.ndarray


@dataclass
class _Draw:
    """What was drawn per basket (index = basket) and per line (index = line)."""

    n_baskets: int
    basket_of_line: np.ndarray
    product: np.ndarray
    quantity: np.ndarray
    spend: np.ndarray
    customer: np.ndarray  # -1 for no-card baskets
    customer_lean: np.ndarray  # per customer
    store: np.ndarray
    store_format: np.ndarray  # per store
    store_region: np.ndarray  # per store
    day: np.ndarray  # days since the first day of the data set
    basket_type: np.ndarray
    lines: np.ndarray
    label: np.ndarray


def _codes(prefix: str, n: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """n distinct codes `prefix` + `width` digits, sorted."""
    numbers = np.sort(rng.choice(10**width, size=n, replace=False))
    return np.array([f"{prefix}{x:0{width}d}" for x in numbers], dtype=object)


def _assign_parents(n_children: int, n_parents: int, rng: np.random.Generator) -> np.ndarray:
    """Parent index for each child, every parent getting at least one child."""
    parents = np.concatenate([np.arange(n_parents), rng.integers(0, n_parents, n_children - n_parents)])
    rng.shuffle(parents)
    return parents


def _catalogue(cfg: SynthConfig, rng: np.random.Generator) -> _Catalogue:
    class_of_product = _assign_parents(cfg.products, cfg.classes, rng)
    dept_of_class = _assign_parents(cfg.classes, cfg.departments, rng)
    group_of_dept = _assign_parents(cfg.departments, cfg.groups, rng)
    division_of_group = _assign_parents(cfg.groups, cfg.divisions, rng)
    # Tier mix per class around the whole-catalogue mix (66% MM, 14% LA, 13% UM, 3% XX).
    base_mix = np.array([0.15, 0.67, 0.15, 0.03])
    class_mix = rng.dirichlet(base_mix * 12, size=cfg.classes)
    cumulative = class_mix.cumsum(axis=1)[class_of_product]
    tier = (rng.random(cfg.products)[:, None] > cumulative).sum(axis=1).clip(0, 3)
    group_of_product = group_of_dept[dept_of_class[class_of_product]]
    group_price = rng.lognormal(np.log(1.35), 0.6, cfg.groups)
    tier_factor = np.array([0.82, 1.0, 1.12, 1.0])[tier]
    unit_price = group_price[group_of_product] * tier_factor * rng.lognormal(0, 0.15, cfg.products)
    popularity = rng.pareto(1.3, cfg.products) + 0.05
    return _Catalogue(
        tier=tier,
        unit_price=unit_price,
        parent={
            "PROD_CODE_10": class_of_product,
            "PROD_CODE_20": dept_of_class[class_of_product],
            "PROD_CODE_30": group_of_product,
            "PROD_CODE_40": division_of_group[group_of_product],
        },
        popularity=popularity,
    )


def _pick_by_weight(weights: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling of indices proportional to `weights` from uniforms `u`."""
    cdf = np.cumsum(weights)
    return np.searchsorted(cdf, u * cdf[-1], side="right").clip(0, len(weights) - 1)


def _basket_lines(basket_type: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Line count by basket type: Small Shop 1-3, Top Up around 7, Full Shop around 20+."""
    n = len(basket_type)
    small = 1 + rng.negative_binomial(2, 0.52, n)
    top_up = 3 + rng.negative_binomial(3, 0.4, n)
    full = np.rint(rng.lognormal(np.log(18), 0.55, n)).astype(np.int64)
    lines = np.select([basket_type == 0, basket_type == 1, basket_type == 2], [small, top_up, full], 1)
    return lines.clip(1, 90)


def _basket_size(lines: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """S for 1-2 lines, M for up to 9 (some short baskets are M too), L beyond."""
    size = np.where(lines <= 2, 0, np.where(lines <= 9, 1, 2))
    upgrade = (size == 0) & (rng.random(len(lines)) < 0.25)
    return np.where(upgrade, 1, size)


def _tier_preferences(lean: np.ndarray, progress: np.ndarray) -> np.ndarray:
    """Per-basket probabilities of picking an LA/MM/UM/XX product for each line.

    `lean` is the shopper's tier lean (0 LA, 1 MM, 2 UM); `progress` runs 0..1 over
    the data set's weeks and drives the drift (less value shopping, more XX).
    """
    by_lean = np.array(
        [
            [0.60, 0.31, 0.05, 0.04],  # value-leaning shopper
            [0.10, 0.80, 0.07, 0.03],
            [0.04, 0.32, 0.60, 0.04],  # premium-leaning shopper
        ]
    )
    prefs = by_lean[lean].copy()
    prefs[:, 0] *= 1.0 - 0.35 * progress
    prefs[:, 3] *= 1.0 + 2.0 * progress
    return prefs / prefs.sum(axis=1, keepdims=True)


def _label(tier_of_line: np.ndarray, basket_of_line: np.ndarray, n_baskets: int) -> np.ndarray:
    """The basket label from its products' tiers (index into TIERS)."""
    counts = np.zeros((n_baskets, 4))
    np.add.at(counts, (basket_of_line, tier_of_line), 1)
    classified = counts[:, :3].sum(axis=1)
    share = counts[:, :3] / np.maximum(classified, 1)[:, None]
    label = np.full(n_baskets, 1)
    label[(share[:, 0] >= 0.4) & (share[:, 0] > share[:, 2])] = 0
    label[(share[:, 2] >= 0.4) & (share[:, 2] > share[:, 0])] = 2
    label[classified == 0] = 3
    return label


def _hours(n: int, rng: np.random.Generator) -> np.ndarray:
    hours = np.arange(8, 22)
    weight = np.array([3, 5, 7, 9, 11, 12, 12, 11, 10, 8, 6, 4, 3, 5], dtype=float)
    return hours[_pick_by_weight(weight, rng.random(n))]


def generate(cfg: SynthConfig) -> pa.Table:
    """The synthetic transactions as an Arrow table in the coded column layout."""
    rng = np.random.default_rng(cfg.seed)
    cat = _catalogue(cfg, rng)
    # Draw basket types and line counts for more baskets than needed, then keep
    # just enough baskets to reach the requested number of rows.
    drafted = int(cfg.rows / ROWS_PER_BASKET * 1.3) + 10
    basket_type = _pick_by_weight(np.array([0.55, 0.33, 0.11, 0.01]), rng.random(drafted))
    lines = _basket_lines(basket_type, rng)
    n_baskets = max(1, int(np.searchsorted(np.cumsum(lines), cfg.rows, side="left")) + 1)
    n_baskets = min(n_baskets, drafted)
    basket_type, lines = basket_type[:n_baskets], lines[:n_baskets]
    lines[-1] -= max(0, int(lines.sum()) - cfg.rows)

    # Shoppers: card customers with a stable lean, and no-card baskets with their own.
    lean_share = np.array([0.29, 0.45, 0.26])
    customer_lean = _pick_by_weight(lean_share, rng.random(cfg.customers))
    customer_activity = rng.lognormal(np.log(39), 1.1, cfg.customers)
    customer_home = rng.integers(0, cfg.stores, (cfg.customers, 3))
    has_card = rng.random(n_baskets) >= cfg.no_card_share
    customer = np.where(has_card, _pick_by_weight(customer_activity, rng.random(n_baskets)), -1)
    lean = np.where(has_card, customer_lean[customer], _pick_by_weight(lean_share, rng.random(n_baskets)))

    store_format = _pick_by_weight(np.array([0.58, 0.25, 0.10, 0.07]), rng.random(cfg.stores))
    store_region = rng.integers(0, 12, cfg.stores)
    store_weight = rng.lognormal(0, 0.6, cfg.stores) * np.array([1.6, 1.0, 0.7, 2.0])[store_format]
    store = np.where(
        has_card,
        customer_home[np.maximum(customer, 0), rng.integers(0, 3, n_baskets)],
        _pick_by_weight(store_weight, rng.random(n_baskets)),
    )

    day = np.sort(rng.integers(0, cfg.weeks * 7, n_baskets))
    progress = day / max(cfg.weeks * 7 - 1, 1)

    # Lines: a tier per line from the basket's preferences, then a product of that tier.
    basket_of_line = np.repeat(np.arange(n_baskets), lines)
    prefs = _tier_preferences(lean, progress)[basket_of_line]
    u = rng.random(len(basket_of_line))[:, None]
    wanted_tier = (u > prefs.cumsum(axis=1)).sum(axis=1).clip(0, 3)
    product = np.empty(len(basket_of_line), dtype=np.int64)
    for t in range(4):
        members = np.flatnonzero(cat.tier == t)
        rows = np.flatnonzero(wanted_tier == t)
        product[rows] = members[_pick_by_weight(cat.popularity[members], rng.random(len(rows)))]
    tier_of_line = cat.tier[product]
    label = _label(tier_of_line, basket_of_line, n_baskets)
    label[basket_type == 3] = np.where(rng.random((basket_type == 3).sum()) < 0.5, 3, label[basket_type == 3])

    quantity = 1 + (rng.random(len(product)) > 0.82) * rng.geometric(0.55, len(product))
    outlier = rng.random(len(product)) < 2e-5
    quantity = np.where(outlier, rng.integers(20, 1700, len(product)), quantity)
    promo = rng.choice([1.0, 1.0, 1.0, 0.9, 0.75], len(product))
    spend = np.round(quantity * cat.unit_price[product] * promo * rng.lognormal(0, 0.04, len(product)), 2)

    draw = _Draw(
        n_baskets=n_baskets, basket_of_line=basket_of_line, product=product, quantity=quantity,
        spend=spend, customer=customer, customer_lean=customer_lean, store=store,
        store_format=store_format, store_region=store_region, day=day, basket_type=basket_type,
        lines=lines, label=label,
    )
    return _to_table(cfg, rng, cat, draw)


def _segment_codes(cfg: SynthConfig, customer_lean: np.ndarray, rng: np.random.Generator):
    """seg_1 (noisy copy of the lean, some XX) and seg_2 (life stage, 10% blank) per customer."""
    noisy = np.where(rng.random(cfg.customers) < 0.6, rng.integers(0, 3, cfg.customers), customer_lean)
    seg1_values = np.array([SEG_1_ENCODE[t] for t in ("LA", "MM", "UM")] + [SEG_1_ENCODE["XX"]])
    seg1 = seg1_values[np.where(rng.random(cfg.customers) < 0.02, 3, noisy)]
    stages = np.array([SEG_2_ENCODE[s] for s in DOMAINS["CUST_LIFESTAGE"]], dtype=object)
    seg2 = stages[rng.integers(0, len(stages), cfg.customers)]
    seg2[rng.random(cfg.customers) < 0.10] = None
    return seg1.astype(object), seg2


def _to_table(cfg: SynthConfig, rng: np.random.Generator, cat: _Catalogue, draw: _Draw) -> pa.Table:
    b = draw.basket_of_line
    days = np.array([FISCAL_EPOCH + dt.timedelta(days=(FIRST_DAY - FISCAL_EPOCH).days + d)
                     for d in range(cfg.weeks * 7)])
    day_week = np.array([week_code_of(d) for d in days])
    day_date = np.array([int(d.strftime("%Y%m%d")) for d in days])
    day_weekday = np.array([dunnhumby_weekday(d) for d in days])

    basket_day = draw.day
    week = day_week[basket_day]
    # BASKET_ID: 15 digits, "99" + week sequence + a running number.
    basket_id = 99 * 10**13 + (basket_day // 7) * 10**10 + np.arange(draw.n_baskets)
    hour = _hours(draw.n_baskets, rng)

    seg1, seg2 = _segment_codes(cfg, draw.customer_lean, rng)
    customer_codes = _codes("CUST", cfg.customers, 10, rng)
    card = draw.customer >= 0
    cust_idx = np.maximum(draw.customer, 0)

    def basket_strings(values: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
        per_basket = pa.array(values, type=pa.string(), mask=None if mask is None else ~mask)
        return per_basket.take(pa.array(b))

    size_names = np.array(DOMAINS["BASKET_SIZE"], dtype=object)
    type_names = np.array(DOMAINS["BASKET_TYPE"], dtype=object)
    mission = _missions(draw.basket_type, rng)
    store_codes = _codes("STORE", cfg.stores, 5, rng)
    formats = np.array(DOMAINS["STORE_FORMAT"], dtype=object)
    regions = np.array(DOMAINS["STORE_REGION"], dtype=object)
    level_codes = {
        "PROD_CODE": _codes("PRD09", cfg.products, 5, rng),
        "PROD_CODE_10": _codes("CL", cfg.classes, 5, rng),
        "PROD_CODE_20": _codes("DEP", cfg.departments, 5, rng),
        "PROD_CODE_30": _codes("G", cfg.groups, 5, rng),
        "PROD_CODE_40": _codes("D", cfg.divisions, 5, rng),
    }
    product_idx = pa.array(draw.product)
    columns = {
        "SHOP_WEEK": pa.array(week[b]),
        "SHOP_DATE": pa.array(day_date[basket_day][b]),
        "SHOP_WEEKDAY": pa.array(day_weekday[basket_day][b]),
        "SHOP_HOUR": pa.array(hour[b]),
        "QUANTITY": pa.array(draw.quantity),
        "SPEND": pa.array(draw.spend),
        "PROD_CODE": pa.array(level_codes["PROD_CODE"], type=pa.string()).take(product_idx),
    }
    for level in ("PROD_CODE_10", "PROD_CODE_20", "PROD_CODE_30", "PROD_CODE_40"):
        columns[level] = pa.array(level_codes[level][cat.parent[level]], type=pa.string()).take(product_idx)
    columns["CUST_CODE"] = basket_strings(customer_codes[cust_idx], card)
    columns["seg_1"] = basket_strings(seg1[cust_idx], card)
    seg2_basket = seg2[cust_idx]
    columns["seg_2"] = basket_strings(seg2_basket, card & (seg2_basket != None))  # noqa: E711
    columns["BASKET_ID"] = pa.array(basket_id[b])
    columns["BASKET_SIZE"] = basket_strings(size_names[_basket_size(draw.lines, rng)])
    columns["BASKET_PRICE_SENSITIVITY"] = basket_strings(np.array(TIERS, dtype=object)[draw.label])
    columns["BASKET_TYPE"] = basket_strings(type_names[draw.basket_type])
    columns["BASKET_DOMINANT_MISSION"] = basket_strings(mission)
    columns["STORE_CODE"] = basket_strings(store_codes[draw.store])
    columns["STORE_FORMAT"] = basket_strings(formats[draw.store_format[draw.store]])
    columns["STORE_REGION"] = basket_strings(regions[draw.store_region[draw.store]])
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
    return names[(rng.random(len(basket_type))[:, None] > cdf).sum(axis=1).clip(0, 4)]


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
    path.parent.mkdir(parents=True, exist_ok=True)
    options = pacsv.WriteOptions(include_header=False, quoting_style="none", batch_size=200_000)
    header = (",".join(table.column_names) + "\n").encode()
    sink = pa.OSFile(str(path), "wb")
    stream = pa.CompressedOutputStream(sink, "gzip") if path.suffix == ".gz" else sink
    with stream:
        if crlf:
            buffer = pa.BufferOutputStream()
            buffer.write(header)
            pacsv.write_csv(table, buffer, options)
            stream.write(buffer.getvalue().to_pybytes().replace(b"\n", b"\r\n"))
        else:
            stream.write(header)
            pacsv.write_csv(table, stream, options)


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
