"""The pieces of `retail train --cloud`: inputs from the platform's outputs, metric definitions, gate, the program."""

from __future__ import annotations

import json
import re

import pulumi
import pytest
from typer.testing import CliRunner

from cli.main import app
from infra import automation
from infra.offline import run_offline
from infra.providers.kinds import MODEL_VERSION, TRAINING_JOB
from infra.providers.program import (
    DEFAULT_FAMILIES,
    MissingPlatformOutputs,
    TrainingInputs,
    best_family,
    gate_approval,
    gate_hyperparameters,
    metric_definitions,
    training_inputs,
    training_program,
)
from ml.families import FAMILIES
from ml.settings import GateSettings
from policies.catalog import RULES
from policies.evaluate import evaluate
from policies.offline import resources_of
from tests.training.fakes import DATA_KEY_ARN, PLATFORM_OUTPUTS

TAGS = {"project": "retail-mlops", "environment": "dev", "owner": "mlops", "cost-center": "retail"}
INPUTS = training_inputs(
    "dev",
    PLATFORM_OUTPUTS,
    data_hash="d" * 64,
    train_uri="s3://retail-dev-lake-raw-5e1f2a9/gold/run-1/",
    code_version="0123456789abcdef",
    image_uri=f"{PLATFORM_OUTPUTS['repositoryUrls']['training']}@sha256:{'ab' * 32}",
    tags=TAGS,
)


@pytest.fixture(autouse=True)
def _neutral_pulumi_runtime():
    yield
    pulumi.runtime.reset_options()
    pulumi.runtime.set_all_config({})


def test_the_default_families_are_real_families():
    assert set(DEFAULT_FAMILIES) <= set(FAMILIES)


def test_inputs_take_the_data_key_arn_subnets_role_and_group_from_the_platform_outputs():
    assert isinstance(INPUTS, TrainingInputs)
    assert INPUTS.data_key_arn == DATA_KEY_ARN
    assert INPUTS.subnet_ids == PLATFORM_OUTPUTS["privateSubnetIds"]
    assert INPUTS.role_arn == PLATFORM_OUTPUTS["sagemakerExecutionRoleArn"]
    assert INPUTS.group_name == "retail-dev-price-sensitivity" and INPUTS.region == "ap-southeast-1"
    assert INPUTS.inference_image_uri == INPUTS.image_uri, "the registered version names an image that exists"


def test_a_platform_without_the_data_key_output_is_refused_naming_it():
    outputs = {k: v for k, v in PLATFORM_OUTPUTS.items() if k != "dataKeyArn"}
    with pytest.raises(MissingPlatformOutputs, match="has no output.s. dataKeyArn"):
        training_inputs("dev", outputs, data_hash="d", train_uri="s3://b/", code_version="c", image_uri="i")


def test_metric_definitions_match_the_lines_the_entry_point_prints():
    definitions = metric_definitions(("xgboost",))
    match = re.search(definitions["xgboost_holdout_macro_f1"], "xgboost_holdout_macro_f1=0.998000;")
    assert match and float(match.group(1)) == 0.998
    match = re.search(definitions["xgboost_validation_macro_f1"], "xgboost_validation_macro_f1=0.997000;")
    assert match and float(match.group(1)) == 0.997


def _family_metrics(
    family: str, accuracy: float, macro_f1: float, precision: float, validation: tuple[float, float] | None = None
) -> dict[str, float]:
    """The lines ml/train.py prints for a family; `validation` is (macro-F1, accuracy), the holdout's by default."""
    validation_f1, validation_accuracy = validation or (macro_f1, accuracy)
    return {
        f"{family}_holdout_accuracy": accuracy,
        f"{family}_holdout_macro_f1": macro_f1,
        **{f"{family}_holdout_precision_{c}": precision for c in ("LA", "MM", "UM")},
        f"{family}_validation_macro_f1": validation_f1,
        f"{family}_validation_accuracy": validation_accuracy,
    }


def test_the_gate_approves_the_best_family_when_it_meets_the_thresholds():
    metrics = _family_metrics("xgboost", 0.9, 0.85, 0.8) | _family_metrics("logistic_regression", 0.7, 0.6, 0.6)
    assert gate_approval(metrics, DEFAULT_FAMILIES, GateSettings()) == (
        "Approved",
        "xgboost: gate passed (accuracy, macro-F1, per-class precision)",
    )


def test_the_best_family_is_ranked_like_the_entry_points_leaderboard():
    tied = _family_metrics("xgboost", 0.80, 0.85, 0.8) | _family_metrics("logistic_regression", 0.82, 0.85, 0.8)
    assert best_family(tied, DEFAULT_FAMILIES) == "logistic_regression"
    assert best_family({}, DEFAULT_FAMILIES) is None


def test_the_best_family_is_chosen_on_the_validation_weeks_not_the_holdout():
    metrics = _family_metrics("xgboost", 0.95, 0.95, 0.9, validation=(0.90, 0.90)) | _family_metrics(
        "logistic_regression", 0.90, 0.90, 0.9, validation=(0.92, 0.92)
    )
    assert best_family(metrics, DEFAULT_FAMILIES) == "logistic_regression"
    without_validation = {k: v for k, v in metrics.items() if not k.startswith("logistic_regression_validation")}
    assert best_family(without_validation, DEFAULT_FAMILIES) == "xgboost"


