"""Settings of the local ML lifecycle, from the environment (prefix RETAIL_) or defaults."""

from __future__ import annotations

import math
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class GateSettings(BaseSettings):
    """The promotion gate: the brief's KPIs by default (RETAIL_GATE_MIN_ACCURACY, ...)."""

    model_config = SettingsConfigDict(env_prefix="RETAIL_GATE_")

    min_accuracy: float = Field(0.75, ge=0, le=1)
    min_macro_f1: float = Field(0.70, ge=0, le=1)
    min_class_precision: float = Field(0.65, ge=0, le=1)
    # A new version must not be worse than the champion by more than this (macro-F1).
    max_regression: float = Field(0.0, ge=0, le=1)


class MonitorSettings(BaseSettings):
    """What `retail monitor` and the retraining policy judge a week by (RETAIL_MONITOR_DRIFT_PSI, ...); the
    performance thresholds are the gate's (GateSettings). See docs/monitoring.md."""

    model_config = SettingsConfigDict(env_prefix="RETAIL_MONITOR_")

    # A key feature whose PSI against the training reference is above this has drifted (0.25: a major shift).
    drift_psi: float = Field(0.25, gt=0)
    # A week with fewer labelled baskets for a model is reported but not judged (too few to measure).
    min_baskets: int = Field(100, ge=1)
    # Fewer of a week's predicted baskets found in its silver lines than this share is reported as a notice (the
    # keys do not join); none at all fails the run.
    min_join_coverage: float = Field(0.5, ge=0, le=1)
    # Retrain once this many fiscal weeks have landed after the champion's training data (13: a quarter).
    new_weeks: int = Field(13, ge=1)
    # After the policy called for retraining, a lasting fall or drift calls again only this many weeks later.
    cooldown_weeks: int = Field(4, ge=1)
    # A challenger is promoted when its macro-F1 beats the champion's on the same baskets by at least this margin
    # in each of the last `challenger_weeks` monitored weeks.
    challenger_margin: float = Field(0.02, ge=0, le=1)
    challenger_weeks: int = Field(3, ge=1)
    # `retail monitor --week pending` judges at most this many weeks a run (the oldest waiting first).
    pending_weeks: int = Field(4, ge=1)
    # `retail changed --monitoring` flags a latest report whose week is more than this many weeks before last week.
    stale_weeks: int = Field(2, ge=0)


class Settings(BaseSettings):
    """Where the lake and the registry live and how a pipeline run behaves."""

    model_config = SettingsConfigDict(env_prefix="RETAIL_")

    lake_root: str = "lake"  # a local folder or s3://bucket/prefix
    registry_uri: str = "sqlite:///registry/mlflow.db"
    artifact_root: Path = Path("registry/artifacts")
    model_name: str = "basket-price-sensitivity"
    work_dir: Path = Path("work")  # scratch space for training channels and outputs
    holdout_weeks: int = Field(27, ge=1)
    validation_weeks: int = Field(8, ge=1)
    # A shorter input trains with a smaller holdout, or stops (see ml.split.plan_holdout).
    max_holdout_share: float = Field(0.25, gt=0, lt=1)
    min_train_weeks: int = Field(4, ge=2)  # the XGBoost search needs a week before its validation window
    seed: int = 7
    xgb_trials: int = Field(4, ge=1, le=20)
    # The model families the local pipeline trains, comma-separated (RETAIL_FAMILIES=decision_tree,xgboost);
    # empty: all four. ml/train.py refuses a name that is not a family of ml/families.py.
    families: str = ""
    # The Environment dimension of the metrics `retail score` publishes, and whether it publishes them: one
    # CloudWatch embedded-metric-format line on stdout per run (ml/emf.py). The batch-scoring CronJob sets both
    # (RETAIL_ENVIRONMENT, RETAIL_EMF_ENABLED), as the inference Deployment does for the API (api/settings.py).
    environment: str = "local"
    emf_enabled: bool = False
    # The peak memory (RSS, GB) the local pipeline sizes its pieces for (RETAIL_MAX_MEMORY_GB): the gold table's
    # parts and the featurizer's product-median buckets hold at most `rows_per_piece` lines each; training holds at
    # most `ml.channel.sample_cap` training baskets (a seeded sample above it). What is held per basket or per product
    # elsewhere (the fits' group-bys, the holdout's labels and predictions) is not sized by it.
    max_memory_gb: float = Field(8.0, gt=0)


BYTES_PER_HELD_LINE = 1_000
"""Peak memory per line of a gold part featurized in memory, rounded up: measured on synthetic lines (3M-row file,
2 cores), 0.35 KB per line in a part of 0.5M lines and 0.71 KB in one of 2.5M."""
SHARE_PER_PIECE = 0.25
"""The share of RETAIL_MAX_MEMORY_GB one piece may take: the rest is the process, its per-basket state and Polars'
buffers."""


def rows_per_piece(max_memory_gb: float) -> int:
    """The most lines a piece holds for the pipeline to stay within `max_memory_gb`."""
    return max(1, math.floor(max_memory_gb * 1e9 * SHARE_PER_PIECE / BYTES_PER_HELD_LINE))
