"""What a deploy serves: the image digest and the approved model package, resolved against the platform stack.

- Image: a given `<repository>@sha256:<digest>` (what CI pushed), or the inference image
  built from this checkout and pushed to the stack's registry under `git-<commit>` (a
  tag that exists already is not rebuilt: the registry's tags are immutable).
- Model: a given package version ARN, else the newest approved version in the stack's
  model package group (or `model_group`, e.g. dev's for an ephemeral stack), else the
  local registry's champion registered there (a first deploy from a laptop after
  `make demo`). With none of these the deploy stops and says how to get one.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.automation import Release
from infra.config import IMAGE_DIGEST, MODEL_PACKAGE_ARN

ImageBuilder = Callable[[str, str], str]
"""(repository URL, tag) -> the pushed image's `<repository>@sha256:<digest>`."""
ChampionSource = Callable[[], Path | None]
"""The local registry's champion bundle folder, or None when there is none."""


class ReleaseUnavailable(RuntimeError):
    """No image or no approved model could be found or made; the message says how to provide one."""


@dataclass(frozen=True)
class ReleaseRequest:
    image: str | None = None
    model_package_arn: str | None = None
    model_group: str | None = None


def commit_tag(project_dir: Path) -> str:
    """`git-<commit>` of a clean checkout; ReleaseUnavailable when uncommitted changes would go unlabelled."""
    def git(*args: str) -> str:
        result = subprocess.run(["git", "-C", str(project_dir), *args], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ReleaseUnavailable(f"git {' '.join(args)} failed in {project_dir}: {result.stderr.strip()}")
        return result.stdout.strip()

    if git("status", "--porcelain", "--untracked-files=no"):
        raise ReleaseUnavailable(
            f"{project_dir} has uncommitted changes: commit them (the image is tagged with the commit) "
            "or pass --image <repository>@sha256:<digest>"
        )
    return f"git-{git('rev-parse', '--short=12', 'HEAD')}"


def resolve_release(
    platform: Mapping[str, Any],
    request: ReleaseRequest,
    *,
    project_dir: Path,
    sagemaker: Any,
    s3: Any,
    build_image: ImageBuilder,
    champion: ChampionSource,
    echo: Callable[[str], None] = print,
) -> Release:
    """The release to deploy on the platform whose outputs are `platform` (see the module docstring)."""
    image = request.image
    if image is not None:
        if not IMAGE_DIGEST.match(image):
            raise ReleaseUnavailable(f"--image must be <repository>@sha256:<digest>, got {image!r}")
    else:
        repository = platform["repositoryUrls"]["inference"]
        image = build_image(repository, commit_tag(project_dir))
        echo(f"image: {image}")
    return Release(image, _model(platform, request, image, sagemaker, s3, champion, echo))


def _model(platform, request, image, sagemaker, s3, champion, echo) -> str:
    from infra.model_packages import approved_versions, register_bundle

    if request.model_package_arn:
        if not MODEL_PACKAGE_ARN.match(request.model_package_arn):
            raise ReleaseUnavailable(f"--model-package must be a versioned model package ARN, "
                                     f"got {request.model_package_arn!r}")
        return request.model_package_arn
    group = request.model_group or platform["modelPackageGroupName"]
    approved = approved_versions(sagemaker, group)
    if approved:
        echo(f"model: {approved[0]} (newest approved version in {group})")
        return approved[0]
    bundle = champion()
    if bundle is None:
        raise ReleaseUnavailable(
            f"no approved model version in {group} and no local champion: train one with `make demo` "
            "(locally, a few minutes) or `retail train --cloud`, or pass --model-package <arn>"
        )
    arn = register_bundle(
        sagemaker, s3, bundle, group=platform["modelPackageGroupName"],
        artifacts_bucket=platform["lakeBuckets"]["artifacts"], image=image, source="the local pipeline",
    )
    description = sagemaker.describe_model_package(ModelPackageName=arn)
    if description.get("ModelApprovalStatus") != "Approved":
        raise ReleaseUnavailable(f"the local champion was registered as {arn} but failed the promotion gate, "
                                 "so it is not served; train a better one")
    echo(f"model: {arn} (the local champion, registered)")
    return arn
