"""What `retail train --cloud` meets outside this process, for tests: the platform's outputs, Pulumi's
workspace files and the docker CLI.

- `PLATFORM_OUTPUTS`: a dev platform stack's outputs as `infra/platform.py` exports them,
  with realistic AWS identifiers (moto's default account, so ECR and S3 calls reach moto);
- `WorkspaceRunner`: the recording runner, plus the files `pulumi.automation.LocalWorkspace`
  leaves in its work dir (written by LocalWorkspace's own methods): `Pulumi.yaml` for an
  inline program unless the dir already has one (which then decides the project), and
  `Pulumi.<stack>.yaml` when config is set;
- `RecordingDocker`: a `DockerRunner` that records each command; a pushing `buildx build`
  puts a manifest under the tag in the (moto) registry and writes its digest to the
  metadata file, as buildx does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from pulumi.automation import LocalWorkspace, StackSettings
from pulumi.automation._local_workspace import _load_project_settings, default_project

from tests.automation.recording import RecordingRunner

ACCOUNT = "123456789012"
REGION = "ap-southeast-1"
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
DATA_KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
PLATFORM_OUTPUTS = {
    "environment": "dev",
    "region": REGION,
    "vpcId": "vpc-0a1b2c3d4e5f67890",
    "privateSubnetIds": ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"],
    "lakeBuckets": {zone: f"retail-dev-lake-{zone}-5e1f2a9" for zone in ("raw", "silver", "gold", "artifacts")},
    "repositoryUrls": {image: f"{REGISTRY}/retail-dev-registry/{image}" for image in ("inference", "training")},
    "sagemakerExecutionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/retail-dev-ml-sagemaker-execution-7c0d1e2",
    "modelPackageGroupName": "retail-dev-price-sensitivity",
    "dataKeyArn": DATA_KEY_ARN,
}


@dataclass(eq=False)
class WorkspaceRunner(RecordingRunner):
    work_dir: Path = Path(".")
    project_name: str | None = None
    program: Callable[[], None] | None = None
    project_at_up: str | None = None
    files_at_up: list[str] = field(default_factory=list)

    def _workspace(self) -> LocalWorkspace:
        workspace = object.__new__(LocalWorkspace)  # its file methods only need work_dir; no CLI is started
        workspace.work_dir = str(self.work_dir)
        return workspace

    def create_stack(self, stack: str) -> None:
        super().create_stack(stack)
        if self.program is not None:
            try:
                _load_project_settings(str(self.work_dir))
            except FileNotFoundError:
                self._workspace().save_project_settings(default_project(self.project_name))

    def set_config(self, stack: str, values: Mapping[str, str], secret: Mapping[str, str]) -> None:
        super().set_config(stack, values, secret)
        self._workspace().save_stack_settings(stack, StackSettings(config={**values, **secret}))

    def up(self, stack: str, policy_config: Path | None, config_file: Path | None = None) -> dict:
        self.project_at_up = _load_project_settings(str(self.work_dir)).name
        self.files_at_up = sorted(p.name for p in self.work_dir.iterdir())
        return super().up(stack, policy_config, config_file)


@dataclass
class RunnerFactory:
    """Stands in for `cli.train.stack_runner`: one WorkspaceRunner per call, outputs by stack."""

    outputs_by_stack: dict[str, dict] = field(default_factory=dict)
    runners: list[WorkspaceRunner] = field(default_factory=list)

    def __call__(self, work_dir: Path, project_name: str | None = None, program=None) -> WorkspaceRunner:
        runner = WorkspaceRunner(
            outputs_by_stack=self.outputs_by_stack, work_dir=Path(work_dir), project_name=project_name, program=program
        )
        self.runners.append(runner)
        return runner


@dataclass
class RecordingDocker:
    installed: bool = True
    fail_builds: bool = False
    another_run_pushed_first: bool = False
    """The build fails because another run pushed the same (immutable) tag meanwhile."""
    calls: list[tuple[list[str], str | None]] = field(default_factory=list)

    def available(self) -> bool:
        return self.installed

    def run(self, args: Sequence[str], *, stdin: str | None = None) -> None:
        from infra.images import ImageError

        self.calls.append((list(args), stdin))
        if list(args[:2]) == ["buildx", "build"]:
            if self.another_run_pushed_first:
                push_manifest(*args[args.index("--tag") + 1].rsplit(":", 1))
            if self.fail_builds or self.another_run_pushed_first:
                raise ImageError("`docker buildx ...` failed with exit code 1")
            self._push(list(args))

    def commands(self) -> list[str]:
        return [" ".join(args[:2]) for args, _ in self.calls]

    @staticmethod
    def _push(args: list[str]) -> None:
        image = args[args.index("--tag") + 1]
        repository_url, tag = image.rsplit(":", 1)
        digest = push_manifest(repository_url, tag)
        Path(args[args.index("--metadata-file") + 1]).write_text(json.dumps({"containerimage.digest": digest}))


def push_manifest(repository_url: str, tag: str) -> str:
    """Put an image manifest under `tag` in the (moto) repository; the registry's digest for it."""
    name = repository_url.split("/", 1)[1]
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 2,
            "digest": f"sha256:{'0' * 64}",
        },
        "layers": [],
    }
    ecr = boto3.client("ecr", region_name=REGION)
    ecr.put_image(repositoryName=name, imageManifest=json.dumps(manifest), imageTag=tag)
    return ecr.describe_images(repositoryName=name, imageIds=[{"imageTag": tag}])["imageDetails"][0]["imageDigest"]


def create_repositories() -> None:
    """The platform's ECR repositories on the moto server (kept if they exist)."""
    ecr = boto3.client("ecr", region_name=REGION)
    existing = {r["repositoryName"] for r in ecr.describe_repositories()["repositories"]}
    for url in PLATFORM_OUTPUTS["repositoryUrls"].values():
        name = url.split("/", 1)[1]
        if name not in existing:
            ecr.create_repository(repositoryName=name, imageTagMutability="IMMUTABLE")
