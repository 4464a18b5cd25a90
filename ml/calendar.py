"""The retailer's fiscal calendar: weeks run Monday to Sunday, 52 to a fiscal year.

SHOP_WEEK is `YYYYWW` with WW counted from the fiscal year's first Monday, so
200607 is the week starting 2006-04-10. SHOP_WEEKDAY is 1 = Sunday .. 7 = Saturday.
"""

from __future__ import annotations

import datetime as dt
from typing import cast

import polars as pl

# Monday that starts fiscal week 200601; fiscal years of the data set are 52 weeks.
FISCAL_EPOCH = dt.date(2006, 2, 27)
FISCAL_EPOCH_YEAR = 2006
WEEKS_PER_YEAR = 52


def week_code_of(day: dt.date) -> int:
    """Fiscal week code (YYYYWW) of a calendar date."""
    weeks = (day - FISCAL_EPOCH).days // 7
    return (FISCAL_EPOCH_YEAR + weeks // WEEKS_PER_YEAR) * 100 + weeks % WEEKS_PER_YEAR + 1


def dunnhumby_weekday(day: dt.date) -> int:
    """1 = Sunday .. 7 = Saturday."""
    return (day.weekday() + 1) % 7 + 1


def week_code_expr(date: pl.Expr) -> pl.Expr:
    """Polars expression: the fiscal week code of a Date expression."""
    weeks = (date - pl.lit(FISCAL_EPOCH)).dt.total_days().floordiv(7)
    return (
        (pl.lit(FISCAL_EPOCH_YEAR) + weeks.floordiv(WEEKS_PER_YEAR)) * 100
        + weeks.mod(WEEKS_PER_YEAR)
        + 1
    )


def weekday_expr(date: pl.Expr) -> pl.Expr:
    """Polars expression: 1 = Sunday .. 7 = Saturday (polars' weekday is 1 = Monday .. 7)."""
    return date.dt.weekday().mod(7) + 1


def week_index_expr(week_code: pl.Expr) -> pl.Expr:
    """Polars expression: weeks since the fiscal epoch, for ordering and arithmetic."""
    return (week_code.floordiv(100) - FISCAL_EPOCH_YEAR) * WEEKS_PER_YEAR + week_code.mod(100) - 1


def week_span(weeks: pl.Series) -> tuple[int, int]:
    """The first and last week codes of a SHOP_WEEK column (TypeError when it is empty, as `int(None)`)."""
    # SHOP_WEEK is an integer column (ml.schema.INTEGER_COLUMNS), so its min and max are Python ints, or None
    # when it is empty; Series.min/max are typed for every column type.
    return int(cast(int, weeks.min())), int(cast(int, weeks.max()))
