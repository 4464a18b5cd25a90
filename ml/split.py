"""The leak-free split: the latest weeks are held out, whole baskets on one side.

A basket's week is constant within the basket (validation enforces it), so splitting
lines by week keeps every basket whole; `split_lines` still assigns the side per
basket, from the basket's first line, so that guarantee does not rest on validation.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from ml.calendar import week_index_expr
from ml.schema import BASKET_KEY


@dataclass(frozen=True)
class Split:
    train: pl.DataFrame
    holdout: pl.DataFrame
    last_train_week: int
    first_holdout_week: int


def split_lines(lines: pl.DataFrame, holdout_weeks: int) -> Split:
    """Lines of baskets in the latest `holdout_weeks` fiscal weeks go to the holdout."""
    week_of_basket = lines.group_by(BASKET_KEY).agg(pl.first("SHOP_WEEK").alias("_basket_week"))
    indexed = week_of_basket.with_columns(week_index_expr(pl.col("_basket_week")).alias("_week_index"))
    last = int(indexed["_week_index"].max())
    first_held = last - holdout_weeks + 1
    if holdout_weeks < 1 or first_held <= int(indexed["_week_index"].min()):
        weeks = last - int(indexed["_week_index"].min()) + 1
        raise ValueError(f"holdout_weeks={holdout_weeks} leaves no training weeks (data spans {weeks} weeks)")
    sides = lines.join(indexed.select(BASKET_KEY, "_week_index"), on=BASKET_KEY)
    train = sides.filter(pl.col("_week_index") < first_held).drop("_week_index")
    holdout = sides.filter(pl.col("_week_index") >= first_held).drop("_week_index")
    return Split(
        train=train,
        holdout=holdout,
        last_train_week=int(train["SHOP_WEEK"].max()),
        first_holdout_week=int(holdout["SHOP_WEEK"].min()),
    )
