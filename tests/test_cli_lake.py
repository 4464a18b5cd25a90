"""`retail lake queries` lists the saved queries; `retail lake query NAME` prints a run's answer or exits 2.

The lake is the two-run lake of tests/test_lake_queries.py. The answers printed as CSV and JSON
are those `ml.lake_sql.run_query` returns; without --run the newest silver run is read.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from ml.lake_queries import LAKE_QUERIES, lake_query
from ml.lake_sql import run_query
from tests.test_lake_queries import two_run_lake

runner = CliRunner()


@pytest.fixture(scope="module")
def retail():
    from cli.main import app

    return app


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> tuple[str, tuple[str, str]]:
    root = tmp_path_factory.mktemp("cli-lake")
    return str(root / "lake"), two_run_lake(root)


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return {"RETAIL_WORK_DIR": str(tmp_path / "work"), "COLUMNS": "200"}


def lake_cli(retail, env, *args: str, code: int = 0):
    result = runner.invoke(retail, ["lake", *args], env=env)
    assert result.exit_code == code, result.output
    return result


def test_lake_queries_lists_each_saved_query_with_what_it_answers(retail, env):
    output = lake_cli(retail, env, "queries").output
    for query in LAKE_QUERIES:
        assert query.name in output and query.description.split()[0] in output


@pytest.mark.parametrize("name", [q.name for q in LAKE_QUERIES])
def test_csv_and_json_print_the_query_s_answer_for_the_run(retail, env, lake, name):
    lake_root, runs = lake
    expected = pl.DataFrame(run_query(lake_query(name), runs[0], lake_root))
    as_csv = lake_cli(retail, env, "query", name, "--run", runs[0], "--lake", lake_root, "--format", "csv").stdout
    as_json = lake_cli(retail, env, "query", name, "--run", runs[0], "--lake", lake_root, "--format", "json").stdout
    assert_frame_equal(pl.read_csv(io.StringIO(as_csv), schema=expected.schema), expected)
    assert_frame_equal(pl.DataFrame(json.loads(as_json), schema=expected.schema), expected)


def test_without_run_the_newest_silver_run_is_read_and_the_table_names_it(retail, env, lake):
    lake_root, runs = lake
    newest = max(runs)
    default = lake_cli(retail, env, "query", "weekly_label_mix", "--lake", lake_root, "--format", "csv").stdout
    chosen = lake_cli(retail, env, "query", "weekly_label_mix", "--lake", lake_root, "--run", newest,
                      "--format", "csv").stdout
    other = lake_cli(retail, env, "query", "weekly_label_mix", "--lake", lake_root, "--run", min(runs),
                     "--format", "csv").stdout
    assert default == chosen != other
    table = lake_cli(retail, env, "query", "weekly_label_mix", "--lake", lake_root).stdout
    assert f"weekly_label_mix, run {newest}" in table and "shop_week" in table


def test_the_lake_root_comes_from_retail_lake_root_too(retail, env, lake):
    lake_root, runs = lake
    from_env = lake_cli(retail, env | {"RETAIL_LAKE_ROOT": lake_root}, "query", "spend_by_region_format",
                        "--run", runs[1], "--format", "csv").stdout
    assert from_env == lake_cli(retail, env, "query", "spend_by_region_format", "--run", runs[1], "--lake", lake_root,
                                "--format", "csv").stdout


def test_an_unknown_query_is_a_usage_error_naming_it_and_the_known_ones(retail, env, lake):
    result = lake_cli(retail, env, "query", "weekly_mix", "--lake", lake[0], code=2)
    assert "no saved lake query 'weekly_mix'" in result.output and "weekly_label_mix" in result.output


def test_a_run_the_lake_does_not_hold_exits_2_naming_it(retail, env, lake):
    result = lake_cli(retail, env, "query", "weekly_label_mix", "--lake", lake[0], "--run", "20000101T000000Z-none",
                      code=2)
    assert "error: run '20000101T000000Z-none'" in result.output


def test_a_missing_lake_a_lake_without_runs_and_an_s3_lake_exit_2_naming_it(retail, env, tmp_path):
    missing = lake_cli(retail, env, "query", "weekly_label_mix", "--lake", str(tmp_path / "nowhere"), code=2)
    assert f"error: lake {tmp_path / 'nowhere'}: no such folder" in missing.output
    (tmp_path / "empty").mkdir()
    empty = lake_cli(retail, env, "query", "weekly_label_mix", "--lake", str(tmp_path / "empty"), code=2)
    assert "no pipeline run under silver/ holds lines yet" in empty.output
    remote = lake_cli(retail, env, "query", "weekly_label_mix", "--lake", "s3://bucket/lake", "--run", "r", code=2)
    assert "local lake only" in remote.output


def test_importing_the_cli_loads_neither_duckdb_nor_the_queries():
    probe = "import json, sys, cli.main; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                       check=True).stdout)
    assert not {m for m in loaded if m.split(".")[0] == "duckdb" or m.startswith(("ml.lake_sql", "ml.lake_queries"))}
