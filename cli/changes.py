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

The verdict goes to stdout as `true` or `false` (for `$GITHUB_OUTPUT` or a Jenkins
`returnStdout`), the reasons to stderr. A commit that cannot be compared (the all-zero
`before` of a new branch, history missing from a shallow clone) means retrain: better
a needless run than a stale model.
"""

from __future__ import annotations

import subprocess
from fnmatch import fnmatchcase
from pathlib import Path

import typer

from cli.console import err_console

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
) -> None:
    """Print `true` when data, training code or hyperparameters changed since SINCE, else `false`."""
    paths = changed_paths(repo, since)
    if paths is None:
        _note(f"retrain: {since!r} cannot be compared with HEAD (new branch or shallow clone)")
        typer.echo("true")
        return
    reasons = retrain_reasons(paths)
    for reason, matched in reasons.items():
        _note(f"retrain ({reason}): {', '.join(matched)}")
    if not reasons:
        _note(f"no retraining: {len(paths)} changed path(s), none of them data, training code or hyperparameters")
    typer.echo("true" if reasons else "false")
