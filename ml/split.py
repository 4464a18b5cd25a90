"""The leak-free split: the latest weeks are held out, whole baskets on one side.

A basket's week is constant within the basket (validation enforces it), so splitting
lines by week keeps every basket whole; `split_lines` still assigns the side per
basket, from the basket's first line, so that guarantee does not rest on validation.

How many weeks are held out is planned first (`plan_holdout`), from the fiscal weeks
the accepted lines hold. The holdout is the requested number of weeks, but never more
than `max_share` of the weeks (a quarter by default), and it must leave at least
`min_train_weeks` to train on. An input too short for the requested holdout therefore
trains with a smaller one, which the plan's `notice` announces (the pipeline puts it in
the manifest's `split` facts and the printed summary); an input too short for even one
held-out week beside `min_train_weeks` training weeks stops with `TooFewWeeks`, naming
the weeks found and needed (the CLI exits 2). The XGBoost search's validation window,
taken from the end of the training weeks, is capped by the same share of those weeks.

`split_weeks` is the split as two lazy filters over a scan of silver lines, for the
streaming pipeline: a line's side is its own week's, which is its basket's because
validation quarantines a basket whose SHOP_WEEK varies; one pass over the lines checks
that no basket has weeks on both sides all the same (it raises if one has).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from ml.calendar import week_index_expr, week_span
from ml.schema import BASKET_KEY


@dataclass(frozen=True)
class Split:
    train: pl.DataFrame
    holdout: pl.DataFrame
    last_train_week: int
    first_holdout_week: int


@dataclass(frozen=True)
class LazySplit:
    """`Split` as lazy queries over the lines, with the line counts of each side."""

    train: pl.LazyFrame
    holdout: pl.LazyFrame
    last_train_week: int
    first_holdout_week: int
    train_lines: int
    holdout_lines: int
    held: pl.Expr  # true for a line of the holdout: `holdout` is the lines filtered by it, `train` by its negation


def _weeks(n: int) -> str:
    return f"{n} week" if n == 1 else f"{n} weeks"


def _span(weeks: tuple[int, ...]) -> str:
    return f"{weeks[0]}" if weeks[0] == weeks[-1] else f"{weeks[0]}-{weeks[-1]}"


class TooFewWeeks(ValueError):
    """The input holds too few weeks for a time split: the run stops with this message."""


@dataclass(frozen=True)
class HoldoutPlan:
    """The weeks found, the holdout and validation window requested, and those used."""

    weeks: tuple[int, ...]  # fiscal week codes (YYYYWW) the accepted lines hold, ascending
    requested_holdout_weeks: int
    holdout_weeks: int
    requested_validation_weeks: int
    validation_weeks: int

    @property
    def train_weeks(self) -> int:
        return len(self.weeks) - self.holdout_weeks

    @property
    def notice(self) -> str | None:
        """What was shrunk and why, or None when the requested weeks are used."""
        if self.holdout_weeks == self.requested_holdout_weeks:
            return None
        note = (
            f"holdout shrunk from {self.requested_holdout_weeks} to {_weeks(self.holdout_weeks)}: the input holds "
            f"{_weeks(len(self.weeks))} ({_span(self.weeks)}), {self.train_weeks} are left to train on"
        )
        if self.validation_weeks != self.requested_validation_weeks:
            note += (f" (XGBoost validation window {self.validation_weeks} of them, "
                     f"not {self.requested_validation_weeks})")
        return note

    def facts(self) -> dict[str, object]:
        return {
            "weeks_in_input": len(self.weeks),
            "holdout_weeks_requested": self.requested_holdout_weeks,
            "holdout_weeks": self.holdout_weeks,
            "train_weeks": self.train_weeks,
            "validation_weeks_requested": self.requested_validation_weeks,
            "validation_weeks": self.validation_weeks,
            "holdout_notice": self.notice,
        }


def plan_holdout(
    weeks: Sequence[int], holdout_weeks: int, validation_weeks: int, max_share: float, min_train_weeks: int
) -> HoldoutPlan:
    """The holdout for these fiscal weeks: requested, capped at `max_share` of them (see the module)."""
    found = tuple(sorted(set(weeks)))

    def held_out(n: int) -> int:
        return min(holdout_weeks, int(n * max_share))

    held = held_out(len(found))
    if held < 1 or len(found) - held < min_train_weeks:
        needed = min_train_weeks + 1
        while not 1 <= held_out(needed) <= needed - min_train_weeks:
            needed += 1
        span = f" ({_span(found)})" if found else ""
        raise TooFewWeeks(
            f"the accepted rows hold {_weeks(len(found))}{span}; a time split needs at least {needed}: "
            f"{min_train_weeks} to train on and at least one held out, the holdout at most {max_share:.0%} of "
            f"the weeks. Give an input with more weeks."
        )
    train = len(found) - held
    validation = min(validation_weeks, max(1, int(train * max_share)))
    return HoldoutPlan(found, holdout_weeks, held, validation_weeks, validation)


def _first_held(weeks: pl.Series, holdout_weeks: int) -> int:
    """The week index from which the latest `holdout_weeks` of these (distinct, sorted) week indices are held out."""
    if holdout_weeks < 1 or holdout_weeks >= len(weeks):
        raise ValueError(f"holdout_weeks={holdout_weeks} leaves no training weeks (data holds {len(weeks)} weeks)")
    return int(weeks[-holdout_weeks])


def split_weeks(lines: pl.LazyFrame, holdout_weeks: int) -> LazySplit:
    """Lines of the latest `holdout_weeks` fiscal weeks go to the holdout, as lazy filters (see the module)."""
    week_index = week_index_expr(pl.col("SHOP_WEEK"))
    weeks = lines.select(week_index.unique().sort().alias("_week_index")).collect(engine="streaming")
    first_held = _first_held(weeks["_week_index"], holdout_weeks)
    held = week_index >= first_held
    facts, straddling = pl.collect_all(
        [
            lines.group_by(held.alias("_held")).agg(pl.len().alias("lines"), pl.col("SHOP_WEEK").min().alias("first"),
                                                     pl.col("SHOP_WEEK").max().alias("last")),
            lines.group_by(BASKET_KEY).agg(held.n_unique().alias("sides")).filter(pl.col("sides") > 1).select(pl.len()),
        ],
        engine="streaming",
    )
    if straddling.item():
        raise ValueError(f"{straddling.item()} baskets have lines on both sides of week index {first_held}: the "
                         f"lines were not validated (a basket's SHOP_WEEK must not vary)")
    side = {held_side: row for held_side, *row in facts.iter_rows()}
    return LazySplit(
        train=lines.filter(~held),
        holdout=lines.filter(held),
        last_train_week=side[False][2],
        first_holdout_week=side[True][1],
        train_lines=side[False][0],
        holdout_lines=side[True][0],
        held=held,
    )


def split_lines(lines: pl.DataFrame, holdout_weeks: int) -> Split:
    """Lines of baskets in the latest `holdout_weeks` fiscal weeks that hold baskets go to the holdout."""
    week_of_basket = lines.group_by(BASKET_KEY).agg(pl.first("SHOP_WEEK").alias("_basket_week"))
    indexed = week_of_basket.with_columns(week_index_expr(pl.col("_basket_week")).alias("_week_index"))
    first_held = _first_held(indexed["_week_index"].unique().sort(), holdout_weeks)
    sides = lines.join(indexed.select(BASKET_KEY, "_week_index"), on=BASKET_KEY)
    train = sides.filter(pl.col("_week_index") < first_held).drop("_week_index")
    holdout = sides.filter(pl.col("_week_index") >= first_held).drop("_week_index")
    return Split(
        train=train,
        holdout=holdout,
        last_train_week=week_span(train["SHOP_WEEK"])[1],
        first_holdout_week=week_span(holdout["SHOP_WEEK"])[0],
    )
