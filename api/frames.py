"""Validated baskets as the scorer takes them: plain values for the compiled featurizer (`basket_records`, the
service's path), or the lines table of the data set (`lines_frame`, one row per product line)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from api.schemas import Basket
from ml.compiled import LineValues
from ml.features import HEADER_CATEGORICALS, HEADER_NUMERICS
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


def lines_frame(baskets: Sequence[Basket]) -> pl.DataFrame:
    """All lines of the baskets; BASKET_KEY is the basket's position, so keys never collide."""
    header = pl.DataFrame({name: [getattr(b, name) for b in baskets] for name in HEADER_SCHEMA}, schema=HEADER_SCHEMA)
    position = np.repeat(np.arange(len(baskets)), [len(b.lines) for b in baskets])
    lines = [line for basket in baskets for line in basket.lines]
    return header[position].select(
        pl.Series(BASKET_KEY, position).cast(pl.String),
        pl.all(),
        *[pl.Series(name, [getattr(line, name) for line in lines], dtype=dtype) for name, dtype in LINE_SCHEMA.items()],
    )


FEATURE_HEADER = (*HEADER_CATEGORICALS, *HEADER_NUMERICS)
"""The header fields the featurizer reads."""


def basket_records(baskets: Sequence[Basket]) -> tuple[list[dict], list[list[LineValues]]]:
    """Each basket's header fields and lines as `ml.bundle.ModelBundle.score_records` takes them; no frame built."""
    headers = [{name: getattr(b, name) for name in FEATURE_HEADER} for b in baskets]
    lines = [
        [(ln.PROD_CODE, ln.PROD_CODE_10, ln.PROD_CODE_20, ln.PROD_CODE_30, ln.PROD_CODE_40, ln.QUANTITY, ln.SPEND)
         for ln in b.lines]
        for b in baskets
    ]
    return headers, lines
