"""Champion and challenger: the challenger is promoted when it beats the champion's macro-F1 on the same baskets by the
stated margin in each of the stated number of weeks in a row (ml/challenger.py), and the promotion records the decision
and its evidence on the registry version (`Registry.promote_challenger`).

The verdict's rules are checked one by one; then `retail monitor --promote` (cli/monitor.py `run_monitor`) is run week
after week over a shadow log of both models, on a registry whose champion and challenger are real registered versions:
the challenger is promoted in the week its third win in a row lands, and not before; a rerun of that week changes
nothing, and a promotion the registry refuses (the champion moved meanwhile) exits 1 after the report is written.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from cli.monitor import monitor, run_monitor
from ml.challenger import Comparison, challenger_verdict
from ml.lake import SILVER_LINES, Lake
from ml.prediction_log import CHALLENGER, CHAMPION, SERVICE, prediction_rows
from ml.registry import HISTORY_TAG, Registry
from ml.schema import BASKET_KEY, LABEL
from ml.settings import GateSettings, MonitorSettings
from tests.conftest import settings_under

pytestmark = pytest.mark.slow

GATE = GateSettings()
POLICY = MonitorSettings()  # margin 0.02 over 3 weeks, at least 100 baskets
CLASSES = ["LA", "MM", "UM"]


def compared(week: int, challenger: float, champion: float = 0.75, baskets: int = 500, version: str = "2",
             against: str = "1") -> Comparison:
    return Comparison(200600 + week, version, [against], baskets, champion, challenger)


def test_three_winning_weeks_in_a_row_earn_promotion_with_them_as_evidence():
    weeks = [compared(10, 0.80), compared(11, 0.78), compared(12, 0.77)]
    verdict = challenger_verdict(weeks, "2", "1", GATE, POLICY)
    assert verdict.promote
    assert [e["week"] for e in verdict.evidence] == [200610, 200611, 200612]
    assert [e["margin"] for e in verdict.evidence] == pytest.approx([0.05, 0.03, 0.02])
    assert "200610, 200611, 200612" in verdict.reason


def test_fewer_wins_in_a_row_are_not_enough_and_a_lost_week_starts_the_count_again():
    assert not challenger_verdict([compared(10, 0.80), compared(11, 0.80)], "2", "1", GATE, POLICY).promote
    lost = [compared(9, 0.80), compared(10, 0.80), compared(11, 0.76), compared(12, 0.80), compared(13, 0.80)]
    verdict = challenger_verdict(lost, "2", "1", GATE, POLICY)
    assert not verdict.promote
    assert verdict.reason.startswith("2 of 3 winning weeks in a row")


@pytest.mark.parametrize("week, why", [
    (compared(12, 0.769), "a margin short of 0.02"),
    (compared(12, 0.69, champion=0.60), "a challenger below the gate's macro-F1, however far ahead"),
])
def test_a_week_that_does_not_clear_both_bars_is_not_a_win(week, why):
    assert not challenger_verdict([compared(10, 0.8), compared(11, 0.8), week], "2", "1", GATE, POLICY).promote, why


def test_weeks_with_too_few_shared_baskets_or_of_another_challenger_do_not_count():
    weeks = [compared(10, 0.8), compared(11, 0.8, baskets=99), compared(12, 0.8, version="3"), compared(13, 0.8)]
    verdict = challenger_verdict(weeks, "2", "1", GATE, POLICY)
    assert not verdict.promote
    assert [e["week"] for e in verdict.evidence] == [200610, 200613]


def test_only_weeks_against_the_current_champion_count():
    weeks = [compared(10, 0.8, against="0"), compared(11, 0.8, against="0"), compared(12, 0.8)]
    verdict = challenger_verdict(weeks, "2", "1", GATE, POLICY)
    assert not verdict.promote and [e["week"] for e in verdict.evidence] == [200612]
    assert challenger_verdict(weeks, "2", "0", GATE, POLICY).evidence[-1]["week"] == 200611


# ---- the shadow comparison, through `retail monitor --promote` ---------------------------------------------------
BASKETS = 200
FIRST_WEEK = 200630
CHALLENGER_RIGHT = [9, 7, 9, 9, 9]  # baskets in ten it gets right, week by week; the champion gets 7 every week


@pytest.fixture
def registry(tmp_path) -> Registry:
    """A fresh registry holding two versions that passed the gate: 1 the champion, 2 the challenger."""
    registry = Registry(settings_under(tmp_path))
    registry.client.create_registered_model(registry.name)
    for version in ("1", "2"):
        registry.client.create_model_version(registry.name, source=(tmp_path / f"v{version}").as_uri())
        registry.client.set_model_version_tag(registry.name, version, "gate_passed", "true")
    registry.promote("1")
    registry.make_challenger("2")
    return registry


def shadow_week(lake: Lake, week: int, challenger_right: int) -> None:
    """Silver lines of `BASKETS` baskets and the service's log of both models' predictions of them."""
    keys = [f"{week}-{i:03d}" for i in range(BASKETS)]
    truth = [CLASSES[i % 3] for i in range(BASKETS)]
    lake.write_parquet(pl.DataFrame({BASKET_KEY: keys, "SHOP_WEEK": [week] * BASKETS, LABEL: truth}),
                       "silver", f"20240101T0000{week % 100:02d}Z-run", SILVER_LINES)
    logged = []
    for version, role, right in (("1", CHAMPION, 7), ("2", CHALLENGER, challenger_right)):
        said = [t if i % 10 < right else CLASSES[(CLASSES.index(t) + 1) % 3] for i, t in enumerate(truth)]
        probabilities = np.array([[float(c == s) for c in CLASSES] for s in said])
        identity = {"model_version": version, "model_family": "xgboost", "bundle_sha256": "0" * 64}
        logged.append(prediction_rows(keys, [week] * BASKETS, probabilities, CLASSES, identity, SERVICE, role,
                                      dt.datetime(2006, 10, 1, tzinfo=dt.UTC)))
    lake.write_parquet(pl.concat(logged), "predictions", "service", f"week={week}", "part-0.parquet")


def test_the_monitor_promotes_the_challenger_in_the_week_it_earns_it_and_records_why(registry, tmp_path):
    with pytest.raises(ValueError, match="not the challenger"):  # only the challenger is promoted this way
        registry.promote_challenger("1", "1", "no reason", [])
    lake = Lake(registry.settings.lake_root)
    promoted = []
    for offset, right in enumerate(CHALLENGER_RIGHT):
        week = FIRST_WEEK + offset
        shadow_week(lake, week, right)
        run = run_monitor(week, registry.settings, GATE, POLICY, str(tmp_path / "reports"), lambda version: None,
                          promote=True)
        promoted.append(run.outcome.promoted)
        [comparison] = run.outcome.report.comparisons
        assert comparison.baskets == BASKETS and (comparison.margin > 0.1) == (right == 9)
    assert promoted == [None, None, None, None, "2"]  # wins in weeks 1, 3, 4, 5: the third in a row is week 5
    assert registry.champion_version() == "2" and registry.challenger_version() is None
    tags = registry.client.get_model_version(registry.name, "2").tags
    evidence = json.loads(tags["promotion.1.evidence"])
    assert [e["week"] for e in evidence] == [FIRST_WEEK + 2, FIRST_WEEK + 3, FIRST_WEEK + 4]
    assert all(e["margin"] >= POLICY.challenger_margin and e["baskets"] == BASKETS for e in evidence)
    assert (tags["promotion.1.previous_champion"], tags["promotion.1.state"]) == ("1", "done")
    assert "in each of the 3 weeks" in tags["promotion.1.reason"]
    context = json.loads(tags["promotion.1.context"])
    assert (context["min_baskets"], context["challenger_margin"], context["gate_min_macro_f1"]) == (100, 0.02, 0.7)
    assert context["reports"][-1] == str(tmp_path / "reports" / f"week={FIRST_WEEK + 4}" / "report.json")
    assert json.loads(registry.client.get_registered_model(registry.name).tags[HISTORY_TAG]) == ["1", "2"]
    saved = json.loads((tmp_path / "reports" / f"week={FIRST_WEEK + 4}" / "report.json").read_text())
    assert saved["promoted"] == "2" and saved["verdict"]["promote"] is True


def monitored_weeks(registry, tmp_path, before_the_last=None) -> list:
    """`retail monitor --promote` over the five shadow weeks; `before_the_last` runs before the fifth."""
    lake = Lake(registry.settings.lake_root)
    app = typer.Typer()
    app.command()(monitor)
    env = {"RETAIL_LAKE_ROOT": lake.root, "RETAIL_REGISTRY_URI": registry.settings.registry_uri,
           "RETAIL_ARTIFACT_ROOT": str(registry.settings.artifact_root), "COLUMNS": "200"}
    results = []
    for offset, right in enumerate(CHALLENGER_RIGHT):
        shadow_week(lake, FIRST_WEEK + offset, right)
        if offset == len(CHALLENGER_RIGHT) - 1 and before_the_last:
            before_the_last()
        results.append(CliRunner().invoke(app, ["--week", str(FIRST_WEEK + offset), "--out", str(tmp_path / "r"),
                                                "--no-registry", "--promote"], env=env))
    results.append(CliRunner().invoke(app, ["--week", str(FIRST_WEEK + 4), "--out", str(tmp_path / "r"),
                                            "--no-registry", "--promote"], env=env))  # a rerun of the last week
    return results


def test_a_rerun_of_the_week_that_promoted_changes_nothing_and_says_so(registry, tmp_path):
    *weeks, rerun = monitored_weeks(registry, tmp_path)
    assert [r.exit_code for r in weeks] == [0] * 5 and "champion -> version 2" in weeks[-1].stderr
    assert rerun.exit_code == 0, rerun.output
    assert "version 2 is champion already, promoted on this evidence (promotion.1.* tags)" in rerun.stderr
    tags = registry.client.get_model_version(registry.name, "2").tags
    assert not [t for t in tags if t.startswith("promotion.2.")]
    assert json.loads(registry.client.get_registered_model(registry.name).tags[HISTORY_TAG]) == ["1", "2"]


def test_a_promotion_the_registry_refuses_exits_1_after_writing_the_report(registry, tmp_path):
    def promoted_by_hand():  # version 3 is made champion before the week that would promote 2 is monitored
        registry.client.create_model_version(registry.name, source=(tmp_path / "v3").as_uri())
        registry.client.set_model_version_tag(registry.name, "3", "gate_passed", "true")
        registry.promote("3")

    *_, refused, _ = monitored_weeks(registry, tmp_path, promoted_by_hand)
    assert refused.exit_code == 1
    assert ("challenger 2 not promoted: the champion is version 3, not version 1 that challenger 2 was compared "
            "with") in refused.stderr
    assert (tmp_path / "r" / f"week={FIRST_WEEK + 4}" / "report.json").exists()
    assert registry.champion_version() == "3" and registry.challenger_version() == "2"

