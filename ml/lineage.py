"""Facts that tie a model to its code: the git commit of the working tree."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git_commit(folder: Path | None = None) -> str:
    """HEAD's commit, suffixed `-dirty` when tracked files have changed; `unknown` outside git."""
    cwd = folder or Path.cwd()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit
