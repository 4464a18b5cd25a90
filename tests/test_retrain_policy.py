"""The retraining policy (ml/retrain_policy.py): its rules one by one, then a replay of synthetic weeks in which a drift
is injected at a known week: the policy calls for retraining within `WITHIN_WEEKS` weeks of the drift and not before,
does not call in 16 weeks without a drift but for the one new-weeks call, and does not loop after a retraining.

The replay is the weekly job on small data: a champion trained on the first 10 weeks; then each week scored
(`retail score`), its labels landed in silver and measured (`retail monitor`'s ml/monitor.py), and the policy asked
with the weeks before. Three markets share the same first 13 weeks (ml/synth.py changes nothing before the drift
week): no drift, a concept drift (products change price tier: macro-F1 falls) and a covariate drift (shoppers lean
towards value: the key features' PSI rises). The covariate drift is replayed once more with the weekly job's
retraining: a new champion trained on every week landed when the policy calls.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
import subprocess

import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from cli.changes import changed, stale_note
from ml.bundle import bundle_digest, load_bundle
from ml.calendar import week_code_of
from ml.labels import land, week_lines
from ml.lake import Lake
from ml.monitor import measure_week, read_predictions
from ml.monitor_report import Outcome, policy_inputs_of
from ml.pipeline import run_pipeline
from ml.progress import StageTimer
from ml.registry import Registry
from ml.retrain_policy import DRIFT, NEW_WEEKS, PERFORMANCE, MonitoredWeek, decide_retraining
from ml.score import ScoringModel, input_at, score
from ml.settings import GateSettings, MonitorSettings
from ml.synth import SynthConfig, generate, write_weekly
from tests.conftest import settings_under

pytestmark = pytest.mark.slow

GATE = GateSettings()
POLICY = MonitorSettings()
FIRST_WEEKS = 10  # the champion's training weeks (its last 2 held out)
DRIFT_WEEK = 13  # weeks from the first: the 4th replayed week
REPLAYED = 6
LONG_REPLAY = 16  # weeks of the no-drift market replayed: past `MonitorSettings.new_weeks` (13)
RETRAIN_REPLAY = 12  # weeks of the covariate drift replayed with retraining: the call, then twice the cool-down
WITHIN_WEEKS = 1
"""The drift week itself or the next: the stated bound on how late the policy may call for retraining."""
BASE = SynthConfig(rows=3_000 * (FIRST_WEEKS + LONG_REPLAY), weeks=FIRST_WEEKS + LONG_REPLAY, seed=5)
MARKETS = {
    "no drift": BASE,
    "concept drift": dataclasses.replace(BASE, drift_week=DRIFT_WEEK, drift_retier_share=0.3, drift_lean=0.0),
    "covariate drift": dataclasses.replace(BASE, drift_week=DRIFT_WEEK, drift_retier_share=0.0, drift_lean=1.5),
}


def week(number: int, macro_f1: float = 0.8, psi: float = 0.05, labelled: int = 500) -> MonitoredWeek:
    return MonitoredWeek(200600 + number, labelled, macro_f1, ("mean_p_LA", psi))


def kinds(decision) -> list[str]:
    return [r.kind for r in decision.reasons]


# ---- the rules ---------------------------------------------------------------------------------------------------
def test_a_healthy_champion_with_recent_data_and_no_change_is_kept():
    decision = decide_retraining([week(10), week(11)], 2, {}, GATE, POLICY)
    assert (decision.retrain, decision.reasons, decision.notes) == (False, (), ())


def test_macro_f1_below_the_gate_in_the_latest_judged_week_calls_for_retraining():
    decision = decide_retraining([week(10), week(11, macro_f1=0.69)], 2, {}, GATE, POLICY)
    assert kinds(decision) == [PERFORMANCE]
    assert "0.6900 below the gate's 0.7" in decision.reasons[0].detail
    assert not decide_retraining([week(10, macro_f1=0.5), week(11)], 2, {}, GATE, POLICY).retrain  # it recovered


def test_a_key_feature_drifting_past_the_threshold_calls_for_retraining():
    decision = decide_retraining([week(11, psi=0.26)], 2, {}, GATE, POLICY)
    assert kinds(decision) == [DRIFT]
    assert "PSI of mean_p_LA 0.260 above 0.25" in decision.reasons[0].detail
    assert not decide_retraining([week(11, psi=0.25)], 2, {}, GATE, POLICY).retrain


def test_enough_new_weeks_call_for_retraining():
    assert kinds(decide_retraining([week(11)], POLICY.new_weeks, {}, GATE, POLICY)) == [NEW_WEEKS]
    assert not decide_retraining([week(11)], POLICY.new_weeks - 1, {}, GATE, POLICY).retrain


def test_changed_data_or_code_calls_for_retraining_with_or_without_monitored_weeks():
    decision = decide_retraining([], None, {"data": ["datasets/pin.json"]}, GATE, POLICY)
    assert [(r.kind, r.detail) for r in decision.reasons] == [("data", "datasets/pin.json")]


def test_a_week_with_too_few_labelled_baskets_is_not_judged_and_says_so():
    decision = decide_retraining([week(10), week(11, macro_f1=0.1, labelled=POLICY.min_baskets - 1)], 2, {}, GATE,
                                 POLICY)
    assert not decision.retrain
    assert decision.notes == (f"week 200611 not judged: {POLICY.min_baskets - 1} labelled baskets, fewer than "
                              f"{POLICY.min_baskets}",)


def test_a_week_no_newer_than_the_last_call_is_not_judged_again():
    since_the_fall = [week(10, macro_f1=0.5), week(11 + POLICY.cooldown_weeks, labelled=POLICY.min_baskets - 1)]
    assert kinds(decide_retraining(since_the_fall, 2, {}, GATE, POLICY, POLICY.cooldown_weeks + 1)) == [PERFORMANCE]
    decision = decide_retraining(since_the_fall, 2, {}, GATE, POLICY, POLICY.cooldown_weeks + 1, last_call=200610)
    assert not decision.retrain and "not judged" in decision.notes[0]


def test_new_weeks_call_once_per_batch_of_new_weeks_since_the_last_call():
    held = decide_retraining([week(11)], POLICY.new_weeks + 1, {}, GATE, POLICY, since_retraining=1)
    assert not held.retrain and "held back" in held.notes[0]
    again = decide_retraining([week(11)], 2 * POLICY.new_weeks, {}, GATE, POLICY, since_retraining=POLICY.new_weeks)
    assert kinds(again) == [NEW_WEEKS]


def test_monitored_weeks_without_the_end_of_the_training_data_say_the_new_weeks_rule_was_not_applied():
    decision = decide_retraining([week(11)], None, {}, GATE, POLICY)
    assert not decision.retrain and decision.notes[-1].startswith("new weeks not judged")
    assert decide_retraining([], None, {}, GATE, POLICY).notes == ()  # no monitoring at all: nothing to say


def test_a_lasting_fall_calls_again_only_after_the_cool_down_but_changes_never_wait():
    falling = [week(11, macro_f1=0.5)]
    held = decide_retraining(falling, 2, {}, GATE, POLICY, since_retraining=POLICY.cooldown_weeks - 1)
    assert not held.retrain and "cool-down" in held.notes[0]
    assert kinds(decide_retraining(falling, 2, {}, GATE, POLICY, since_retraining=POLICY.cooldown_weeks)) == [
        PERFORMANCE]
    changed = decide_retraining(falling, 2, {"training code": ["ml/train.py"]}, GATE, POLICY, since_retraining=0)
    assert kinds(changed) == ["training code"]


# ---- the replay --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def champion(tmp_path_factory) -> ScoringModel:
    """A champion trained (decision tree) on the first 10 weeks, which every market shares."""
    root = tmp_path_factory.mktemp("replay-champion")
    files = write_weekly(generate(BASE), root / "weeks")
    (root / "first").mkdir()
    for file in files[:FIRST_WEEKS]:
        shutil.copy(file, root / "first" / file.name)
    settings = settings_under(root, families="decision_tree", holdout_weeks=2, validation_weeks=2)
    run_pipeline(root / "first", settings, StageTimer(quiet=True))
    folder = Registry(settings).download()
    return ScoringModel(load_bundle(folder), "1", bundle_digest(folder), str(folder))


def replay(market: SynthConfig, model: ScoringModel, root, weeks: int = REPLAYED, retrain: bool = False
           ) -> list[Outcome]:
    """`weeks` weeks after the first 10: each scored, landed, measured, and the policy asked; with `retrain`, a
    call for retraining trains a new champion on every week landed so far, which scores from the next week."""
    files = write_weekly(generate(market), root / "weeks")
    settings = settings_under(root)
    lake = Lake(settings.lake_root)
    outcomes: list[Outcome] = []
    for landed, file in enumerate(files[FIRST_WEEKS:FIRST_WEEKS + weeks], start=FIRST_WEEKS + 1):
        code = int(file.stem.split("_")[1])
        score(input_at(str(file)), model, settings)
        land(file, lake)
        report = measure_week(code, read_predictions(lake, code), week_lines(lake, code), lambda v, m=model: m.bundle,
                              GATE, POLICY)
        outcomes.append(Outcome(report, policy_inputs_of(outcomes, report).decide({}, GATE, POLICY), None, None))
        if retrain and outcomes[-1].retraining.retrain:
            model = trained(files[:landed], root / f"retrained-{code}", str(int(model.version) + 1))
    return outcomes


def trained(files, root, version: str) -> ScoringModel:
    """A champion (decision tree, last 2 weeks held out) trained on `files`, named `version`."""
    (root / "input").mkdir(parents=True)
    for file in files:
        shutil.copy(file, root / "input" / file.name)
    settings = settings_under(root, families="decision_tree", holdout_weeks=2, validation_weeks=2)
    result = run_pipeline(root / "input", settings, StageTimer(quiet=True))
    assert result.registration["promoted"], result.registration  # gate passed: champion of its fresh registry
    folder = Registry(settings).download()
    return ScoringModel(load_bundle(folder), version, bundle_digest(folder), str(folder))


@pytest.fixture(scope="module")
def replays(champion, tmp_path_factory) -> dict[str, list[Outcome]]:
    """Each market's replay; "no drift" is the first weeks of "long no drift" (the same market and champion, and a
    week's outcome depends on the weeks before it only)."""
    found = {name: replay(market, champion, tmp_path_factory.mktemp(name.replace(" ", "-")))
             for name, market in MARKETS.items() if market is not BASE}
    found["long no drift"] = replay(BASE, champion, tmp_path_factory.mktemp("long-no-drift"), LONG_REPLAY)
    found["no drift"] = found["long no drift"][:REPLAYED]
    found["covariate drift, retrained"] = replay(MARKETS["covariate drift"], champion,
                                                 tmp_path_factory.mktemp("retrained"), RETRAIN_REPLAY, retrain=True)
    return found


