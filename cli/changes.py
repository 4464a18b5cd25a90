"""`retail changed`: does a range of commits call for retraining the model?

Retraining is needed when the training data, the training code or its hyperparameters
changed. In git those are:

- data: `datasets/` holds the pins of the training input (a lake location and the
  SHA-256 of the file or manifest it names); new data is announced by committing a pin;
- hyperparameters: the families' defaults and search space (`ml/families.py`,
  `ml/xgb_search.py`) and the split, search and gate settings (`ml/settings.py`);
- training code: everything else under `ml/`, and what the training image is built from
  (`Dockerfile.training`, `.dockerignore`, `pyproject.toml` and the locked dependencies in
  `uv.lock`: the training image's code version hashes them).

Documentation (`*.md`, e.g. `datasets/README.md`) never calls for retraining.

With `--monitoring` (a `retail monitor` report location, or RETAIL_MONITORING_URI), the
monitored weeks count too: the verdict is the retraining policy's (ml/retrain_policy.py,
the one `retail monitor` asks), so a champion whose macro-F1 fell below the gate, whose
inputs drifted, or whose training data is `MonitorSettings.new_weeks` weeks old is retrained
even when git holds no change. Once a model version has been registered after the latest
report was written (that retraining answered it), the monitored weeks call for nothing
until the next report. A location holding no report is an error (exit 2): a wrong
location would otherwise read as "nothing to retrain".

The verdict goes to stdout as `true` or `false` (for `$GITHUB_OUTPUT` or a Jenkins
`returnStdout`), the reasons to stderr. A commit that cannot be compared (the all-zero
`before` of a new branch, history missing from a shallow clone) means retrain: better
a needless run than a stale model.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from fnmatch import fnmatchcase
from pathlib import Path

import typer

from cli.console import err_console, print_error

RETRAIN_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("data", ("datasets/*",)),
    ("hyperparameters", ("ml/families.py", "ml/xgb_search.py", "ml/settings.py")),
    ("training code", ("ml/*", "Dockerfile.training", ".dockerignore", "uv.lock", "pyproject.toml")),
)
NEVER_RETRAIN = ("*.md",)
"""(reason, path patterns) in order; a path counts for the first rule it matches. `*` spans folders."""


def retrain_reasons(paths: list[str]) -> dict[str, list[str]]:
    """The changed paths that call for retraining, grouped by reason (empty: no retraining needed)."""
    reasons: dict[str, list[str]] = {}
    for path in paths:
        if any(fnmatchcase(path, pattern) for pattern in NEVER_RETRAIN):
            continue
        for reason, patterns in RETRAIN_RULES:
            if any(fnmatchcase(path, pattern) for pattern in patterns):
                reasons.setdefault(reason, []).append(path)
                break
    return reasons


def changed_paths(repo: Path, since: str) -> list[str] | None:
    """Paths changed between `since` and HEAD, or None when `since` cannot be compared."""
    result = subprocess.run(["git", "-C", str(repo), "diff", "--name-only", "--no-renames", f"{since}...HEAD"],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return None
    return [line for line in result.stdout.splitlines() if line]


def _note(text: str) -> None:
    err_console.print(text, markup=False, highlight=False, soft_wrap=True)


def changed(
    since: str = typer.Option(..., help="commit (or ref) the range starts from, e.g. the push's `before`"),
    repo: Path = typer.Option(Path("."), help="git work tree to look at"),
    monitoring: str = typer.Option(None, envvar="RETAIL_MONITORING_URI",
                                   help="`retail monitor`'s report location (folder or s3:// prefix): let the "
                                        "monitored weeks call for retraining too"),
) -> None:
    """Print `true` when data, training code or hyperparameters changed since SINCE (or, with --monitoring, the
    monitored weeks call for it), else `false`."""
    from ml.monitor_report import PolicyInputs
    from ml.settings import GateSettings, MonitorSettings

    paths = changed_paths(repo, since)
    if paths is None:
        changes = {"history": [f"{since!r} cannot be compared with HEAD (new branch or shallow clone)"]}
    else:
        changes = retrain_reasons(paths)
    inputs = monitored(monitoring) if monitoring else PolicyInputs([], None, None)
    decision = inputs.decide(changes, GateSettings(), MonitorSettings())
    for reason in decision.reasons:
        _note(f"retrain ({reason.kind}): {reason.detail}")
    for note in decision.notes:
        _note(note)
    if not decision.retrain:
        watched = "" if monitoring is None else f", and the {len(inputs.weeks)} monitored week(s) call for none"
        _note(f"no retraining: {0 if paths is None else len(paths)} changed path(s), none of them data, training "
              f"code or hyperparameters{watched}")
    typer.echo("true" if decision.retrain else "false")


def monitored(location: str):  # -> ml.monitor_report.PolicyInputs
    """The retraining policy's inputs for the latest week monitored at `location`, as `retail monitor` read them
    for that week; none once a model version was registered after that report was written. Exits 2 when the
    location holds no report."""
    from ml.monitor_report import PolicyInputs, ReportStore, policy_inputs_of
    from ml.settings import MonitorSettings

    outcomes = ReportStore(location).history(before=sys.maxsize)
    if not outcomes:
        print_error(f"--monitoring {location}: no `retail monitor` report (week=YYYYWW/report.json) there; give the "
                    "report location `retail monitor --out` writes to (default: the lake's monitoring/)")
        raise typer.Exit(2)
    latest = outcomes[-1].report
    stale_note(latest.week, MonitorSettings().stale_weeks)
    version = registered_after(latest.created)
    if version is not None:
        _note(f"version {version} was registered after the report of week {latest.week} was written "
              f"({latest.created}): that retraining answered it, so the monitored weeks call for nothing until the "
              "next report")
        return PolicyInputs([], None, None)
    return policy_inputs_of(outcomes[:-1], latest)


def stale_note(week: int, stale_weeks: int, today: dt.date | None = None) -> None:
    """Flag a latest report of a week more than `stale_weeks` weeks before last week: the monitoring has stopped."""
    from ml.calendar import week_code_of
    from ml.monitor import week_index

    last_week = week_code_of((today or dt.date.today()) - dt.timedelta(weeks=1))
    behind = week_index(last_week) - week_index(week)
    if behind > stale_weeks:
        _note(f"stale monitoring: the latest report is of week {week}, {behind} weeks before last week ({last_week}; "
              f"RETAIL_MONITOR_STALE_WEEKS {stale_weeks}): is `retail monitor` still running?")


def registered_after(written: str) -> str | None:
    """The newest model version the registry (RETAIL_REGISTRY_URI) registered after `written` (an ISO time), or
    None (none, or no local registry file to ask)."""
    from ml.settings import Settings

    settings = Settings()
    uri = settings.registry_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return None
    from ml.registry import Registry

    since = dt.datetime.fromisoformat(written).timestamp() * 1000
    newer = [v["version"] for v in Registry(settings).versions() if v["created"] > since]
    return newer[-1] if newer else None
