"""Validation by pieces gives what validation in memory gives (rows, silver, quarantine, counts), in flat memory.

An export with a bad line of several kinds, row failures and an inconsistent basket is read in pieces of
any size (down to a few lines, so pieces cut baskets in two) and validated with the streaming engine over the
staged pieces (`ml.validate.validate_staged`); everything must equal `ml.ingest.read` + `ml.validate.validate`
on the whole file, and the bad lines must be where they are put. A subprocess then measures that the peak
memory of the staged path does not grow with the input, as the in-memory path's does.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ml.ingest import InputReader, read
from ml.schema import CODED_COLUMNS
from ml.synth import SynthConfig, generate, write_csv, write_weekly
from ml.validate import StagedRows, validate, validate_staged

pytestmark = pytest.mark.slow

HOUR, BASKET_ID, BASKET_TYPE = (CODED_COLUMNS.index(c) for c in ("SHOP_HOUR", "BASKET_ID", "BASKET_TYPE"))


def _field(line: bytes, position: int, value: bytes) -> bytes:
    fields = line.split(b",")
    fields[position] = value
    return b",".join(fields)


def damaged_export(path: Path, newline: bytes = b"\n") -> dict[str, int]:
    """A synthetic export with bad lines put in known places; returns the quarantine it must give, by rule."""
    write_csv(generate(SynthConfig(rows=6_000, seed=17)), path.with_suffix(".clean"))
    header, *rows = path.with_suffix(".clean").read_bytes().splitlines()
    by_basket = Counter(row.split(b",")[BASKET_ID] for row in rows)
    # A basket of several lines in the middle of the file gets a second BASKET_TYPE on its last line.
    basket = next(b for b in (r.split(b",")[BASKET_ID] for r in rows[3_000:]) if by_basket[b] >= 4)
    last = max(i for i, r in enumerate(rows) if r.split(b",")[BASKET_ID] == basket)
    other_type = b"Full Shop" if rows[last].split(b",")[BASKET_TYPE] != b"Full Shop" else b"Top Up"
    rows[last] = _field(rows[last], BASKET_TYPE, other_type)
    rows[500] = _field(rows[500], HOUR, b"25")
    rows[900] = _field(rows[900], BASKET_TYPE, b'"Top Up, Full Shop"')
    rows[1_500] = rows[1_500][:12] + b"\xff" + rows[1_500][12:]
    rows[2_000] = rows[2_000] + b",surplus"
    rows[4_000:4_000] = [header]
    rows[5_000:5_000] = [b""]
    data = newline.join([header, *rows]) + newline
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return {"out_of_range:SHOP_HOUR": 1, "bad_code:BASKET_TYPE": 1, "invalid_utf8": 1, "too_many_fields": 1,
            "repeated_header": 1, "blank_line": 1, "basket_inconsistent:BASKET_TYPE": by_basket[basket]}


def staged_validation(path: Path, work: Path, piece_bytes: int):
    reader = InputReader(path, piece_bytes)
    staged = StagedRows(work / "staged")
    staged.add_all(reader.pieces())
    raw_input = reader.raw_input()
    report = validate_staged(staged, raw_input, work / "lines.parquet", work / "quarantine.parquet")
    return raw_input, report, pl.read_parquet(work / "lines.parquet"), pl.read_parquet(work / "quarantine.parquet")


@pytest.fixture(scope="module", params=["lf", "crlf", "gz"])
def export(request, tmp_path_factory) -> tuple[Path, dict[str, int]]:
    folder = tmp_path_factory.mktemp(request.param)
    path = folder / ("transaction.csv.gz" if request.param == "gz" else "transaction.csv")
    return path, damaged_export(path, b"\r\n" if request.param == "crlf" else b"\n")


@pytest.mark.parametrize("piece_bytes", [1 << 26, 20_000, 3_000])
def test_reading_in_pieces_gives_the_rows_and_set_aside_lines_of_the_whole_file(export, piece_bytes):
    path, _ = export
    whole_input, whole = read(path, piece_bytes=1 << 30)
    raw_input, raw = read(path, piece_bytes=piece_bytes)
    assert_frame_equal(raw, whole)
    assert_frame_equal(raw_input.rejected, whole_input.rejected)
    assert raw_input.rows_read == whole_input.rows_read == {str(path): 6_002}


@pytest.mark.parametrize("piece_bytes", [1 << 26, 6_000])
def test_staged_validation_gives_the_lines_quarantine_and_report_of_validation_in_memory(export, tmp_path,
                                                                                      piece_bytes):
    path, expected = export
    raw_input, raw = read(path)
    in_memory = validate(raw, raw_input)
    _, report, lines, quarantine = staged_validation(path, tmp_path, piece_bytes)
    assert_frame_equal(lines, in_memory.lines)
    assert_frame_equal(quarantine, in_memory.quarantine)
    assert asdict(report) == asdict(in_memory.report)
    assert report.quarantined_by_rule == expected  # every bad line, and the whole basket cut by the pieces
    assert report.counts_add_up and report.rows_in == 6_002


def test_a_weekly_folder_with_an_empty_week_is_staged_like_it_is_read(tmp_path):
    files = write_weekly(generate(SynthConfig(rows=8_000, seed=4)), tmp_path / "weekly")
    files[3].write_text(",".join(CODED_COLUMNS) + "\n")
    raw_input, raw = read(tmp_path / "weekly")
    in_memory = validate(raw, raw_input)
    staged_input, report, lines, _ = staged_validation(tmp_path / "weekly", tmp_path / "work", 1 << 26)
    assert staged_input.notices == raw_input.notices and len(raw_input.notices) == 1
    assert staged_input.rows_read == raw_input.rows_read and raw_input.rows_read[str(files[3])] == 0
    assert asdict(report) == asdict(in_memory.report)
    assert_frame_equal(lines, in_memory.lines)


def test_a_pipeline_run_leaves_no_staged_pieces_behind(small_run):
    assert not list(small_run.settings.work_dir.glob("staging-*"))
    assert not list(small_run.settings.work_dir.glob("*/silver"))


# One fresh process validates two files in turn, staged in pieces of 2 MiB (then, if asked, the second in memory);
# it reports its peak RSS (sampled, not ru_maxrss: a child inherits its parent's) after each, and what each staged
# validation accepted. Polars' allocator (jemalloc) is told to return freed pages at once: by default it keeps them
# for seconds, so RSS would grow with the work done in those seconds, not with what is held.
PEAKS_OF_VALIDATION = textwrap.dedent("""
    import json, shutil, sys
    from pathlib import Path
    from bench.memory import MemorySampler
    from ml.ingest import InputReader, read
    from ml.validate import StagedRows, validate, validate_staged
    sampler = MemorySampler(interval=0.005)
    sampler.start()
    folder, in_memory_too = Path(sys.argv[1]), sys.argv[2] == "in-memory-too"
    peaks, reports, work = [], [], folder / "work"
    for name in ("small.csv", "large.csv"):
        reader = InputReader(folder / name, piece_bytes=1 << 21)
        staged = StagedRows(work / "staged")
        staged.add_all(reader.pieces())
        report = validate_staged(staged, reader.raw_input(), work / "lines.parquet", work / "quarantine.parquet")
        reports.append({"rows_accepted": report.rows_accepted, "counts_add_up": report.counts_add_up})
        shutil.rmtree(work)
        peaks.append(max(sampler.peak, sampler.process.memory_info().rss))
    if in_memory_too:
        raw_input, raw = read(folder / "large.csv")
        validate(raw, raw_input)
        peaks.append(max(sampler.peak, sampler.process.memory_info().rss))
    print(json.dumps({"peaks": peaks, "reports": reports}))
