"""What the providers of immutable runs share (a SageMaker training job, an EMR Serverless job run): a run cannot
change once started, so a change of what decides its result starts a new one (replaces the resource), and any other
change is recorded as the inputs of the next run while the finished run's outputs are kept."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from pulumi.dynamic import DiffResult, UpdateResult


def run_diff(olds: dict[str, Any], news: dict[str, Any], outputs: Collection[str],
             replace_on: Collection[str]) -> DiffResult:
    """Changed inputs (outputs and the pickled provider left out); those in `replace_on` replace the run."""
    inputs = (set(news) | set(olds)) - set(outputs) - {"__provider"}
    changes = sorted(k for k in inputs if olds.get(k) != news.get(k))
    replaces = [k for k in changes if k in replace_on]
    return DiffResult(changes=bool(changes), replaces=replaces, stables=[], delete_before_replace=False)


def run_update(olds: dict[str, Any], news: dict[str, Any], outputs: Collection[str]) -> UpdateResult:
    """Only inputs that need no new run changed: keep the run's outputs, record the new inputs."""
    return UpdateResult({**news, **{key: olds[key] for key in outputs}})
