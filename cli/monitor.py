"""`retail monitor --week W`: a week's logged predictions against its labels, the retraining policy, the challenger.

One run: read every prediction of week W in the lake's predictions zone (batch runs and the
service's log, champion and challenger) and the week's labels from silver; measure each model
version (ml/monitor.py); ask the retraining policy (ml/retrain_policy.py) and, when a challenger
scored in the champion's shadow, whether it has earned promotion (ml/challenger.py), over this
week and the weeks the report location already holds; write the report (ml/monitor_report.py);
with --promote, then promote it in the registry with its evidence, provided the champion it was
compared with still holds the alias (a rerun of a week already promoted changes nothing), and
write the report again saying so. A refused promotion exits 1 after the report is written.

Built to run as a scheduled job the way `retail score` does (infra/batch_scoring.py): lake and
report are local folders or s3:// URIs, and with RETAIL_EMF_ENABLED=true the run ends with one
CloudWatch embedded-metric-format line on stdout (ml/emf.py `monitor_run`, dimension
Environment=RETAIL_ENVIRONMENT): `MonitorRunFailed`, the champion's labelled baskets,
accuracy, macro-F1, lowest class precision and largest PSI, the challenger's margin,
whether to retrain and the share of predicted baskets found in the week's silver lines. A
model version's bundle (for its training reference and featurizer) comes from the registry by its
number, or, for a `sha256:...` version, from a --bundle location (the service's RETAIL_MODEL_URI);
without one its drift is not measured and the report says so.

`--week pending`, what the weekly CronJob runs (infra/monitoring_schedule.py), takes its weeks from the data,
not the clock: every week with a folder in the predictions zone and no report yet, oldest first, of which
those whose labels are in silver are judged, at most RETAIL_MONITOR_PENDING_WEEKS a run (the rest wait for
the next). A week whose labels land late is judged by the first run after they land; a run with nothing
new to judge says so and exits 0. The EMF line carries the figures of the newest week judged only: the
alarms read "the latest judged week" (infra/observability.py), and a daily Minimum over several weeks'
figures would mix them. `--week last` is the fiscal week before the one holding today's date in the local
time zone (TZ), for a current-dated live feed.

The served bundle's version (`sha256:<manifest hash>`, pinned with --bundle-sha256 / RETAIL_MODEL_SHA256 as
the scorer pins it) is recorded in the report (`served_versions`), with a notice when the week's champion
was another version (the served model changed since the week's predictions: its drift is then not measured).

Exit codes: 2 when a week asked for by number or `last` has no prediction or no labels yet, or a bundle
cannot be had; DATA_FAULT_EXIT_CODE (3) when a week has both but no predicted basket's key is in its silver
lines (after writing its report, publishing MonitorRunFailed=1): a retry reads the same data, so the
CronJob fails at once on both; 1 when the registry refused a promotion. A week whose figures breach the
thresholds is a finding, not a failure (exit 0): the alarms read the published metrics.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from cli.console import print_error
from ml import emf

if TYPE_CHECKING:  # polars, MLflow and the model libraries load when the command runs, not with `retail`
    from ml.bundle import ModelBundle
    from ml.monitor_report import Outcome
    from ml.registry import Promotion
    from ml.settings import GateSettings, MonitorSettings, Settings

console = Console(stderr=True)
PUBLISHED_METRICS = emf.MONITOR_RUN_METRICS
"""The metrics a run may publish with RETAIL_EMF_ENABLED=true."""


LAST_WEEK = "last"
PENDING = "pending"
DATA_FAULT_EXIT_CODE = 3
"""The exit code when the data cannot be measured (no predicted basket's key joins the week's silver lines)."""
INPUT_EXIT_CODE = 2
FIRST_WEEK, FINAL_WEEK = 190001, 299952


def last_week(today: dt.date) -> int:
    """The fiscal week before the one holding `today`: the week that ended most recently."""
    from ml.calendar import week_code_of

    return week_code_of(today - dt.timedelta(weeks=1))


def week_code(value: str) -> int:
    """`--week`: a fiscal week YYYYWW, or `last`, the week before the one holding today's (local) date."""
    if value == LAST_WEEK:
        return last_week(dt.date.today())
    if not value.isdigit() or not FIRST_WEEK <= int(value) <= FINAL_WEEK or not 1 <= int(value) % 100 <= 52:
        raise typer.BadParameter(f"{value!r} is neither a fiscal week YYYYWW (WW 01-52, {FIRST_WEEK}-{FINAL_WEEK}) "
                                 f"nor {LAST_WEEK!r}")
    return int(value)


