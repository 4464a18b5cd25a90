"""The CrossGuard pack: `pulumi preview --policy-pack policies --policy-pack-config policies/config/<stack>.json`.

Only wiring lives here: the rules are in `policies/rules/`, the pulumi-policy adapter in
`policies/pack.py`. The repository root goes on `sys.path` so `policies.*` and
`infra.providers.kinds` import the same way under the Pulumi CLI as in the tests.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import PolicyPack  # noqa: E402

from policies.catalog import RULES  # noqa: E402
from policies.pack import to_policy  # noqa: E402

PolicyPack(
    name="retail-mlops",
    description="Security, cost and operability rules for the retail-mlops AWS platform and its ML jobs.",
    policies=[to_policy(rule) for rule in RULES],
)
