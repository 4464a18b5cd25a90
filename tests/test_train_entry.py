"""ml/train.py runs as SageMaker runs it: channels and output folders from SM_ variables."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from infra.providers.program import best_family, metric_definitions
from ml.bundle import load_bundle
from ml.train import main, parse_args


@pytest.fixture(scope="module")
def channel(small_run):
    return small_run.settings.work_dir / small_run.result.run_id / "train"


def test_sagemaker_variables_fill_the_folders(monkeypatch):
    monkeypatch.setenv("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train")
    monkeypatch.setenv("SM_MODEL_DIR", "/opt/ml/model")
    monkeypatch.setenv("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data")
    args = parse_args(["--xgboost-max-depth", "4", "--random-forest-n-estimators", "12"])
    assert (args.train, args.model_dir, args.output_data_dir) == (
        "/opt/ml/input/data/train", "/opt/ml/model", "/opt/ml/output/data")
    assert args.xgboost__max_depth == 4
    assert args.random_forest__n_estimators == 12


def test_missing_folders_are_a_usage_error(monkeypatch, capsys):
    for name in ("SM_CHANNEL_TRAIN", "SM_MODEL_DIR", "SM_OUTPUT_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit):
        parse_args([])
    assert "--train is required" in capsys.readouterr().err


def test_script_mode_run_writes_bundle_reports_and_metric_lines(channel, tmp_path):
    env = {
        "SM_CHANNEL_TRAIN": str(channel),
        "SM_MODEL_DIR": str(tmp_path / "model"),
        "SM_OUTPUT_DATA_DIR": str(tmp_path / "output"),
        "PATH": "/usr/bin:/bin",
    }
    completed = subprocess.run(
        [sys.executable, "-m", "ml.train", "--families", "logistic_regression,decision_tree",
         "--decision-tree-max-depth", "6"],
        env=env, capture_output=True, text=True, check=True,
    )
    printed = dict(re.findall(r"(\w+)=([-+0-9.eE]+);", completed.stdout))
    families = ("logistic_regression", "decision_tree")
    assert set(metric_definitions(families)) <= set(printed), "every metric SageMaker is told to read is printed"
    bundle = load_bundle(tmp_path / "model")
    leaderboard = json.loads((tmp_path / "output" / "leaderboard.json").read_text())
    assert len(leaderboard) == 2
    assert bundle.meta["family"] == leaderboard[0]["family"] == best_family(
        {k: float(v) for k, v in printed.items()}, families
    ), "the bundle, the leaderboard and the cloud's reading of the metric lines name the same winner"
    validation = [r["validation"]["macro_f1"] for r in leaderboard]
    assert validation == sorted(validation, reverse=True), "ranked on the validation weeks"
    assert next(r for r in leaderboard if r["family"] == "decision_tree")["params"]["max_depth"] == 6
    for report in ("model_card.md", "model_card.html", "confusion_decision_tree.png", "summary.json"):
        assert (tmp_path / "output" / report).is_file()


def test_the_validation_window_defaults_to_the_one_the_holdout_plan_chose(channel, tmp_path):
    lineage = json.loads((channel / "lineage.json").read_text())
    summary = main(["--train", str(channel), "--model-dir", str(tmp_path / "model"),
                    "--output-data-dir", str(tmp_path / "output"), "--families", "decision_tree"])
    assert summary["data"]["validation_weeks"] == lineage["validation_weeks"]
