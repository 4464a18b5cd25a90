"""`retail demo --loop`: the weekly monitoring loop, replayed on small synthetic weeks.

A synthetic data set of `FIRST_WEEKS` + N weeks is made with a drift injected at a known
replayed week (`ml.synth.SynthConfig.drift_week`, `DRIFT`: shoppers lean towards value). The
first weeks train the first champion; then each replayed week goes through what the platform
does every week:

1. score: the week's baskets with the champion (`retail score`), and, when the registry
   holds a challenger, with the challenger too, logged in role challenger as the service's
   shadow scoring logs it;
2. label: the week's transactions, which carry the labels, are landed in silver;
3. monitor: `retail monitor --promote` measures both models, asks the retraining policy and
   judges the challenger (promoting it, with its evidence, once it has earned it);
4. retrain: when the policy says so, the pipeline runs on every week landed so far; the
   registry promotes the new version if it passes the gate and beats the champion on its
   holdout, and otherwise makes it the challenger if it passed the gate.

Everything lives under RETAIL_WORK_DIR/demo-loop/ (made afresh each run): the weekly files,
the lake, the registry, and the monitoring reports; the last report's HTML ends the run.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from cli.monitor import MonitorRun
    from ml.score import ScoringModel
    from ml.settings import Settings

console = Console(stderr=True)
FIRST_WEEKS = 10
"""Weeks the first champion is trained on, before the replay starts."""
LINES_PER_WEEK = 3_000
"""About 470 baskets a week: enough for the monitor to judge a week (MonitorSettings.min_baskets)."""
DRIFT = {"drift_retier_share": 0.0, "drift_lean": 1.5}
"""A covariate drift: the key features' PSI passes the threshold and a retrained model follows it. (Products changing
tier, the concept drift of tests/test_retrain_policy.py, is not learnt back within ten weeks of this size: retrained
models fail the gate, which is the gate's job but a short demonstration.)"""
FAMILIES = "decision_tree"
"""What the loop trains unless RETAIL_FAMILIES says otherwise: the fastest family."""


def loop_settings(root: Path) -> Settings:
    from ml.settings import Settings

    defaults = Settings()
    return Settings(lake_root=str(root / "lake"), registry_uri=f"sqlite:///{root / 'registry' / 'mlflow.db'}",
                    artifact_root=root / "registry" / "artifacts", work_dir=root / "work",
                    families=defaults.families or FAMILIES, holdout_weeks=2, validation_weeks=2, xgb_trials=2)


def replay(weeks: int, drift_week: int, seed: int | None, root: Path | None = None) -> list[MonitorRun]:
    """Train the first champion, then take each replayed week through score, label, monitor and retrain; returns
    the monitoring runs, one per week."""
    from cli.monitor import bundles_from, run_monitor
    from cli.score import choose_model
    from ml.labels import land
    from ml.lake import Lake
    from ml.pipeline import run_pipeline
    from ml.progress import StageTimer
    from ml.registry import Registry
    from ml.score import input_at, score
    from ml.settings import GateSettings, MonitorSettings, Settings
    from ml.synth import SynthConfig, generate, write_weekly

    root = root or Settings().work_dir / "demo-loop"
    shutil.rmtree(root, ignore_errors=True)
    settings, gate, monitoring = loop_settings(root), GateSettings(), MonitorSettings()
    config = SynthConfig(rows=LINES_PER_WEEK * (FIRST_WEEKS + weeks), weeks=FIRST_WEEKS + weeks,
                         drift_week=FIRST_WEEKS + drift_week - 1, **DRIFT, **({} if seed is None else {"seed": seed}))
    files = write_weekly(generate(config), root / "weeks")
    seen = root / "landed"
    seen.mkdir(parents=True)
    for file in files[:FIRST_WEEKS]:
        shutil.copy(file, seen / file.name)
    timer = StageTimer(console)
    console.print(f"Training the first champion on weeks {_week(files[0])}-{_week(files[FIRST_WEEKS - 1])}; the "
                  f"market drifts in week {_week(files[config.drift_week or 0])} (replayed week {drift_week})")
    run_pipeline(seen, settings, StageTimer(quiet=True))
    registry, lake = Registry(settings), Lake(settings.lake_root)
    bundle_for = bundles_from(settings, [], registry=True)
    runs = []
    for file in files[FIRST_WEEKS:]:
        week = _week(file)
        champion = choose_model(settings)
        challenger = registry.challenger_version()
        with timer.stage("score", f"Week {week}: scoring with champion v{champion.version}"
                         + (f" and challenger v{challenger} in its shadow" if challenger else "")):
            score(input_at(str(file)), champion, settings)
            if challenger:
                shadow_score(file, choose_model(settings, model=challenger), lake)
        with timer.stage("label", f"Week {week}: landing its labelled transactions"):
            land(file, lake)
            shutil.copy(file, seen / file.name)
        with timer.stage("monitor", f"Week {week}: monitoring"):
            run = run_monitor(week, settings, gate, monitoring, lake.uri("monitoring"), bundle_for, promote=True)
        runs.append(run)
        console.print(week_line(run), markup=False)
        if run.promotion_error:
            console.print(f"  {run.promotion_error}", markup=False)
        if run.outcome.retraining.retrain:
            with timer.stage("retrain", f"Week {week}: retraining on every week landed"):
                registration = run_pipeline(seen, settings, StageTimer(quiet=True)).registration
            console.print(retrained_line(registration, registry), markup=False)
    console.print(weeks_table(runs))
    console.print(f"Report: {runs[-1].files['report.html']}")
    return runs


