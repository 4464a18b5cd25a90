"""`retail train --cloud`: train on SageMaker and register the version, through an inline Pulumi program.

The training image is built from this repository (`Dockerfile.training`, entry point
`ml/sagemaker_entry.py`) and tagged `train-<code version>` in the platform's `training`
ECR repository; it is built and pushed only when that tag is missing. The inline program
runs as project `retail-mlops-training`, stack `train-<stack>`, in a temporary work dir
outside the repository, so the platform project's `Pulumi.yaml` cannot take it over and
no stack file is written into the checkout.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.extras import require_extras

if TYPE_CHECKING:  # the Pulumi side, boto3 and the model libraries load when the command runs, not with `retail`
    from infra import images
    from infra.automation import StackRunner
    from infra.providers.program import TrainingInputs

DEFAULT_REGION = "ap-southeast-1"
DEFAULT_FAMILIES = ("xgboost", "logistic_regression")
"""The families `--families` trains by default (infra.providers.program's, which tests/test_cli_startup.py checks)."""


def stack_runner(
    work_dir: Path, project_name: str | None = None, program: Callable[[], None] | None = None
) -> StackRunner:
    """The Automation API runner (a seam: tests replace it with a recording runner)."""
    from infra.automation import AutomationRunner

    return AutomationRunner(work_dir, project_name=project_name, program=program, echo=typer.echo)


def docker_runner() -> images.DockerRunner:
    """The docker CLI that builds the training image (a seam: tests record its commands)."""
    from infra import images

    return images.DockerCli()


def parse_families(value: str) -> str:
    """Typer callback: the comma-separated families, each one of ml.families.FAMILIES (exit 2 naming any other)."""
    from ml.families import FAMILIES

    families = tuple(dict.fromkeys(f.strip() for f in value.split(",") if f.strip()))
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        named = f"unknown famil{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}" if unknown else "no family"
        raise typer.BadParameter(f"{named}; known families: {', '.join(FAMILIES)}")
    return ",".join(families)


def read_manifest(uri: str) -> tuple[str, str]:
    """(data hash, gold channel URI) of a lake manifest written by `retail pipeline run`."""
    from ml.lake import filesystem

    root = uri.rsplit("/manifests/", 1)[0]
    if root == uri:
        raise typer.BadParameter(f"{uri} is not under a lake's manifests/ folder", param_hint="--manifest")
    fs, path = filesystem(uri)
    with fs.open_input_stream(path) as stream:
        manifest = json.loads(stream.read())
    return manifest["input"]["sha256"], f"{root}/gold/{manifest['run_id']}/"


def platform_outputs(stack: str, project_dir: Path) -> dict[str, Any]:
    """The platform stack's outputs, through the Automation API."""
    platform = stack_runner(project_dir)
    platform.select_stack(stack)
    return platform.outputs(stack)


def training_image(outputs: dict[str, Any], repo_root: Path, version: str, region: str) -> str:
    """The training image by digest: `train-<version>` in the platform's repository, built and pushed if missing."""
    from infra import images
    from infra.providers.sourcedir import DOCKERFILE, image_tag

    return images.ensure_image(
        outputs["repositoryUrls"]["training"],
        image_tag(version),
        repo_root / DOCKERFILE,
        repo_root,
        region,
        docker_runner(),
    )


def fail(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(2)


def train(
    manifest: Annotated[str, typer.Option(help="Lake manifest of the run whose gold data to train on (s3://...).")],
    cloud: Annotated[
        bool, typer.Option("--cloud", help="Train on SageMaker through Pulumi (the only mode of this command).")
    ] = False,
    stack: Annotated[
        str, typer.Option(help="Platform stack whose outputs locate the role, lake, key, images and registry.")
    ] = "dev",
    families: Annotated[
        str, typer.Option(help="Comma-separated model families (see ml/families.py).", callback=parse_families)
    ] = ",".join(DEFAULT_FAMILIES),
    image_uri: Annotated[
        str | None,
        typer.Option(help="Training image to use as is; default: the platform's `training` repository at "
                          "train-<code version>, built and pushed when missing."),
    ] = None,
    on_demand: Annotated[bool, typer.Option("--on-demand", help="Do not use managed spot capacity.")] = False,
    project_dir: Annotated[
        Path | None, typer.Option(help="The repository: holds the platform's Pulumi.yaml and the training sources.")
    ] = None,
) -> None:
    """Start a SageMaker training job and register its model version, approved or rejected by the gate.

    Locates the execution role, lake buckets, data KMS key (dataKeyArn), model package
    group, private subnets and image repositories from the platform stack's outputs.
    Retrains only when the data hash (from the manifest), the code version (hash of
    ml/**/*.py, pyproject.toml, uv.lock and Dockerfile.training) or the hyperparameters change.
    """
    if not cloud:
        typer.echo("Local training runs in the pipeline: use `retail pipeline run`; add --cloud for SageMaker.")
        raise typer.Exit(2)
    require_extras("retail train --cloud", "infra")
    import boto3

    from infra import images
    from infra.automation import PulumiCliMissing, require_cli
    from infra.offline import find_project_dir
    from infra.providers.program import (
        MissingPlatformOutputs,
        platform_tags,
        require_distributable,
        require_outputs,
        training_inputs,
    )
    from infra.providers.sourcedir import code_version
    from infra.training_config import training_config

    try:
        require_cli("retail train --cloud")
    except PulumiCliMissing as error:
        raise fail(str(error)) from None
    repo_root = project_dir or find_project_dir()
    outputs = platform_outputs(stack, repo_root)
    try:
        require_outputs(stack, outputs)
        resources = training_config(repo_root, stack)  # retail:training: the instances
        require_distributable(tuple(families.split(",")), resources.instance_count)
    except (MissingPlatformOutputs, ValueError) as error:
        raise fail(f"Cannot train: {error}") from None
    region = outputs.get("region") or boto3.session.Session().region_name or DEFAULT_REGION
    data_hash, train_uri = read_manifest(manifest)
    version = code_version(repo_root)
    try:
        image = image_uri or training_image(outputs, repo_root, version, region)
    except images.DockerMissing as error:
        raise fail(f"Cannot train: {error} (--image-uri)") from None
    inputs = training_inputs(
        stack,
        outputs,
        data_hash=data_hash,
        train_uri=train_uri,
        code_version=version,
        image_uri=image,
        families=tuple(families.split(",")),
        use_spot=not on_demand,
        tags=platform_tags(stack, outputs, repo_root),
        region=region,
        instance_type=resources.instance_type,
        instance_count=resources.instance_count,
    )
    result = run_training(inputs)
    typer.echo(
        f"Model version {result.get('modelPackageArn')}: {result.get('approvalStatus')} "
        f"({result.get('approvalDescription')})"
    )


def run_training(inputs: TrainingInputs) -> dict[str, Any]:
    """`pulumi up` of stack train-<stack> in project retail-mlops-training, from a temporary work dir.

    The work dir is outside the repository: a Pulumi.yaml there (the platform's) would
    decide the project, and the stack's config file would be written into the checkout.
    """
    from infra.automation import policy_config_for
    from infra.providers.program import TRAINING_PROJECT, training_program
    from ml.settings import GateSettings

    training_stack = f"train-{inputs.stack}"
    with tempfile.TemporaryDirectory(prefix="retail-train-") as work_dir:
        runner = stack_runner(Path(work_dir), TRAINING_PROJECT, training_program(inputs, GateSettings()))
        runner.create_stack(training_stack)
        runner.set_config(training_stack, {"aws:region": inputs.region}, {})
        # The policy pack judges the training job too (spot with checkpoints, KMS, the VPC), at the
        # platform stack's levels.
        return runner.up(training_stack, policy_config_for(inputs.stack))
