"""The required-tags rule covers every taggable type the stacks declare, taggable as pulumi-aws itself says.

`aws-required-tags` judges the types it lists. A type added to a component later (a Glue
database, an Athena workgroup) would escape it silently; here the list is checked against each
resource class's own signature: a class whose constructor takes `tags` can carry them.
"""

from __future__ import annotations

import importlib
import inspect

import pytest

from policies.rules.tags import TAGGABLE


def takes_tags(type_token: str) -> bool:
    """Whether the pulumi-aws class of a type token (`aws:glue/catalogDatabase:CatalogDatabase`) takes `tags`."""
    _, module_path, class_name = type_token.split(":")
    module = importlib.import_module(f"pulumi_aws.{module_path.split('/')[0]}")
    return "tags" in inspect.signature(getattr(module, class_name)._internal_init).parameters


def test_the_signature_tells_a_taggable_class_from_one_that_is_not():
    assert takes_tags("aws:s3/bucket:Bucket")
    assert not takes_tags("aws:iam/rolePolicyAttachment:RolePolicyAttachment")


@pytest.mark.parametrize("stack", ["dev", "prod", "ephemeral"])
def test_every_taggable_type_of_the_stack_is_judged_by_the_rule(deployment, stack):
    declared = {r.type for run in deployment(stack) for r in run.resources if r.type.startswith("aws:")}
    unjudged = sorted(t for t in declared if takes_tags(t) and t not in TAGGABLE)
    assert not unjudged, f"taggable types aws-required-tags does not list: {unjudged}"
