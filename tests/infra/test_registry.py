"""ContainerRegistry: immutable, scanned, encrypted repositories with a lifecycle."""

import json

import pytest

from infra.registry import ContainerRegistry, ContainerRegistryArgs

from .helpers import build

DATA_KEY = "arn:aws:kms:ap-southeast-1:123456789012:key/data"


@pytest.fixture(scope="module")
def run():
    args = ContainerRegistryArgs(kms_key_arn=DATA_KEY, keep_tagged_images=10, untagged_expiry_days=3)
    return build(lambda: ContainerRegistry("reg", args))


def test_one_repository_per_image(run):
    names = {r.inputs["name"] for r in run.of_type("aws:ecr/repository:Repository")}
    assert names == {"reg/inference", "reg/training"}


def test_tags_are_immutable(run):
    repos = run.of_type("aws:ecr/repository:Repository")
    assert all(r.inputs["imageTagMutability"] == "IMMUTABLE" for r in repos)


def test_every_push_is_scanned(run):
    repos = run.of_type("aws:ecr/repository:Repository")
    assert all(r.inputs["imageScanningConfiguration"] == {"scanOnPush": True} for r in repos)


def test_images_are_encrypted_with_the_data_key(run):
    for repo in run.of_type("aws:ecr/repository:Repository"):
        assert repo.inputs["encryptionConfigurations"] == [{"encryptionType": "KMS", "kmsKey": DATA_KEY}]


def test_lifecycle_expires_untagged_images_then_caps_the_image_count(run):
    for policy in run.of_type("aws:ecr/lifecyclePolicy:LifecyclePolicy"):
        untagged, cap = json.loads(policy.inputs["policy"])["rules"]
        assert untagged["selection"]["tagStatus"] == "untagged"
        assert untagged["selection"]["countNumber"] == 3
        assert cap["selection"]["countType"] == "imageCountMoreThan"
        assert cap["selection"]["countNumber"] == 10
