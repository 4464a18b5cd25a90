"""The `retail` command: exit codes and messages a user sees."""

from __future__ import annotations

import polars as pl
from typer.testing import CliRunner

import cli.models as models_command
from cli.main import app
from tests.conftest import settings_env

runner = CliRunner()


def test_synth_writes_weekly_files_with_the_original_header(tmp_path):
    result = runner.invoke(app, ["data", "synth", "--rows", "3000", "--weekly", "--header", "original",
                                 "--output", str(tmp_path / "weekly")])
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "weekly").glob("transactions_*.csv"))
    assert len(files) > 50
    assert "CUST_PRICE_SENSITIVITY" in files[0].read_text().splitlines()[0]


def test_pipeline_run_on_a_missing_column_exits_non_zero_naming_it(tmp_path):
    bad = tmp_path / "bad.csv"
    pl.DataFrame({"SHOP_WEEK": [200607], "SPEND": [1.0]}).write_csv(bad)
    result = runner.invoke(app, ["pipeline", "run", "--input", str(bad)], env=settings_env(tmp_path))
    assert result.exit_code == 2
    assert "bad.csv: missing column(s)" in result.output
    assert "STORE_REGION" in result.output


def test_pipeline_run_on_an_empty_file_exits_non_zero(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    result = runner.invoke(app, ["pipeline", "run", "--input", str(empty)], env=settings_env(tmp_path))
    assert result.exit_code == 2
    assert "empty.csv: empty file" in result.output


def test_models_list_shows_the_champion(small_run, monkeypatch):
    env = {
        "RETAIL_REGISTRY_URI": small_run.settings.registry_uri,
        "RETAIL_ARTIFACT_ROOT": str(small_run.settings.artifact_root),
    }
    # wide enough for every column: the console was made when cli.models was first imported, so a COLUMNS set
    # here would count only if this test imported it first
    monkeypatch.setattr(models_command.console, "width", 200)
    result = runner.invoke(app, ["models", "list"], env=env)
    assert result.exit_code == 0, result.output
    assert "champion" in result.output
    assert small_run.result.training["winner"] in result.output


def test_promoting_an_unknown_version_fails_clearly(small_run):
    env = {"RETAIL_REGISTRY_URI": small_run.settings.registry_uri}
    result = runner.invoke(app, ["models", "promote", "404"], env=env)
    assert result.exit_code == 1
    assert "no version '404'" in result.output


def test_the_printed_leaderboard_shows_the_validation_score_it_is_ranked_on(small_run):
    from rich.console import Console

    from cli.report import leaderboard_table

    console = Console(record=True, width=200)
    console.print(leaderboard_table(small_run.result))
    text = console.export_text()
    assert "validation macro-F1" in text and "holdout macro-F1" in text
    rows = small_run.result.training["leaderboard"]
    positions = [text.index(f" {r['family']} ") for r in rows]
    assert positions == sorted(positions), "printed in the leaderboard's order"
    assert [r["validation_macro_f1"] for r in rows] == sorted((r["validation_macro_f1"] for r in rows), reverse=True)
