"""Synthetic CSV writing: CR LF files rewritten a batch at a time, one header, one generator for every command.

A CR LF file must be the LF file with a CR before every newline, header included, while the rewriting holds a
batch of rows, not the table (measured with tracemalloc: the rewritten bytes are Python objects). A first chunk
without rows must not make the header appear twice. `generate` (the demo, the benchmarks) must give the rows
`write_synthetic` writes for the same seed, rows and chunk size, also above a chunk.
"""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

from ml import synth
from ml.synth import SynthConfig, generate, generate_chunks, write_csv, write_csv_chunks, write_synthetic


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return generate(SynthConfig(rows=5_000, seed=4))


@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz"])
def test_a_crlf_file_is_the_lf_file_with_cr_before_every_newline(table, tmp_path, monkeypatch, name):
    monkeypatch.setattr(synth, "CSV_BATCH_ROWS", 700)  # many batches, one ending mid-table
    write_csv(table, tmp_path / f"lf-{name}")
    write_csv(table, tmp_path / f"crlf-{name}", crlf=True)

    def data(path: Path) -> bytes:
        import gzip

        return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()

    lf = data(tmp_path / f"lf-{name}")
    assert data(tmp_path / f"crlf-{name}") == lf.replace(b"\n", b"\r\n")
    assert lf.count(b"\n") == table.num_rows + 1


def test_a_crlf_file_is_rewritten_a_batch_at_a_time(table, tmp_path, monkeypatch):
    monkeypatch.setattr(synth, "CSV_BATCH_ROWS", 5_000, raising=False)
    large = pa.concat_tables([table] * 40)  # 200,000 rows, about 30 MB of CSV
    tracemalloc.start()
    try:
        write_csv(large, tmp_path / "crlf.csv", crlf=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = (tmp_path / "crlf.csv").stat().st_size
    assert size > 20e6
    assert peak < size / 10, (peak, size)  # a batch is a 40th of the file; the whole would be twice the file


def test_the_header_is_written_once_when_the_first_chunk_has_no_rows(table, tmp_path):
    rows = write_csv_chunks([table.slice(0, 0), table.slice(0, 10), table.slice(10, 5)], tmp_path / "t.csv")
    text = (tmp_path / "t.csv").read_text()
    assert rows == 15 and text.count("SHOP_WEEK,SHOP_DATE") == 1
    assert pl.read_csv(io.StringIO(text), infer_schema=False).height == 15


def test_generate_gives_the_rows_write_synthetic_writes_also_above_a_chunk(tmp_path):
    config = SynthConfig(rows=40_000, seed=6)
    written, _ = write_synthetic(config, tmp_path / "chunked.csv", chunk_rows=10_000)
    table = generate(config, chunk_rows=10_000)
    assert written == table.num_rows == 40_000
    assert len(list(generate_chunks(config, 10_000))) > 1
    write_csv(table, tmp_path / "generated.csv")
    assert (tmp_path / "generated.csv").read_bytes() == (tmp_path / "chunked.csv").read_bytes()
