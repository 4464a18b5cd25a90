"""The IAM actions a deployment needs, from the resource types its offline preview registers.

`infra/data/deploy-actions.json` maps each Pulumi type token (and each dynamic provider
kind, and each provider function the programs call) to the actions the deploying
principal needs for it; its `about` says what is listed and what is not.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

ACTIONS_FILE = Path(__file__).resolve().parent / "data" / "deploy-actions.json"


@dataclass(frozen=True)
class RequiredActions:
    actions: tuple[str, ...]
    """Sorted and unique, e.g. `ec2:CreateVpc`."""
    unmapped: tuple[str, ...]
    """Registered types the table has no entry for: their actions are not known."""


@cache
def actions_table() -> Mapping[str, Any]:
    return json.loads(ACTIONS_FILE.read_text())


def required_actions(kinds: Iterable[str], table: Mapping[str, Any] | None = None) -> RequiredActions:
    """The actions for `kinds` (resource types, dynamic kinds) plus the provider functions' (always called)."""
    table = table or actions_table()
    actions = {action for listed in table["invokes"].values() for action in listed}
    unmapped = []
    for kind in sorted(set(kinds)):
        listed = table["types"].get(kind, table["dynamic"].get(kind))
        if listed is not None:
            actions.update(listed)
        elif not any(kind.startswith(prefix) for prefix in table["no_aws_actions"]):
            unmapped.append(kind)
    return RequiredActions(tuple(sorted(actions)), tuple(unmapped))
