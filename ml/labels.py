"""The labels of a week: each basket's price sensitivity, once its week's transactions are in the lake.

A week's transactions carry BASKET_PRICE_SENSITIVITY for every basket, so the labels of the
baskets scored in a week become known when that week's file is ingested. `land` puts a file
into the lake the way the pipeline does (the raw zone's content-hashed copy, validated lines
and the quarantine in silver/<run>/) without building features or training; `week_lines`
reads one week's validated lines from the silver run holding most of that week's baskets (the
newest of those), whichever command wrote it (`land` or `retail pipeline run`), so a run that
landed part of a week does not hide one that landed all of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ml import ingest
from ml.lake import SILVER_LINES_FOLDER, Lake, arrow_frame, join, run_id_for, silver_line_files, silver_runs
from ml.schema import BASKET_KEY, LABEL, TRAINABLE_LABELS
from ml.validate import ValidationReport, validate

WEEK = "SHOP_WEEK"


@dataclass(frozen=True)
class Landed:
    """A file put into the lake's silver zone."""

    run_id: str
    lines_uri: str
    quarantine_uri: str
    weeks: tuple[int, ...]
    report: ValidationReport


def land(input_path: Path, lake: Lake) -> Landed:
    """Ingest and validate a transactions file (or folder of weekly files) into raw/ and silver/<run>/."""
    raw_input, raw = ingest.read(input_path)
    record = lake.put_raw(raw_input.files)
    run_id = run_id_for(record.sha256)
    result = validate(raw, raw_input)
    if not result.report.counts_add_up:  # a bug, never bad input
        raise RuntimeError(f"row counts do not add up: {result.report}")
    lines_uri, quarantine_uri = lake.write_silver(run_id, result.lines, result.quarantine)
    weeks = tuple(sorted(result.lines[WEEK].unique().to_list()))
    return Landed(run_id, lines_uri, quarantine_uri, weeks, result.report)


@dataclass(frozen=True)
class WeekLines:
    """One week's validated lines and the silver run's lines folder they were read from."""

    week: int
    lines: pl.DataFrame
    source: str
    notices: tuple[str, ...] = ()  # e.g. a newer silver run held fewer of the week's baskets

    def labels(self) -> pl.DataFrame:
        """One row per basket: BASKET_KEY and its label (XX included)."""
        return self.lines.group_by(BASKET_KEY).agg(pl.first(LABEL))

    @property
    def labelled_baskets(self) -> int:
        """Baskets whose label is a class the models predict (not XX)."""
        return int(self.labels()[LABEL].is_in(list(TRAINABLE_LABELS)).sum())


class NoLabels(LookupError):
    """No silver run of the lake holds the week."""


def week_lines(lake: Lake, week: int) -> WeekLines:
    """The week's lines from the silver run holding most of its baskets, the newest of those (run ids begin with
    their UTC time); a newer run holding fewer is named in a notice.

    Each run's basket keys are read with a filter on SHOP_WEEK, so a run without the week costs a look at
    its row groups' statistics, and only the chosen run's lines are read whole. Raises NoLabels when no run holds
    the week.
    """
    silver = join(lake.base, "silver")
    runs = silver_runs(lake.fs, silver)[::-1]  # newest first
    holding: list[tuple[str, int, list[str]]] = []  # (run, baskets of the week, its line files), newest first
    for run in runs:
        files = silver_line_files(lake.fs, join(silver, run, SILVER_LINES_FOLDER))
        keys = pq.read_table(files, filesystem=lake.fs, columns=[BASKET_KEY], filters=[(WEEK, "=", week)])
        if keys.num_rows:
            holding.append((run, len(pc.unique(keys[BASKET_KEY])), files))
    if holding:
        chosen = max(range(len(holding)), key=lambda i: holding[i][1])  # the first (newest) of the largest
        run, baskets, files = holding[chosen]
        notices = tuple(f"week {week}: silver run {newer} is newer but holds {count} of its baskets, fewer than the "
                        f"{baskets} of {run}, which was read" for newer, count, _ in holding[:chosen])
        table = pq.read_table(files, filesystem=lake.fs, filters=[(WEEK, "=", week)])
        return WeekLines(week, arrow_frame(table), lake.uri("silver", run, SILVER_LINES_FOLDER), notices)
    raise NoLabels(f"week {week}: no silver run under {lake.uri('silver')} holds its lines yet; land the week's "
                   "transactions first (`retail pipeline run`, or ml.labels.land)")
