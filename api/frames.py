"""Validated baskets to the lines table the featurizer reads (one row per product line)."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from api.schemas import Basket
from ml.schema import BASKET_KEY, LINE_COLUMNS

HEADER_SCHEMA: dict[str, pl.DataType] = {
    "SHOP_DATE": pl.Date,
    "SHOP_WEEKDAY": pl.Int8,
    "SHOP_HOUR": pl.Int8,
    "CUST_CODE": pl.String,
    "CUST_PRICE_SENSITIVITY": pl.String,
    "CUST_LIFESTAGE": pl.String,
    "BASKET_SIZE": pl.String,
    "BASKET_TYPE": pl.String,
    "BASKET_DOMINANT_MISSION": pl.String,
    "STORE_CODE": pl.String,
    "STORE_FORMAT": pl.String,
    "STORE_REGION": pl.String,
}
LINE_SCHEMA: dict[str, pl.DataType] = {
    "QUANTITY": pl.Int32,
    "SPEND": pl.Float64,
    **{c: pl.String for c in LINE_COLUMNS if c.startswith("PROD_CODE")},
}
SCHEMA = {BASKET_KEY: pl.String, **HEADER_SCHEMA, **LINE_SCHEMA}


def lines_frame(baskets: Sequence[Basket]) -> pl.DataFrame:
    """All lines of the baskets; BASKET_KEY is the basket's position, so keys never collide."""
    columns: dict[str, list] = {name: [] for name in SCHEMA}
    for position, basket in enumerate(baskets):
        count = len(basket.lines)
        columns[BASKET_KEY].extend([str(position)] * count)
        for name in HEADER_SCHEMA:
            columns[name].extend([getattr(basket, name)] * count)
        for line in basket.lines:
            for name in LINE_SCHEMA:
                columns[name].append(getattr(line, name))
    return pl.DataFrame(columns, schema=SCHEMA)
