"""Bad lines are quarantined, not fatal; counts add up per file; a short input is planned for.

One week of synthetic data gets corrupted lines of every kind at known line numbers;
the tests check exactly which lines are read, accepted and quarantined, and with what.
"""

from __future__ import annotations

import gzip
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from cli.main import app
from ml.ingest import RAW_LINE, SOURCE_FILE, SOURCE_LINE, InputError, read
from ml.schema import CODED_COLUMNS
from ml.split import TooFewWeeks, plan_holdout
from ml.synth import SynthConfig, generate, write_csv, write_weekly
from ml.validate import ValidationReport, validate
from tests.conftest import settings_env

N = 3  # corrupted lines of each kind
BASKET_TYPE, BASKET_ID = CODED_COLUMNS.index("BASKET_TYPE"), CODED_COLUMNS.index("BASKET_ID")
runner = CliRunner()
ONE_TRIAL = {"RETAIL_XGB_TRIALS": "1"}  # one XGBoost trial keeps the pipeline runs short
ONE_FAMILY = {"RETAIL_FAMILIES": "decision_tree"}  # what these runs check does not depend on the families


@pytest.fixture(scope="module")
def weekly(tmp_path_factory) -> list[Path]:
    """Weekly files of a synthetic export, LF line endings, coded header."""
    return write_weekly(generate(SynthConfig(rows=120_000, seed=13)), tmp_path_factory.mktemp("weekly"))


@pytest.fixture(scope="module")
def week(weekly) -> list[bytes]:
    """The lines of the busiest week, header first, without line endings."""
    busiest = max(weekly, key=lambda p: p.stat().st_size)
    return busiest.read_bytes().splitlines()


@dataclass
class Damaged:
    lines: list[bytes]  # header first, as written (without line endings)
    rejected: set[tuple[int, str, bytes]]  # (line number, rule, raw bytes) set aside by ingestion
    row_failures: set[tuple[int, str, str, str]]  # (line number, rule, column, value) from the row rules
    quoted_ok: list[int]  # line numbers of lines with quoted fields that must be accepted

    @property
    def rows_read(self) -> int:
        return len(self.lines) - 1

    @property
    def quarantined(self) -> int:
        return len(self.rejected) + len(self.row_failures)


def _with_field(line: bytes, position: int, value: bytes) -> bytes:
    fields = line.split(b",")
    fields[position] = value
    return b",".join(fields)


def damage(week: list[bytes]) -> Damaged:
    """N lines of each kind, spread over the week; line numbers are those of the result."""
    header, rows = week[0], week[1:]
    assert header.split(b",") == [c.encode() for c in CODED_COLUMNS]
    # Each entry: (line, expected rule, row failure or "quoted_ok"; None if untouched).
    # Rows 10, 20, 30, ... are corrupted; the extra lines go after rows 15, 25, 35, ...
    out: list[tuple[bytes, str | tuple | None]] = []
    kinds = [
        lambda r: (r[:12] + b"\xff" + r[12:], "invalid_utf8"),
        lambda r: (r[:12] + b"\xc3" + r[12:], "invalid_utf8"),  # a multi-byte character cut short
        lambda r: (r[:12] + b"\xed\xa0\x80" + r[12:], "invalid_utf8"),  # an encoded surrogate
        lambda r: (r + b",surplus", "too_many_fields"),
        lambda r: (r.rsplit(b",", 1)[0], "too_few_fields"),
        lambda r: (r.replace(b",", b",\"", 1), "unbalanced_quotes"),
        lambda r: (_with_field(r, BASKET_TYPE, b'"Top Up, Full Shop"'),
                   ("bad_code", "BASKET_TYPE", "Top Up, Full Shop")),
        lambda r: (_with_field(r, BASKET_TYPE, b'"' + r.split(b",")[BASKET_TYPE] + b'"'), "quoted_ok"),
    ]
    plan = [kind for kind in kinds for _ in range(N)]
    assert len(rows) > 10 * (len(plan) + 2), "the week is too small for the corruptions"
    extra_lines = {"repeated_header": header, "blank_line": b""}
    inserted = [name for name in extra_lines for _ in range(N)]
    for i, row in enumerate(rows):
        slot = i // 10 - 1
        if i % 10 == 0 and 0 <= slot < len(plan):
            out.append(plan[slot](row))
        else:
            out.append((row, None))
        if i % 10 == 5 and 0 <= slot < len(inserted):
            out.append((extra_lines[inserted[slot]], inserted[slot]))
    lines = [header] + [line for line, _ in out]
    rejected, row_failures, quoted_ok = set(), set(), []
    for number, (line, expected) in enumerate(out, start=2):
        if isinstance(expected, tuple):
            row_failures.add((number, *expected))
        elif expected == "quoted_ok":
            quoted_ok.append(number)
        elif expected:
            rejected.add((number, expected, line))
    assert len(rejected) == 8 * N and len(row_failures) == N and len(quoted_ok) == N
    return Damaged(lines, rejected, row_failures, quoted_ok)


