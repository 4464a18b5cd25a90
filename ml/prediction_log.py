"""The prediction log's rows: one per basket scored, in one schema for batch scoring and the service.

`retail score` (ml/score.py `predictions_frame`) and the inference service (api/prediction_log.py)
both build their rows with `prediction_rows`, so whoever reads them (`retail monitor`) reads one
table whatever wrote it. The columns (`SCHEMA`, in this order):

  BASKET_KEY                 the basket: its key in the lines (batch), the request's BASKET_ID (service,
                             null when the request sent none)
  SHOP_WEEK                  the basket's fiscal week YYYYWW: its lines' week (batch); the SHOP_WEEK the
                             request sent, else the week of its SHOP_DATE (service)
  prediction                 the most likely class
  probability_LA/MM/UM       each class's probability (null for a class the model does not predict)
  model_version              registry version, or sha256:<12 hex> of a bundle loaded from a location
  model_family               e.g. decision_tree, xgboost
  bundle_sha256              the bundle manifest's SHA-256
  source                     batch | service
  role                       champion (answered, or scored the batch) | challenger (scored in shadow)
  scored_at                  when the basket was scored (UTC), to the millisecond: Athena (engine v3)
                             reads Parquet timestamps of millisecond precision only (`SCHEMA`)

Nothing else of a request is kept: no lines, no customer code, no API key. Where the rows are
written, under the lake root, the week first, so that a reader of one week lists only that week's
folders (`retail monitor`, ml/monitor.py):

  predictions/<run>/baskets/week=YYYYWW/part-NNNN.parquet                 batch runs (with a manifest)
  predictions/service/week=YYYYWW/part-<UTC time>-<writer>-<n>.parquet    the service (`SERVICE_LOG`)

Every file is written whole or not at all (`write_whole`): a local file under a hidden name,
synced and then renamed; an S3 object with one upload of bytes serialised beforehand.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from typing import Literal, TypeAlias

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ml.schema import BASKET_KEY, TRAINABLE_LABELS

WEEK = "SHOP_WEEK"
PREDICTION = "prediction"
CLASSES = TRAINABLE_LABELS
"""The classes a probability column is kept for: what the models are trained on (`ml.train.CLASSES`)."""
PROBABILITY = "probability_{}"
Source: TypeAlias = Literal["batch", "service"]
Role: TypeAlias = Literal["champion", "challenger"]
BATCH: Source = "batch"
SERVICE: Source = "service"
CHAMPION: Role = "champion"
CHALLENGER: Role = "challenger"
IDENTITY = ("model_version", "model_family", "bundle_sha256")
"""The model's identity on every row."""
PREDICTIONS = "predictions"
SERVICE_LOG = (PREDICTIONS, "service")
"""Where under the lake root the service writes its rows (one folder per week below it, `week_folder`)."""
BATCH_BASKETS = "baskets"
"""The folder of a batch run's rows, `predictions/<run>/baskets/`, with one folder per week below it."""

SCHEMA: dict[str, pl.DataType] = {
    BASKET_KEY: pl.String(),
    WEEK: pl.Int32(),
    PREDICTION: pl.String(),
    **{PROBABILITY.format(c): pl.Float64() for c in CLASSES},
    "model_version": pl.String(),
    "model_family": pl.String(),
    "bundle_sha256": pl.String(),
    "source": pl.String(),
    "role": pl.String(),
    "scored_at": pl.Datetime("ms", "UTC"),
}
"""The rows' columns. `scored_at` is in milliseconds, written as Parquet TIMESTAMP(MILLIS), because Athena engine v3
handles timestamps of millisecond precision only ("Precision mismatch in Timestamp columns causes serialization
error", https://docs.aws.amazon.com/athena/latest/ug/engine-versions-reference-0003.html) and the Glue table declares
it `timestamp` (infra/lake_tables.py); `prediction_rows` casts what it is given, truncating below the millisecond.
Files written before hold microseconds; `retail monitor` does not read the column."""
ARROW_SCHEMA: pa.Schema = pl.DataFrame(schema=SCHEMA).to_arrow().schema
"""`SCHEMA` as the Arrow types the files hold (Polars writes strings as large_string)."""


