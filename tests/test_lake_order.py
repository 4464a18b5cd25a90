"""The lake writes a partitioned table in the input's row order, so training sees the gold rows in one order.

Arrow's dataset writer reorders rows across its threads unless told to preserve their order. Gold parts written as
several Parquet files and partitioned into the lake must come back, partition by partition, in the order of the
parts, every time they are written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.dataset as ds

from ml.lake import Lake


def test_a_partitioned_table_keeps_the_order_of_the_parts_it_is_written_from(tmp_path: Path):
    rng = np.random.default_rng(0)
    rows = 400_000
    table = pl.DataFrame({
        "row": np.arange(rows),
        "STORE_REGION": rng.choice(["E01", "E02", "W01"], rows),
        "value": rng.normal(size=rows),
    })
    parts = []
    for i, part in enumerate(table.iter_slices(50_000)):
        parts.append(str(tmp_path / f"part-{i}.parquet"))
        part.write_parquet(parts[-1], row_group_size=10_000)
    lake = Lake(str(tmp_path / "lake"))
    for attempt in range(3):
        lake.write_partitioned(ds.dataset(parts, format="parquet"), ["STORE_REGION"], "gold", str(attempt))
        for region in ("E01", "E02", "W01"):
            written = pl.read_parquet(tmp_path / "lake" / "gold" / str(attempt) / f"STORE_REGION={region}")
            assert written["row"].to_list() == table.filter(pl.col("STORE_REGION") == region)["row"].to_list()
