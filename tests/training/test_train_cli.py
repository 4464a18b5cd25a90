"""`retail train --cloud` up to the Pulumi boundary: families, image, platform outputs, and where Pulumi works."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from infra.images import image_digest
from infra.offline import run_offline
from infra.providers.kinds import TRAINING_JOB
from infra.providers.program import TRAINING_PROJECT, gate_hyperparameters
from infra.providers.sourcedir import code_version
from tests.training.conftest import DATA_HASH
from tests.training.fakes import PLATFORM_OUTPUTS, REGION, RecordingDocker, push_manifest

GIVEN_IMAGE = f"{PLATFORM_OUTPUTS['repositoryUrls']['training']}@sha256:{'ab' * 32}"


def snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` with its content hash."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def training_job_inputs(run) -> dict:
    """The TrainingJob's inputs, from running the program the CLI handed to Pulumi (mock runtime)."""
    offline = run_offline(run.training.program, project=TRAINING_PROJECT, stack="train-dev")
    return next(r.inputs for r in offline.resources if r.inputs.get("kind") == TRAINING_JOB)


@pytest.mark.parametrize(
    ("families", "message"),
    [
        ("xgboost,logistic", "unknown family logistic; known families: logistic_regression, decision_tree"),
        ("lightgbm,catboost", "unknown families lightgbm, catboost; known families:"),
        (" , ", "no family; known families:"),
    ],
)
def test_unknown_families_exit_2_naming_them_and_the_known_ones(families, message):
    result = CliRunner().invoke(app, ["train", "--cloud", "--manifest", "s3://b/manifests/r.json",
                                      "--families", families])
    assert result.exit_code == 2
    assert message in " ".join(result.output.replace("│", " ").split())


def test_a_run_leaves_the_repository_untouched(train, tmp_path):
    before = snapshot(tmp_path / "repo")
    run = train("--image-uri", GIVEN_IMAGE)
    assert run.result.exit_code == 0, run.result.output
    assert run.training.files_at_up, "the training workspace got its Pulumi files"
    assert snapshot(run.repo) == before


def test_the_training_stack_runs_in_its_own_project_in_a_temporary_dir_outside_the_repository(train):
    run = train("--image-uri", GIVEN_IMAGE)
    training = run.training
    assert training.project_name == TRAINING_PROJECT and training.project_at_up == TRAINING_PROJECT
    assert training.calls == [
        ("create_stack", "train-dev"), ("set_config", "train-dev"), ("up", "train-dev", "dev.json")
    ], "the policy pack runs with the platform stack's levels"
    assert training.config["train-dev"] == ({"aws:region": "ap-southeast-1"}, {})
    assert training.files_at_up == ["Pulumi.train-dev.yaml", "Pulumi.yaml"]
    assert not training.work_dir.is_relative_to(run.repo) and not training.work_dir.exists()


def test_the_platform_stack_is_only_read(train):
    run = train("--image-uri", GIVEN_IMAGE)
    (platform,) = [r for r in run.runners.runners if r.program is None]
    assert platform.work_dir == run.repo and platform.calls == [("select_stack", "dev"), ("outputs", "dev")]


def test_the_default_families_are_trained_under_their_real_names(train):
    from cli.train import DEFAULT_FAMILIES
    from ml.families import FAMILIES
    from ml.settings import GateSettings

    inputs = training_job_inputs(train("--image-uri", GIVEN_IMAGE))
    gate = gate_hyperparameters(GateSettings())  # the gate the version is registered by (cli/train.py)
    assert inputs["hyperparameters"] == {"families": ",".join(DEFAULT_FAMILIES), **gate}
    assert set(DEFAULT_FAMILIES) <= set(FAMILIES)
    assert inputs["data_hash"] == DATA_HASH and inputs["train_uri"].endswith("/gold/run-1/")


def test_an_image_tagged_with_the_code_version_is_used_by_digest_without_building(train, platform):
    repository = platform["repositoryUrls"]["training"]
    digest = push_manifest(repository, f"train-{code_version(Path(__file__).resolve().parents[2])}")
    run = train(docker=RecordingDocker(installed=False))
    assert run.result.exit_code == 0, run.result.output
    assert run.docker.calls == []
    assert training_job_inputs(run)["image_uri"] == f"{repository}@{digest}"


def test_a_missing_image_is_built_from_the_checkout_and_pushed_as_train_code_version(train, platform):
    repository = platform["repositoryUrls"]["training"]
    run = train()
    assert run.result.exit_code == 0, run.result.output
    build = run.docker.calls[-1][0]
    assert build[build.index("--tag") + 1] == f"{repository}:train-{code_version(run.repo)}"
    assert build[build.index("--file") + 1] == str(run.repo / "Dockerfile.training") and build[-1] == str(run.repo)
    inputs = training_job_inputs(run)
    assert inputs["image_uri"] == f"{repository}@{image_digest(repository, f'train-{code_version(run.repo)}', REGION)}"
    assert inputs["code_version"] == code_version(run.repo)


def test_a_missing_image_without_docker_exits_2_before_pulumi_runs(train):
    run = train(docker=RecordingDocker(installed=False))
    assert run.result.exit_code == 2
    assert "building it needs the docker CLI with buildx" in run.result.output
    assert "--image-uri" in run.result.output
    assert [r for r in run.runners.runners if r.program is not None] == []


def test_a_platform_without_the_data_key_output_exits_2_naming_it(train, platform):
    outputs = {k: v for k, v in platform.items() if k != "dataKeyArn"}
    run = train("--image-uri", GIVEN_IMAGE, outputs=outputs)
    assert run.result.exit_code == 2
    assert "has no output(s) dataKeyArn" in run.result.output


def test_on_demand_turns_spot_off(train):
    assert training_job_inputs(train("--image-uri", GIVEN_IMAGE, "--on-demand"))["use_spot"] is False
