"""RETAIL_MAX_MEMORY_GB sizes the pieces the pipeline holds: the gold table's parts and the product-median buckets.

The setting is read from the environment (default 8 GB, positive); the lines a piece may hold follow it in
proportion; and a pipeline run hands the pieces sized from it to the features stage, and the setting itself to
training, which sizes its sample from it.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ml import pipeline
from ml.progress import StageTimer
from ml.settings import BYTES_PER_HELD_LINE, SHARE_PER_PIECE, Settings, rows_per_piece
from ml.synth import SynthConfig, generate, write_csv
from tests.conftest import settings_under


def test_the_setting_is_read_from_the_environment_and_must_be_positive(monkeypatch):
    assert Settings().max_memory_gb == 8.0
    monkeypatch.setenv("RETAIL_MAX_MEMORY_GB", "2.5")
    assert Settings().max_memory_gb == 2.5
    monkeypatch.setenv("RETAIL_MAX_MEMORY_GB", "0")
    with pytest.raises(ValidationError):
        Settings()


def test_a_piece_holds_lines_in_proportion_to_the_setting():
    assert rows_per_piece(8.0) == int(8e9 * SHARE_PER_PIECE / BYTES_PER_HELD_LINE) == 2_000_000
    assert rows_per_piece(2.0) == rows_per_piece(8.0) // 4
    assert rows_per_piece(1e-9) == 1


def test_a_run_sizes_the_gold_parts_from_the_setting(tmp_path, monkeypatch):
    seen = []

    class Stop(Exception):
        pass

    def plan_gold(lines, holdout_weeks, seed, rows_per_piece=None):
        seen.append(rows_per_piece)
        raise Stop

    monkeypatch.setattr(pipeline, "plan_gold", plan_gold)
    write_csv(generate(SynthConfig(rows=3_000, seed=5)), tmp_path / "t.csv")
    with pytest.raises(Stop):
        pipeline.run_pipeline(tmp_path / "t.csv", settings_under(tmp_path / "run", holdout_weeks=20,
                                                                 max_memory_gb=0.5), StageTimer(quiet=True))
    assert seen == [rows_per_piece(0.5)]


def test_a_run_hands_the_setting_to_training(tmp_path, monkeypatch):
    from ml import train

    seen = []

    class Stop(Exception):
        pass

    def train_main(argv):
        seen.append(train.parse_args(argv).max_memory_gb)
        raise Stop

    monkeypatch.setattr(train, "main", train_main)
    monkeypatch.setenv("RETAIL_MAX_MEMORY_GB", "8")  # what training would read from the environment instead
    write_csv(generate(SynthConfig(rows=3_000, seed=5)), tmp_path / "t.csv")
    with pytest.raises(Stop):
        pipeline.run_pipeline(tmp_path / "t.csv", settings_under(tmp_path / "run", holdout_weeks=20,
                                                                 max_memory_gb=0.5), StageTimer(quiet=True))
    assert seen == [0.5]
