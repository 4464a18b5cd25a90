"""Every rule of the pack, in the order reports list them."""

from __future__ import annotations

from policies.model import Rule
from policies.rules import (
    access,
    containers,
    cost,
    encryption,
    kubernetes,
    lake,
    lake_job,
    lifecycle,
    operations,
    s3,
    tags,
)

RULES: list[Rule] = [
    *s3.RULES,
    *encryption.RULES,
    *containers.RULES,
    *access.RULES,
    *operations.RULES,
    *cost.RULES,
    *kubernetes.RULES,
    *tags.RULES,
    *lifecycle.RULES,
    *lake.RULES,
    *lake_job.RULES,
]
BY_NAME = {rule.name: rule for rule in RULES}
