"""Fixture deployments: copies of a real one with one document or input changed.

A check's failing case then differs from the real deployment in exactly what the check
is about.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from infra.offline import OfflineRun

PROJECT_DIR = Path(__file__).resolve().parents[2]
STACKS = ("dev", "prod", "ephemeral")

Statements = list[dict[str, Any]]


def edit_document(
    runs: Sequence[OfflineRun], name_suffix: str, edit: Callable[[Statements], Statements], key: str = ""
) -> list[OfflineRun]:
    """`runs` with the policy document of the one resource whose name ends in `name_suffix` edited.

    `edit` gets the document's statements and returns the new ones; `key` is the input
    holding the document (default: `assumeRolePolicy` for roles, `policy` otherwise).
    """
    matches = [r for run in runs for r in run.resources if r.name.endswith(name_suffix) and r.custom]
    assert len(matches) == 1, f"expected one resource named *{name_suffix}, found {[r.name for r in matches]}"
    target = matches[0]
    key = key or ("assumeRolePolicy" if target.type == "aws:iam/role:Role" else "policy")
    document = json.loads(target.inputs[key])
    document["Statement"] = edit(copy.deepcopy(document["Statement"]))
    edited = replace(target, inputs={**target.inputs, key: json.dumps(document)})
    return [replace(run, resources=[edited if r is target else r for r in run.resources]) for run in runs]


def edit_inputs(
    runs: Sequence[OfflineRun], name_suffix: str, edit: Callable[[dict[str, Any]], None]
) -> list[OfflineRun]:
    """`runs` with the inputs of the one resource whose name ends in `name_suffix` changed in place by `edit`."""
    runs = copy.deepcopy(list(runs))
    matches = [r for run in runs for r in run.resources if r.name.endswith(name_suffix) and r.custom]
    assert len(matches) == 1, f"expected one resource named *{name_suffix}, found {[r.name for r in matches]}"
    edit(matches[0].inputs)
    return runs


def statement(statements: Statements, sid: str) -> dict[str, Any]:
    return next(s for s in statements if s.get("Sid") == sid)


def without(*sids: str) -> Callable[[Statements], Statements]:
    return lambda statements: [s for s in statements if s.get("Sid") not in sids]