def test_the_markets_are_the_same_before_the_drift_week():
    codes = sorted(set(generate(BASE)["SHOP_WEEK"].to_pylist()))
    before = pl.col("SHOP_WEEK") < codes[DRIFT_WEEK]
    frames = {name: pl.from_arrow(generate(market)) for name, market in MARKETS.items()}
    for name, frame in frames.items():
        assert frame.filter(before).equals(frames["no drift"].filter(before)), name
        if name != "no drift":
            assert not frame.filter(~before).equals(frames["no drift"].filter(~before)), name


def first_call(outcomes: list[Outcome]) -> int | None:
    return next((i for i, o in enumerate(outcomes) if o.retraining.retrain), None)


def test_without_a_drift_the_policy_never_calls_for_retraining(replays):
    assert [o.retraining.retrain for o in replays["no drift"]] == [False] * REPLAYED
    assert all(o.report.champion.labelled >= POLICY.min_baskets for o in replays["no drift"])  # every week judged


def test_sixteen_weeks_without_a_drift_call_once_when_the_champion_s_data_is_new_weeks_old(replays):
    outcomes = replays["long no drift"]
    assert all(o.report.champion.labelled >= POLICY.min_baskets for o in outcomes)  # every week judged
    assert [(i + 1, kinds(o.retraining)) for i, o in enumerate(outcomes) if o.retraining.retrain] == [
        (POLICY.new_weeks, [NEW_WEEKS])]  # the model was not retrained: the weeks after wait for the next batch
    assert all("held back" in o.retraining.notes[-1] for o in outcomes[POLICY.new_weeks:])