WEEK_FOLDER = "week={}"


def week_folder(week: int) -> str:
    """The folder of one week's files below the service log or a batch run's `baskets`."""
    return WEEK_FOLDER.format(week)


def prediction_rows(
    keys: pl.Series | Sequence[str | None],
    weeks: pl.Series | Sequence[int] | np.ndarray,
    probabilities: np.ndarray,
    classes: Sequence[str],
    identity: Mapping[str, pl.Series | str],
    source: Source,
    role: Role,
    scored_at: pl.Series | dt.datetime,
) -> pl.DataFrame:
    """Rows in `SCHEMA`: a basket's key and week per row, its class probabilities (columns in `classes` order),
    and the model's identity (`IDENTITY`) and `scored_at`, each one value
    for every row or a Series of one per row.

    Raises ValueError for a class the schema has no column for, or an identity field missing."""
    unknown = [c for c in classes if c not in CLASSES]
    if unknown:
        raise ValueError(f"classes {unknown} have no probability column in the prediction log (kept: {CLASSES})")
    missing = set(IDENTITY) - set(identity)
    if missing:
        raise ValueError(f"the model's identity lacks {sorted(missing)}")
    rows = len(probabilities)
    best = probabilities.argmax(axis=1) if rows else np.zeros(0, dtype=np.int64)
    columns = [
        pl.Series(BASKET_KEY, keys, SCHEMA[BASKET_KEY]),
        pl.Series(WEEK, weeks).cast(SCHEMA[WEEK]),
        pl.Series(PREDICTION, list(classes), SCHEMA[PREDICTION]).gather(best),
        *(pl.Series(PROBABILITY.format(c), probabilities[:, list(classes).index(c)] if c in classes else [None] * rows,
                    SCHEMA[PROBABILITY.format(c)])
          for c in CLASSES),
    ]
    constants = {**identity, "source": source, "role": role, "scored_at": scored_at}
    return pl.DataFrame(columns).with_columns(
        (value.alias(name) if isinstance(value, pl.Series) else pl.lit(value)).cast(SCHEMA[name]).alias(name)
        for name, value in constants.items()
    ).select(list(SCHEMA))


def write_whole(fs: pafs.FileSystem, path: str, table: pa.Table, partial_folder: str | None = None,
                sync: bool = True) -> None:
    """Write `table` as Parquet at `path` so that a reader finds the whole file or none.

    The file is serialised in memory first, so a failure there touches nothing. Locally the bytes go to a
    hidden `.<name>.partial` (in `partial_folder`, by default beside `path`, on the same filesystem) that is
    then renamed to `path`; with `sync` the file is synced to disk before the rename and the folder after it,
    so that after a power loss too the name holds the whole file or is absent (about 6 ms a file here). On S3
    the bytes are handed over in one write: an object appears only when its upload completes, and on the
    filesystem `ml.lake.filesystem` makes (`allow_delayed_open`) a file below pyarrow's part size (10 MB) is one
    PutObject, with no multipart upload to leave half done.
    """
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer, compression="zstd")
    data = buffer.getvalue()
    if not isinstance(fs, pafs.LocalFileSystem):
        with fs.open_output_stream(path) as sink:
            sink.write(data)
        return
    folder, name = path.rsplit("/", 1)
    partial_folder = partial_folder or folder
    for made in {folder, partial_folder}:
        os.makedirs(made, exist_ok=True)
    partial = f"{partial_folder}/.{name}.partial"
    with open(partial, "wb") as file:
        file.write(data)
        if sync:
            file.flush()
            os.fsync(file.fileno())
    os.replace(partial, path)
    if sync:
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