def week_choice(value: str) -> int | str:
    """`--week`: `pending`, or a week as `week_code` reads it."""
    return PENDING if value == PENDING else week_code(value)


class NothingToMonitor(LookupError):
    """The week has no prediction or no labels in the lake."""


@dataclass
class MonitorRun:
    outcome: Outcome
    files: dict[str, str]  # report file name -> location
    promotion: Promotion | None = None  # with --promote, what the registry did
    promotion_error: str | None = None  # why the registry refused the promotion the verdict called for


class BundleFor:
    """A version's bundle: a registered version from the registry (when `registry`), a `sha256:...` version from
    the bundle locations given (each pinned to the manifest hash `sha256`, when given); each loaded once. None
    when it cannot be had. `served` lists the versions the bundle locations hold, once one was asked for."""

    def __init__(self, settings: Settings, bundles: list[str], registry: bool, sha256: str | None = None) -> None:
        self.settings, self.bundles, self.registry, self.sha256 = settings, bundles, registry, sha256
        self.loaded: dict[str, ModelBundle | None] = {}
        self.located: dict[str, ModelBundle] = {}

    @property
    def served(self) -> list[str]:
        return list(self.located)

    def __call__(self, version: str) -> ModelBundle | None:
        from cli.score import choose_model
        from ml.bundle import BundleIntegrityError

        if not self.located and self.bundles:
            for location in self.bundles:
                model = choose_model(self.settings, bundle=location, bundle_sha256=self.sha256)
                self.located[model.version] = model.bundle
        if version not in self.loaded:
            self.loaded[version] = self.located.get(version)
            if self.loaded[version] is None and self.registry and version.isdigit():
                try:
                    self.loaded[version] = choose_model(self.settings, model=version).bundle
                except (LookupError, BundleIntegrityError) as exc:
                    console.print(f"version {version}: no bundle ({exc})", markup=False)
        return self.loaded[version]


def bundles_from(settings: Settings, bundles: list[str], registry: bool, sha256: str | None = None) -> BundleFor:
    return BundleFor(settings, bundles, registry, sha256)


def run_monitor(
    week: int,
    settings: Settings,
    gate: GateSettings,
    monitoring: MonitorSettings,
    out: str,
    bundle_for: Callable[[str], ModelBundle | None],
    promote: bool = False,
) -> MonitorRun:
    """One monitoring run (see the module docstring); raises NothingToMonitor when the week cannot be measured."""
    from ml.challenger import challenger_verdict
    from ml.labels import NoLabels, week_lines
    from ml.lake import Lake
    from ml.monitor import measure_week, read_predictions
    from ml.monitor_report import Outcome, ReportStore, policy_inputs_of

    lake = Lake(settings.lake_root)
    predictions = read_predictions(lake, week)
    if not predictions.rows.height:
        raise NothingToMonitor(f"week {week}: no prediction under {lake.uri('predictions')} (score the week first)")
    try:
        lines = week_lines(lake, week)
    except NoLabels as exc:
        raise NothingToMonitor(str(exc)) from exc
    report = measure_week(week, predictions, lines, bundle_for, gate, monitoring)
    report.served_versions = bundle_for.served if isinstance(bundle_for, BundleFor) else []
    if report.champion is not None and report.served_versions and report.champion.version not in report.served_versions:
        report.notices.append(f"week {week}: the served model ({', '.join(report.served_versions)}) is not the "
                              f"week's champion {report.champion.version}: it changed since the week's predictions")
    store = ReportStore(out)
    history = store.history(before=week)
    decision = policy_inputs_of(history, report).decide({}, gate, monitoring)
    verdict = None
    if report.comparisons and report.champion is not None:
        challenger = max(report.comparisons, key=lambda c: c.baskets).challenger
        compared = [c for o in history for c in o.report.comparisons] + report.comparisons
        verdict = challenger_verdict(compared, challenger, report.champion.version, gate, monitoring)
    outcome = Outcome(report, decision, verdict, None)
    run = MonitorRun(outcome, store.write(outcome, history, gate, monitoring))
    if promote and verdict is not None and verdict.promote:  # once the report holds the evidence
        from ml.registry import Registry

        context = {"min_baskets": monitoring.min_baskets, "challenger_margin": monitoring.challenger_margin,
                   "challenger_weeks": monitoring.challenger_weeks, "gate_min_macro_f1": gate.min_macro_f1,
                   "reports": [store.uri(f"week={e['week']}", "report.json") for e in verdict.evidence]}
        try:
            run.promotion = Registry(settings).promote_challenger(verdict.challenger, verdict.champion,
                                                                  verdict.reason, verdict.evidence, context)
        except ValueError as exc:  # not the challenger any more, or the champion moved
            run.promotion_error = f"challenger {verdict.challenger} not promoted: {exc}"
        else:
            outcome.promoted = run.promotion.version
            run.files = store.write(outcome, history, gate, monitoring)
    return run