def test_a_champion_retrained_after_a_drift_is_judged_against_its_drifted_data_and_does_not_loop(replays):
    outcomes = replays["covariate drift, retrained"]
    called = [i for i, o in enumerate(outcomes) if o.retraining.retrain]
    assert called == [DRIFT_WEEK - FIRST_WEEKS]
    after = [o.report.champion for o in outcomes[called[0] + 1:]]
    assert {c.version for c in after} == {"2"}
    assert max(c.max_psi[1] for c in after) <= POLICY.drift_psi


@pytest.mark.parametrize("market, reason", [("concept drift", PERFORMANCE), ("covariate drift", DRIFT)])
def test_a_drift_is_called_within_the_stated_weeks_and_not_before(replays, market, reason):
    outcomes = replays[market]
    drift = DRIFT_WEEK - FIRST_WEEKS  # index of the drift week among the replayed ones
    called = first_call(outcomes)
    assert called is not None and drift <= called <= drift + WITHIN_WEEKS
    assert reason in kinds(outcomes[called].retraining)
    assert all(not o.retraining.retrain for o in outcomes[called + 1:])  # a lasting drift waits for the cool-down
    assert all("cool-down" in o.retraining.notes[-1] for o in outcomes[called + 1:])


def test_the_concept_drift_shows_in_macro_f1_and_the_covariate_drift_in_psi(replays):
    drift = DRIFT_WEEK - FIRST_WEEKS
    concept = [o.report.champion for o in replays["concept drift"]]
    covariate = [o.report.champion for o in replays["covariate drift"]]
    assert min(c.macro_f1 for c in concept[:drift]) >= GATE.min_macro_f1 > max(c.macro_f1 for c in concept[drift:])
    assert max(c.max_psi[1] for c in covariate[:drift]) <= POLICY.drift_psi < min(c.max_psi[1] for c in
                                                                                  covariate[drift:])


