"""`retail train --cloud`: train on SageMaker and register the version, through an inline Pulumi program."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import boto3
import typer

from infra.automation import AutomationRunner, PulumiCliMissing, require_cli
from infra.offline import find_project_dir
from infra.providers.program import TrainingInputs, training_program
from infra.providers.sourcedir import build_sourcedir, code_version
from ml.lake import filesystem
from ml.settings import GateSettings

TRAINING_PROJECT = "retail-mlops-training"


def read_manifest(uri: str) -> tuple[str, str]:
    """(data hash, gold channel URI) of a lake manifest written by `retail pipeline run`."""
    fs, path = filesystem(uri)
    with fs.open_input_stream(path) as stream:
        manifest = json.loads(stream.read())
    root = uri.rsplit("/manifests/", 1)[0]
    if root == uri:
        raise typer.BadParameter(f"{uri} is not under a lake's manifests/ folder", param_hint="--manifest")
    return manifest["input"]["sha256"], f"{root}/gold/{manifest['run_id']}/"


def train(
    cloud: Annotated[bool, typer.Option("--cloud", help="Train on SageMaker through Pulumi (the only mode here).")],
    manifest: Annotated[str, typer.Option(help="Lake manifest of the run whose gold data to train on (s3://...).")],
    stack: Annotated[
        str, typer.Option(help="Platform stack whose outputs locate the role, lake and registry.")
    ] = "dev",
    families: Annotated[str, typer.Option(help="Comma-separated model families.")] = "xgboost,logistic",
    image_uri: Annotated[
        str | None,
        typer.Option(help="Training image; default: the platform's ECR `training` repository at --image-tag."),
    ] = None,
    image_tag: Annotated[str, typer.Option(help="Tag of the project's training and inference images.")] = "0.1.0",
    on_demand: Annotated[bool, typer.Option("--on-demand", help="Do not use managed spot capacity.")] = False,
    project_dir: Annotated[Path | None, typer.Option(help="Directory holding Pulumi.yaml.")] = None,
) -> None:
    """Start a SageMaker training job and register its model version, approved or rejected by the gate.

    Locates the execution role, lake buckets, model package group, private subnets and
    images from the platform stack's outputs; the data KMS key by its alias
    (alias/retail-<stack>-kms-data). Retrains only when the data hash (from the manifest),
    the code version (hash of the uploaded source directory) or the hyperparameters change.
    """
    if not cloud:
        typer.echo("Local training runs in the pipeline: use `retail pipeline run`; add --cloud for SageMaker.")
        raise typer.Exit(2)
    try:
        require_cli("retail train --cloud")
    except PulumiCliMissing as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    directory = project_dir or find_project_dir()
    platform = AutomationRunner(directory, echo=typer.echo)
    platform.select_stack(stack)
    outputs = platform.outputs(stack)
    region = boto3.session.Session().region_name or "ap-southeast-1"
    data_hash, train_uri = read_manifest(manifest)
    tarball = build_sourcedir(directory)
    version = code_version(tarball)
    artifacts = outputs["lakeBuckets"]["artifacts"]
    key = f"code/sourcedir-{version}.tar.gz"
    boto3.client("s3", region_name=region).put_object(Bucket=artifacts, Key=key, Body=tarball)
    repositories = outputs["repositoryUrls"]
    inputs = TrainingInputs(
        stack=stack,
        region=region,
        vpc_id=outputs["vpcId"],
        subnet_ids=list(outputs["privateSubnetIds"]),
        role_arn=outputs["sagemakerExecutionRoleArn"],
        kms_key_id=f"alias/retail-{stack}-kms-data",
        group_name=outputs["modelPackageGroupName"],
        artifacts_bucket=artifacts,
        image_uri=image_uri or f"{repositories['training']}:{image_tag}",
        inference_image_uri=f"{repositories['inference']}:{image_tag}",
        train_uri=train_uri,
        code_uri=f"s3://{artifacts}/{key}",
        code_version=version,
        data_hash=data_hash,
        families=tuple(f.strip() for f in families.split(",") if f.strip()),
        use_spot=not on_demand,
    )
    runner = AutomationRunner(
        directory, project_name=TRAINING_PROJECT, program=training_program(inputs, GateSettings()), echo=typer.echo
    )
    training_stack = f"train-{stack}"
    runner.create_stack(training_stack)
    runner.set_config(training_stack, {"aws:region": region}, {})
    result = runner.up(training_stack, None)
    typer.echo(
        f"Model version {result['modelPackageArn']}: {result['approvalStatus']} ({result['approvalDescription']})"
    )
