"""The CLI commands stop at the Pulumi CLI boundary with a clear message; with the CLI, they run for real."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.infra import app
from infra import automation

PROJECT_DIR = Path(__file__).resolve().parents[2]
NEEDS_CLI = pytest.mark.skipif(shutil.which("pulumi") is None, reason="the Pulumi CLI is not on PATH")


@pytest.fixture
def no_pulumi_cli(monkeypatch):
    monkeypatch.setattr(automation.shutil, "which", lambda _: None)


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["up", "--stack", "dev"], "retail infra up"),
        (["destroy", "--stack", "dev", "--yes"], "retail infra destroy"),
        (["preview", "--stack", "dev", "--live"], "retail infra preview --live"),
        (["ephemeral", "--name", "pr-1", "--", "true"], "retail infra ephemeral"),
    ],
)
def test_without_the_pulumi_cli_the_command_exits_2_saying_how_to_install_it(no_pulumi_cli, argv, command):
    result = CliRunner().invoke(app, [*argv, "--project-dir", str(PROJECT_DIR)])
    assert result.exit_code == 2
    assert f"The Pulumi CLI is required for `{command}`" in result.output
    assert "https://get.pulumi.com" in result.output


@pytest.mark.pulumi_cli
@NEEDS_CLI
def test_the_automation_runner_drives_an_inline_stack_through_the_real_cli(tmp_path, monkeypatch):
    """create, configure, up, outputs, destroy and remove on a local file backend; no cloud resources."""
    import pulumi

    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{tmp_path / 'state'}")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "test-only")
    (tmp_path / "state").mkdir()

    def program() -> None:
        pulumi.export("greeting", pulumi.Config("retail").require("greeting"))

    runner = automation.AutomationRunner(tmp_path, project_name="retail-automation-test", program=program)
    runner.create_stack("ci")
    runner.set_config("ci", {"retail:greeting": "hello"}, {})
    assert runner.up("ci", None) == {"greeting": "hello"}
    assert runner.outputs("ci") == {"greeting": "hello"}
    runner.destroy("ci")
    runner.remove_stack("ci")
    assert runner.run_command(["true"], {}) == 0
