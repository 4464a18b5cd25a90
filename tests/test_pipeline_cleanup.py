"""A pipeline run that fails leaves no copy of the silver lines, gold parts or training channel in its work folder.

Two runs fail on purpose: one whose every row fails validation (it stops after validation with "no row passed
validation"), and one whose features stage breaks after the gold parts were written. Neither may leave the run's
folder (silver lines, gold parts, channel) or the staged pieces behind in the work folder.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from ml import pipeline
from ml.ingest import InputError
from ml.progress import StageTimer
from ml.synth import SynthConfig, generate, write_csv
from tests.conftest import settings_under


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "transaction.csv"
    write_csv(generate(SynthConfig(rows=4_000, seed=21)), path)
    return path


def leftovers(work: Path) -> list[str]:
    return sorted(str(p.relative_to(work)) for p in work.rglob("*")) if work.exists() else []


def test_a_run_whose_rows_all_fail_validation_leaves_nothing_in_the_work_folder(export, tmp_path):
    frame = pl.read_csv(export, infer_schema=False)
    damaged = tmp_path / "damaged.csv"
    frame.with_columns(pl.lit("10/04/2006").alias("SHOP_DATE")).write_csv(damaged)
    settings = settings_under(tmp_path / "run")
    with pytest.raises(InputError, match="no row passed validation"):
        pipeline.run_pipeline(damaged, settings, StageTimer(quiet=True))
    assert leftovers(settings.work_dir) == []


def test_a_run_whose_features_stage_fails_leaves_nothing_in_the_work_folder(export, tmp_path, monkeypatch):
    written = []

    def write_then_break(plans, folder):
        written.extend(write_gold(plans, folder))
        raise RuntimeError("broken after the gold parts")

    write_gold = pipeline._write_gold
    monkeypatch.setattr(pipeline, "_write_gold", write_then_break)
    settings = settings_under(tmp_path / "run", holdout_weeks=20)
    with pytest.raises(RuntimeError, match="broken after the gold parts"):
        pipeline.run_pipeline(export, settings, StageTimer(quiet=True))
    assert written, "the stage got as far as the gold parts"
    assert leftovers(settings.work_dir) == []