def _write(damaged: Damaged, path: Path, newline: bytes = b"\n") -> Path:
    data = newline.join(damaged.lines) + newline
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


@pytest.fixture(scope="module", params=["lf", "crlf", "gz"])
def damaged_file(request, week, tmp_path_factory):
    damaged = damage(week)
    folder = tmp_path_factory.mktemp(request.param)
    if request.param == "gz":
        path = _write(damaged, folder / "transaction.csv.gz")
    else:
        path = _write(damaged, folder / "transaction.csv", b"\r\n" if request.param == "crlf" else b"\n")
    raw_input, raw = read(path)
    return damaged, path, raw_input, raw, validate(raw, raw_input)


def test_rows_read_accepted_and_quarantined_add_up_exactly(damaged_file):
    damaged, path, raw_input, raw, result = damaged_file
    report = result.report
    assert raw_input.rows_read == {str(path): damaged.rows_read}
    assert report.rows_in == damaged.rows_read
    assert report.rows_quarantined == damaged.quarantined == 9 * N
    assert report.rows_accepted == damaged.rows_read - damaged.quarantined == result.lines.height
    assert report.files == {str(path): {"read": damaged.rows_read, "accepted": report.rows_accepted,
                                        "quarantined": damaged.quarantined}}
    assert report.counts_add_up


def test_each_bad_line_is_quarantined_with_file_line_rule_and_raw_bytes(damaged_file):
    damaged, path, _, _, result = damaged_file
    lines = result.quarantine.filter(pl.col(RAW_LINE).is_not_null())
    assert set(lines[SOURCE_FILE]) == {str(path)}
    assert set(zip(lines[SOURCE_LINE], lines["rule"], lines[RAW_LINE], strict=True)) == damaged.rejected
    assert lines["column"].is_null().all()
    assert result.report.quarantined_by_rule == {
        "invalid_utf8": 3 * N, "too_many_fields": N, "too_few_fields": N, "unbalanced_quotes": N,
        "repeated_header": N, "blank_line": N, "bad_code:BASKET_TYPE": N,
    }


def test_quarantine_says_what_is_wrong_with_a_line(damaged_file):
    damaged, _, _, _, result = damaged_file
    value = dict(zip(result.quarantine[SOURCE_LINE], result.quarantine["value"], strict=True))
    # The first line of each rule (later lines overwrite earlier ones in this reversed order).
    first = {rule: value[line] for line, rule, _ in sorted(damaged.rejected, reverse=True)}
    assert first["invalid_utf8"] == "byte 0xFF at position 13 is not UTF-8"
    assert first["too_many_fields"] == "23 fields, the header has 22"
    assert first["too_few_fields"] == "21 fields, the header has 22"
    assert first["unbalanced_quotes"] == "an odd number of quote characters (1): a quoted field is not closed"
    assert first["repeated_header"] == "the header row again"
    assert first["blank_line"] == "empty line"


def test_a_quoted_comma_is_part_of_its_field_not_a_separator(damaged_file):
    damaged, _, _, _, result = damaged_file
    failures = result.quarantine.filter(pl.col(RAW_LINE).is_null())
    assert set(zip(failures[SOURCE_LINE], failures["rule"], failures["column"], failures["value"],
                   strict=True)) == damaged.row_failures


