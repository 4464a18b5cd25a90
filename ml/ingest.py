"""Reading raw transaction exports into one frame of untyped (string) columns.

Accepts a CSV, a gzipped CSV, or a folder of weekly `transactions_YYYYWW.csv` files,
with either header variant (see `ml.schema`). Every value is read as text so that
validation, not the CSV parser, decides what is wrong with a value and can quarantine
the row instead of failing the run. Each row keeps its source file and line number.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ml.schema import (
    CANONICAL_COLUMNS,
    CODED_COLUMNS,
    ORIGINAL_COLUMNS,
    ORIGINAL_SEGMENT_NAMES,
    SEG_1_DECODE,
    SEG_2_DECODE,
)

SOURCE_FILE = "_SOURCE_FILE"
SOURCE_LINE = "_SOURCE_LINE"
WEEKLY_FILE = re.compile(r"^transactions_(\d{6})\.csv(\.gz)?$")


class InputError(Exception):
    """The input cannot be read at all: the run stops with this message."""


@dataclass(frozen=True)
class RawInput:
    """The files of one input and the header variant found in them."""

    files: tuple[Path, ...]
    variant: str  # "coded" (seg_1/seg_2) or "original" (CUST_PRICE_SENSITIVITY/CUST_LIFESTAGE)


def discover(path: Path) -> tuple[Path, ...]:
    """The files that make up an input: the file itself, or a folder's weekly files."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_file():
        return (path,)
    weekly = sorted(p for p in path.iterdir() if WEEKLY_FILE.match(p.name))
    if not weekly:
        raise InputError(f"{path}: folder holds no weekly files named transactions_YYYYWW.csv")
    return tuple(weekly)


def _header(path: Path) -> list[str]:
    try:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8", newline="") as handle:
            line = handle.readline()
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise InputError(f"{path}: unreadable ({exc})") from exc
    if not line.strip():
        raise InputError(f"{path}: empty file (no header row)")
    return [name.strip().strip('"') for name in line.rstrip("\r\n").split(",")]


def header_variant(path: Path) -> str:
    """Which header variant a file uses; raises naming the missing columns otherwise."""
    names = _header(path)
    for variant, expected in (("coded", CODED_COLUMNS), ("original", ORIGINAL_COLUMNS)):
        if set(expected) <= set(names):
            return variant
    coded_missing = [c for c in CODED_COLUMNS if c not in names]
    original_missing = [c for c in ORIGINAL_COLUMNS if c not in names]
    missing = min(coded_missing, original_missing, key=len)
    raise InputError(f"{path}: missing column(s) {', '.join(missing)}")


def _read_file(path: Path, variant: str) -> pl.DataFrame:
    try:
        frame = pl.read_csv(path, infer_schema=False)
    except (pl.exceptions.ComputeError, OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: unreadable as CSV ({exc})") from exc
    if frame.height == 0:
        raise InputError(f"{path}: empty file (a header but no rows)")
    # Header is line 1, so the first row is line 2.
    return to_canonical(frame, variant).with_columns(
        pl.lit(str(path)).alias(SOURCE_FILE),
        (pl.int_range(pl.len(), dtype=pl.Int64) + 2).alias(SOURCE_LINE),
    )


def to_canonical(frame: pl.DataFrame, variant: str) -> pl.DataFrame:
    """The canonical columns, in order, from a frame of either header variant."""
    if variant == "coded":
        return frame.select(CODED_COLUMNS).rename(ORIGINAL_SEGMENT_NAMES).with_columns(
            _decode("CUST_PRICE_SENSITIVITY", SEG_1_DECODE),
            _decode("CUST_LIFESTAGE", SEG_2_DECODE),
        )
    return frame.select(ORIGINAL_COLUMNS)


def _decode(column: str, mapping: dict[str, str]) -> pl.Expr:
    """Coded segment values to their meaning; unknown codes pass through for validation."""
    return pl.col(column).replace(mapping).alias(column)


def read(path: Path) -> tuple[RawInput, pl.DataFrame]:
    """All rows of an input as text columns in canonical order, plus source columns."""
    files = discover(path)
    variants = {f: header_variant(f) for f in files}
    frames = [_read_file(f, variants[f]) for f in files]
    frame = pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]
    kinds = sorted(set(variants.values()))
    raw = RawInput(files=files, variant=kinds[0] if len(kinds) == 1 else "mixed")
    return raw, frame.select([*CANONICAL_COLUMNS, SOURCE_FILE, SOURCE_LINE])
