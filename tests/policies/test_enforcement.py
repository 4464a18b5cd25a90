"""Per-stack enforcement levels from pulumi-policy's config file format, shared by both paths."""

from __future__ import annotations

import json

import pytest

from policies.catalog import BY_NAME, RULES
from policies.enforcement import CONFIG_DIR, levels_for, load_levels
from policies.evaluate import evaluate, mandatory
from policies.model import Enforcement
from tests.policies.cases import CASES


def test_all_sets_every_rule_and_a_rule_entry_overrides_it():
    levels = levels_for(RULES, {"all": "advisory", "kms-key-rotation": "mandatory"})
    assert levels["kms-key-rotation"] is Enforcement.mandatory
    assert levels["cloudtrail-kms"] is Enforcement.advisory


def test_an_entry_may_be_an_object_with_an_enforcement_level():
    levels = levels_for(RULES, {"kms-key-rotation": {"enforcementLevel": "disabled"}})
    assert levels["kms-key-rotation"] is Enforcement.disabled


def test_without_an_entry_a_rule_keeps_its_default_level():
    assert levels_for(RULES, {})["kms-key-rotation"] is BY_NAME["kms-key-rotation"].enforcement


def test_an_unknown_rule_name_is_an_error_that_lists_the_known_rules():
    with pytest.raises(ValueError, match="unknown rule name.*kms-key-rotaton.*known rules"):
        levels_for(RULES, {"kms-key-rotaton": "mandatory"})


def test_an_unknown_level_is_an_error_naming_the_rule():
    with pytest.raises(ValueError, match="kms-key-rotation: enforcement level 'blocking'"):
        levels_for(RULES, {"kms-key-rotation": "blocking"})


def test_a_stack_without_a_config_file_uses_the_defaults(tmp_path):
    assert load_levels(RULES, "qa", tmp_path) == {r.name: r.enforcement for r in RULES}


def test_invalid_json_names_the_file(tmp_path):
    (tmp_path / "dev.json").write_text("{all: mandatory}")
    with pytest.raises(ValueError, match="dev.json is not valid JSON"):
        load_levels(RULES, "dev", tmp_path)


@pytest.mark.parametrize("stack", ["dev", "prod", "ephemeral"])
def test_the_shipped_stack_configs_are_valid(stack):
    levels = load_levels(RULES, stack, CONFIG_DIR)
    assert set(levels) == set(BY_NAME)


def test_prod_makes_every_rule_mandatory_but_tls_until_it_has_a_domain():
    """And the budget rules, until prod's m6i nodes have a price (docs/aws.md, Cost at preview): a mandatory budget
    rule passing on a total that leaves out prod's inference nodes would hide that prod is likely over."""
    levels = load_levels(RULES, "prod")
    advisory = {"ingress-tls", "stack-within-budget", "stack-fully-priced"}
    assert {name for name, level in levels.items() if level is not Enforcement.mandatory} == advisory
    assert levels["eks-endpoint-not-public"] is Enforcement.mandatory


@pytest.mark.parametrize("stack", ["dev", "prod", "ephemeral"])
def test_every_stack_must_schedule_monitoring_of_its_served_model(stack):
    """Every shipped service stack declares `retail monitor` weekly (infra/monitoring_schedule.py): none may lose it."""
    assert load_levels(RULES, stack)["served-model-monitoring-schedule"] is Enforcement.mandatory


@pytest.mark.parametrize(("stack", "level"), [("dev", Enforcement.mandatory), ("prod", Enforcement.mandatory),
                                              ("ephemeral", Enforcement.disabled)])
def test_only_ephemeral_stacks_which_score_nothing_may_suspend_it(stack, level):
    assert load_levels(RULES, stack)["served-model-monitoring-active"] is level


@pytest.mark.parametrize("stack", ["dev", "ephemeral"])
def test_stacks_deployed_from_hosted_runners_accept_a_public_endpoint_as_advisory(stack):
    levels = load_levels(RULES, stack)
    assert levels["eks-endpoint-not-public"] is Enforcement.advisory
    assert levels["ingress-tls"] is Enforcement.advisory


def test_ephemeral_stacks_are_checked_like_dev_but_for_the_monthly_budget_and_an_active_monitor():
    """An ephemeral stack lives for one pull request's checks: its monthly estimate is not what it costs, and it
    scores nothing, so its monitoring schedule is declared but suspended."""
    ephemeral = json.loads((CONFIG_DIR / "ephemeral.json").read_text())
    dev = json.loads((CONFIG_DIR / "dev.json").read_text())
    assert ephemeral.pop("stack-within-budget") == "advisory" and "stack-within-budget" not in dev
    assert ephemeral.pop("served-model-monitoring-active") == "disabled"
    assert ephemeral == dev


def test_an_advisory_violation_is_reported_but_does_not_block():
    _, bad_key = CASES["kms-key-rotation"]
    violations = evaluate([BY_NAME["kms-key-rotation"]], [bad_key], {"kms-key-rotation": Enforcement.advisory})
    assert [v.rule for v in violations] == ["kms-key-rotation"]
    assert mandatory(violations) == []


def test_a_disabled_rule_is_not_evaluated():
    _, bad_key = CASES["kms-key-rotation"]
    assert evaluate([BY_NAME["kms-key-rotation"]], [bad_key], {"kms-key-rotation": Enforcement.disabled}) == []
