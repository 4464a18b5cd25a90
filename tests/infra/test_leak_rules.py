"""The leak scan's kept-by-design rule matches exactly the buckets and KMS keys the dev platform keeps on destroy.

`infra.leaks.is_kept_by_design` recognises the audit bucket and its key by name and
description; these are checked against the resources the dev program marks
`retain_on_delete` (offline preview), so a renamed component cannot turn a retained
resource into a reported leftover, or a deleted one into an excused one, unnoticed.
"""

from __future__ import annotations

from infra.leaks import is_kept_by_design
from infra.offline import OfflineRun


def test_the_kept_by_design_rule_matches_exactly_what_the_dev_platform_retains(dev: OfflineRun):
    candidates = [r for r in dev.resources if r.type in {"aws:s3/bucket:Bucket", "aws:kms/key:Key"}]
    assert {r.retain_on_delete for r in candidates} == {True, False}
    for resource in candidates:
        if resource.type == "aws:s3/bucket:Bucket":
            kept = is_kept_by_design("dev", "s3:bucket", f"{resource.name}-0a1b2c3")  # Pulumi's auto-name suffix
        else:
            kept = is_kept_by_design("dev", "kms:key", "key-id", resource.inputs["description"])
        assert kept == resource.retain_on_delete, resource.name
