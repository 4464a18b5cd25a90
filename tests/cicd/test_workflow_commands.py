"""Every command the CI definitions call exists in this project, parses with the options and values given, and its
--help works."""

from __future__ import annotations

import re

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
    (("smoke", "--url", "$URL", "--no-such-option", "x"), "No such option: --no-such-option"),
    (("infra", "up", "--stack", "dev", "--image"), "Option '--image' requires an argument"),
    (("infra", "up", "--stack", "ephemeral"), "'ephemeral' is not one of 'dev', 'prod'"),
    (("infra", "up", "--image", "$IMAGE"), "needs --stack"),
    (("changed", "--since", "$BEFORE", "extra"), "takes no argument 'extra'"),
])
def test_the_walker_rejects_what_the_cli_would_reject(words, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        resolve(words)


@pytest.mark.parametrize("words", [
    ("infra", "up", "--stack", "$STACK", "--service-only", "--image", "$I", "--model-package", "$P"),
    ("infra", "ephemeral", "--name", "pr-$N", "--", "sh", "-c", "uv", "run", "retail", "smoke"),
    ("infra", "preview", "--live", "--stack", "dev"),
])
def test_the_walker_accepts_flags_values_from_the_shell_and_a_command_after_a_double_dash(words):
    assert resolve(words)[0] == list(words[:2])


@pytest.mark.parametrize("invocation", RETAIL, ids=str)
def test_each_retail_command_parses_as_written_and_its_help_works(invocation: Invocation):
    path, _ = resolve(invocation.words)
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


@pytest.mark.parametrize("invocation", MAKE, ids=str)
def test_each_make_target_exists(invocation: Invocation):
    targets = [word for word in invocation.words if not word.startswith("-") and "=" not in word]
    assert targets and set(targets) <= make_targets()
