"""What `make test` measures, and with what: every package the project ships, by SlipCover.

The line coverage `make test` prints comes from SlipCover (`python -m slipcover -m pytest`, `[tool.slipcover]` in
pyproject.toml), which instruments the measured packages' bytecode instead of tracing every call (docs/testing.md).
"""

from __future__ import annotations

import tomllib
import warnings
from pathlib import Path

from slipcover.__main__ import build_parser
from slipcover.config import apply_config, read_config

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


def test_slipcover_reads_the_table_as_the_packages_to_measure_and_the_report_to_print():
    """SlipCover only warns about a key it does not know, and would then measure its default (the script's folder):
    our table, applied as `python -m slipcover -m pytest` applies it, sets what this file's other tests assume."""
    arguments = build_parser().parse_args(["-m", "pytest"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        apply_config(read_config(ROOT / "pyproject.toml"), arguments)
    assert arguments.source.split(",") == PROJECT["tool"]["slipcover"]["source"]
    assert arguments.skip_covered is True and arguments.format == "text" and arguments.out is None


def test_no_coverage_floor_while_slipcover_computing_it_drops_the_workers_lines_from_the_report():
    """SlipCover 1.1.0 with `fail-under` reads the xdist workers' merged coverage for the floor and deletes it
    (`merged_coverage` in slipcover/__main__.py), so the report printed afterwards holds the controller's lines
    only: a fresh clone's `make test` with `fail-under = 95` passed the floor and printed 4% (2026-11-28)."""
    assert not {"fail-under", "fail_under"} & read_config(ROOT / "pyproject.toml").keys()
