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
  scored_at                  when the basket was scored (UTC)

Nothing else of a request is kept: no lines, no customer code, no API key. Where the rows are
written, under the lake root:

  predictions/<run>/baskets/week=YYYYWW/part-NNNN.parquet                   batch runs (with a manifest)
  predictions/service/date=YYYY-MM-DD/week=YYYYWW/part-<time>-<writer>.parquet   the service (`SERVICE_LOG`)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Literal, TypeAlias

import numpy as np
import polars as pl

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
SERVICE_LOG = ("predictions", "service")
"""Where under the lake root the service writes its rows (one folder per day and week below it)."""

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
    "scored_at": pl.Datetime("us", "UTC"),
}


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
