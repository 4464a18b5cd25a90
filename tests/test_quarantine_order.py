"""The quarantine is written in its documented order without being held: an export whose every row fails stays flat.

Staged validation never sorts the quarantine as a whole: each piece's failures are sorted as it is checked, and
the quarantine holds the rows that failed a row rule and the lines set aside by file and line, then the rows of
inconsistent baskets by file and line. A damaged export read in small pieces must give exactly that order, and a
fresh process validating an export whose every date a spreadsheet rewrote (every row quarantined) must peak at
about the same memory for six times the rows.
"""

from __future__ import annotations

import polars as pl

from ml.ingest import SOURCE_FILE, SOURCE_LINE
from ml.synth import SynthConfig, generate, write_csv
from tests.test_streaming_validation import damaged_export, peaks_of_validation, staged_validation


def test_the_quarantine_holds_row_failures_then_basket_failures_each_by_file_and_line(tmp_path):
    path = tmp_path / "transaction.csv"
    expected = damaged_export(path)
    _, report, _, quarantine = staged_validation(path, tmp_path / "work", piece_bytes=6_000)
    assert report.quarantined_by_rule == expected
    in_basket = quarantine["rule"] == "basket_inconsistent"
    first_basket_row = int(in_basket.arg_true()[0])
    assert in_basket[first_basket_row:].all(), "basket failures come last"
    for block in (quarantine[:first_basket_row], quarantine[first_basket_row:]):
        position = block.select(SOURCE_FILE, SOURCE_LINE)
        assert position.equals(position.sort(SOURCE_FILE, SOURCE_LINE)) and position.is_unique().all()
    assert quarantine[:first_basket_row]["rule"].n_unique() == len(expected) - 1


def test_memory_of_a_wholly_quarantined_export_does_not_grow_with_it(tmp_path):
    for name, rows in (("small.csv", 40_000), ("large.csv", 240_000)):
        write_csv(generate(SynthConfig(rows=rows, seed=2)), tmp_path / name)
        frame = pl.read_csv(tmp_path / name, infer_schema=False)
        frame.with_columns(pl.lit("10/04/2006").alias("SHOP_DATE")).write_csv(tmp_path / name)
    (small, large), reports = peaks_of_validation(tmp_path)  # one fresh process stages and validates each in turn
    assert all(report == {"rows_accepted": 0, "counts_add_up": True} for report in reports), reports
    assert large < small + 60, (small, large)  # six times the quarantined rows: (nearly) the same peak
