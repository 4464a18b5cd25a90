"""Silver gives each table of a run a folder of its own (lines/, quarantine/); only runs holding lines count.

A query engine reads every file under a table's folder, so lines and quarantine are no longer
side by side. Runs are found by one listing (`ml.lake.silver_runs`, what `silver/latest/` and
monitoring use); a run folder in the layout before (its lines in `lines.parquet`) is refused by
`retail score --input` with what to move, while that file given as the input is still scored. A run the Spark
job wrote (ml.spark_lake: part files and Spark's `_SUCCESS` in lines/) is a run once committed, and all its part
files are read, by scoring and by the labels monitoring reads.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from ml.ingest import InputError
from ml.labels import week_lines
from ml.lake import SILVER_LINES, Lake, silver_runs
from ml.score import ScoringInput, input_at, load

LINES = pl.DataFrame({"SHOP_WEEK": [200607, 200607, 200608], "BASKET_KEY": ["1", "1", "2"], "SPEND": [1.0, 2.0, 3.0]})
QUARANTINE = pl.DataFrame({"line": [7], "reason": ["SPEND: not a number"]})


def test_a_runs_lines_and_quarantine_are_each_in_a_folder_of_their_own(tmp_path):
    lake = Lake(str(tmp_path))
    lines_uri, quarantine_uri = lake.write_silver("20240101T000000Z-aaaa", LINES, QUARANTINE)
    run = tmp_path / "silver" / "20240101T000000Z-aaaa"
    assert sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()) == [
        "lines/part-0.parquet", "quarantine/part-0.parquet"]
    assert (lines_uri, quarantine_uri) == (f"{run}/lines/part-0.parquet", f"{run}/quarantine/part-0.parquet")
    assert pl.read_parquet(run / "lines").equals(LINES)  # the folder reads as the table, as an engine reads it


def test_only_runs_holding_lines_in_their_folder_are_runs_oldest_first(tmp_path):
    lake = Lake(str(tmp_path))
    lake.write_silver("20240201T000000Z-bbbb", LINES, QUARANTINE)
    lake.write_silver("20240101T000000Z-aaaa", LINES, QUARANTINE)
    lake.write_parquet(QUARANTINE, "silver", "20240301T000000Z-only-quarantine", "quarantine", "part-0.parquet")
    lake.write_parquet(LINES, "silver", "20240401T000000Z-old-layout", "lines.parquet")
    lake.write_parquet(LINES, "silver", "20240501T000000Z-nested", "deeper", SILVER_LINES)
    assert silver_runs(lake.fs, f"{lake.base}/silver") == ["20240101T000000Z-aaaa", "20240201T000000Z-bbbb"]
    assert silver_runs(lake.fs, f"{lake.base}/no-silver-yet") == []


def test_silver_latest_is_the_newest_run_holding_lines(tmp_path):
    lake = Lake(str(tmp_path))
    lake.write_silver("20240101T000000Z-aaaa", LINES, QUARANTINE)
    lake.write_silver("20240201T000000Z-bbbb", LINES, QUARANTINE)
    lake.write_parquet(LINES, "silver", "20240401T000000Z-old-layout", "lines.parquet")
    chosen = input_at(f"{tmp_path}/silver/latest/")
    assert chosen == ScoringInput(f"{tmp_path}/silver/20240201T000000Z-bbbb", silver=True)
    loaded = load(chosen, tmp_path / "scratch")
    assert list(loaded.files) == [f"{tmp_path}/silver/20240201T000000Z-bbbb/lines"]
    assert sum(loaded.spill.rows.values()) == LINES.height


def test_silver_latest_given_from_inside_silver_is_the_run_beside_it(tmp_path, monkeypatch):
    lake = Lake(str(tmp_path))
    lake.write_silver("20240101T000000Z-aaaa", LINES, QUARANTINE)
    monkeypatch.chdir(tmp_path / "silver")
    for latest in ("latest", "latest/", "./latest"):
        chosen = input_at(latest)
        assert Path(chosen.location).resolve() == (tmp_path / "silver" / "20240101T000000Z-aaaa").resolve()
        assert sum(load(chosen, tmp_path / "scratch" / latest.strip("./")).spill.rows.values()) == LINES.height


def spark_run(lake: Lake, run: str, committed: bool = True) -> None:
    """Lines as Spark writes them: one part file per task, `_SUCCESS` once the job committed, no part-0.parquet."""
    lake.write_parquet(LINES.head(2), "silver", run, "lines", "part-00000-3f1c.snappy.parquet")
    lake.write_parquet(LINES.tail(1), "silver", run, "lines", "part-00001-3f1c.snappy.parquet")
    if committed:
        Path(lake.base, "silver", run, "lines", "_SUCCESS").write_bytes(b"")


def test_a_committed_spark_run_is_a_run_and_every_part_file_is_read(tmp_path):
    lake = Lake(str(tmp_path))
    lake.write_silver("20240101T000000Z-aaaa", LINES.head(1), QUARANTINE)
    spark_run(lake, "20240201T000000Z-spark")
    spark_run(lake, "20240301T000000Z-writing", committed=False)
    assert silver_runs(lake.fs, f"{lake.base}/silver") == ["20240101T000000Z-aaaa", "20240201T000000Z-spark"]
    chosen = input_at(f"{tmp_path}/silver/latest/")
    assert chosen == ScoringInput(f"{tmp_path}/silver/20240201T000000Z-spark", silver=True)
    loaded = load(chosen, tmp_path / "scratch")
    assert loaded.spill.read(loaded.spill.weeks()).sort("SPEND").select(LINES.columns).equals(LINES)
    # Monitoring's labels of a week come from the run holding most of its baskets: the Spark run, both part files.
    week = week_lines(lake, 200607)
    assert week.source == f"{tmp_path}/silver/20240201T000000Z-spark/lines"
    assert week.lines.sort("SPEND").select(LINES.columns).equals(LINES.head(2))


def test_a_run_folder_is_silver_input_and_its_lines_are_read(tmp_path):
    Lake(str(tmp_path)).write_silver("run", LINES, QUARANTINE)
    source = input_at(f"{tmp_path}/silver/run/")
    assert source == ScoringInput(f"{tmp_path}/silver/run/", silver=True)
    loaded = load(source, tmp_path / "scratch")
    assert loaded.spill.read(loaded.spill.weeks()).sort("SPEND").select(LINES.columns).equals(LINES)


def test_a_run_folder_in_the_old_layout_is_refused_with_what_to_move(tmp_path):
    Lake(str(tmp_path)).write_parquet(LINES, "silver", "old", "lines.parquet")
    with pytest.raises(InputError, match=r"silver/old/: a silver run in the layout before lines/ .*move it to "
                                         r"lines/part-0\.parquet"):
        input_at(f"{tmp_path}/silver/old/")


def test_the_old_layouts_lines_file_given_itself_is_still_scored_input(tmp_path):
    path = Path(Lake(str(tmp_path)).write_parquet(LINES, "silver", "old", "lines.parquet"))
    source = input_at(str(path))
    assert source == ScoringInput(str(path), silver=True)
    loaded = load(source, tmp_path / "scratch")
    assert sum(loaded.spill.rows.values()) == LINES.height


def test_a_folder_of_transactions_is_still_transactions(tmp_path):
    (tmp_path / "transactions_200607.csv").write_text("SHOP_WEEK\n200607\n")
    assert input_at(str(tmp_path)) == ScoringInput(str(tmp_path), silver=False)
