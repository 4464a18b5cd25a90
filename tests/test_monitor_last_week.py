"""`retail monitor --week last`: the fiscal week before the one holding today's date, as the weekly CronJob asks.

Fiscal weeks run Monday to Sunday (ml/calendar.py), so on any day of a week `last` is the week that ended most
recently: the same week all seven days, the next one from the following Monday. Today is read in the local time
zone, which the CronJob sets to its own (TZ). A `--week` that is neither `last` nor a fiscal week is refused before
the command runs.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cli.monitor import LAST_WEEK, last_week, monitor, week_code
from ml.calendar import FISCAL_EPOCH, week_code_of

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_last_is_the_week_before_todays_every_day_of_the_week():
    monday = FISCAL_EPOCH + dt.timedelta(weeks=20)  # the Monday starting fiscal week 200621
    assert week_code_of(monday) == 200621
    assert {last_week(monday + dt.timedelta(days=d)) for d in range(7)} == {200620}
    assert last_week(monday + dt.timedelta(days=7)) == 200621


def test_last_is_the_week_before_the_local_date():
    assert week_code(LAST_WEEK) == last_week(dt.date.today())


def test_last_crosses_into_the_previous_fiscal_year():
    first_monday_of_2007 = FISCAL_EPOCH + dt.timedelta(weeks=52)
    assert week_code_of(first_monday_of_2007) == 200701
    assert last_week(first_monday_of_2007) == 200652


@pytest.mark.parametrize(("zone", "week"), [("Etc/UTC", 200620), ("Asia/Singapore", 200621)])
def test_today_is_read_in_the_time_zone_the_cron_job_sets(zone, week):
    """Sunday 20:00 UTC is already Monday 04:00 in Singapore: a run there at that instant monitors the week just
    ended, which in UTC is still under way."""
    sunday = FISCAL_EPOCH + dt.timedelta(weeks=20, days=6)
    probe = ("import datetime as dt, time; from unittest import mock; import cli.monitor as c; "
             f"instant = dt.datetime({sunday.year}, {sunday.month}, {sunday.day}, 20, tzinfo=dt.UTC).timestamp(); "
             "mock.patch('time.time', return_value=instant).start(); print(c.week_code('last'))")
    env = {**os.environ, "TZ": zone}
    done = subprocess.run([sys.executable, "-c", probe], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    assert int(done.stdout) == week


@pytest.mark.parametrize("value", ["200620", "190001", "299952"])
def test_a_fiscal_week_is_taken_as_it_is(value):
    assert week_code(value) == int(value)


@pytest.mark.parametrize("value", ["lastweek", "2006-20", "200653", "200600", "189952", "300001", ""])
def test_anything_else_is_refused_before_the_command_runs(value, tmp_path):
    app = typer.Typer()
    app.command()(monitor)
    result = runner.invoke(app, ["--week", value, "--lake", str(tmp_path), "--no-registry"],
                           env={"RETAIL_EMF_ENABLED": "true", "COLUMNS": "200"})
    assert result.exit_code == 2
    assert "is neither a fiscal week YYYYWW" in result.output
    assert '{"_aws"' not in result.output  # the run never started: nothing to publish
