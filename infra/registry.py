"""ECR repositories for the platform's images."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass
class ContainerRegistryArgs:
    kms_key_arn: pulumi.Input[str]
    repositories: Sequence[str] = ("inference", "training")
    keep_tagged_images: int = 30
    untagged_expiry_days: int = 7
    force_delete: bool = False
    """True: `pulumi destroy` deletes a repository that still holds images (ephemeral stacks)."""


class ContainerRegistry(pulumi.ComponentResource):
    """One private repository per image, named `<component name>/<image>`.

    Tags are immutable (a tag always means the same image), every push is scanned,
    images are KMS-encrypted, and a lifecycle policy drops untagged images after
    `untagged_expiry_days` and keeps the newest `keep_tagged_images` overall.
    """

    repository_urls: dict[str, pulumi.Output[str]]
    repository_arns: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: ContainerRegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("retail:infra:ContainerRegistry", name, None, opts)
        self.repositories = {image: self._repository(name, image, args) for image in args.repositories}
        self.repository_urls = {i: r.repository_url for i, r in self.repositories.items()}
        self.repository_arns = {i: r.arn for i, r in self.repositories.items()}
        self.register_outputs({"repository_urls": self.repository_urls, "repository_arns": self.repository_arns})

    def _repository(self, name: str, image: str, args: ContainerRegistryArgs) -> aws.ecr.Repository:
        repo = aws.ecr.Repository(
            f"{name}-{image}",
            name=f"{name}/{image}",
            image_tag_mutability="IMMUTABLE",
            force_delete=args.force_delete,
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[{"encryption_type": "KMS", "kms_key": args.kms_key_arn}],
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-{image}-lifecycle",
            repository=repo.name,
            policy=json.dumps({"rules": _lifecycle_rules(args)}),
            opts=pulumi.ResourceOptions(parent=self),
        )
        return repo


def _lifecycle_rules(args: ContainerRegistryArgs) -> list[dict]:
    return [
        {
            "rulePriority": 1,
            "description": f"Expire untagged images after {args.untagged_expiry_days} days",
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": args.untagged_expiry_days,
            },
            "action": {"type": "expire"},
        },
        {
            "rulePriority": 2,
            "description": f"Keep the newest {args.keep_tagged_images} images",
            "selection": {
                "tagStatus": "any",
                "countType": "imageCountMoreThan",
                "countNumber": args.keep_tagged_images,
            },
            "action": {"type": "expire"},
        },
    ]