def test_quoted_fields_are_read_without_their_quotes_and_accepted(damaged_file):
    damaged, _, _, raw, result = damaged_file
    quoted = raw.filter(pl.col(SOURCE_LINE).is_in(damaged.quoted_ok))
    expected = [damaged.lines[n - 1].split(b",")[BASKET_TYPE].strip(b'"').decode() for n in damaged.quoted_ok]
    assert quoted["BASKET_TYPE"].to_list() == expected
    assert not set(damaged.quoted_ok) & set(result.quarantine[SOURCE_LINE])


def test_every_row_keeps_the_line_number_it_came_from(damaged_file):
    damaged, _, _, raw, _ = damaged_file
    set_aside = {line for line, _, _ in damaged.rejected}
    basket_on_line = {n: line.split(b",")[BASKET_ID].decode() for n, line in enumerate(damaged.lines, start=1)
                      if n > 1 and n not in set_aside}
    rows = dict(zip(raw[SOURCE_LINE], raw["BASKET_ID"], strict=True))
    assert len(rows) == raw.height == damaged.rows_read - len(damaged.rejected)
    assert all(basket_on_line[n] == basket for n, basket in rows.items())


def test_a_folder_counts_every_file_and_quarantines_only_the_damaged_one(weekly, week, tmp_path):
    folder = tmp_path / "weekly"
    shutil.copytree(weekly[0].parent, folder)
    damaged = damage(week)
    busiest = max(weekly, key=lambda p: p.stat().st_size)
    target = _write(damaged, folder / busiest.name, b"\r\n")
    raw_input, raw = read(folder)
    report = validate(raw, raw_input).report
    assert len(report.files) == len(weekly)
    clean = {f: c for f, c in report.files.items() if f != str(target)}
    assert all(c["quarantined"] == 0 and c["read"] == c["accepted"] > 0 for c in clean.values())
    assert report.files[str(target)] == {"read": damaged.rows_read, "quarantined": damaged.quarantined,
                                         "accepted": damaged.rows_read - damaged.quarantined}
    assert report.counts_add_up


@pytest.mark.parametrize("content", ["no-bytes", "header-only", "gzipped-nothing"])
def test_an_empty_weekly_file_in_a_folder_is_read_as_0_rows_and_announced(weekly, tmp_path, content):
    folder = tmp_path / "weekly"
    folder.mkdir()
    chosen = sorted(weekly)[:4]
    for path in chosen:
        shutil.copy(path, folder / path.name)
    empty = folder / chosen[1].name
    if content == "gzipped-nothing":
        empty.unlink()
        empty = folder / f"{chosen[1].name}.gz"
    empty.write_bytes({"no-bytes": b"", "header-only": chosen[1].read_bytes().splitlines(keepends=True)[0],
                       "gzipped-nothing": gzip.compress(b"")}[content])
    raw_input, raw = read(folder)
    [notice] = raw_input.notices
    assert notice.startswith(f"{empty}: empty file (") and notice.endswith("): read as 0 rows")
    assert raw_input.rows_read[str(empty)] == 0
    report = validate(raw, raw_input).report
    assert report.files[str(empty)] == {"read": 0, "accepted": 0, "quarantined": 0}
    others = [p for p in chosen if p != chosen[1]]
    assert raw.height == report.rows_in == sum(len(p.read_bytes().splitlines()) - 1 for p in others)
    assert report.counts_add_up


def test_a_folder_of_only_empty_weekly_files_stops(weekly, tmp_path):
    header = weekly[0].read_bytes().splitlines(keepends=True)[0]
    (tmp_path / "transactions_200607.csv").write_bytes(b"")
    (tmp_path / "transactions_200608.csv").write_bytes(header)
    with pytest.raises(InputError, match=rf"{tmp_path}: every weekly file is empty \(2 found\)"):
        read(tmp_path)


