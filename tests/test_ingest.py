"""Ingestion: both header variants, weekly folders, gzip and CRLF, and inputs that stop the run."""

from __future__ import annotations

import gzip

import polars as pl
import pytest

from ml.ingest import InputError, read
from ml.schema import CANONICAL_COLUMNS
from ml.synth import SynthConfig, generate, with_original_header, write_csv, write_weekly

ROWS = 4_000


@pytest.fixture(scope="module")
def table():
    return generate(SynthConfig(rows=ROWS, seed=5))


def _canonical(path):
    _, frame = read(path)
    return frame.select(CANONICAL_COLUMNS).sort("BASKET_ID", "PROD_CODE", "SPEND")


def test_both_header_variants_map_to_the_same_canonical_rows(tmp_path, table):
    coded = tmp_path / "coded.csv"
    write_csv(table, coded)
    original = tmp_path / "original.csv"
    write_csv(with_original_header(table), original)
    raw_coded, _ = read(coded)
    raw_original, _ = read(original)
    assert (raw_coded.variant, raw_original.variant) == ("coded", "original")
    assert _canonical(coded).equals(_canonical(original))
    decoded = _canonical(coded)["CUST_PRICE_SENSITIVITY"].drop_nulls().unique().to_list()
    assert set(decoded) <= {"LA", "MM", "UM", "XX"}


def test_weekly_folder_reads_every_week(tmp_path, table):
    files = write_weekly(table, tmp_path / "weekly")
    raw, frame = read(tmp_path / "weekly")
    assert len(raw.files) == len(files) > 50
    assert frame.height == ROWS
    assert frame["_SOURCE_FILE"].n_unique() == len(files)


def test_gzip_and_crlf_exports_read_like_the_plain_file(tmp_path, table):
    plain = tmp_path / "t.csv"
    write_csv(table, plain)
    crlf = tmp_path / "crlf.csv"
    write_csv(table, crlf, crlf=True)
    gz = tmp_path / "t.csv.gz"
    write_csv(table, gz)
    assert b"\r\n" in crlf.read_bytes()[:500]
    assert _canonical(plain).equals(_canonical(crlf))
    assert _canonical(plain).equals(_canonical(gz))


def test_zero_padded_hours_are_read(tmp_path, table):
    path = tmp_path / "padded.csv"
    write_csv(table.slice(0, 50), path)
    lines = path.read_text().splitlines()
    padded = [lines[0]] + [",".join(f.zfill(2) if i == 3 else f for i, f in enumerate(x.split(","))) for x in lines[1:]]
    path.write_text("\n".join(padded) + "\n")
    _, frame = read(path)
    assert frame["SHOP_HOUR"].str.len_chars().min() == 2


def test_a_byte_order_mark_before_the_header_is_skipped(tmp_path, table):
    plain = tmp_path / "t.csv"
    write_csv(table, plain)
    marked = tmp_path / "bom.csv"
    marked.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    assert _canonical(plain).equals(_canonical(marked))


def test_missing_column_stops_with_its_name(tmp_path, table):
    path = tmp_path / "missing.csv"
    pl.from_arrow(table).drop("STORE_REGION").write_csv(path)
    with pytest.raises(InputError, match=r"missing.csv: missing column\(s\) STORE_REGION"):
        read(path)


def test_empty_file_stops_with_its_name(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(InputError, match="empty.csv: empty file"):
        read(path)


def test_header_only_file_stops_with_its_name(tmp_path, table):
    path = tmp_path / "header.csv"
    path.write_text(",".join(table.column_names) + "\n")
    with pytest.raises(InputError, match="header.csv: empty file"):
        read(path)


def test_unreadable_file_stops_with_its_name(tmp_path):
    path = tmp_path / "broken.csv.gz"
    path.write_bytes(b"this is not gzip data at all")
    with pytest.raises(InputError, match="broken.csv.gz: unreadable"):
        read(path)


def test_binary_file_stops_with_its_name(tmp_path):
    path = tmp_path / "binary.csv"
    path.write_bytes(gzip.compress(b"SHOP_WEEK,SHOP_DATE\n1,2\n"))
    with pytest.raises(InputError, match="binary.csv: unreadable"):
        read(path)


def test_folder_without_weekly_files_stops(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="no weekly files"):
        read(tmp_path)


def test_missing_path_stops(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read(tmp_path / "nope.csv")
