"""The generated tests run under one Hypothesis profile on every road, and suppress only health checks they name.

tests/hypothesis_profile.py says why the profile is the suite's own rather than the one Hypothesis picks from the
environment. A health check guards a generated test against being weaker than it looks (most examples filtered
away, bodies too large to shrink, a fixture shared across examples); suppressing all of them at once hid that the
ones suppressed never fired (issue 12), so each suppression names its checks.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import Verbosity, settings

from tests import hypothesis_profile

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
SHOW_PROFILE = ("import json; from hypothesis import settings; from tests import hypothesis_profile; "
                "hypothesis_profile.load(); "
                "print(json.dumps([settings.get_current_profile_name(), settings.default.show_changed()]))")
EXPECTED = [hypothesis_profile.PROFILE, "database=None, deadline=None, print_blob=True"]
"""The profile's name and every setting it holds that differs from Hypothesis' defaults."""


def test_this_run_uses_the_suites_profile_unless_the_command_line_chose_another(request):
    chosen = request.config.getoption("--hypothesis-profile", default=None) or hypothesis_profile.PROFILE
    # --hypothesis-verbosity (or --hypothesis-explain) loads a copy named "<profile>-with-<verbosity>-verbosity"
    assert settings.get_current_profile_name() in (chosen, *(f"{chosen}-with-{v.name}-verbosity" for v in Verbosity))


@pytest.mark.parametrize("ci_variables", [{}, {"CI": "true"}, {"GITHUB_ACTIONS": "true"}],
                         ids=["no CI variable", "CI", "GITHUB_ACTIONS"])
def test_the_profile_is_the_same_whatever_ci_variables_are_set(ci_variables):
    environment = {k: v for k, v in os.environ.items() if k not in ("CI", "GITHUB_ACTIONS")} | ci_variables
    shown = subprocess.run([sys.executable, "-c", SHOW_PROFILE], cwd=ROOT, env=environment, capture_output=True,
                           text=True, check=True)
    assert json.loads(shown.stdout) == EXPECTED


def unnamed_suppressions(source: str) -> list[str]:
    """`suppress_health_check=` arguments of `source` that are not a list or tuple of `HealthCheck.<name>`, given
    inline or as a module-level name bound to one; as `line: text`."""
    tree = ast.parse(source)
    bound = {target.id: node.value for node in tree.body if isinstance(node, ast.Assign)
             for target in node.targets if isinstance(target, ast.Name)}

    def named(value: ast.expr) -> bool:
        if isinstance(value, ast.Name) and value.id in bound:
            value = bound[value.id]
        return isinstance(value, ast.List | ast.Tuple) and all(
            isinstance(item, ast.Attribute) and isinstance(item.value, ast.Name) and item.value.id == "HealthCheck"
            for item in value.elts)

    return [f"{keyword.value.lineno}: {ast.unparse(keyword.value)}" for node in ast.walk(tree)
            if isinstance(node, ast.Call) for keyword in node.keywords
            if keyword.arg == "suppress_health_check" and not named(keyword.value)]


def test_every_suppressed_health_check_is_named():
    found = {str(path.relative_to(ROOT)): unnamed for path in sorted(TESTS.rglob("*.py"))
             if (unnamed := unnamed_suppressions(path.read_text()))}
    assert found == {}


@pytest.mark.parametrize("suppression", ["list(HealthCheck)", "HealthCheck.all()", "tuple(HealthCheck)",
                                         "[*HealthCheck]", "EVERY", "[HealthCheck.too_slow, *HealthCheck]"])
def test_a_suppression_that_names_no_check_is_found(suppression):
    source = ("from hypothesis import HealthCheck, settings\n"
              "EVERY = list(HealthCheck)\nNAMED = [HealthCheck.too_slow]\n"
              f"@settings(suppress_health_check={suppression})\ndef a(): pass\n"
              "@settings(suppress_health_check=NAMED)\ndef b(): pass\n")
    assert unnamed_suppressions(source) == [f"4: {suppression}"]
