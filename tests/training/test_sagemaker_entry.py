"""The training image's entry point, run as SageMaker runs it: `python -m ml.sagemaker_entry train` over /opt/ml."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ml.bundle import load_bundle
from ml.sagemaker_entry import EntryError, SageMakerPaths, main, train_argv

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gold_channel(small_run) -> Path:
    """The gold folder a pipeline run wrote: what the lake's `train` channel holds."""
    return small_run.settings.work_dir / small_run.result.run_id / "train"


def opt_ml(root: Path, channel: Path | None, hyperparameters: dict | None) -> SageMakerPaths:
    """A folder laid out as SageMaker lays out /opt/ml for the container."""
    paths = SageMakerPaths(root)
    if channel is not None:
        shutil.copytree(channel, paths.channel)
    if hyperparameters is not None:
        paths.hyperparameters.parent.mkdir(parents=True)
        paths.hyperparameters.write_text(json.dumps(hyperparameters))
    return paths


def run_entry(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ml.sagemaker_entry", *args, "--root", str(root)],
        cwd=REPO, capture_output=True, text=True, check=False,
    )


def test_a_job_trains_from_the_channel_into_the_model_and_output_folders(gold_channel, tmp_path):
    paths = opt_ml(tmp_path, gold_channel, {"families": "logistic_regression,decision_tree",
                                            "decision_tree_max_depth": "6", "xgb-trials": "1"})
    completed = run_entry(tmp_path, "train")
    assert completed.returncode == 0, completed.stderr
    assert "decision_tree_holdout_macro_f1=" in completed.stdout
    assert load_bundle(paths.model).meta["family"] in {"logistic_regression", "decision_tree"}
    leaderboard = json.loads((paths.output_data / "leaderboard.json").read_text())
    assert next(r for r in leaderboard if r["family"] == "decision_tree")["params"]["max_depth"] == 6
    assert (paths.output_data / "model_card.md").is_file()
    assert not paths.failure.exists()


def test_an_unknown_family_fails_the_job_with_the_reason_in_the_failure_file(gold_channel, tmp_path):
    paths = opt_ml(tmp_path, gold_channel, {"families": "lightgbm"})
    completed = run_entry(tmp_path, "train")
    assert completed.returncode == 1
    assert paths.failure.read_text().startswith("unknown families: lightgbm (known: logistic_regression")


def test_an_unknown_hyperparameter_fails_the_job_with_argparses_message(gold_channel, tmp_path):
    paths = opt_ml(tmp_path, gold_channel, {"learning-rate": "0.1"})
    assert run_entry(tmp_path, "train").returncode == 1
    reason = paths.failure.read_text()
    assert reason.startswith("invalid hyperparameters: ")
    assert reason.endswith("unrecognized arguments: --learning-rate 0.1")


def test_a_job_without_the_train_channel_fails_saying_which_channel_it_needs(tmp_path):
    paths = opt_ml(tmp_path, None, {})
    assert main(["train", "--root", str(tmp_path)]) == 1
    assert "no 'train' channel" in paths.failure.read_text()


def test_a_broken_channel_fails_with_the_exception_in_the_failure_file(tmp_path):
    paths = opt_ml(tmp_path, None, None)
    paths.channel.mkdir(parents=True)
    assert main(["train", "--root", str(tmp_path)]) == 1
    assert paths.failure.read_text() == f"FileNotFoundError: {paths.channel / 'baskets'}"


def test_hyperparameters_become_ml_train_flags_after_sagemakers_folders(tmp_path):
    paths = SageMakerPaths(tmp_path)
    argv = train_argv({"xgb_trials": "2", "families": "xgboost"}, paths)
    assert argv == ["--train", str(paths.channel), "--model-dir", str(paths.model),
                    "--output-data-dir", str(paths.output_data), "--families", "xgboost", "--xgb-trials", "2"]


def test_the_gate_retail_train_cloud_passes_as_hyperparameters_is_the_gate_ml_train_applies(tmp_path, monkeypatch):
    """Not the image's defaults, nor RETAIL_GATE_* in the job's environment: the thresholds registration uses."""
    from infra.providers.program import gate_hyperparameters
    from ml.settings import GateSettings
    from ml.train import parse_args

    monkeypatch.setenv("RETAIL_GATE_MIN_ACCURACY", "0.9")
    gate = GateSettings(min_accuracy=0.5, min_macro_f1=0.45, min_class_precision=0.4)
    args = parse_args(train_argv({"families": "xgboost", **gate_hyperparameters(gate)}, SageMakerPaths(tmp_path)))
    assert (args.gate_min_accuracy, args.gate_min_macro_f1, args.gate_min_class_precision) == (0.5, 0.45, 0.4)


def test_a_hyperparameter_may_not_move_sagemakers_folders(tmp_path):
    with pytest.raises(EntryError, match="'model_dir' would override the folder SageMaker provides"):
        train_argv({"model_dir": "/tmp/elsewhere"}, SageMakerPaths(tmp_path))


def test_only_the_train_command_is_accepted(tmp_path):
    completed = run_entry(tmp_path, "serve")
    assert completed.returncode == 2 and "invalid choice: 'serve'" in completed.stderr


def test_non_string_hyperparameters_are_refused(gold_channel, tmp_path):
    paths = opt_ml(tmp_path, gold_channel, {"xgb-trials": 2})
    assert main(["train", "--root", str(tmp_path)]) == 1
    assert "must map names to strings" in paths.failure.read_text()


def test_a_stop_signal_ends_the_job_at_once_with_the_reason_in_the_failure_file(tmp_path, monkeypatch):
    """As PID 1 in the container Python gets no default SIGTERM handling; StopTrainingJob would wait 120 s."""
    import os
    import signal
    import time

    import ml.sagemaker_entry as entry

    def interrupted(_paths) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        raise AssertionError("the signal did not stop the job")

    monkeypatch.setattr(entry, "run", interrupted)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert main(["train", "--root", str(tmp_path)]) == 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert "stopped by signal SIGTERM" in (tmp_path / "output" / "failure").read_text()
