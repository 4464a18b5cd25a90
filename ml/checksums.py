"""SHA-256 of files (hashlib.file_digest): the model bundle's file checksums (ml/bundle.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
