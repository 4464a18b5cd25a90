"""What `make test` measures: every package the project ships, and nothing on top of the tests.

The line coverage `make test` prints comes from SlipCover (`python -m slipcover -m pytest`, `[tool.slipcover]` in
pyproject.toml), which instruments the measured packages' bytecode instead of tracing every call (docs/testing.md).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_the_wheel_ships_is_measured():
    shipped = PROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    assert sorted(PROJECT["tool"]["slipcover"]["source"]) == sorted(shipped)


def test_the_test_command_measures_with_slipcover_and_nothing_else():
    recipe = (ROOT / "Makefile").read_text().split("\ntest:", 1)[1].split("\n\n", 1)[0]
    pytest_lines = [line for line in recipe.splitlines() if "pytest" in line]
    assert len(pytest_lines) == 1 and "python -m slipcover -m pytest" in pytest_lines[0], recipe
    assert "--cov" not in recipe
