"""Container images in ECR: build and push a tag only when the registry lacks it, and refer to images by digest.

The platform's repositories have immutable tags, so a tag that exists is the image and is
never rebuilt; a missing one is built from a Dockerfile with BuildKit and pushed. Callers
get `<repository>@sha256:<digest>`, which pins the exact image (a job or deployment that
names it cannot drift). ECR is reached through boto3; the docker CLI through a
`DockerRunner` seam, so tests record the commands instead of running them.

Pushes are single-platform `linux/amd64` image manifests without BuildKit's provenance
and SBOM attestations: with attestations BuildKit pushes a manifest list (an index),
which AWS services that run images, such as Lambda and SageMaker, do not accept.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from botocore.exceptions import ClientError

from infra.providers import clients

PLATFORM = "linux/amd64"
DIGEST_KEY = "containerimage.digest"
"""Where `docker buildx build --metadata-file` records the pushed image's digest."""


class ImageError(RuntimeError):
    """A build, push or registry login failed; the message says which and what to do."""


class DockerMissing(ImageError):
    """The image has to be built but the docker CLI (with buildx) is not installed."""


@dataclass(frozen=True)
class Repository:
    """An ECR repository URL taken apart: `<account>.dkr.ecr.<region>.amazonaws.com/<name>`."""

    url: str
    registry: str
    registry_id: str
    name: str

    @classmethod
    def parse(cls, url: str) -> Repository:
        registry, _, name = url.partition("/")
        registry_id = registry.split(".", 1)[0]
        if not name or ".dkr.ecr." not in registry or not registry_id.isdigit():
            raise ValueError(f"{url!r} is not an ECR repository URL (<account>.dkr.ecr.<region>.amazonaws.com/<name>)")
        return cls(url, registry, registry_id, name)


class DockerRunner(Protocol):
    """The docker CLI: whether it is there, and running one command (raising ImageError when it fails)."""

    def available(self) -> bool: ...
    def run(self, args: Sequence[str], *, stdin: str | None = None) -> None: ...


@dataclass(frozen=True)
class DockerCli:
    """`DockerRunner` over the real `docker` executable; its output goes to the terminal."""

    executable: str = "docker"

    def available(self) -> bool:
        return shutil.which(self.executable) is not None

    def run(self, args: Sequence[str], *, stdin: str | None = None) -> None:
        result = subprocess.run([self.executable, *args], input=stdin, text=True, check=False)
        if result.returncode != 0:
            raise ImageError(f"`docker {' '.join(args[:2])} ...` failed with exit code {result.returncode}")


def image_digest(repository_url: str, tag: str, region: str) -> str | None:
    """The digest (`sha256:...`) the repository holds under `tag`, or None when the tag is absent."""
    repository = Repository.parse(repository_url)
    try:
        response = clients.ecr(region).describe_images(
            registryId=repository.registry_id, repositoryName=repository.name, imageIds=[{"imageTag": tag}]
        )
    except ClientError as error:
        if error.response["Error"]["Code"] == "ImageNotFoundException":
            return None
        raise
    return response["imageDetails"][0]["imageDigest"]


def image_exists(repository_url: str, tag: str, region: str) -> bool:
    return image_digest(repository_url, tag, region) is not None


def login(repository: Repository, region: str, runner: DockerRunner) -> None:
    """`docker login` to the repository's registry with ECR's authorization token, the password on stdin."""
    data = clients.ecr(region).get_authorization_token(registryIds=[repository.registry_id])["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    runner.run(["login", "--username", user, "--password-stdin", repository.registry], stdin=password)


def build_and_push(repository: Repository, tag: str, dockerfile: Path, context_dir: Path, runner: DockerRunner,
                   build_args: Mapping[str, str] | None = None) -> str:
    """Build `dockerfile` over `context_dir` for linux/amd64 with `build_args` (`--build-arg NAME=value`), push it as
    `tag`; the pushed digest."""
    with tempfile.TemporaryDirectory(prefix="retail-image-") as scratch:
        metadata = Path(scratch) / "metadata.json"
        runner.run(
            [
                "buildx", "build",
                "--platform", PLATFORM,
                "--file", str(dockerfile),
                "--tag", f"{repository.url}:{tag}",
                *(arg for name, value in (build_args or {}).items() for arg in ("--build-arg", f"{name}={value}")),
                "--provenance=false", "--sbom=false",
                # Docker (not OCI) media types: SageMaker has refused OCI manifests from a containerd image store.
                "--output", "type=image,push=true,oci-mediatypes=false",
                "--metadata-file", str(metadata),
                str(context_dir),
            ]
        )
        try:
            digest = json.loads(metadata.read_text())[DIGEST_KEY]
        except (OSError, ValueError, KeyError):
            raise ImageError(f"building {repository.url}:{tag} left no {DIGEST_KEY} in {metadata}") from None
    return digest


def ensure_image(
    repository_url: str,
    tag: str,
    dockerfile: Path,
    context_dir: Path,
    region: str,
    runner: DockerRunner | None = None,
    build_args: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None,
) -> str:
    """`<repository>@sha256:...` of `tag`, building and pushing it first only when the repository lacks it.

    Raises DockerMissing when a build is needed and docker is not installed. If the push
    fails because another run pushed the same tag meanwhile (tags are immutable), the
    image that run pushed is used. `build_args` may be a function, called only when a build is needed: what it
    checks (and may raise) concerns building, not using an image that exists.
    """
    runner = runner or DockerCli()
    digest = image_digest(repository_url, tag, region)
    if digest is None:
        args = build_args() if callable(build_args) else build_args
        if not runner.available():
            raise DockerMissing(
                f"{repository_url}:{tag} does not exist and building it needs the docker CLI with buildx: "
                "install Docker, or build and push that tag elsewhere, or pass an existing image"
            )
        repository = Repository.parse(repository_url)
        login(repository, region, runner)
        try:
            digest = build_and_push(repository, tag, dockerfile, context_dir, runner, args)
        except ImageError:
            digest = image_digest(repository_url, tag, region)
            if digest is None:
                raise
    return f"{repository_url}@{digest}"