def pending_weeks(settings: Settings, out: str, cap: int) -> tuple[list[int], list[int]]:
    """The weeks `--week pending` judges, oldest first: of the weeks with predictions and no report at `out`,
    the first `cap` whose labels are in silver; and the weeks before the last of those still waiting for
    labels (they are tried again next run)."""
    from ml.labels import NoLabels, week_lines
    from ml.lake import Lake
    from ml.monitor import predicted_weeks
    from ml.monitor_report import ReportStore

    lake = Lake(settings.lake_root)
    reported = ReportStore(out).reported_weeks()
    judged: list[int] = []
    waiting: list[int] = []
    for week in (w for w in predicted_weeks(lake) if w not in reported):
        if len(judged) == cap:
            break
        try:
            week_lines(lake, week)
        except NoLabels:
            waiting.append(week)
        else:
            judged.append(week)
    return judged, waiting


def figures(outcome: Outcome, min_baskets: int) -> dict[str, float | None]:
    """The week's figures by CloudWatch metric name (ml/metric_names.py); None where the week gave none, and for
    the champion's figures and the challenger's margin, where fewer than `min_baskets` labelled baskets were
    measured (too few to judge: an alarm must not fire on them)."""
    from ml import metric_names as names

    champion = outcome.report.champion
    comparisons = [c for c in outcome.report.comparisons if c.baskets >= min_baskets]
    of_champion: dict[str, float | None] = {} if champion is None else {names.MONITORED_BASKETS: champion.labelled}
    if champion is not None and champion.labelled >= min_baskets:
        of_champion |= {
            names.MONITORED_ACCURACY: champion.accuracy,
            names.MONITORED_MACRO_F1: champion.macro_f1,
            names.MONITORED_MIN_CLASS_PRECISION: champion.min_class_precision,
            names.MONITORED_DRIFT_PSI: None if champion.max_psi is None else champion.max_psi[1],
        }
    return {
        **of_champion,
        names.CHALLENGER_MARGIN: max(comparisons, key=lambda c: c.baskets).margin if comparisons else None,
        names.MONITORED_JOIN_COVERAGE: outcome.report.join_coverage,
        names.RETRAIN_NEEDED: int(outcome.retraining.retrain),
    }


def summary_table(outcome: Outcome) -> Table:
    report = outcome.report
    table = Table(title=f"Week {report.week}: {report.labelled_baskets} labelled baskets")
    for column in ("role", "version", "family", "predicted", "labelled", "accuracy", "macro-F1", "largest PSI"):
        table.add_column(column, justify="left" if column in ("role", "family") else "right")
    for m in report.models:
        psi = "-" if m.max_psi is None else f"{m.max_psi[1]:.3f} {m.max_psi[0]}"
        table.add_row(m.role, m.version, m.family, f"{m.predicted:,}", f"{m.labelled:,}",
                      "-" if m.accuracy is None else f"{m.accuracy:.4f}",
                      "-" if m.macro_f1 is None else f"{m.macro_f1:.4f}", psi)
    return table


