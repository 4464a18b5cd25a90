"""`retail changed`: retrain when data pins, training code or hyperparameters changed, and only then."""

from __future__ import annotations

import subprocess

import pytest
from typer.testing import CliRunner

from cli.changes import retrain_reasons
from cli.main import app

runner = CliRunner()


@pytest.mark.parametrize("path, reason", [
    ("datasets/transactions-2008w20.json", "data"),
    ("ml/families.py", "hyperparameters"),
    ("ml/xgb_search.py", "hyperparameters"),
    ("ml/settings.py", "hyperparameters"),
    ("ml/features.py", "training code"),
    ("Dockerfile.training", "training code"),
    ("uv.lock", "training code"),
    ("pyproject.toml", "training code"),
])
def test_a_change_to_data_training_code_or_hyperparameters_calls_for_retraining(path, reason):
    assert retrain_reasons([path]) == {reason: [path]}


@pytest.mark.parametrize(
    "path", ["README.md", "datasets/README.md", "api/app.py", "infra/cluster.py", "tests/test_synth.py", "Dockerfile"]
)
def test_other_changes_do_not(path):
    assert retrain_reasons([path]) == {}


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    """A git repository with one commit holding a README and ml/train.py."""
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.email", "ci@example.com")
    git(tmp_path, "config", "user.name", "CI")
    (tmp_path / "ml").mkdir()
    (tmp_path / "ml" / "train.py").write_text("print('v1')\n")
    (tmp_path / "README.md").write_text("v1\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "first")
    return tmp_path


def commit_change(repo, path: str):
    (repo / path).write_text("v2\n")
    git(repo, "commit", "-qam", f"change {path}")


def changed_since(repo, since: str):
    return runner.invoke(app, ["changed", "--since", since, "--repo", str(repo)])


def test_it_prints_true_and_the_reason_when_training_code_changed(repo):
    commit_change(repo, "ml/train.py")
    result = changed_since(repo, "HEAD~1")
    assert result.exit_code == 0
    assert result.stdout == "true\n"
    assert "retrain (training code): ml/train.py" in result.stderr


def test_it_prints_false_when_only_documentation_changed(repo):
    commit_change(repo, "README.md")
    result = changed_since(repo, "HEAD~1")
    assert result.exit_code == 0
    assert result.stdout == "false\n"
    assert "no retraining" in result.stderr


def test_a_commit_it_cannot_compare_with_means_retrain(repo):
    result = changed_since(repo, "0" * 40)  # GitHub's `before` on a branch's first push
    assert result.stdout == "true\n"
    assert "cannot be compared" in result.stderr
