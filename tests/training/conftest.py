"""`retail train --cloud` up to the Pulumi boundary: the real CLI, S3 and ECR on moto, Pulumi and docker recorded."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import boto3
import pulumi
import pytest
from click.testing import Result
from typer.testing import CliRunner

from cli import train as train_cli
from cli.main import app
from infra import automation
from tests.training.code_checkout import checkout
from tests.training.fakes import PLATFORM_OUTPUTS, REGION, REGISTRY, RecordingDocker, RunnerFactory

DATA_HASH = "5" * 64


@dataclass
class TrainRun:
    result: Result
    outputs: dict
    runners: RunnerFactory
    docker: RecordingDocker
    repo: Path

    @property
    def training(self):
        """The runner of the training stack (the one given an inline program)."""
        (runner,) = [r for r in self.runners.runners if r.program is not None]
        return runner


@pytest.fixture
def platform(moto_endpoint, request) -> dict:
    """A deployed dev platform of this test's own on the moto server: its outputs, ECR repositories and raw bucket.

    The raw bucket holds run-1's manifest, as `retail pipeline run` writes it. Names get a
    suffix per test, since the server (and the immutable tags pushed to it) lives all session.
    """
    suffix = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:7]
    outputs = json.loads(json.dumps(PLATFORM_OUTPUTS))
    outputs["lakeBuckets"] = {zone: f"retail-dev-lake-{zone}-{suffix}" for zone in outputs["lakeBuckets"]}
    outputs["repositoryUrls"] = {i: f"{REGISTRY}/retail-dev-registry-{suffix}/{i}" for i in outputs["repositoryUrls"]}
    ecr = boto3.client("ecr", region_name=REGION)
    for url in outputs["repositoryUrls"].values():
        ecr.create_repository(repositoryName=url.split("/", 1)[1], imageTagMutability="IMMUTABLE")
    s3, raw = boto3.client("s3", region_name=REGION), outputs["lakeBuckets"]["raw"]
    s3.create_bucket(Bucket=raw, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket=raw, Key="manifests/run-1.json",
                  Body=json.dumps({"run_id": "run-1", "input": {"sha256": DATA_HASH}}))
    return outputs


@pytest.fixture
def train(platform, monkeypatch, tmp_path) -> Callable[..., TrainRun]:
    """Run `retail train --cloud --manifest ... --project-dir <copy>` with extra arguments; Pulumi CLI 'installed'."""
    repo = checkout(tmp_path / "repo", extra=("Pulumi.yaml", "Pulumi.dev.yaml"))
    manifest = f"s3://{platform['lakeBuckets']['raw']}/manifests/run-1.json"
    monkeypatch.setattr(automation.shutil, "which", lambda name: f"/usr/local/bin/{name}")

    def invoke(*args: str, outputs: dict | None = None, docker: RecordingDocker | None = None) -> TrainRun:
        outputs = dict(platform if outputs is None else outputs)
        runners = RunnerFactory(outputs_by_stack={"dev": outputs})
        docker = docker or RecordingDocker()
        monkeypatch.setattr(train_cli, "stack_runner", runners)
        monkeypatch.setattr(train_cli, "docker_runner", lambda: docker)
        argv = ["train", "--cloud", "--manifest", manifest, "--project-dir", str(repo), *args]
        result = CliRunner().invoke(app, argv)
        return TrainRun(result, outputs, runners, docker, repo)

    yield invoke
    pulumi.runtime.reset_options()
    pulumi.runtime.set_all_config({})
