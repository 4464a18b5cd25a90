"""What `make test` measures, and with what: every package the project ships, by SlipCover, held to a floor.

The line coverage `make test` prints comes from SlipCover (`python -m slipcover -m pytest`, `[tool.slipcover]` in
pyproject.toml), which instruments the measured packages' bytecode instead of tracing every call (docs/testing.md).
The test run writes it as JSON; SlipCover's merge of that one file prints it and fails under the Makefile's floor.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
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


MAKEFILE = (ROOT / "Makefile").read_text()
RECIPE = MAKEFILE.split("\ntest:", 1)[1].split("\n\n", 1)[0]


def make_variable(name: str) -> str:
    found = re.search(rf"^{name} := (\S+)$", MAKEFILE, flags=re.MULTILINE)
    assert found is not None, f"the Makefile sets no {name}"
    return found.group(1)


def test_the_test_command_measures_with_slipcover_and_nothing_else():
    pytest_lines = [line for line in RECIPE.splitlines() if "pytest" in line]
    assert len(pytest_lines) == 1 and "python -m slipcover --json --out $(COVERAGE_JSON) -m pytest" in pytest_lines[0]
    assert "--cov" not in RECIPE
    assert "python -m slipcover --merge $(COVERAGE_JSON) --out $(COVERAGE_JSON) --fail-under $(COVERAGE_FLOOR)" \
        in RECIPE, RECIPE
    assert make_variable("COVERAGE_JSON") in (ROOT / ".gitignore").read_text().split()


def test_the_merge_step_prints_the_table_and_fails_under_the_floor(tmp_path):
    """The recipe's second step, on a report of 80% written as the first step writes it (SlipCover's JSON): the
    table is printed either way, and the exit code is 2 under the floor, 0 at or above it."""
    (tmp_path / "partly.py").write_text("def used():\n    return 1\n\n\ndef unused():\n    return 2\n\n\nused()\n")
    slipcover = [sys.executable, "-m", "slipcover"]
    # Not as a part of this run's own measure: under `make test` the workers' environment names the folder they hand
    # their lines over in, and a SlipCover process started with it deletes that folder when it exits.
    alone = {name: value for name, value in os.environ.items() if not name.startswith("SLIPCOVER_")}
    subprocess.run([*slipcover, "--source", ".", "--json", "--out", "run.json", "partly.py"], cwd=tmp_path, check=True,
                   env=alone)
    floor = int(make_variable("COVERAGE_FLOOR"))
    assert floor > 80
    for floor_asked, code in ((floor, 2), (80, 0)):
        merged = subprocess.run([*slipcover, "--merge", "run.json", "--out", "merged.json", "--fail-under",
                                 str(floor_asked)], cwd=tmp_path, capture_output=True, text=True, env=alone)
        assert merged.returncode == code, merged.stdout + merged.stderr
        assert re.search(r"^partly\.py +5 +1 +80 +6$", merged.stdout, flags=re.MULTILINE), merged.stdout


def test_slipcover_reads_the_table_as_the_packages_to_measure_and_the_report_to_print():
    """SlipCover only warns about a key it does not know, and would then measure its default (the script's folder):
    our table, applied as `python -m slipcover -m pytest` applies it, sets what this file's other tests assume."""
    arguments = build_parser().parse_args(["-m", "pytest"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        apply_config(read_config(ROOT / "pyproject.toml"), arguments)
    assert arguments.source.split(",") == PROJECT["tool"]["slipcover"]["source"]
    assert arguments.skip_covered is True and arguments.format == "text" and arguments.out is None


def test_the_floor_is_not_in_the_table_where_the_test_run_would_apply_it():
    """SlipCover 1.1.0 with `fail-under` in the test run reads the xdist workers' merged coverage for the floor and
    deletes it (`merged_coverage` in slipcover/__main__.py), so the report printed afterwards holds the controller's
    lines only: a fresh clone's `make test` with `fail-under = 95` in the table passed the floor and printed 4%
    (2026-11-28). The floor is the Makefile's, applied by the merge step alone."""
    assert not {"fail-under", "fail_under"} & read_config(ROOT / "pyproject.toml").keys()
