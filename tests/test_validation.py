"""Validation: every bad-input class is quarantined with its rule, and counts add up."""

from __future__ import annotations

import dataclasses
from collections import Counter

import polars as pl
import pytest

from ml.ingest import read
from ml.schema import BASKET_KEY, LABEL
from ml.score import validate_unlabelled
from ml.validate import validate
from tests.helpers import canonical_text, synthetic_text, write_text_csv

# (rule, column, change to one line of a multi-line basket)
BAD_LINES = [
    ("missing_value", "PROD_CODE", {"PROD_CODE": None}),
    ("bad_type", "QUANTITY", {"QUANTITY": "two"}),
    ("bad_type", "SPEND", {"SPEND": "1.2.3"}),
    ("bad_type", "BASKET_ID", {"BASKET_ID": "B-12"}),
    ("bad_code", "PROD_CODE", {"PROD_CODE": "XYZ0001"}),
    ("bad_code", "STORE_FORMAT", {"STORE_FORMAT": "HUGE"}),
    ("bad_code", "CUST_PRICE_SENSITIVITY", {"seg_1": "QQ"}),
    ("bad_code", "BASKET_PRICE_SENSITIVITY", {"BASKET_PRICE_SENSITIVITY": "HIGH"}),
    ("out_of_range", "QUANTITY", {"QUANTITY": "0"}),
    ("out_of_range", "SPEND", {"SPEND": "-1.50"}),
    ("out_of_range", "SHOP_HOUR", {"SHOP_HOUR": "25"}),
    ("invalid_date", "SHOP_DATE", {"SHOP_DATE": "20070231"}),
]


def _multi_line_baskets(frame: pl.DataFrame, count: int) -> list[str]:
    sizes = frame.group_by("BASKET_ID").len().filter(pl.col("len") >= 3).sort("BASKET_ID")
    return sizes["BASKET_ID"].head(count).to_list()


def _change_first_line(frame: pl.DataFrame, basket: str, changes: dict) -> pl.DataFrame:
    first = frame.with_row_index("_i").filter(pl.col("BASKET_ID") == basket)["_i"][0]
    return frame.with_row_index("_i").with_columns(
        [pl.when(pl.col("_i") == first).then(pl.lit(v, dtype=pl.String)).otherwise(pl.col(c)).alias(c)
         for c, v in changes.items()]
    ).drop("_i")


@pytest.fixture(scope="module")
def damaged_file(tmp_path_factory):
    """A synthetic export with one example of every bad-input class, each in its own basket."""
    frame = synthetic_text()
    baskets = _multi_line_baskets(frame, len(BAD_LINES) + 4)
    expected = {}
    for (rule, column, changes), basket in zip(BAD_LINES, baskets, strict=False):
        frame = _change_first_line(frame, basket, changes)
        expected[basket] = (rule, column)
    # Cross-field rules need values that are each valid on their own.
    week_basket, weekday_basket, segment_basket, inconsistent_basket = baskets[len(BAD_LINES):]
    week = frame.filter(pl.col("BASKET_ID") == week_basket)["SHOP_WEEK"][0]
    frame = _change_first_line(frame, week_basket, {"SHOP_WEEK": str(int(week) + 1)})
    weekday = int(frame.filter(pl.col("BASKET_ID") == weekday_basket)["SHOP_WEEKDAY"][0])
    frame = _change_first_line(frame, weekday_basket, {"SHOP_WEEKDAY": str(weekday % 7 + 1)})
    frame = _change_first_line(frame, segment_basket, {"CUST_CODE": None, "seg_1": "AZ"})
    frame = _change_first_line(frame, inconsistent_basket, {"BASKET_TYPE": "Full Shop" if frame.filter(
        pl.col("BASKET_ID") == inconsistent_basket)["BASKET_TYPE"][0] != "Full Shop" else "Top Up"})
    expected[week_basket] = ("date_week_mismatch", "SHOP_WEEK")
    expected[weekday_basket] = ("date_weekday_mismatch", "SHOP_WEEKDAY")
    expected[segment_basket] = ("segment_without_customer", "CUST_PRICE_SENSITIVITY")
    path = write_text_csv(frame, tmp_path_factory.mktemp("bad") / "transaction.csv")
    return path, expected, inconsistent_basket, frame


@pytest.fixture(scope="module")
def validated(damaged_file):
    path, *_ = damaged_file
    _, raw = read(path)
    return validate(raw)


def test_every_bad_line_is_quarantined_with_its_rule_and_column(damaged_file, validated):
    _, expected, _, _ = damaged_file
    q = validated.quarantine
    for rule, column in expected.values():
        rows = q.filter((pl.col("rule") == rule) & (pl.col("column") == column))
        assert rows.height == 1, f"expected one quarantined row for {rule}:{column}, found {rows.height}"
    row_level = q.filter(pl.col("rule") != "basket_inconsistent")
    assert row_level.height == len(expected)


def test_an_inconsistent_basket_is_quarantined_whole(damaged_file, validated):
    path, _, basket, frame = damaged_file
    rows_of_basket = frame.filter(pl.col("BASKET_ID") == basket).height
    q = validated.quarantine.filter(pl.col("BASKET_ID") == basket)
    assert q.height == rows_of_basket
    assert set(q["rule"]) == {"basket_inconsistent"}
    assert set(q["column"]) == {"BASKET_TYPE"}
    assert basket not in validated.lines[BASKET_KEY].to_list()


