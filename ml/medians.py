"""Exact medians of a lazy frame's column, holding a bounded part of it.

Polars' `median` has no streaming implementation: over a scan, the streaming engine falls back to the in-memory
engine, which collects the column and its group keys whole. The two functions here give what Polars' `median`
gives, bit for bit, without that:

* `bucketed_medians`, for many small groups (each product's lines): the groups are dealt into buckets by a hash
  of their keys, and one bucket at a time is collected and its medians taken in memory. A bucket holds about
  `rows_per_bucket` rows (more when one group is larger than that).
* `selected_medians`, for a few large groups (each category's lines, or the whole column): the values at the
  middle ranks are found by radix selection over the value's bits, a few streaming group-bys that each hold one
  count (with the least and greatest value) per group and digit, 16 bits of the value in the first pass and 12 in
  each later one; a digit whose values are all equal gives its value, so a pass rarely goes past the first 40 bits.
  Of an even number of values, the two middle ones go to Polars' own median, so the result follows its rule.

The values are Float64 without NaN (nulls are left out, as `median` leaves them out); a median that falls among
zeros may come out as 0.0 where Polars gives -0.0 or the reverse, which compare equal.
"""

from __future__ import annotations

import math
from typing import Literal

import polars as pl

ENGINE: Literal["streaming"] = "streaming"
DIGIT_BITS = (16, 12, 12, 12, 12)
"""Bits of the value's 64 each radix pass reads, most significant first."""
_SIGN = 1 << 63


def _u64(value: int) -> pl.Expr:
    return pl.lit(value, dtype=pl.UInt64)


def order_key(value: str) -> pl.Expr:
    """The bits of a Float64 as an unsigned integer that sorts as the values do (negative ones reversed and below)."""
    bits = pl.col(value).reinterpret(dtype=pl.UInt64)
    return pl.when(bits >= _u64(_SIGN)).then(_u64((1 << 64) - 1) - bits).otherwise(bits + _u64(_SIGN))


def bucketed_medians(frame: pl.LazyFrame, keys: list[str], value: str, alias: str, rows: int,
                     rows_per_bucket: int) -> pl.DataFrame:
    """The median of `value` per group of `keys`, named `alias`; `rows`: the frame's rows (for the bucket count)."""
    buckets = max(1, math.ceil(rows / max(rows_per_bucket, 1)))
    columns = frame.select(*keys, value)
    bucket = pl.struct(keys).hash(seed=0) % buckets
    parts = []
    for b in range(buckets):
        held = (columns if buckets == 1 else columns.filter(bucket == b)).collect(engine=ENGINE)
        parts.append(held.group_by(keys).agg(pl.col(value).median().alias(alias)))
        del held
    return pl.concat(parts)


def selected_medians(frame: pl.LazyFrame, keys: list[str], value: str, alias: str) -> pl.DataFrame:
    """The median of `value` per group of `keys` (groups without a value left out), named `alias`."""
    values = frame.select(*keys, pl.col(value)).filter(pl.col(value).is_not_null()).with_columns(
        order_key(value).alias("_key")
    )
    counts = values.group_by(keys).agg(pl.len().cast(pl.Int64).alias("_n")).collect(engine=ENGINE)
    if counts.is_empty():
        return counts.select(*keys, pl.lit(None, dtype=pl.Float64).alias(alias))
    # Two targets per group, the lower and the upper middle rank (the same one for an odd count); each narrows its
    # own prefix of the key's bits, and its rank becomes a rank among the values under that prefix.
    active = pl.concat([
        counts.select(*keys, pl.lit(0, pl.Int8).alias("_target"), ((pl.col("_n") - 1) // 2).alias("_rank")),
        counts.select(*keys, pl.lit(1, pl.Int8).alias("_target"), (pl.col("_n") // 2).alias("_rank")),
    ]).with_columns(_u64(0).alias("_prefix"))
    found = []
    read = 0
    for width in DIGIT_BITS:
        if active.is_empty():
            break
        shift = 64 - read - width
        under = values.join(active.select(*keys, "_prefix").unique().lazy(), on=keys, nulls_equal=True)
        if read:
            under = under.filter(pl.col("_key") // _u64(1 << (64 - read)) == pl.col("_prefix"))
        digits = (
            under.group_by(*keys, "_prefix", (pl.col("_key") // _u64(1 << shift) % _u64(1 << width)).alias("_digit"))
            .agg(pl.len().cast(pl.Int64).alias("_count"), pl.col(value).min().alias("_low"),
                 pl.col(value).max().alias("_high"))
            .collect(engine=ENGINE)
        )
        chosen = (
            active.join(digits, on=[*keys, "_prefix"], nulls_equal=True)
            .sort([*keys, "_target", "_digit"], nulls_last=False)
            .with_columns((pl.col("_count").cum_sum().over([*keys, "_target"]) - pl.col("_count")).alias("_below"))
            .filter((pl.col("_below") <= pl.col("_rank")) & (pl.col("_rank") < pl.col("_below") + pl.col("_count")))
        )
        read += width
        # A digit whose values are all equal holds the target's value; past the last bit every digit is one value.
        settled = (pl.col("_low") == pl.col("_high")) | pl.lit(read == 64)
        found.append(chosen.filter(settled).select(*keys, "_target", pl.col("_low").alias(value)))
        active = chosen.filter(~settled).select(
            *keys, "_target", (pl.col("_rank") - pl.col("_below")).alias("_rank"),
            (pl.col("_prefix") * _u64(1 << width) + pl.col("_digit")).alias("_prefix"),
        )
    middle = pl.concat(found).join(counts, on=keys, nulls_equal=True)
    odd = middle.filter((pl.col("_n") % 2 == 1) & (pl.col("_target") == 0)).select(*keys, pl.col(value).alias(alias))
    even = middle.filter(pl.col("_n") % 2 == 0).group_by(keys).agg(pl.col(value).median().alias(alias))
    return pl.concat([odd, even])


def selected_median(frame: pl.LazyFrame, value: str) -> float | None:
    """The median of the whole column (None without a value), by `selected_medians`."""
    medians = selected_medians(frame.select(pl.lit(0).alias("_all"), value), ["_all"], value, value)
    return None if medians.is_empty() else float(medians[value].item())