def test_the_gate_rejects_with_the_failed_thresholds():
    status, reason = gate_approval(_family_metrics("xgboost", 0.5, 0.4, 0.9), DEFAULT_FAMILIES, GateSettings())
    assert status == "Rejected" and "accuracy 0.5000 < 0.75" in reason


def test_the_gate_rejects_a_family_below_the_class_precision_threshold():
    metrics = _family_metrics("xgboost", 0.9, 0.85, 0.8) | {"xgboost_holdout_precision_UM": 0.5}
    status, reason = gate_approval(metrics, DEFAULT_FAMILIES, GateSettings())
    assert status == "Rejected" and "precision_UM 0.5000 < 0.65" in reason


def test_the_gate_does_not_score_a_family_with_missing_precision():
    metrics = {"xgboost_holdout_accuracy": 0.9, "xgboost_holdout_macro_f1": 0.85}
    assert gate_approval(metrics, DEFAULT_FAMILIES, GateSettings())[0] == "Rejected"


def test_the_gate_rejects_a_job_without_metrics():
    assert gate_approval({}, DEFAULT_FAMILIES, GateSettings())[0] == "Rejected"


def _offline(inputs: TrainingInputs):
    return run_offline(lambda: training_program(inputs, GateSettings())(), project="retail-mlops-training",
                       stack="train-dev")


def test_the_job_judges_its_gate_by_the_thresholds_the_version_is_registered_by():
    """The job writes its own gate verdict into the report a deploy verifies; the program approves by `gate`."""
    gate = GateSettings(min_accuracy=0.5, min_macro_f1=0.45, min_class_precision=0.4)
    overriding = TrainingInputs(**{**INPUTS.__dict__, "hyperparameters": {"gate-min-accuracy": "0.99"}})
    offline = run_offline(lambda: training_program(overriding, gate)(), project="retail-mlops-training",
                          stack="train-dev")
    job = next(r for r in offline.resources if r.inputs.get("kind") == TRAINING_JOB)
    assert {k: v for k, v in job.inputs["hyperparameters"].items() if k.startswith("gate-")} == {
        "gate-min-accuracy": "0.5", "gate-min-macro-f1": "0.45", "gate-min-class-precision": "0.4"}


def test_the_training_program_passes_the_policy_packs_sagemaker_rules_offline():
    resources = resources_of(_offline(INPUTS))
    job = next(r for r in resources if r.props.get("kind") == TRAINING_JOB)
    assert job.props["use_spot"] is True and job.props["checkpoint_uri"].startswith("s3://retail-dev-lake-artifacts")
    sagemaker_rules = [r for r in RULES if r.name.startswith("sagemaker-")]
    assert evaluate(sagemaker_rules, resources, {}) == []


def test_the_job_uses_the_data_key_arn_for_volume_and_output_and_the_image_by_digest():
    job = next(r for r in _offline(INPUTS).resources if r.inputs.get("kind") == TRAINING_JOB)
    assert job.inputs["volume_kms_key_id"] == job.inputs["output_kms_key_id"] == DATA_KEY_ARN
    assert "@sha256:" in job.inputs["image_uri"]
    assert job.inputs["hyperparameters"] == {"families": ",".join(INPUTS.families),
                                             **gate_hyperparameters(GateSettings())}
    assert job.inputs["tags"] == TAGS


def test_the_model_version_records_the_family_and_the_code_version():
    version = next(r for r in _offline(INPUTS).resources if r.inputs.get("kind") == MODEL_VERSION)
    assert "family" in version.inputs and version.inputs["lineage"]["code_version"] == "0123456789abcdef"


def test_the_security_group_carries_the_platforms_tags_through_its_provider():
    run = _offline(INPUTS)
    (group,) = run.of_type("aws:ec2/securityGroup:SecurityGroup")
    (provider,) = [r for r in run.resources if r.urn == group.provider.rsplit("::", 1)[0]]
    assert json.loads(provider.inputs["defaultTags"])["tags"] == TAGS and provider.inputs["region"] == "ap-southeast-1"


def test_train_cloud_without_the_pulumi_cli_exits_2_saying_how_to_install_it(monkeypatch):
    monkeypatch.setattr(automation.shutil, "which", lambda _: None)
    result = CliRunner().invoke(app, ["train", "--cloud", "--manifest", "s3://lake/manifests/run.json"])
    assert result.exit_code == 2
    assert "The Pulumi CLI is required for `retail train --cloud`" in result.output


def test_validation_scores_closer_than_the_printed_decimals_rank_as_the_job_ranked_them():
    """The job ranks on the scores rounded as it prints them; equal there, the first family in order wins."""
    metrics = _family_metrics("xgboost", 0.9, 0.9, 0.9, validation=(0.9000004, 0.95)) | _family_metrics(
        "logistic_regression", 0.9, 0.9, 0.9, validation=(0.9000001, 0.95)
    )
    first = next(f for f in DEFAULT_FAMILIES if f in ("xgboost", "logistic_regression"))
    assert best_family(metrics, DEFAULT_FAMILIES) == first
