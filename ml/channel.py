"""The training channel's gold basket table, read in bounded memory straight into the model's float32 matrices.

The gold table (`baskets/`, Parquet, hive-partitioned) holds one row per basket: its features (Float64), its label,
its week and its `split` side. Training reads it side by side through a pyarrow dataset filtered on the split and on
the label (trainable labels only) and projected on the columns training uses, a bounded batch at a time (one batch
read ahead), so neither the whole table nor a Polars copy of it is ever held:

* the training side goes straight into one float32 matrix (`TrainSide`), every basket when the side fits the budget,
  else a seeded uniform random sample of them (`sample_cap`), drawn before reading so the matrix is allocated at its
  final size;
* the holdout is never held whole: `holdout_pieces` yields it in pieces of at most `piece_baskets` baskets, each a
  float32 matrix with its labels and the few per-basket columns the summary needs (`HOLDOUT_COLUMNS`).

Batches come in the dataset's order (fragments in order, rows in file order), the order in which the whole table
was read before, so below the cap the matrices are the same bits as the in-memory path's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from ml.calendar import week_index_expr
from ml.features import BasketFeaturizer, require_finite
from ml.reference import KEY_FEATURES
from ml.schema import LABEL, TRAINABLE_LABELS

CLASSES = list(TRAINABLE_LABELS)
PIECE_BASKETS = 32_768
"""The most baskets per batch read (and per holdout piece scored): with about 100 Float64 columns, 26 MB of Arrow
data, a few times that while it is converted and scored. A batch never holds more than one Parquet row group either
(pyarrow reads a row group whole and does not join two into a batch), and the gold parts' row groups are smaller."""
HOLDOUT_COLUMNS = tuple(dict.fromkeys(
    (*KEY_FEATURES, "n_lines", "tier_exact_lines", "tier_estimated_lines", "tier_unseen_lines")))
"""Per-basket holdout columns kept whole (Float64): the drift reference's key features and the tier breakdown's."""
BYTES_PER_TRAINING_BASKET = 1_500
"""Peak memory per training basket while training, rounded up: measured on the 3M-row synthetic run's channel
(2 cores), 1,267 bytes per basket between training on 100,000 and on all 351,652 of its baskets; the float32
matrix's 400 bytes and the logistic regression's fit, the largest, 900 more (docs/benchmarks.md, "Training in
bounded memory")."""
TRAINING_SHARE = 0.5
"""The share of RETAIL_MAX_MEMORY_GB the training sample may take: the rest is the process (its libraries, what
earlier stages left), the batches being read and the holdout's per-basket columns and predictions."""


def sample_cap(max_memory_gb: float) -> int:
    """The most training baskets the training stage holds to stay within `max_memory_gb`.

    `BYTES_PER_TRAINING_BASKET` covers the float32 matrix and what the four families' fits hold on top of it at
    their peak (the logistic regression's scaled copy of the matrix and its solver's arrays, the forest's and
    XGBoost's per-row arrays), measured as peak RSS against training baskets."""
    return max(1, math.floor(max_memory_gb * 1e9 * TRAINING_SHARE / BYTES_PER_TRAINING_BASKET))


@dataclass(frozen=True)
class TrainSide:
    """The training side's model input: every basket, or a seeded uniform sample of them in table order."""

    x: np.ndarray  # float32, one row per basket used, columns in the featurizer's `feature_names_` order
    y: np.ndarray  # int32 index into CLASSES
    week_index: np.ndarray  # weeks since the fiscal epoch, per basket used
    last_week_index: int  # the latest week of the whole side (sampled or not)
    weeks: tuple[int, int]  # the first and last SHOP_WEEK of the whole side
    available: int  # baskets on the side
    cap: int  # the most it could hold

    @property
    def used(self) -> int:
        return len(self.y)

    def facts(self, seed: int, max_memory_gb: float) -> dict[str, Any]:
        """What the summary says about the sample (`sampled` False: every basket was used)."""
        return {"available": self.available, "used": self.used, "sampled": self.used < self.available,
                "cap": self.cap, "seed": seed, "max_memory_gb": max_memory_gb}


@dataclass(frozen=True)
class HoldoutPiece:
    x: np.ndarray  # float32
    y: np.ndarray  # int32 index into CLASSES
    weeks: np.ndarray  # SHOP_WEEK
    columns: dict[str, np.ndarray]  # HOLDOUT_COLUMNS present in the table, Float64


