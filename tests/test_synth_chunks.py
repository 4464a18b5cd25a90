"""The synthetic generator in chunks: files up to a chunk unchanged, larger ones whole weeks per chunk, flat memory.

Files of at most `chunk_rows` rows must be byte for byte those the one-stream generator wrote before chunks
existed (the digests below were taken from it, commit cefa1c0); a larger file must still be one valid export
(exact rows, unique basket ids, days in order, each week in one weekly file) and the same for the same seed.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest

from ml.synth import SynthConfig, _spans, generate, write_csv, write_synthetic

# sha256 of the CSV the generator wrote before chunks existed (commit cefa1c0), for these configs.
BEFORE_CHUNKS = {
    (5_000, 4, None, False): "7e67ffa14f65137c7aa086989331626df094a138449a2e2257a1356293d37abf",
    (20_000, 3, 60, True): "35aad94dad6da7354c30e33ceb4c5607758e0d3a57eb2ccc36cb644fa060343a",
}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(("rows", "seed", "drift_week", "original"), list(BEFORE_CHUNKS))
def test_a_file_of_one_chunk_is_the_file_written_before_chunks(tmp_path, rows, seed, drift_week, original):
    config = SynthConfig(rows=rows, seed=seed, drift_week=drift_week)
    written, files = write_synthetic(config, tmp_path / "t.csv", original_header=original)
    assert (written, files) == (rows, [tmp_path / "t.csv"])
    assert digest(tmp_path / "t.csv") == BEFORE_CHUNKS[(rows, seed, drift_week, original)]


def test_chunked_writing_of_one_table_equals_writing_it_whole(tmp_path):
    table = generate(SynthConfig(rows=3_000, seed=2))
    write_csv(table, tmp_path / "whole.csv.gz", crlf=True)
    write_synthetic(SynthConfig(rows=3_000, seed=2), tmp_path / "chunked.csv.gz", crlf=True, chunk_rows=3_000)
    whole = pl.read_csv(tmp_path / "whole.csv.gz", infer_schema=False)
    assert whole.equals(pl.read_csv(tmp_path / "chunked.csv.gz", infer_schema=False))


@pytest.fixture(scope="module")
def chunked(tmp_path_factory) -> pl.DataFrame:
    path = tmp_path_factory.mktemp("chunked") / "t.csv"
    assert write_synthetic(SynthConfig(rows=120_000, seed=6), path, chunk_rows=15_000)[0] == 120_000
    return pl.read_csv(path, infer_schema=False)


def test_a_chunked_file_has_the_exact_rows_unique_baskets_and_days_in_order(chunked):
    assert chunked.height == 120_000
    per_basket = chunked.group_by("BASKET_ID").agg(pl.col("SHOP_WEEK", "SHOP_DATE", "CUST_CODE").n_unique())
    assert per_basket.select(pl.max("SHOP_WEEK", "SHOP_DATE", "CUST_CODE")).row(0) == (1, 1, 1)
    assert chunked["SHOP_DATE"].cast(pl.Int64).is_sorted()
    assert chunked["SHOP_WEEK"].n_unique() == SynthConfig().weeks


def test_a_chunked_file_keeps_the_label_mix_of_one_drawn_in_one_go(chunked):
    whole = pl.from_arrow(generate(SynthConfig(rows=120_000, seed=6)))

    def shares(frame: pl.DataFrame) -> dict[str, float]:
        baskets = frame.group_by("BASKET_ID").agg(pl.first("BASKET_PRICE_SENSITIVITY"))
        counts = baskets["BASKET_PRICE_SENSITIVITY"].value_counts(normalize=True)
        return dict(counts.iter_rows())

    expected = shares(whole)
    assert all(abs(share - expected[label]) < 0.03 for label, share in shares(chunked).items())


def test_a_chunked_file_is_the_same_for_the_same_seed_and_another_for_another(tmp_path):
    paths = {}
    for name, seed in (("a", 4), ("b", 4), ("c", 5)):
        paths[name] = tmp_path / f"{name}.csv"
        write_synthetic(SynthConfig(rows=30_000, seed=seed), paths[name], chunk_rows=10_000)
    assert digest(paths["a"]) == digest(paths["b"]) != digest(paths["c"])


def test_weekly_chunks_write_every_week_once(tmp_path):
    rows, files = write_synthetic(SynthConfig(rows=40_000, seed=3), tmp_path / "weekly", weekly=True,
                                  chunk_rows=10_000)
    assert rows == 40_000
    assert len(files) == len(set(files)) == SynthConfig().weeks
    assert sum(len(f.read_text().splitlines()) - 1 for f in files) == 40_000


def test_a_chunk_size_below_one_row_is_refused(tmp_path):
    with pytest.raises(ValueError, match="chunk_rows must be positive"):
        write_synthetic(SynthConfig(rows=1_000), tmp_path / "t.csv", chunk_rows=0)


def test_a_chunk_never_goes_without_rows():
    assert all(span.rows >= 1 for rows in range(1, 400) for span in _spans(SynthConfig(rows=rows), 1))


# One fresh process writes three files in turn and reports its peak RSS after each (the peak so far, sampled; not
# ru_maxrss, which a child inherits from its parent): a bigger file in the same chunks must not raise the peak, the
# same file in one go must.
PEAKS_OF_SYNTH = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from bench.memory import MemorySampler
    from ml.synth import SynthConfig, write_synthetic
    sampler = MemorySampler(interval=0.005)
    sampler.start()
    peaks = []
    for rows, chunk_rows in json.loads(sys.argv[1]):
        assert write_synthetic(SynthConfig(rows=rows), Path(sys.argv[2]), chunk_rows=chunk_rows)[0] == rows
        peaks.append(max(sampler.peak, sampler.process.memory_info().rss))
    sampler.stop()
    print(json.dumps(peaks))
""")


def test_memory_of_a_chunked_synthesis_stays_flat_as_the_file_grows(tmp_path):
    runs = [(60_000, 30_000), (600_000, 30_000), (600_000, 600_000)]
    done = subprocess.run([sys.executable, "-c", PEAKS_OF_SYNTH, json.dumps(runs), str(tmp_path / "t.csv")],
                          capture_output=True, text=True, check=True)
    small, large, in_one_go = (peak / 1e6 for peak in json.loads(done.stdout))
    assert large < small + 30, (small, large)  # ten times the rows in the same chunks: (nearly) the same peak
    assert in_one_go > large + 100, (large, in_one_go)  # what the chunks save at this size