# ---- CI asks the same policy: `retail changed --monitoring` ------------------------------------------------------
def git(repo, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def docs_only_change(tmp_path):
    """A repository whose last commit changed documentation only."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "ci@example.com")
    git(repo, "config", "user.name", "CI")
    for text in ("v1\n", "v2\n"):
        (repo / "README.md").write_text(text)
        git(repo, "add", ".")
        git(repo, "commit", "-qm", text)
    return repo


def reports_at(folder, outcomes: list[Outcome]) -> str:
    """The outcomes written where `retail monitor` writes them (week=YYYYWW/report.json)."""
    for outcome in outcomes:
        path = folder / f"week={outcome.report.week}" / "report.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(outcome.to_dict()))
    return str(folder)


@pytest.mark.parametrize("market, verdict, said", [
    ("concept drift", "true", "retrain (performance): week 200620: macro-F1"),
    ("no drift", "false", "and the 4 monitored week(s) call for none"),
])
def test_ci_retrains_when_the_latest_monitored_week_calls_for_it_though_git_holds_no_change(
        replays, docs_only_change, tmp_path, market, verdict, said):
    app = typer.Typer()
    app.command()(changed)
    drift = DRIFT_WEEK - FIRST_WEEKS
    location = reports_at(tmp_path / "monitoring", replays[market][:drift + 1])
    result = CliRunner().invoke(app, ["--since", "HEAD~1", "--repo", str(docs_only_change), "--monitoring", location],
                                env={"COLUMNS": "200", **registry_env(tmp_path)})
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{verdict}\n"
    assert said in result.stderr


def registry_env(root) -> dict[str, str]:
    settings = settings_under(root)
    return {"RETAIL_REGISTRY_URI": settings.registry_uri, "RETAIL_ARTIFACT_ROOT": str(settings.artifact_root)}


def test_ci_does_not_retrain_again_for_a_report_a_version_registered_since_answered(replays, docs_only_change,
                                                                                    tmp_path):
    app = typer.Typer()
    app.command()(changed)
    location = reports_at(tmp_path / "monitoring", replays["concept drift"][:DRIFT_WEEK - FIRST_WEEKS + 1])
    arguments = ["--since", "HEAD~1", "--repo", str(docs_only_change), "--monitoring", location]
    assert CliRunner().invoke(app, arguments, env=registry_env(tmp_path)).stdout == "true\n"
    registry = Registry(settings_under(tmp_path))  # the retraining CI ran on that verdict registers a version
    registry.client.create_registered_model(registry.name)
    registry.client.create_model_version(registry.name, source=(tmp_path / "model").as_uri())
    result = CliRunner().invoke(app, arguments, env={"COLUMNS": "200", **registry_env(tmp_path)})
    assert (result.exit_code, result.stdout) == (0, "false\n")
    assert "version 1 was registered after the report of week 200620 was written" in result.stderr
    assert "stale monitoring: the latest report is of week 200620" in result.stderr  # a 2006 week, read today


def test_a_report_of_last_week_or_the_weeks_allowed_before_it_is_not_stale(capsys):
    day = dt.date(2006, 1, 1)
    while week_code_of(day - dt.timedelta(weeks=1)) != 200622:  # a day whose last week is 200622
        day += dt.timedelta(days=1)
    for week_code, stale in ((200622, False), (200620, False), (200619, True)):
        stale_note(week_code, POLICY.stale_weeks, today=day)
        assert ("stale monitoring" in capsys.readouterr().err) == stale, week_code


def test_ci_refuses_a_monitoring_location_without_a_report(docs_only_change, tmp_path):
    app = typer.Typer()
    app.command()(changed)
    result = CliRunner().invoke(app, ["--since", "HEAD~1", "--repo", str(docs_only_change), "--monitoring",
                                      str(tmp_path / "nowhere")], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and result.stdout == ""
    assert f"--monitoring {tmp_path / 'nowhere'}: no `retail monitor` report" in result.stderr