def test_quarantine_keeps_source_line_and_value(damaged_file, validated):
    path, *_ = damaged_file
    row = validated.quarantine.filter((pl.col("rule") == "out_of_range") & (pl.col("column") == "SHOP_HOUR"))
    assert row["value"].to_list() == ["25"]
    assert row["_SOURCE_FILE"][0] == str(path)
    line_no = row["_SOURCE_LINE"][0]
    assert path.read_text().splitlines()[line_no - 1].split(",")[3] == "25"


def _two_files_without_ingested_input():
    raw = canonical_text(500).with_columns(
        pl.when(pl.int_range(pl.len()) < 100).then(pl.lit("a.csv")).otherwise(pl.lit("b.csv")).alias("_SOURCE_FILE")
    )
    return raw.height, validate(raw)


def _damaged_ids():
    raw = canonical_text(1_000).with_columns(pl.lit("9.94E+14").alias("BASKET_ID"))
    return raw.height, validate(raw)


@pytest.mark.parametrize("case", ["damaged_file", "two_files_without_ingested_input", "damaged_ids"])
def test_every_row_is_either_accepted_or_quarantined_and_the_report_counts_them(request, case):
    if case == "damaged_file":
        rows, result = request.getfixturevalue("damaged_file")[3].height, request.getfixturevalue("validated")
    else:
        rows, result = {"two_files_without_ingested_input": _two_files_without_ingested_input,
                        "damaged_ids": _damaged_ids}[case]()
    report = result.report
    assert (report.rows_in, report.rows_accepted, report.rows_quarantined) == (
        rows, result.lines.height, result.quarantine.height)
    assert result.lines.height + result.quarantine.height == rows
    by_rule = Counter(rule if column is None else f"{rule}:{column}"
                      for rule, column in result.quarantine.select("rule", "column").iter_rows())
    assert report.quarantined_by_rule == by_rule  # "rule:column", or the rule alone for a line no row was made of
    assert report.counts_add_up


def test_a_report_that_loses_a_row_does_not_add_up(validated):
    """The pipeline stops on `counts_add_up` being false (a bug, never bad input): each way of losing a row trips it."""
    report = validated.report
    assert report.counts_add_up
    file, counts = next(iter(report.files.items()))
    lost = [
        dataclasses.replace(report, rows_accepted=report.rows_accepted - 1),
        dataclasses.replace(report, quarantined_by_rule={**report.quarantined_by_rule, "bad_type:QUANTITY": 0}),
        dataclasses.replace(report, files={file: {**counts, "accepted": counts["accepted"] - 1}}),
    ]
    assert [r.counts_add_up for r in lost] == [False, False, False]


def test_counts_add_up_per_source_file(damaged_file, validated):
    path, expected, _, frame = damaged_file
    rows_of_inconsistent_basket = validated.quarantine.filter(pl.col("rule") == "basket_inconsistent").height
    quarantined = len(expected) + rows_of_inconsistent_basket
    assert validated.report.files == {
        str(path): {"read": frame.height, "accepted": frame.height - quarantined, "quarantined": quarantined}
    }


def test_without_the_ingested_input_every_row_of_the_frame_counts_as_read():
    raw = canonical_text(500).with_columns(
        pl.when(pl.int_range(pl.len()) < 100).then(pl.lit("a.csv")).otherwise(pl.lit("b.csv")).alias("_SOURCE_FILE")
    )
    report = validate(raw).report
    assert {f: c["read"] for f, c in report.files.items()} == {"a.csv": 100, "b.csv": 400}


def test_accepted_lines_are_typed():
    raw = canonical_text(500)
    lines = validate(raw).lines
    assert lines.schema["SHOP_DATE"] == pl.Date
    assert lines.schema["QUANTITY"] == pl.Int32
    assert lines.schema["SPEND"] == pl.Float64


def test_damaged_basket_ids_are_rebuilt_with_a_warning():
    raw = canonical_text(3_000)
    baskets = raw["BASKET_ID"].n_unique()
    damaged = raw.with_columns(pl.lit("9.94E+14").alias("BASKET_ID"))
    result = validate(damaged)
    report = result.report
    assert report.rows_quarantined == 0
    assert report.rows_with_damaged_id == raw.height
    # The rebuilt key separates baskets by their basket-level columns: (almost) no merges.
    assert report.rebuilt_basket_ids >= 0.98 * baskets
    assert report.warnings and "9.94E+14" in report.warnings[0]


def test_a_rebuilt_basket_key_is_the_same_when_scored_without_the_label_and_landed_with_it():
    raw = canonical_text(3_000).with_columns(pl.lit("9.94E+14").alias("BASKET_ID"))
    landed = validate(raw).lines
    scored, unlabelled = validate_unlabelled(raw.with_columns(pl.lit("").alias(LABEL)))
    assert unlabelled == raw.height
    assert scored.lines.height == landed.height
    assert scored.lines[BASKET_KEY].to_list() == landed[BASKET_KEY].to_list()


def test_unclassified_baskets_are_kept_and_counted():
    raw = canonical_text(20_000)
    result = validate(raw)
    xx = raw.filter(pl.col("BASKET_PRICE_SENSITIVITY") == "XX")
    assert result.report.unclassified_baskets == xx["BASKET_ID"].n_unique() > 0
    assert result.report.unclassified_rows == xx.height
