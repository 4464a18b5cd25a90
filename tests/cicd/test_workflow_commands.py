"""Every command the CI definitions call exists in this project, takes the options given, and its --help works."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.cicd.commands import JENKINSFILE, WORKFLOWS, Invocation, ci_invocations, invocations, make_targets, resolve

runner = CliRunner()
RETAIL = [inv for inv in ci_invocations() if inv.program == "retail"]
MAKE = [inv for inv in ci_invocations() if inv.program == "make"]


def test_the_pipeline_is_defined_for_github_actions_and_jenkins():
    assert {path.name for path in WORKFLOWS} >= {"pull-request.yml", "pr-environment.yml", "main.yml", "deploy.yml"}
    assert JENKINSFILE.exists()


def test_the_walker_finds_commands_inside_substitutions_and_after_a_double_dash():
    script = ('echo "retrain=$(uv run retail changed --since "$BEFORE")"\n'
              "retail infra ephemeral --name x -- retail smoke")
    assert [inv.words[:2] for inv in invocations("x.yml", script)] == [
        ("changed", "--since"), ("infra", "ephemeral"), ("smoke",),
    ]


@pytest.mark.parametrize("words, problem", [
    (("infra", "nosuch"), "no such command"),
    (("models",), "needs a sub-command"),
    (("smoke", "--no-such-option", "x"), "has no option --no-such-option"),
])
def test_the_walker_rejects_a_command_that_does_not_exist(words, problem):
    with pytest.raises(ValueError, match=problem):
        resolve(words)


@pytest.mark.parametrize("invocation", RETAIL, ids=str)
def test_each_retail_command_exists_and_its_help_works(invocation: Invocation):
    path, _ = resolve(invocation.words)
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


@pytest.mark.parametrize("invocation", MAKE, ids=str)
def test_each_make_target_exists(invocation: Invocation):
    targets = [word for word in invocation.words if not word.startswith("-") and "=" not in word]
    assert targets and set(targets) <= make_targets()
