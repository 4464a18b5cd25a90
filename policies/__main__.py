"""The CrossGuard pack: `pulumi preview --policy-pack policies --policy-pack-config policies/config/<stack>.json`.

Only wiring lives here: the rules are in `policies/rules/`, the pulumi-policy adapter in
`policies/pack.py`. The CLI runs this file with the virtualenv PulumiPolicy.yaml names
(`python -u -m pulumi.policy <engine> <this folder>`); the project is installed in that
environment (`make setup`), so `policies.*` and `infra.*` import from it as in the tests.
"""

from pulumi_policy import PolicyPack

from policies.catalog import RULES
from policies.pack import to_policy

PolicyPack(
    name="retail-mlops",
    description="Security, cost and operability rules for the retail-mlops AWS platform and its ML jobs.",
    policies=[to_policy(rule) for rule in RULES],
)
