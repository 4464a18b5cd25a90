"""The local lifecycle end to end on a small synthetic file."""

import json

from ml.registry import Registry


def test_pipeline_registers_a_champion_that_clears_the_gate(small_run):
    registration = small_run.result.registration
    assert registration["promoted"] is True
    assert registration["champion_version"] == registration["version"]
    assert small_run.result.training["gate"]["passed"] is True
    assert Registry(small_run.settings).champion_version() == registration["version"]


def test_manifest_traces_the_model_to_its_data(small_run):
    manifest = json.loads(open(small_run.result.manifest_uri).read())
    validation = manifest["validation"]
    assert validation["rows_in"] == validation["rows_accepted"] + validation["rows_quarantined"]
    assert manifest["zones"]["raw"]["rows"] == validation["rows_in"]
    assert manifest["zones"]["silver"]["rows"] == validation["rows_accepted"]
    assert len(manifest["input"]["sha256"]) == 64
    assert manifest["schema_version"]
    assert manifest["git_commit"]
    assert set(manifest["seconds"]) >= {"ingest", "validate", "features", "train", "register"}


def test_the_same_pipeline_runs_on_weekly_files_with_the_original_header(tmp_path):
    from ml.pipeline import run_pipeline
    from ml.progress import StageTimer
    from ml.synth import SynthConfig, generate, with_original_header, write_weekly
    from tests.conftest import settings_under

    folder = tmp_path / "weekly"
    files = write_weekly(with_original_header(generate(SynthConfig(rows=20_000, seed=9))), folder, crlf=True)
    result = run_pipeline(folder, settings_under(tmp_path / "run", holdout_weeks=20), StageTimer(quiet=True))
    manifest = json.loads(open(result.manifest_uri).read())
    assert manifest["input"]["variant"] == "original"
    assert len(manifest["input"]["files"]) == len(files)
    assert result.validation.rows_in == 20_000 == result.validation.rows_accepted
    assert result.registration["version"] == "1"
