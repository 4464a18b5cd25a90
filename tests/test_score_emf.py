"""`retail score` publishes one CloudWatch EMF line per run (cli/score.py, ml/emf.py) when RETAIL_EMF_ENABLED is true.

The weekly CronJob sets RETAIL_EMF_ENABLED=true and RETAIL_ENVIRONMENT; the platform's batch-scoring alarms read
`ScoringRunFailed` and `BasketsScored` in the contract's namespace with the one dimension Environment.
"""

from __future__ import annotations

import io
import json

import pytest
from typer.testing import CliRunner

from cli import score as score_command
from ml import emf
from ml import metric_names as m
from ml.registry import Registry
from tests.conftest import settings_env

runner = CliRunner()


@pytest.fixture(scope="module")
def retail(small_run):
    from cli.main import app  # after the pipeline (see tests/test_score.py)

    return app


@pytest.fixture(scope="module")
def bundle_folder(small_run):
    return Registry(small_run.settings).download()


@pytest.fixture
def env(small_run, tmp_path) -> dict[str, str]:
    return settings_env(tmp_path, registry=small_run.settings, RETAIL_EMF_ENABLED="true",
                        RETAIL_ENVIRONMENT="prod", COLUMNS="200")


def emf_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith('{"_aws"')]


def the_run_metric(output: str) -> dict:
    (line,) = emf_lines(output)  # exactly one per run
    (directive,) = line["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == m.NAMESPACE
    assert directive["Dimensions"] == [[m.DIMENSION_ENVIRONMENT]]
    assert {metric["Name"] for metric in directive["Metrics"]} == score_command.PUBLISHED_METRICS
    assert line[m.DIMENSION_ENVIRONMENT] == "prod"
    return {name: line[name] for name in score_command.PUBLISHED_METRICS}


def test_the_scorer_declares_the_contracts_scoring_metrics():
    assert score_command.PUBLISHED_METRICS == emf.SCORING_RUN_METRICS == {m.SCORING_RUN_FAILED, m.BASKETS_SCORED}


def test_a_successful_run_ends_with_one_line_counting_its_baskets(retail, env, small_run, bundle_folder):
    result = runner.invoke(retail, ["score", "--input", str(small_run.data), "--bundle", str(bundle_folder)], env=env)
    assert result.exit_code == 0, result.output
    metric = the_run_metric(result.stdout)
    assert metric[m.SCORING_RUN_FAILED] == 0
    assert metric[m.BASKETS_SCORED] > 0
    assert f"{metric[m.BASKETS_SCORED]:,}" in result.stdout  # the summary table's "baskets scored"
    assert result.stdout.rstrip().splitlines()[-1].startswith('{"_aws"')  # written last, when the run ended


def test_an_unusable_input_exits_2_and_still_reports_a_failed_run(retail, env, tmp_path):
    result = runner.invoke(retail, ["score", "--input", str(tmp_path / "nowhere.csv")], env=env)
    assert result.exit_code == 2, result.output
    assert the_run_metric(result.stdout) == {m.SCORING_RUN_FAILED: 1, m.BASKETS_SCORED: 0}


def test_a_usage_error_is_a_failed_run(retail, env, small_run):
    result = runner.invoke(retail, ["score", "--input", str(small_run.data), "--model", "best"], env=env)
    assert result.exit_code == 2, result.output
    assert the_run_metric(result.stdout) == {m.SCORING_RUN_FAILED: 1, m.BASKETS_SCORED: 0}


def test_an_unexpected_exception_propagates_after_the_failed_run_line(retail, env, small_run, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("S3 went away")

    monkeypatch.setattr("ml.score.score", broken)  # what `retail score` calls (imported when it runs)
    result = runner.invoke(retail, ["score", "--input", str(small_run.data)], env=env)
    assert isinstance(result.exception, RuntimeError) and result.exit_code == 1
    assert the_run_metric(result.stdout) == {m.SCORING_RUN_FAILED: 1, m.BASKETS_SCORED: 0}


def test_without_emf_enabled_a_run_writes_no_metric_line(retail, env, tmp_path):
    result = runner.invoke(retail, ["score", "--input", str(tmp_path / "nowhere.csv")],
                           env={**env, "RETAIL_EMF_ENABLED": "false"})
    assert result.exit_code == 2
    assert emf_lines(result.stdout) == []


def test_the_api_and_the_scorer_share_one_line_format():
    from api.emf import EmfPublisher

    api, scorer = io.StringIO(), io.StringIO()
    EmfPublisher("prod", api).heartbeat()
    emf.scoring_run("prod", failed=True, baskets_scored=0, stream=scorer)
    (heartbeat,), (run,) = emf_lines(api.getvalue()), emf_lines(scorer.getvalue())
    assert set(heartbeat) - {m.HEARTBEAT} == set(run) - score_command.PUBLISHED_METRICS == {"_aws", "Environment"}
    for line in (heartbeat, run):
        (directive,) = line["_aws"]["CloudWatchMetrics"]
        assert (directive["Namespace"], directive["Dimensions"]) == (m.NAMESPACE, [[m.DIMENSION_ENVIRONMENT]])
        assert isinstance(line["_aws"]["Timestamp"], int)
