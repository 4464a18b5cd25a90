"""The training source set and its version: what the training image is built from, hashed.

SageMaker runs an image built from this repository (`Dockerfile.training`, see
`ml/sagemaker_entry.py`), not a script-mode code tarball. Its content is decided by the
files below: the `ml` package's modules, the dependency lock and project file, and the
recipe. The code version is a SHA-256 over their paths and bytes, so the same checkout
always yields the same version, any change to what the image holds yields a new one,
and the image tag `train-<code version>` in the (immutable) ECR repository always names
the same image. (The image copies `ml/` through the repository's `.dockerignore`, which
leaves out caches; a test keeps every file it copies in this set.)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

TRAINING_SOURCES = ("ml/**/*", "pyproject.toml", "uv.lock", "Dockerfile.training", ".dockerignore")
"""Glob patterns, relative to the repository root: every file `COPY ml` takes (the saved queries' .sql files as
well as the modules), byte-code caches left out as .dockerignore leaves them out."""
DOCKERFILE = "Dockerfile.training"
TAG_PREFIX = "train-"
VERSION_LENGTH = 16


def training_files(repo_root: Path) -> list[Path]:
    """Every file of the source set, sorted by its repository path; an error if any pattern matches none."""
    files: dict[str, Path] = {}
    for pattern in TRAINING_SOURCES:
        matched = [p for p in repo_root.glob(pattern) if p.is_file() and "__pycache__" not in p.parts]
        if not matched:
            raise FileNotFoundError(f"no {pattern} under {repo_root}; run from the retail-mlops repository")
        files |= {p.relative_to(repo_root).as_posix(): p for p in matched}
    return [files[name] for name in sorted(files)]


def code_version(repo_root: Path) -> str:
    """Hex SHA-256 (first 16 digits) of each source file's path and content hash, in path order."""
    digest = hashlib.sha256()
    for path in training_files(repo_root):
        name = path.relative_to(repo_root).as_posix()
        digest.update(f"{name}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()[:VERSION_LENGTH]


def image_tag(version: str) -> str:
    return f"{TAG_PREFIX}{version}"