def test_a_weekly_file_with_rows_after_a_blank_first_line_is_not_taken_for_empty(weekly, tmp_path):
    shutil.copy(weekly[0], tmp_path / weekly[0].name)
    shifted = tmp_path / weekly[1].name
    shifted.write_bytes(b"\n" + weekly[1].read_bytes())
    with pytest.raises(InputError, match=rf"{shifted.name}: unreadable \(the first line is blank"):
        read(tmp_path)


def test_files_joined_with_cat_quarantine_the_second_header(weekly, tmp_path):
    first, second = weekly[3].read_bytes(), weekly[4].read_bytes()
    joined = tmp_path / "joined.csv"
    joined.write_bytes(first + second)
    raw_input, raw = read(joined)
    result = validate(raw, raw_input)
    header_line = first.count(b"\n") + 1
    rows = first.count(b"\n") - 1 + second.count(b"\n") - 1
    assert result.quarantine.select(SOURCE_LINE, "rule").rows() == [(header_line, "repeated_header")]
    assert result.report.rows_in == rows + 1
    assert result.report.rows_accepted == rows


def test_an_extra_column_may_hold_a_quoted_comma(week, tmp_path):
    path = tmp_path / "notes.csv"
    lines = [week[0] + b",NOTE"] + [row + b',"chilled, fresh"' for row in week[1:]]
    path.write_bytes(b"\n".join(lines) + b"\n")
    raw_input, raw = read(path)
    report = validate(raw, raw_input).report
    assert report.rows_in == report.rows_accepted == len(week) - 1
    assert report.rows_quarantined == 0


