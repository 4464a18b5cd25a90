"""The pieces of `retail train --cloud`: source directory, metric definitions, gate, and the inline program."""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

import pulumi
import pytest
from typer.testing import CliRunner

from cli.main import app
from infra import automation
from infra.offline import run_offline
from infra.providers.kinds import TRAINING_JOB
from infra.providers.program import TrainingInputs, gate_approval, metric_definitions, training_program
from infra.providers.sourcedir import ENTRY_POINT, build_sourcedir, code_version
from ml.settings import GateSettings
from policies.catalog import RULES
from policies.evaluate import evaluate
from policies.offline import resources_of

REPO = Path(__file__).resolve().parents[2]
FAMILIES = ("xgboost", "logistic")
INPUTS = TrainingInputs(
    stack="dev",
    region="ap-southeast-1",
    vpc_id="vpc-1",
    subnet_ids=["subnet-a", "subnet-b"],
    role_arn="arn:aws:iam::123456789012:role/sagemaker",
    kms_key_id="alias/retail-dev-kms-data",
    group_name="retail-dev-price-sensitivity",
    artifacts_bucket="artifacts",
    image_uri="training:0.1.0",
    inference_image_uri="inference:0.1.0",
    train_uri="s3://lake/gold/run/",
    code_uri="s3://artifacts/code/sourcedir-abc.tar.gz",
    code_version="abc",
    data_hash="d" * 64,
    families=FAMILIES,
)


@pytest.fixture(autouse=True)
def _neutral_pulumi_runtime():
    yield
    pulumi.runtime.reset_options()
    pulumi.runtime.set_all_config({})


def test_the_source_directory_is_reproducible_so_its_hash_is_the_code_version():
    assert code_version(build_sourcedir(REPO)) == code_version(build_sourcedir(REPO))


def test_the_source_directory_holds_the_ml_package_requirements_and_a_root_launcher():
    with tarfile.open(fileobj=io.BytesIO(build_sourcedir(REPO))) as tar:
        names = set(tar.getnames())
        launcher = tar.extractfile(ENTRY_POINT).read().decode()
        requirements = tar.extractfile("requirements.txt").read().decode()
    assert {"ml/train.py", "ml/__init__.py", ENTRY_POINT} <= names
    assert "from ml.train import main" in launcher
    assert "polars" in requirements and "matplotlib" in requirements


def test_metric_definitions_match_the_lines_the_entry_point_prints():
    definitions = metric_definitions(("xgboost",))
    match = re.search(definitions["xgboost_holdout_macro_f1"], "xgboost_holdout_macro_f1=0.998000;")
    assert match and float(match.group(1)) == 0.998


def _family_metrics(family: str, accuracy: float, macro_f1: float, precision: float) -> dict[str, float]:
    return {
        f"{family}_holdout_accuracy": accuracy,
        f"{family}_holdout_macro_f1": macro_f1,
        **{f"{family}_holdout_precision_{c}": precision for c in ("LA", "MM", "UM")},
    }


def test_the_gate_approves_the_best_family_when_it_meets_the_thresholds():
    metrics = _family_metrics("xgboost", 0.9, 0.85, 0.8) | _family_metrics("logistic", 0.7, 0.6, 0.6)
    assert gate_approval(metrics, FAMILIES, GateSettings()) == (
        "Approved",
        "xgboost: gate passed (accuracy, macro-F1, per-class precision)",
    )


def test_the_gate_rejects_with_the_failed_thresholds():
    status, reason = gate_approval(_family_metrics("xgboost", 0.5, 0.4, 0.9), FAMILIES, GateSettings())
    assert status == "Rejected" and "accuracy 0.5000 < 0.75" in reason


def test_the_gate_rejects_a_family_below_the_class_precision_threshold():
    metrics = _family_metrics("xgboost", 0.9, 0.85, 0.8) | {"xgboost_holdout_precision_UM": 0.5}
    status, reason = gate_approval(metrics, FAMILIES, GateSettings())
    assert status == "Rejected" and "precision_UM 0.5000 < 0.65" in reason


def test_the_gate_does_not_score_a_family_with_missing_precision():
    metrics = {"xgboost_holdout_accuracy": 0.9, "xgboost_holdout_macro_f1": 0.85}
    assert gate_approval(metrics, FAMILIES, GateSettings())[0] == "Rejected"


def test_the_gate_rejects_a_job_without_metrics():
    assert gate_approval({}, FAMILIES, GateSettings())[0] == "Rejected"


def test_the_training_program_passes_the_policy_packs_sagemaker_rules_offline():
    run = run_offline(
        lambda: training_program(INPUTS, GateSettings())(), project="retail-mlops-training", stack="train-dev"
    )
    resources = resources_of(run)
    job = next(r for r in resources if r.props.get("kind") == TRAINING_JOB)
    assert job.props["use_spot"] is True and job.props["checkpoint_uri"].startswith("s3://artifacts/checkpoints/")
    sagemaker_rules = [r for r in RULES if r.name.startswith("sagemaker-")]
    assert evaluate(sagemaker_rules, resources, {}) == []


def test_train_cloud_without_the_pulumi_cli_exits_2_saying_how_to_install_it(monkeypatch):
    monkeypatch.setattr(automation.shutil, "which", lambda _: None)
    result = CliRunner().invoke(app, ["train", "--cloud", "--manifest", "s3://lake/manifests/run.json"])
    assert result.exit_code == 2
    assert "The Pulumi CLI is required for `retail train --cloud`" in result.output
