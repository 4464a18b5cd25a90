"""infra/iam_simulation.py: the probe ARNs made from the Service Authorization Reference, how the API's results
decide an action, and the two passes over a stand-in simulation."""

from __future__ import annotations

from infra.iam_simulation import Outcome, Probe, probe_arns, required_resource_types, simulate_deploy_actions

PROBE = Probe(partition="aws", account="123456789012", region="ap-southeast-1", name="retail-dev-probe")


def test_a_probe_arn_is_the_reference_s_format_of_each_required_resource_type_named_by_the_stack():
    assert probe_arns("s3:CreateBucket", PROBE) == ("arn:aws:s3:::retail-dev-probe",)
    assert probe_arns("s3:PutObject", PROBE) == ("arn:aws:s3:::retail-dev-probe/retail-dev-probe",)
    assert probe_arns("iam:PassRole", PROBE) == ("arn:aws:iam::123456789012:role/retail-dev-probe",)
    assert probe_arns("logs:CreateLogGroup", PROBE) == (
        "arn:aws:logs:ap-southeast-1:123456789012:log-group:retail-dev-probe",)
    assert required_resource_types("ec2:DescribeVpcs") == () and probe_arns("ec2:DescribeVpcs", PROBE) == ()


def test_an_identifier_aws_generates_is_never_the_stack_s_name_in_a_probe():
    """A VPC's or a key's ARN holds its generated ID: a grant on the stack's names must not pass for it."""
    assert probe_arns("ec2:CreateVpc", PROBE) == ("arn:aws:ec2:ap-southeast-1:123456789012:vpc/probe-id",)
    assert probe_arns("kms:Decrypt", PROBE) == ("arn:aws:kms:ap-southeast-1:123456789012:key/probe-id",)
    assert probe_arns("nosuchservice:DoIt", PROBE) == ()


def simulation(decide):
    """A stand-in for the API: `decide(action, resource)` gives each decision; one result per action and resource,
    as the API answered before it folded them into ResourceSpecificResults. Returns it and the calls it got."""
    calls = []

    def simulate(region, actions, arns):
        calls.append((region, tuple(actions), None if arns is None else tuple(arns)))
        return [{"EvalActionName": a, "EvalResourceName": r, "EvalDecision": decide(a, r)}
                for a in actions for r in (arns or ["*"])]

    return simulate, calls


def test_only_the_actions_not_allowed_on_star_that_require_resource_arns_are_tried_again_on_the_probes():
    actions = ["s3:CreateBucket", "ec2:DescribeVpcs", "iam:PassRole", "kms:CreateKey"]
    names_only = {"arn:aws:s3:::retail-dev-probe"}
    simulate, calls = simulation(
        lambda a, r: "allowed" if r in names_only or a == "kms:CreateKey" else
        "explicitDeny" if a == "iam:PassRole" else "implicitDeny")
    outcomes = {o.action: o for o in simulate_deploy_actions(
        simulate, actions, dict.fromkeys(actions, "ap-southeast-1"), PROBE)}
    assert sorted(calls[1:]) == [
        ("ap-southeast-1", ("iam:PassRole",), ("arn:aws:iam::123456789012:role/retail-dev-probe",)),
        ("ap-southeast-1", ("s3:CreateBucket",), ("arn:aws:s3:::retail-dev-probe",))]
    assert outcomes["s3:CreateBucket"].allowed and outcomes["s3:CreateBucket"].probes
    assert outcomes["ec2:DescribeVpcs"].denied  # authorized on "*" alone: the simulation is exact
    assert outcomes["iam:PassRole"].denied and outcomes["iam:PassRole"].probes  # denied on the probe as well
    assert outcomes["kms:CreateKey"].allowed and not outcomes["kms:CreateKey"].probes


def test_a_guardrail_that_denies_every_resource_but_the_stack_s_names_denies_star_not_the_stack():
    """`Deny s3:* NotResource arn:aws:s3:::retail-*` (an SCP or a boundary) is an explicit deny of "*" itself."""
    simulate, _ = simulation(lambda a, r: "allowed" if r.startswith("arn:aws:s3:::retail-") else "explicitDeny")
    (outcome,) = simulate_deploy_actions(simulate, ["s3:CreateBucket"], {"s3:CreateBucket": "eu-west-1"}, PROBE)
    assert outcome.allowed and outcome.probes == ("arn:aws:s3:::retail-dev-probe",)


def test_an_action_denied_on_star_and_on_its_probes_is_unconfirmed_not_denied():
    simulate, _ = simulation(lambda a, r: "implicitDeny")
    (outcome,) = simulate_deploy_actions(simulate, ["s3:CreateBucket"], {"s3:CreateBucket": "eu-west-1"}, PROBE)
    assert outcome.unconfirmed and not outcome.denied
    assert outcome.probes == ("arn:aws:s3:::retail-dev-probe",)


def test_a_resource_s_result_inside_one_result_decides_too():
    """The API now answers one result per action, the most restrictive decision on top, each resource's inside."""
    def simulate(region, actions, arns):
        return [{"EvalActionName": "s3:PutObject", "EvalDecision": "allowed", "ResourceSpecificResults": [
            {"EvalResourceName": "arn:aws:s3:::a/b", "EvalResourceDecision": "implicitDeny",
             "MissingContextValues": ["s3:x-amz-acl"]}]}]

    (outcome,) = simulate_deploy_actions(simulate, ["s3:PutObject"], {"s3:PutObject": "eu-west-1"}, PROBE)
    assert outcome == Outcome("s3:PutObject", allowed=False, missing_context=("s3:x-amz-acl",))
    assert not outcome.denied and not outcome.unconfirmed