def print_outcome(run: MonitorRun) -> None:
    outcome = run.outcome
    Console().print(summary_table(outcome))
    for breach in outcome.report.breaches:
        console.print(f"breach: {breach}", style="yellow", markup=False)
    for notice in outcome.report.notices:
        console.print(f"notice: {notice}", markup=False)
    decision = outcome.retraining
    console.print(f"retrain: {'yes' if decision.retrain else 'no'}", style="bold")
    for reason in decision.reasons:
        console.print(f"  {reason.kind}: {reason.detail}", markup=False)
    for note in decision.notes:
        console.print(f"  {note}", markup=False)
    if outcome.verdict is not None:
        verdict = outcome.verdict
        console.print(f"challenger {verdict.challenger}: {'promote' if verdict.promote else 'keep watching'} "
                      f"({verdict.reason})", markup=False)
    if run.promotion is not None and run.promotion.already:
        console.print(f"version {run.promotion.version} is champion already, promoted on this evidence "
                      f"(promotion.{run.promotion.number}.* tags): nothing changed")
    elif outcome.promoted:
        console.print(f"champion -> version {outcome.promoted} (promoted from challenger, evidence on the version)")
    console.print(f"Report: {run.files['report.html']}")


def monitor(
    week: str = typer.Option(..., "--week", "-w", parser=week_choice, metavar="YYYYWW|last|pending",
                             help="fiscal week to monitor; `last`: the week before today's; `pending`: each week "
                                  "with predictions and labels but no report yet, oldest first "
                                  "(RETAIL_MONITOR_PENDING_WEEKS at most)"),
    lake: str = typer.Option(None, help="lake root: a folder or s3://bucket/prefix [env RETAIL_LAKE_ROOT]"),
    out: str = typer.Option(None, help="where reports go: a folder or s3:// prefix [default: LAKE/monitoring]"),
    bundle: list[str] = typer.Option(None, help="a bundle location (folder or s3:// prefix) for sha256:... versions; "
                                                "repeat for several"),
    registry: bool = typer.Option(True, "--registry/--no-registry",
                                  help="read registered versions' bundles from the MLflow registry"),
    bundle_sha256: str = typer.Option(None, envvar="RETAIL_MODEL_SHA256",
                                      help="refuse a --bundle whose manifest's SHA-256 is not this (the served one)"),
    promote: bool = typer.Option(False, help="promote the challenger in the registry when it has earned it"),
) -> None:
    """Measure week W's predictions against its labels; decide on retraining and the challenger; write the report."""
    from ml.bundle import BundleIntegrityError
    from ml.lake import Lake
    from ml.settings import GateSettings, MonitorSettings, Settings

    settings = Settings(**({"lake_root": lake} if lake else {}))
    monitoring = MonitorSettings()
    failed, newest = True, None
    try:
        location = out or Lake(settings.lake_root).uri("monitoring")
        if week != PENDING:
            weeks = [int(week)]
        else:
            weeks, waiting = pending_weeks(settings, location, monitoring.pending_weeks)
            for week_waiting in waiting:
                console.print(f"week {week_waiting}: predictions but no labels in silver yet; waits for them")
            if not weeks:
                console.print("nothing new to judge: no week has predictions, labels and no report yet")
        bundle_for = bundles_from(settings, bundle or [], registry, bundle_sha256)
        code = 0
        for each in weeks:
            try:
                run = run_monitor(each, settings, GateSettings(), monitoring, location, bundle_for, promote)
            except NothingToMonitor as exc:
                if week != PENDING:
                    print_error(exc)
                    raise typer.Exit(INPUT_EXIT_CODE) from exc
                console.print(f"{exc}; waits for the next run", markup=False)  # e.g. only unreadable files
                continue
            except (LookupError, BundleIntegrityError) as exc:  # NothingToMonitor, no such bundle or version
                print_error(exc)
                raise typer.Exit(INPUT_EXIT_CODE) from exc
            newest = run.outcome
            print_outcome(run)
            if run.promotion_error is not None:
                print_error(run.promotion_error)
                code = code or 1
            if not newest.report.joined_baskets:
                print_error(f"week {each}: none of the {newest.report.predicted_baskets} predicted baskets is in the "
                            f"week's silver lines ({newest.report.label_source}): their keys do not join")
                code = DATA_FAULT_EXIT_CODE
        if code:
            raise typer.Exit(code)
        failed = False
    finally:
        if settings.emf_enabled:
            emf.monitor_run(settings.environment, failed,
                            {} if newest is None else figures(newest, monitoring.min_baskets))


if __name__ == "__main__":  # `python -m cli.monitor ...`: the command without the rest of `retail`
    typer.run(monitor)