def test_a_file_of_only_bad_lines_is_read_with_no_rows(week, tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_bytes(b"\n".join([week[0], *(row + b",x" for row in week[1:6])]) + b"\n")
    raw_input, raw = read(path)
    assert raw.height == 0
    assert raw_input.rows_read == {str(path): 5}
    assert raw_input.rejected["rule"].to_list() == ["too_many_fields"] * 5


def test_a_header_that_is_not_utf8_stops_naming_the_byte(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("SHOP_WEEK,SHOP_DAT\u00c9\n1,2\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin1.csv: unreadable \(the header line is not UTF-8 text: byte 0xC9"):
        read(path)


def test_counts_that_do_not_add_up_per_file_are_caught():
    report = ValidationReport(
        rows_in=10, rows_accepted=8, rows_quarantined=2, quarantined_by_rule={"blank_line": 2},
        baskets_accepted=3, unclassified_baskets=0, unclassified_rows=0,
        files={"a.csv": {"read": 6, "accepted": 5, "quarantined": 2}, "b.csv": {"read": 4, "accepted": 3,
                                                                                 "quarantined": 0}},
    )
    assert not report.counts_add_up
    report.files["a.csv"]["read"], report.files["b.csv"]["read"] = 7, 3
    assert report.counts_add_up


# The holdout plan: the requested weeks, at most a quarter of the input's, at least 4 to train on.

WEEKS = list(range(200607, 200653)) + list(range(200701, 200753)) + list(range(200801, 200820))  # 117


@pytest.mark.parametrize(
    ("weeks", "holdout", "validation"),
    [(117, 27, 8), (100, 25, 8), (20, 5, 3), (8, 2, 1), (5, 1, 1)],
)
def test_the_holdout_is_at_most_a_quarter_of_the_weeks(weeks, holdout, validation):
    plan = plan_holdout(WEEKS[:weeks], 27, 8, max_share=0.25, min_train_weeks=4)
    assert (plan.holdout_weeks, plan.validation_weeks, plan.train_weeks) == (holdout, validation, weeks - holdout)
    assert (plan.notice is None) == (holdout == 27)


def test_a_shrunk_holdout_is_announced_with_the_weeks_found():
    plan = plan_holdout(WEEKS[:20], 27, 8, max_share=0.25, min_train_weeks=4)
    assert plan.notice == (
        "holdout shrunk from 27 to 5 weeks: the input holds 20 weeks (200607-200626), 15 are left to train on "
        "(XGBoost validation window 3 of them, not 8)"
    )
    assert plan.facts()["holdout_notice"] == plan.notice


@pytest.mark.parametrize("weeks", [1, 4])
def test_too_few_weeks_stop_naming_the_weeks_found_and_needed(weeks):
    with pytest.raises(TooFewWeeks, match=rf"hold {weeks} weeks? \(200607.*\); a time split needs at least 5: 4 to"):
        plan_holdout(WEEKS[:weeks], 27, 8, max_share=0.25, min_train_weeks=4)


# The command on damaged and short inputs.


def _output(result) -> str:
    return " ".join(result.output.split())


def test_pipeline_run_on_one_damaged_week_exits_2_naming_weeks_found_and_needed(week, tmp_path):
    path = _write(damage(week), tmp_path / "one-week.csv")
    result = runner.invoke(app, ["pipeline", "run", "--input", str(path)], env=settings_env(tmp_path, **ONE_TRIAL))
    assert result.exit_code == 2, result.output
    assert "one-week.csv: the accepted rows hold 1 week (" in _output(result)
    assert "a time split needs at least 5" in _output(result)
    assert "Traceback" not in result.output


def test_pipeline_run_when_no_line_is_a_row_exits_2(week, tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_bytes(b"\n".join([week[0], *(row + b",x" for row in week[1:6])]) + b"\n")
    result = runner.invoke(app, ["pipeline", "run", "--input", str(path)], env=settings_env(tmp_path, **ONE_TRIAL))
    assert result.exit_code == 2, result.output
    assert "ragged.csv: no row passed validation" in _output(result)


def test_pipeline_run_on_eight_weeks_trains_with_a_smaller_holdout_it_announces(weekly, week, tmp_path):
    folder = tmp_path / "eight"
    folder.mkdir()
    chosen = sorted(weekly)[10:18]
    for path in chosen:
        shutil.copy(path, folder / path.name)
    damaged = damage(chosen[-1].read_bytes().splitlines())
    _write(damaged, folder / chosen[-1].name)
    result = runner.invoke(app, ["pipeline", "run", "--input", str(folder)], env=settings_env(tmp_path, **ONE_FAMILY))
    assert result.exit_code == 0, result.output
    output = _output(result)
    assert "notice: holdout shrunk from 27 to 2 weeks: the input holds 8 weeks" in output
    assert "Files with quarantined rows (1 of 8)" in output
    manifest_path = next((tmp_path / "lake" / "manifests").glob("*.json"))
    manifest = json.loads(manifest_path.read_text())
    assert manifest["split"]["holdout_weeks"] == 2
    assert manifest["split"]["holdout_weeks_requested"] == 27
    assert manifest["split"]["holdout_notice"].startswith("holdout shrunk from 27 to 2 weeks")
    files = manifest["validation"]["files"]
    assert files[str(folder / chosen[-1].name)]["quarantined"] == damaged.quarantined
    assert sum(f["read"] for f in files.values()) == manifest["validation"]["rows_in"]


def test_every_scan_chunk_boundary_position_reads_the_whole_file(tmp_path, monkeypatch):
    """The scan works in runs of whole lines of about SCAN_CHUNK bytes; wherever a boundary falls, including inside
    the last line (which once raised IndexError), every line is read once."""
    import ml.ingest

    path = tmp_path / "transaction.csv"
    write_csv(generate(SynthConfig(rows=40, seed=5)), path)
    rows = path.read_bytes().count(b"\n") - 1
    for chunk in range(48, 400, 7):
        monkeypatch.setattr(ml.ingest, "SCAN_CHUNK", chunk)
        raw_input, raw = read(path)
        assert raw_input.rows_read == {str(path): rows}, f"SCAN_CHUNK={chunk}"


def test_an_unknown_family_in_the_settings_stops_the_run_naming_it(small_csv, tmp_path):
    env = settings_env(tmp_path, RETAIL_FAMILIES="decision_tree,lightgbm")
    result = runner.invoke(app, ["pipeline", "run", "--input", str(small_csv)], env=env)
    assert result.exit_code == 2
    assert "RETAIL_FAMILIES: unknown families: lightgbm" in _output(result)
    assert not (tmp_path / "lake").exists()  # refused before anything was read or written
