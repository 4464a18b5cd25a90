"""Model bundles load only when intact and code-free; the champion alias moves only when earned."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import skops.io as sio
from sklearn.preprocessing import FunctionTransformer

from ml.bundle import BundleIntegrityError, load_bundle
from ml.families import load_model
from ml.pipeline import run_pipeline
from ml.progress import StageTimer
from ml.registry import Registry, decide
from ml.settings import GateSettings
from ml.synth import SynthConfig, generate, write_csv
from tests.conftest import settings_under


@pytest.fixture(scope="module")
def champion_bundle(small_run, tmp_path_factory) -> Path:
    copy = tmp_path_factory.mktemp("bundle") / "bundle"
    shutil.copytree(Registry(small_run.settings).download(), copy)
    return copy


def test_champion_bundle_predicts_the_holdout_it_was_scored_on(small_run, champion_bundle):
    bundle = load_bundle(champion_bundle)
    holdout = pl.read_parquet(small_run.settings.work_dir / small_run.result.run_id / "train" / "holdout_lines.parquet")
    holdout = holdout.filter(pl.col("BASKET_PRICE_SENSITIVITY") != "XX")
    features, probabilities = bundle.predict_proba(holdout)
    predicted = np.array(bundle.classes)[probabilities.argmax(axis=1)]
    accuracy = (predicted == features["BASKET_PRICE_SENSITIVITY"].to_numpy()).mean()
    assert accuracy == pytest.approx(bundle.meta["metrics"]["accuracy"], abs=1e-9)
    assert np.allclose(probabilities.sum(axis=1), 1.0)


def test_a_changed_artifact_is_refused(champion_bundle, tmp_path):
    tampered = tmp_path / "tampered"
    shutil.copytree(champion_bundle, tampered)
    model_file = next((tampered / "model").iterdir())
    model_file.write_bytes(model_file.read_bytes() + b"\0")
    with pytest.raises(BundleIntegrityError, match="checksum mismatch"):
        load_bundle(tampered)


def test_a_missing_artifact_is_refused(champion_bundle, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(champion_bundle, broken)
    (broken / "featurizer" / "category_price.parquet").unlink()
    with pytest.raises(BundleIntegrityError, match="missing"):
        load_bundle(broken)


def test_skops_models_with_foreign_types_are_not_loaded(tmp_path):
    path = tmp_path / "model.skops"
    sio.dump(FunctionTransformer(func=os.system), path)  # a model that would run a shell command
    with pytest.raises(ValueError, match="refusing to load"):
        load_model("decision_tree", path)


def test_a_scikit_learn_model_holding_a_numpy_function_is_not_loaded(tmp_path):
    """Trusting every name that begins with `numpy.` or `sklearn.` (the loader's former rule) would load this: the
    function is called on transform. Only the types on the list are trusted."""
    path = tmp_path / "model.skops"
    sio.dump(FunctionTransformer(func=np.sum), path)
    assert any(name.startswith("numpy.") for name in sio.get_untrusted_types(file=path))
    with pytest.raises(ValueError, match="not on the trusted list"):
        load_model("decision_tree", path)


def test_a_version_without_its_checksum_tag_is_not_downloaded(small_run):
    registry = Registry(small_run.settings)
    version = registry.champion_version()
    digest = registry.client.get_model_version(registry.name, version).tags["bundle_sha256"]
    registry.client.delete_model_version_tag(registry.name, version, "bundle_sha256")
    try:
        with pytest.raises(ValueError, match="no bundle_sha256 tag"):
            registry.download(version)
    finally:
        registry.client.set_model_version_tag(registry.name, version, "bundle_sha256", digest)
    assert registry.download(version).is_dir()


@pytest.mark.parametrize(
    ("gate_passed", "new", "champion", "promote"),
    [
        (False, 0.99, None, False),
        (True, 0.90, None, True),
        (True, 0.90, 0.95, False),
        (True, 0.95, 0.95, True),
        (True, 0.97, 0.95, True),
    ],
)
def test_champion_moves_only_when_the_gate_passes_and_it_is_not_worse(gate_passed, new, champion, promote):
    assert decide(gate_passed, new, champion, GateSettings()).promote is promote


def test_gate_failure_registers_but_does_not_promote(small_csv, tmp_path, monkeypatch):
    monkeypatch.setenv("RETAIL_GATE_MIN_ACCURACY", "0.9999")
    # a registry MLflow creates itself, where the others start as a copy of one (tests/conftest.py)
    settings = settings_under(tmp_path, holdout_weeks=20, registry_uri=f"sqlite:///{tmp_path / 'own' / 'mlflow.db'}")
    assert not (tmp_path / "own").exists()
    result = run_pipeline(small_csv, settings, StageTimer(quiet=True))
    assert result.training["gate"]["passed"] is False
    assert result.registration["promoted"] is False
    assert Registry(settings).champion_version() is None
    assert [v["gate_passed"] for v in Registry(settings).versions()] == ["false"]


def test_promote_and_rollback_move_the_alias(small_run, tmp_path):
    """On a copy of the small run's registry: the shared one keeps its single version and its champion."""
    shutil.copytree(Path(small_run.settings.registry_uri.removeprefix("sqlite:///")).parent, tmp_path / "registry")
    settings = settings_under(tmp_path)
    data = tmp_path / "second.csv"
    write_csv(generate(SynthConfig(rows=30_000, seed=8)), data)
    registry = Registry(settings)
    first = registry.champion_version()
    second = run_pipeline(data, settings, StageTimer(quiet=True)).registration
    assert second["previous_champion"] == first
    registry.promote(second["version"])
    assert registry.champion_version() == second["version"]
    assert registry.rollback() == first
    assert registry.champion_version() == first
    with pytest.raises(ValueError, match="no version"):
        registry.promote("999")
