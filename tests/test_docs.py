"""The documentation holds together: the README stays short, every relative link lands on a file, and the test
inventory lists every test module."""

from __future__ import annotations

import re
from pathlib import Path

from tests import inventory

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")
README_MAX_LINES = 250


def test_the_readme_stays_short_enough_to_read_first():
    assert len((ROOT / "README.md").read_text().splitlines()) <= README_MAX_LINES


def test_every_relative_link_in_the_readme_and_docs_lands_on_a_file():
    broken = []
    for document in DOCUMENTS:
        for target, _ in LINK.findall(document.read_text()):
            if "://" not in target and not (document.parent / target).exists():
                broken.append(f"{document.relative_to(ROOT)} -> {target}")
    assert not broken


def test_the_test_inventory_is_the_one_generated_from_the_modules():
    assert inventory.block() in (ROOT / "docs" / "testing.md").read_text(), \
        "docs/testing.md's inventory is stale: paste the output of `python -m tests.inventory` between its markers"