def shadow_score(file: Path, model: ScoringModel, lake) -> str:  # lake: ml.lake.Lake
    """The challenger's predictions of the week's baskets, logged as the service logs its shadow scoring (role
    challenger), under predictions/shadow-<time>/."""
    from ml import ingest
    from ml.prediction_log import BATCH, CHALLENGER, WEEK, prediction_rows
    from ml.schema import BASKET_KEY
    from ml.score import validate_unlabelled

    raw_input, raw = ingest.read(file)
    result, _ = validate_unlabelled(raw)
    features, probabilities = model.bundle.predict_proba(result.lines)
    identity = {"model_version": model.version, "model_family": model.family, "bundle_sha256": model.sha256}
    rows = prediction_rows(features[BASKET_KEY], features[WEEK], probabilities, model.bundle.classes, identity,
                           BATCH, CHALLENGER, dt.datetime.now(dt.UTC))
    run = f"shadow-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%fZ}"
    return lake.write_parquet(rows, "predictions", run, "baskets", f"week={_week(file)}", "part-0000.parquet")


def _week(file: Path) -> int:
    return int(file.stem.split("_")[-1])


def week_line(run: MonitorRun) -> str:
    outcome = run.outcome
    champion = outcome.report.champion
    figures = "no champion predictions" if champion is None else (
        f"champion v{champion.version} macro-F1 {champion.macro_f1 or 0:.3f}, largest PSI "
        f"{0 if champion.max_psi is None else champion.max_psi[1]:.3f}")
    decision = outcome.retraining
    if decision.retrain:
        said = "retrain (" + "; ".join(r.detail for r in decision.reasons) + ")"
    else:
        said = "no retraining" + (" (" + "; ".join(decision.notes) + ")" if decision.notes else "")
    verdict = "" if outcome.verdict is None else f"; challenger v{outcome.verdict.challenger}: {outcome.verdict.reason}"
    promoted = f"; promoted v{outcome.promoted} to champion" if outcome.promoted else ""
    return f"  {figures} -> {said}{verdict}{promoted}"


def retrained_line(registration: dict, registry) -> str:  # registry: ml.registry.Registry
    version = registration["version"]
    if registration["promoted"]:
        return f"  v{version} registered and promoted at once ({registration['reason']})"
    passed = registry.client.get_model_version(registry.name, version).tags.get("gate_passed") == "true"
    if passed and version != registry.champion_version():
        registry.make_challenger(version)
        return f"  v{version} registered, not promoted ({registration['reason']}): it scores as challenger from now"
    return f"  v{version} registered, not promoted ({registration['reason']})"


def weeks_table(runs: list[MonitorRun]) -> Table:
    table = Table(title="The replayed weeks")
    for column in ("week", "champion", "macro-F1", "largest PSI", "challenger margin", "retrain", "promoted"):
        table.add_column(column, justify="right")
    for run in runs:
        outcome = run.outcome
        champion = outcome.report.champion
        comparison = max(outcome.report.comparisons, key=lambda c: c.baskets, default=None)
        table.add_row(str(outcome.report.week), "-" if champion is None else f"v{champion.version}",
                      "-" if champion is None or champion.macro_f1 is None else f"{champion.macro_f1:.3f}",
                      "-" if champion is None or champion.max_psi is None else f"{champion.max_psi[1]:.3f}",
                      "-" if comparison is None else f"{comparison.margin:+.3f}",
                      ", ".join(r.kind for r in outcome.retraining.reasons) or "no",
                      f"v{outcome.promoted}" if outcome.promoted else "")
    return table

