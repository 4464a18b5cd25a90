"""`retail infra destroy` removes the lake stack (`lake-<stack>`, project retail-mlops-lake) before the service and
the platform: its EMR Serverless application sits in the platform's subnets with the lake engine's security group.
A platform without a lake stack is destroyed all the same.
"""

from __future__ import annotations

from pathlib import Path

from infra import automation
from infra.automation import LAKE_PROJECT, Runners
from tests.automation.recording import Journal, RecordingRunner

PROJECT_DIR = Path(__file__).resolve().parents[2]


def runners(**lake_kwargs) -> Runners:
    journal = Journal()
    return Runners(RecordingRunner("platform", journal, outputs_by_stack={"dev": {"region": "ap-southeast-1"}}),
                   RecordingRunner("service", journal), RecordingRunner("training", journal),
                   RecordingRunner("lake", journal, **lake_kwargs))


def destroys(pair: Runners) -> list[tuple]:
    return [c[:3] for c in pair.platform.journal.calls if c[1] in {"destroy", "remove_stack"}]


def test_destroy_removes_the_lake_stack_before_the_service_and_the_platform():
    pair = runners()
    automation.destroy(pair, "dev", empty=lambda _: None, echo=lambda _: None)
    assert destroys(pair) == [
        ("training", "destroy", "train-dev"), ("training", "remove_stack", "train-dev"),
        ("lake", "destroy", "lake-dev"), ("lake", "remove_stack", "lake-dev"),
        ("service", "destroy", "dev"), ("platform", "destroy", "dev")]


def test_destroy_goes_on_without_a_lake_stack():
    pair = runners(fail_on={"select_stack": 1})
    lines: list[str] = []
    automation.destroy(pair, "dev", echo=lines.append)
    assert "no lake stack lake-dev to destroy" in lines
    assert [c[0] for c in pair.platform.journal.calls if c[1] == "destroy"] == ["training", "service", "platform"]


def test_the_project_runners_include_the_lake_project_outside_the_checkout_removed_after_use():
    with automation.project_runners(PROJECT_DIR, echo=lambda _: None) as runners:
        lake = runners.lake
        assert isinstance(lake, automation.AutomationRunner) and lake.work_dir.is_dir()
    assert lake.project_name == LAKE_PROJECT and not lake.work_dir.is_relative_to(PROJECT_DIR)
    assert not lake.work_dir.exists()
