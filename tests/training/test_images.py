"""infra.images against ECR served by moto on 127.0.0.1, with the docker CLI recorded."""

from __future__ import annotations

import base64
from pathlib import Path

import boto3
import pytest

from infra.images import DockerMissing, ImageError, Repository, ensure_image, image_digest, image_exists
from tests.training.fakes import ACCOUNT, REGION, REGISTRY, RecordingDocker, push_manifest

DOCKERFILE, CONTEXT = Path("/src/Dockerfile.training"), Path("/src")


@pytest.fixture
def repository(moto_endpoint, request) -> str:
    name = f"images-test/{request.node.name.replace('_', '-')[-60:]}".lower()
    boto3.client("ecr", region_name=REGION).create_repository(repositoryName=name, imageTagMutability="IMMUTABLE")
    return f"{REGISTRY}/{name}"


def ensure(repository: str, docker: RecordingDocker, tag: str = "train-0123456789abcdef") -> str:
    return ensure_image(repository, tag, DOCKERFILE, CONTEXT, REGION, docker)


def test_a_tag_exists_only_once_pushed(repository):
    assert image_exists(repository, "v1", REGION) is False
    digest = push_manifest(repository, "v1")
    assert image_exists(repository, "v1", REGION) is True and image_digest(repository, "v1", REGION) == digest


def test_an_existing_tag_is_used_by_digest_without_running_docker(repository):
    digest = push_manifest(repository, "train-0123456789abcdef")
    docker = RecordingDocker(installed=False)
    assert ensure(repository, docker) == f"{repository}@{digest}"
    assert docker.calls == []


def test_a_missing_tag_is_built_for_amd64_pushed_and_returned_by_digest(repository):
    docker = RecordingDocker()
    reference = ensure(repository, docker)
    assert docker.commands() == ["login --username", "buildx build"]
    build = docker.calls[1][0]
    assert build[build.index("--platform") + 1] == "linux/amd64"
    assert build[build.index("--file") + 1] == str(DOCKERFILE) and build[-1] == str(CONTEXT)
    assert build[build.index("--tag") + 1] == f"{repository}:train-0123456789abcdef"
    assert {"--provenance=false", "--sbom=false", "--metadata-file"} <= set(build)
    assert build[build.index("--output") + 1] == "type=image,push=true,oci-mediatypes=false"
    assert reference == f"{repository}@{image_digest(repository, 'train-0123456789abcdef', REGION)}"


def test_docker_logs_in_to_the_registry_with_ecrs_token_on_stdin(repository):
    docker = RecordingDocker()
    ensure(repository, docker)
    login, password = docker.calls[0]
    token = boto3.client("ecr", region_name=REGION).get_authorization_token(registryIds=[ACCOUNT])
    user, _, expected = base64.b64decode(token["authorizationData"][0]["authorizationToken"]).decode().partition(":")
    assert login == ["login", "--username", user, "--password-stdin", REGISTRY]
    assert password == expected and expected not in " ".join(login)


def test_a_missing_tag_without_docker_is_an_error_saying_what_to_do(repository):
    with pytest.raises(DockerMissing, match="does not exist and building it needs the docker CLI with buildx"):
        ensure(repository, RecordingDocker(installed=False))


def test_a_failed_build_is_an_error(repository):
    with pytest.raises(ImageError, match="failed with exit code 1"):
        ensure(repository, RecordingDocker(fail_builds=True))
    assert not image_exists(repository, "train-0123456789abcdef", REGION)


def test_when_another_run_pushed_the_tag_first_its_image_is_used(repository):
    reference = ensure(repository, RecordingDocker(another_run_pushed_first=True))
    assert reference == f"{repository}@{image_digest(repository, 'train-0123456789abcdef', REGION)}"


def test_a_build_that_records_no_digest_is_an_error(repository, monkeypatch):
    docker = RecordingDocker()
    monkeypatch.setattr(RecordingDocker, "_push", staticmethod(lambda args: None))
    with pytest.raises(ImageError, match="left no containerimage.digest"):
        ensure(repository, docker)


def test_only_ecr_repository_urls_are_accepted():
    assert Repository.parse(f"{REGISTRY}/a/b") == Repository(f"{REGISTRY}/a/b", REGISTRY, ACCOUNT, "a/b")
    with pytest.raises(ValueError, match="is not an ECR repository URL"):
        Repository.parse("docker.io/library/python")

