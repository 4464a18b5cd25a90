"""Small builders shared by tests: raw text frames and CSV files in the export's layout."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from ml.ingest import SOURCE_FILE, SOURCE_LINE, to_canonical
from ml.synth import SynthConfig, generate

if TYPE_CHECKING:
    from ml.pipeline import Gold


def synthetic_text(rows: int = 3_000, seed: int = 11) -> pl.DataFrame:
    """A synthetic export as it would be read: every column text, coded header."""
    frame = pl.from_arrow(generate(SynthConfig(rows=rows, seed=seed)))
    return frame.select(pl.all().cast(pl.String))


def canonical_text(rows: int = 3_000, seed: int = 11) -> pl.DataFrame:
    """The same, mapped to the canonical columns with source columns, as `ingest.read` returns."""
    return to_canonical(synthetic_text(rows, seed), "coded").with_columns(
        pl.lit("synthetic").alias(SOURCE_FILE), (pl.int_range(pl.len(), dtype=pl.Int64) + 2).alias(SOURCE_LINE)
    )


def gold_channel(folder: Path, rows: int = 20_000, seed: int = 21) -> Gold:
    """A gold channel in `folder` as the pipeline writes one (partitioned baskets, the fitted featurizer), from
    `rows` synthetic lines; returns the gold, for what a test adds (holdout lines, lineage)."""
    from ml.lake import Lake
    from ml.pipeline import PARTITIONS, build_gold
    from ml.validate import validate

    gold = build_gold(validate(canonical_text(rows, seed=seed)).lines, 12, seed=0)
    Lake(str(folder)).write_partitioned(gold.baskets, PARTITIONS, "baskets")
    gold.featurizer.save(folder / "featurizer")
    return gold


def write_text_csv(frame: pl.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_csv(path, null_value="")
    return path


def uv_command() -> list[str]:
    """How to call uv here: $UV, else `uv` on PATH, else the uv module of the system Python."""
    if os.environ.get("UV"):
        return [os.environ["UV"]]
    if shutil.which("uv"):
        return [shutil.which("uv")]
    return ["python3", "-m", "uv"]
