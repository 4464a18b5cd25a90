"""`retail demo --loop` on small data: replayed weeks go through score, label, monitor and retrain, and the run ends
with the monitoring report (cli/demo_loop.py)."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from cli.demo import demo

pytestmark = pytest.mark.slow

runner = CliRunner()


def test_the_loop_replays_a_drifting_week_retrains_and_ends_with_the_report(tmp_path):
    app = typer.Typer()
    app.command()(demo)
    result = runner.invoke(app, ["--loop", "--weeks", "1", "--drift-week", "1"],
                           env={"RETAIL_WORK_DIR": str(tmp_path), "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    reports = sorted((tmp_path / "demo-loop" / "lake" / "monitoring").glob("week=*/report.json"))
    assert [r.parent.name for r in reports] == ["week=200617"]
    last = json.loads(reports[-1].read_text())
    assert [r["kind"] for r in last["retraining"]["reasons"]] == ["drift"]  # the drift week calls for retraining
    assert "v2 registered" in result.stderr  # and the pipeline ran on every week landed
    assert result.stderr.rstrip().endswith(str(reports[-1].with_name("report.html")))
