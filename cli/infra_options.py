"""The options the `retail infra` commands share: which stack, where the project is, what to release."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer


class Stack(StrEnum):
    dev = "dev"
    prod = "prod"


class CheckedStack(StrEnum):
    dev = "dev"
    prod = "prod"
    ephemeral = "ephemeral"


ProjectDir = Annotated[
    Path | None,
    typer.Option(help="Directory holding the platform's Pulumi.yaml (default: found from the cwd upwards)."),
]
ImageOption = Annotated[
    str | None,
    typer.Option("--image", help="Inference image <repository>@sha256:<digest> (default: build and push this commit)."),
]
ModelOption = Annotated[
    str | None,
    typer.Option("--model-package", help="Model package version ARN to serve (default: newest approved)."),
]
ModelGroupOption = Annotated[
    str | None,
    typer.Option(help="Model package group to take the newest approved version from (default: the stack's)."),
]
