"""The training stack under the policy pack: `training_offline_run`, as the offline policy check would include it."""

from __future__ import annotations

import pulumi
import pytest

from infra.offline import preview_stack
from infra.providers.kinds import MODEL_VERSION, TRAINING_JOB
from infra.providers.program import TRAINING_PROJECT, training_offline_run
from policies.catalog import RULES
from policies.enforcement import load_levels
from policies.evaluate import evaluate, mandatory
from policies.offline import resources_of
from tests.training.code_checkout import checkout
from tests.training.fakes import PLATFORM_OUTPUTS


@pytest.fixture(autouse=True)
def _neutral_pulumi_runtime():
    yield
    pulumi.runtime.reset_options()
    pulumi.runtime.set_all_config({})


def outputs_of(stack: str) -> dict:
    return PLATFORM_OUTPUTS | {"environment": stack}


def test_the_offline_run_is_the_training_project_with_the_job_and_the_version():
    run = training_offline_run("dev", outputs_of("dev"))
    assert (run.project, run.stack) == (TRAINING_PROJECT, "train-dev")
    assert {TRAINING_JOB, MODEL_VERSION} <= {r.inputs.get("kind") for r in run.resources}
    assert run.of_type("aws:ec2/securityGroup:SecurityGroup")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_training_stack_breaks_no_rule_at_the_platform_stacks_levels(stack):
    run = training_offline_run(stack, outputs_of(stack))
    assert evaluate(RULES, resources_of(run), load_levels(RULES, stack)) == []


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_training_stack_built_from_the_platforms_offline_outputs_has_no_mandatory_violation(stack):
    platform = preview_stack(stack)
    run = training_offline_run(stack, platform.stack_outputs)
    job = next(r for r in run.resources if r.inputs.get("kind") == TRAINING_JOB)
    assert job.inputs["volume_kms_key_id"] == platform.stack_outputs["dataKeyArn"]
    assert mandatory(evaluate(RULES, resources_of(run), load_levels(RULES, stack))) == []


def test_a_training_stack_without_the_owner_and_cost_center_tags_is_a_mandatory_violation(tmp_path):
    repo = checkout(tmp_path)  # the sources without the platform's Pulumi.prod.yaml: no owner, no cost-center
    run = training_offline_run("prod", outputs_of("prod"), project_dir=repo)
    violations = mandatory(evaluate(RULES, resources_of(run), load_levels(RULES, "prod")))
    assert [(v.rule, v.message) for v in violations] == [("aws-required-tags", "lacks the tag(s) owner, cost-center")]


def test_an_on_demand_training_stack_breaks_the_spot_rule():
    run = training_offline_run("prod", outputs_of("prod"), use_spot=False)
    violations = mandatory(evaluate(RULES, resources_of(run), load_levels(RULES, "prod")))
    assert [v.rule for v in violations] == ["sagemaker-training-spot"]