class GoldChannel:
    """A training channel folder: `baskets/`, `featurizer/`, `lineage.json`."""

    def __init__(self, train_dir: Path):
        self.dataset = ds.dataset(train_dir / "baskets", format="parquet", partitioning="hive")
        self.featurizer = BasketFeaturizer.load(train_dir / "featurizer")
        self.lineage: dict[str, Any] = json.loads((train_dir / "lineage.json").read_text())
        self.features: list[str] = list(self.featurizer.feature_names_)

    @staticmethod
    def trainable(split: str) -> ds.Expression:
        return (ds.field("split") == split) & ds.field(LABEL).isin(CLASSES)

    def count(self, split: str) -> int:
        """Trainable baskets of one side."""
        return int(self.dataset.count_rows(filter=self.trainable(split)))

    def unclassified(self) -> int:
        """Baskets of the table whose label is not a trainable one (XX), on either side."""
        return int(self.dataset.count_rows() - self.dataset.count_rows(filter=ds.field(LABEL).isin(CLASSES)))

    def _batches(self, split: str, columns: list[str], piece_baskets: int) -> Iterator[pa.RecordBatch]:
        # One batch and one file read ahead, where pyarrow's defaults are 16 batches and 4 files.
        yield from self.dataset.to_batches(columns=columns, filter=self.trainable(split), batch_size=piece_baskets,
                                           batch_readahead=1, fragment_readahead=1)

    def _fill(self, batch: pa.RecordBatch, rows: np.ndarray | None, x: np.ndarray) -> None:
        """The feature columns of `batch` (its `rows`, or all) into `x`, cast to float32 column by column."""
        for j, name in enumerate(self.features):
            values = batch.column(name).to_numpy(zero_copy_only=False)
            x[:, j] = values if rows is None else values[rows]

    def train_side(self, cap: int, seed: int, piece_baskets: int = PIECE_BASKETS) -> TrainSide:
        """The training side, at most `cap` baskets: a uniform sample drawn with `seed` when it holds more."""
        available = self.count("train")
        if available == 0:
            raise ValueError("the training channel has no trainable baskets on the training side")
        chosen = None
        if available > cap:  # sorted, so the sample keeps the table's order
            chosen = np.sort(np.random.default_rng(seed).choice(available, cap, replace=False, shuffle=False))
        used = available if chosen is None else cap
        x = np.empty((used, len(self.features)), dtype=np.float32)
        y = np.empty(used, dtype=np.int32)
        weeks = np.empty(used, dtype=np.int64)
        first, last, start, filled = None, None, 0, 0
        for batch in self._batches("train", [*self.features, LABEL, "SHOP_WEEK"], piece_baskets):
            if batch.num_rows == 0:  # a file or row group the filter emptied
                continue
            rows = None
            if chosen is not None:
                lo, hi = np.searchsorted(chosen, [start, start + batch.num_rows])
                rows = chosen[lo:hi] - start
            n = batch.num_rows if rows is None else len(rows)
            self._fill(batch, rows, x[filled:filled + n])
            labels = _label_codes(batch)
            y[filled:filled + n] = labels if rows is None else labels[rows]
            batch_weeks = batch.column("SHOP_WEEK").to_numpy()
            weeks[filled:filled + n] = batch_weeks if rows is None else batch_weeks[rows]
            first = int(batch_weeks.min()) if first is None else min(first, int(batch_weeks.min()))
            last = int(batch_weeks.max()) if last is None else max(last, int(batch_weeks.max()))
            start, filled = start + batch.num_rows, filled + n
        if filled != used or first is None or last is None:
            raise RuntimeError(f"read {filled} training baskets, expected {used}: the channel changed while read")
        require_finite(x, self.features)
        if chosen is not None and (missing := [c for c, n in zip(CLASSES, np.bincount(y, minlength=len(CLASSES)),
                                                                  strict=True) if n == 0]):
            raise ValueError(f"the sample of {cap:,} of the {available:,} training baskets has no {', '.join(missing)} "
                             "basket: the models could not learn every class; raise RETAIL_MAX_MEMORY_GB")
        return TrainSide(x, y, _week_index(weeks), int(_week_index(np.array([last]))[0]), (first, last),
                         available, cap)

    def holdout_pieces(self, piece_baskets: int = PIECE_BASKETS) -> Iterator[HoldoutPiece]:
        """The trainable holdout baskets in table order, at most `piece_baskets` at a time."""
        names = set(self.dataset.schema.names)
        kept = [c for c in HOLDOUT_COLUMNS if c in names]
        columns = list(dict.fromkeys([*self.features, *kept, LABEL, "SHOP_WEEK"]))
        for batch in self._batches("holdout", columns, piece_baskets):
            if batch.num_rows == 0:
                continue
            x = np.empty((batch.num_rows, len(self.features)), dtype=np.float32)
            self._fill(batch, None, x)
            yield HoldoutPiece(
                require_finite(x, self.features), _label_codes(batch), batch.column("SHOP_WEEK").to_numpy(),
                {c: batch.column(c).to_numpy(zero_copy_only=False) for c in kept},
            )


def _label_codes(batch: pa.RecordBatch) -> np.ndarray:
    """The label column as indices into CLASSES (the batch holds trainable labels only)."""
    codes: np.ndarray = pc.index_in(batch.column(LABEL), value_set=pa.array(CLASSES)).to_numpy()
    return codes.astype(np.int32, copy=False)


def _week_index(week_codes: np.ndarray) -> np.ndarray:
    """`ml.calendar.week_index_expr` of SHOP_WEEK codes (the same expression training always used)."""
    frame = pl.DataFrame({"SHOP_WEEK": week_codes})
    index: np.ndarray = frame.select(week_index_expr(pl.col("SHOP_WEEK"))).to_series().to_numpy()
    return index
