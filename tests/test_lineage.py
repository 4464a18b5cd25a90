"""`ml.lineage.git_commit` names the code's commit: git's HEAD in a checkout, the image's RETAIL_GIT_COMMIT where
git cannot tell (no .git, no git), `unknown` when neither can.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from ml.lineage import COMMIT_ENV, git_commit

REPO = Path(__file__).parents[1]


def test_in_a_checkout_git_tells_and_the_environment_is_not_read(monkeypatch):
    monkeypatch.setenv(COMMIT_ENV, "from-the-image")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.strip()
    assert git_commit(REPO).removesuffix("-dirty") == head


def test_outside_git_the_images_commit_is_used(monkeypatch, tmp_path):
    monkeypatch.setenv(COMMIT_ENV, "0123abcd")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # no repository above tmp_path
    assert git_commit(tmp_path) == "0123abcd"


def test_without_a_git_program_the_images_commit_is_used(monkeypatch, tmp_path):
    monkeypatch.setenv(COMMIT_ENV, "0123abcd")
    monkeypatch.setenv("PATH", str(tmp_path))  # no git on the path: as in the lake image
    assert git_commit(REPO) == "0123abcd"


def test_with_neither_the_commit_is_unknown(monkeypatch, tmp_path):
    monkeypatch.delenv(COMMIT_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert git_commit(REPO) == "unknown"
    monkeypatch.setenv(COMMIT_ENV, "  ")
    assert git_commit(REPO) == "unknown"
