"""Facts that tie a model to its code: the git commit of the working tree."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

COMMIT_ENV = "RETAIL_GIT_COMMIT"
"""The commit an image was built from (set by Dockerfile.lake), for where git cannot tell (no git, no .git)."""


def git_commit(folder: Path | None = None) -> str:
    """HEAD's commit, suffixed `-dirty` when tracked files have changed; outside git, the RETAIL_GIT_COMMIT
    environment variable if set, else `unknown`."""
    cwd = folder or Path.cwd()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get(COMMIT_ENV, "").strip() or "unknown"
    return f"{commit}-dirty" if dirty else commit
