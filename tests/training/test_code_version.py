"""The code version: a reproducible hash of the training source set, and the image tag it makes."""

from __future__ import annotations

import re

import pytest

from infra.providers.sourcedir import code_version, image_tag
from tests.training.code_checkout import ROOT, checkout


def test_the_same_sources_anywhere_give_the_same_version(tmp_path):
    assert code_version(checkout(tmp_path / "a")) == code_version(checkout(tmp_path / "b")) == code_version(ROOT)


@pytest.mark.parametrize("changed", ["ml/train.py", "ml/sagemaker_entry.py", "pyproject.toml", "uv.lock",
                                     "Dockerfile.training"])
def test_a_change_to_any_source_gives_a_new_version(tmp_path, changed):
    repo = checkout(tmp_path)
    before = code_version(repo)
    with (repo / changed).open("a") as file:
        file.write("\n# changed\n")
    assert code_version(repo) != before


def test_a_new_module_under_ml_gives_a_new_version(tmp_path):
    repo = checkout(tmp_path)
    before = code_version(repo)
    (repo / "ml" / "extra.py").write_text("VALUE = 1\n")
    assert code_version(repo) != before


def test_files_outside_the_source_set_do_not_change_the_version(tmp_path):
    repo = checkout(tmp_path)
    before = code_version(repo)
    (repo / "README.md").write_text("docs\n")
    (repo / "ml" / "__pycache__").mkdir()
    (repo / "ml" / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"\0")
    (repo / "ml" / "__pycache__" / "stale.py").write_text("")
    (repo / "tests").mkdir()
    (repo / "tests" / "test_x.py").write_text("")
    assert code_version(repo) == before


def test_a_checkout_without_the_dockerfile_is_refused(tmp_path):
    repo = checkout(tmp_path)
    (repo / "Dockerfile.training").unlink()
    with pytest.raises(FileNotFoundError, match="no Dockerfile.training under"):
        code_version(repo)


def test_the_image_tag_is_a_valid_ecr_tag_naming_the_version():
    tag = image_tag(code_version(ROOT))
    assert re.fullmatch(r"train-[0-9a-f]{16}", tag)

