"""`retail models history`: every version in the stack's SageMaker model package group, read from moto."""

from __future__ import annotations

import re

import boto3
import pytest
from typer.testing import CliRunner

from cli import train as train_cli
from cli.main import app
from infra import automation
from infra.providers.model_version import ModelVersionProvider
from tests.training.fakes import REGION, RunnerFactory


@pytest.fixture
def group(moto_endpoint, request) -> str:
    """A model package group with two versions, as two `retail train --cloud` runs register them."""
    name = f"history-{request.node.name.replace('_', '-')[-40:]}".strip("-")
    boto3.client("sagemaker", region_name=REGION).create_model_package_group(ModelPackageGroupName=name)
    for data_hash, family, accuracy, approval in (("a" * 64, "xgboost", 0.81, "Approved"),
                                                  ("b" * 64, "random_forest", 0.71, "Rejected")):
        ModelVersionProvider().create({
            "region": REGION, "group_name": name, "model_artifact_uri": f"s3://artifacts/{data_hash[:4]}.tar.gz",
            "image_uri": "123456789012.dkr.ecr.ap-southeast-1.amazonaws.com/reg/inference:0.1.0",
            "metrics": {f"{family}_holdout_accuracy": accuracy, f"{family}_holdout_macro_f1": accuracy - 0.05},
            "lineage": {"data_hash": data_hash, "code_version": "c0de", "training_job_arn": "arn"},
            "family": family, "approval_status": approval, "approval_description": "", "description": "",
        })
    return name


def rows(output: str) -> list[list[str]]:
    """The version rows of the printed table, as cells (the date and time of `created` kept together)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("version"))
    return [line.split()[:6] + [" ".join(line.split()[6:])] for line in lines[start + 1:] if line.strip()]


def test_history_lists_every_version_newest_first_with_approval_family_metrics_and_data(group):
    result = CliRunner().invoke(app, ["models", "history", "--group", group, "--region", REGION])
    assert result.exit_code == 0, result.output
    (newest, oldest) = [row[:6] for row in rows(result.output)]
    assert newest == ["2", "Rejected", "random_forest", "0.71", "0.66", "b" * 12]
    assert oldest == ["1", "Approved", "xgboost", "0.81", "0.76", "a" * 12]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", row[6]) for row in rows(result.output))


def test_history_of_a_stack_reads_the_group_from_the_platform_outputs(group, monkeypatch):
    monkeypatch.setattr(automation.shutil, "which", lambda name: f"/usr/local/bin/{name}")
    runners = RunnerFactory(outputs_by_stack={"dev": {"modelPackageGroupName": group, "region": REGION}})
    monkeypatch.setattr(train_cli, "stack_runner", runners)
    result = CliRunner().invoke(app, ["models", "history", "--stack", "dev"])
    assert result.exit_code == 0, result.output
    assert [row[0] for row in rows(result.output)] == ["2", "1"]
    assert runners.runners[0].calls == [("select_stack", "dev"), ("outputs", "dev")]


def test_history_of_a_stack_without_the_pulumi_cli_exits_2_pointing_at_group(monkeypatch):
    monkeypatch.setattr(automation.shutil, "which", lambda _: None)
    result = CliRunner().invoke(app, ["models", "history", "--stack", "dev"])
    assert result.exit_code == 2 and "--group" in result.output


@pytest.mark.parametrize("argv", [[], ["--stack", "dev", "--group", "g"]])
def test_history_needs_exactly_one_of_stack_and_group(argv):
    result = CliRunner().invoke(app, ["models", "history", *argv])
    assert result.exit_code == 2 and "give --stack" in result.output


def test_an_empty_group_says_how_versions_get_there(moto_endpoint):
    boto3.client("sagemaker", region_name=REGION).create_model_package_group(ModelPackageGroupName="history-empty")
    result = CliRunner().invoke(app, ["models", "history", "--group", "history-empty", "--region", REGION])
    assert result.exit_code == 0 and "No versions registered in history-empty yet" in result.output