""")


def peaks_of_validation(folder: Path, in_memory_too: bool = False) -> tuple[list[float], list[dict]]:
    """`small.csv` and `large.csv` of `folder` validated in a fresh process (`PEAKS_OF_VALIDATION`): the peak RSS in
    MB after each, and after `large.csv` validated in memory when `in_memory_too`; and each staged run's report."""
    env = {**os.environ, "_RJEM_MALLOC_CONF": "dirty_decay_ms:0,muzzy_decay_ms:0"}
    done = subprocess.run([sys.executable, "-c", PEAKS_OF_VALIDATION, str(folder),
                           "in-memory-too" if in_memory_too else "staged-only"],
                          capture_output=True, text=True, check=True, env=env, cwd=Path(__file__).parents[1])
    measured = json.loads(done.stdout)
    return [peak / 1e6 for peak in measured["peaks"]], measured["reports"]


def test_memory_of_staged_validation_does_not_grow_with_the_input(tmp_path):
    write_csv(generate(SynthConfig(rows=60_000, seed=2)), tmp_path / "small.csv")
    write_csv(generate(SynthConfig(rows=360_000, seed=2)), tmp_path / "large.csv")
    (small, large, in_memory), _ = peaks_of_validation(tmp_path, in_memory_too=True)
    assert large < small + 40, (small, large)  # six times the rows, the same pieces: (nearly) the same peak
    assert in_memory > large + 100, (large, in_memory)  # what the pieces save at this size
