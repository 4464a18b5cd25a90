"""The Automation API's sequence of Pulumi operations, checked with a recording runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra import automation
from infra.automation import PulumiCliMissing, ephemeral, ephemeral_stack_name, output_env, require_cli
from tests.automation.recording import PulumiFailed, RecordingRunner

PROJECT_DIR = Path(__file__).resolve().parents[2]
STACK = "ephemeral-pr-42"
EPHEMERAL_TEARDOWN = [("destroy", STACK), ("remove_stack", STACK)]


def run_ephemeral(runner: RecordingRunner, command=("pytest", "-q")) -> int:
    return ephemeral(runner, "pr-42", list(command), PROJECT_DIR)


def test_up_selects_the_stack_and_deploys_it_with_the_stacks_policy_levels():
    runner = RecordingRunner(outputs_by_stack={"prod": {"clusterName": "retail-prod-eks"}})
    assert automation.up(runner, "prod") == {"clusterName": "retail-prod-eks"}
    assert runner.calls == [("select_stack", "prod"), ("up", "prod", "prod.json")]


def test_preview_selects_the_stack_and_previews_it_with_the_policy_pack():
    runner = RecordingRunner()
    automation.preview(runner, "dev")
    assert runner.calls == [("select_stack", "dev"), ("preview", "dev", "dev.json")]


def test_destroy_selects_the_stack_and_destroys_it():
    runner = RecordingRunner()
    automation.destroy(runner, "dev")
    assert runner.calls == [("select_stack", "dev"), ("destroy", "dev")]


def test_ephemeral_creates_configures_deploys_runs_then_destroys_and_removes():
    runner = RecordingRunner(outputs_by_stack={STACK: {"clusterName": "eks"}})
    assert run_ephemeral(runner) == 0
    assert runner.calls == [
        ("create_stack", STACK),
        ("set_config", STACK),
        ("up", STACK, "dev.json"),
        ("run_command", "pytest -q"),
        *EPHEMERAL_TEARDOWN,
    ]


def test_ephemeral_stack_gets_the_dev_config_and_a_generated_api_key():
    runner = RecordingRunner()
    run_ephemeral(runner)
    values, secret = runner.config[STACK]
    assert values["aws:region"] == "ap-southeast-1"
    assert json.loads(values["retail:network"])["cidr"] == "10.40.0.0/16"
    assert set(secret) == {"retail:apiKeys"} and len(secret["retail:apiKeys"]) >= 24


def test_ephemeral_command_sees_the_stack_outputs():
    runner = RecordingRunner(outputs_by_stack={STACK: {"clusterName": "eks", "lakeBuckets": {"raw": "b"}}})
    run_ephemeral(runner)
    assert runner.command_env["PULUMI_OUTPUT_CLUSTERNAME"] == "eks"
    assert json.loads(runner.command_env["PULUMI_OUTPUT_LAKEBUCKETS"]) == {"raw": "b"}


def test_a_failing_command_still_destroys_and_removes_the_stack_and_its_exit_code_is_returned():
    runner = RecordingRunner(command_exit_code=3)
    assert run_ephemeral(runner) == 3
    assert runner.calls[-3:] == [("run_command", "pytest -q"), *EPHEMERAL_TEARDOWN]


def test_a_failed_up_still_destroys_and_removes_the_stack_and_raises():
    runner = RecordingRunner(fail_on={"up"})
    with pytest.raises(PulumiFailed, match="pulumi up failed"):
        run_ephemeral(runner)
    assert runner.calls[-3:] == [("up", STACK, "dev.json"), *EPHEMERAL_TEARDOWN]
    assert ("run_command", "pytest -q") not in runner.calls


def test_a_failed_destroy_still_removes_the_stack_and_raises():
    runner = RecordingRunner(fail_on={"destroy"})
    with pytest.raises(PulumiFailed, match="pulumi destroy failed"):
        run_ephemeral(runner)
    assert runner.calls[-2:] == EPHEMERAL_TEARDOWN


def test_ephemeral_without_a_command_is_refused_before_creating_anything():
    runner = RecordingRunner()
    with pytest.raises(ValueError, match="give the command to run after `--`"):
        run_ephemeral(runner, command=())
    assert runner.calls == []


@pytest.mark.parametrize(
    ("name", "stack"), [("PR-42", "ephemeral-pr-42"), ("feature/new lake", "ephemeral-feature-new-lake")]
)
def test_ephemeral_stack_names_are_valid_pulumi_stack_names(name, stack):
    assert ephemeral_stack_name(name) == stack


def test_output_env_gives_strings_as_is_and_everything_else_as_json():
    env = output_env({"name": "x", "ids": ["a", "b"]})
    assert env["PULUMI_OUTPUT_NAME"] == "x" and env["PULUMI_OUTPUT_IDS"] == '["a", "b"]'
    assert json.loads(env["PULUMI_OUTPUTS_JSON"]) == {"ids": ["a", "b"], "name": "x"}


def test_without_the_cli_the_error_names_the_command_and_how_to_install(monkeypatch):
    monkeypatch.setattr(automation.shutil, "which", lambda _: None)
    with pytest.raises(PulumiCliMissing, match=r"required for `retail infra up`: install it with `curl -fsSL"):
        require_cli("retail infra up")
