"""Cost at preview: the dev deployment is estimated under the brief's $500 a month with every cost category
itemised, a bigger node group breaks the budget rule, and every price in infra/data/prices/ has a date and a source.

The estimate (infra/cost.py) prices what the mock runtime recorded; `retail infra cost`
prints it; the policy rule stack-within-budget compares the platform's share with the
stack's AWS Budget.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from infra.cost import (
    EKS_VERSIONS_FILE,
    PRICES_DIR,
    Billable,
    CostAssumptions,
    EksVersions,
    PriceTable,
    assumptions_from_config,
    estimate,
    monthly_budget,
    stack_assumptions,
)
from infra.offline import OfflineRun
from infra.providers.program import training_offline_run
from policies.model import Resource
from policies.offline import resources_of
from policies.rules.cost import fully_priced, within_budget

from .conftest import PROJECT_DIR

REGION = "ap-southeast-1"
BRIEF_USD = 500
CATEGORIES = {
    "EKS control plane", "EC2 nodes", "EBS volumes", "NAT gateway", "Public IPv4", "VPC endpoints", "Load balancer",
    "CloudWatch", "KMS", "CloudTrail", "S3", "ECR", "SageMaker training",
}  # fmt: skip


def billable(*runs: OfflineRun) -> list[Billable]:
    return [Billable(r.type, r.name, r.inputs) for run in runs for r in run.resources]


@pytest.fixture(scope="module")
def dev_training(dev: OfflineRun) -> OfflineRun:
    return training_offline_run("dev", dev.stack_outputs, project_dir=PROJECT_DIR)


@pytest.fixture(scope="module")
def dev_estimate(dev, dev_service, dev_training):
    return estimate(billable(dev, dev_service, dev_training), REGION, stack_assumptions("dev", PROJECT_DIR))


def lines_of(result, category: str):
    return [line for line in result.lines if line.category == category]


# --- the dev deployment -----------------------------------------------------------------------------------------


def test_the_dev_deployment_is_estimated_under_the_briefs_500_usd_a_month(dev_estimate):
    assert 0 < dev_estimate.total_usd < BRIEF_USD


def test_the_dev_breakdown_holds_every_cost_category(dev_estimate):
    assert {line.category for line in dev_estimate.lines} == CATEGORIES


def test_every_dev_interface_endpoint_is_billed_in_each_of_its_zones(dev, dev_estimate):
    all_endpoints = dev.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    endpoints = [e for e in all_endpoints if e.inputs["vpcEndpointType"] == "Interface"]
    hours = [line.quantity for line in lines_of(dev_estimate, "VPC endpoints") if line.unit == "endpoint-AZ-hours"]
    assert sorted(hours) == sorted(730 * len(e.inputs["subnetIds"]) for e in endpoints)


def test_the_dev_estimate_names_what_it_cannot_price_and_leaves_it_out_of_the_total(dev_estimate):
    unpriced = {line.price_key for line in dev_estimate.unpriced}
    assert unpriced == {"ec2/m6i.xlarge", "sagemaker-training/ml.m5.xlarge"}
    priced = sum(line.monthly_usd for line in dev_estimate.lines if line.monthly_usd is not None)
    assert dev_estimate.total_usd == pytest.approx(priced)


def test_the_budget_is_the_one_the_stack_config_sets(dev):
    budget = monthly_budget(billable(dev))
    assert budget is not None and budget.usd == 400 and budget.name == "retail-dev-obs-monthly-budget"


def test_retail_infra_cost_prints_the_dev_breakdown_as_json():
    result = CliRunner().invoke(app, ["infra", "cost", "--stack", "dev", "--project-dir", str(PROJECT_DIR), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["total_usd"] < BRIEF_USD and set(report["by_category"]) == CATEGORIES
    assert report["budget"] == {"name": "retail-dev-obs-monthly-budget", "usd": 400.0}
    assert report["within_budget"] is True
    assert report["projects"] == ["retail-mlops", "retail-mlops-service", "retail-mlops-training", "retail-mlops-lake"]


def test_an_unknown_stack_stops_the_command_with_exit_2():
    result = CliRunner().invoke(app, ["infra", "cost", "--stack", "nowhere", "--project-dir", str(PROJECT_DIR)])
    assert result.exit_code == 2 and "Pulumi.nowhere.yaml" in result.output


# --- the budget rule on the dev platform --------------------------------------------------------------------------


def with_platform_change(dev: OfflineRun, desired_nodes: int, budget_usd: int) -> list[Resource]:
    """The dev platform as the pack sees it, with the inference node group and the budget changed."""
    changed = []
    for resource in resources_of(dev):
        props = dict(resource.props)
        if resource.name == "retail-dev-cluster-inference-nodes":
            props["scalingConfig"] = {**props["scalingConfig"], "desiredSize": desired_nodes}
        if resource.type == "aws:budgets/budget:Budget":
            props["limitAmount"] = str(budget_usd)
        changed.append(replace(resource, props=props))
    return changed


def test_a_larger_node_group_takes_the_dev_platform_over_its_budget(dev):
    fits = within_budget(with_platform_change(dev, desired_nodes=1, budget_usd=BRIEF_USD))
    too_big = within_budget(with_platform_change(dev, desired_nodes=6, budget_usd=BRIEF_USD))
    assert not [message for _, message in fits if message.startswith("is exceeded")]
    (exceeded,) = [message for _, message in too_big if message.startswith("is exceeded")]
    assert "against $500.00" in exceeded


def test_the_dev_platform_is_within_its_budget_as_shipped(dev):
    """stack-within-budget is mandatory in dev: the shipped config must pass it."""
    assert within_budget(resources_of(dev)) == []


def test_the_pricing_rule_names_the_resources_it_could_not_price(dev):
    messages = [message for _, message in fully_priced(resources_of(dev))]
    assert any("no price for retail-dev-cluster-batch-nodes (m6i.xlarge) (ec2/m6i.xlarge)" in m for m in messages)
    assert not any("no price" in message for _, message in within_budget(resources_of(dev)))


def test_a_stack_without_a_budget_is_left_to_stack_has_budget():
    nodes = Resource("eks:index:ManagedNodeGroup", "nodes", {"instanceTypes": ["t3.large"]})
    assert within_budget([nodes]) == []


# --- pricing rules on small stacks ----------------------------------------------------------------------------------


def one(type_: str, name: str = "subject", **inputs) -> Billable:
    return Billable(type_, name, inputs)


NODES = one("eks:index:ManagedNodeGroup", "nodes", instanceTypes=["t3.large"], capacityType="SPOT", diskSize=30,
            scalingConfig={"minSize": 1, "desiredSize": 1, "maxSize": 3})


def test_spot_nodes_cost_the_on_demand_price_unless_a_discount_is_stated():
    upper, discounted = (
        estimate([NODES], REGION, CostAssumptions(spot_discount_percent=percent)).lines[0] for percent in (0, 60)
    )
    assert upper.unit_usd == pytest.approx(0.1056)
    assert discounted.unit_usd == pytest.approx(0.1056 * 0.4)


def test_a_node_group_at_zero_costs_its_scale_from_zero_hours():
    at_zero = replace(NODES, inputs={**NODES.inputs, "scalingConfig": {"minSize": 0, "desiredSize": 0, "maxSize": 2}})
    (nodes, _disks) = estimate([at_zero], REGION, CostAssumptions(scale_from_zero_node_hours=12)).lines
    assert nodes.quantity == 12


def control_plane(version: str, on: date, policy: str | None = None):
    inputs = {"version": version, **({"upgradePolicy": {"supportType": policy}} if policy else {})}
    return estimate([one("eks:index:Cluster", **inputs)], REGION, on=on).lines[0]


def test_extended_support_is_billed_only_once_the_version_is_past_its_end_of_standard_support():
    ends = EksVersions.load().versions["1.33"].end_of_standard_support  # 2026-07-29
    before, after = control_plane("1.33", date(2026, 7, 28)), control_plane("1.33", ends)
    assert (before.price_key, before.unit_usd) == ("eks/cluster-hour", pytest.approx(0.10))
    assert "RISK: standard support ends 2026-07-29" in before.note and "$0.60/h" in before.note
    assert (after.price_key, after.unit_usd) == ("eks/cluster-hour-extended-support", pytest.approx(0.60))


def test_the_standard_upgrade_policy_never_pays_extended_support():
    past = control_plane("1.32", date(2026, 11, 26), policy="STANDARD")
    assert past.unit_usd == pytest.approx(0.10) and "upgrades it" in past.note
    current = control_plane("1.35", date(2026, 11, 26), policy="STANDARD")
    assert current.unit_usd == pytest.approx(0.10) and "RISK" not in current.note


def test_a_version_missing_from_the_calendar_or_past_extended_support_is_not_priced():
    unknown = control_plane("1.99", date(2026, 11, 26))
    retired = control_plane("1.29", date(2026, 11, 26))
    assert unknown.unit_usd is None and "not in infra/data/prices/eks-versions.json" in unknown.note
    assert retired.unit_usd is None and "ended on 2026-03-23" in retired.note


def test_the_eks_calendar_says_which_dates_are_not_from_aws():
    calendar = EksVersions.load()
    assert calendar.source.startswith("https://docs.aws.amazon.com/eks/")
    for version, support in calendar.versions.items():
        assert support.end_of_standard_support < support.end_of_extended_support, version
        assert support.aws_source or "NOT from an AWS source" in support.evidence, version


def test_a_node_group_whose_disk_moved_into_its_launch_template_is_priced_at_that_size():
    """A real preview with enableIMDSv2: pulumi-eks puts diskSize in `<group>-launchTemplate`, not on the group."""
    inputs = {k: v for k, v in NODES.inputs.items() if k != "diskSize"}
    group = one("aws:eks/nodeGroup:NodeGroup", "nodes", **inputs, launchTemplate={"version": "1"})
    template = Billable("aws:ec2/launchTemplate:LaunchTemplate", "nodes-launchTemplate",
                        {"blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"volumeSize": 80}}]})
    disks = lines_of(estimate([group, template], REGION), "EBS volumes")[0]
    assert "80 GB each" in disks.item and disks.quantity == pytest.approx(80)


def test_rotating_keys_are_priced_for_their_first_year_and_say_so():
    rotating = one("aws:kms/key:Key", enableKeyRotation=True, rotationPeriodInDays=90)
    (line,) = estimate([rotating], REGION).lines
    assert line.unit_usd == pytest.approx(1.0) and "every 90 days" in line.note and "three times" in line.note
    assert estimate([one("aws:kms/key:Key")], REGION).lines[0].note == ""


def test_a_trail_is_a_paid_copy_of_the_management_events_unless_it_is_the_first():
    trail = one("aws:cloudtrail/trail:Trail", isMultiRegionTrail=True)
    (paid,) = estimate([trail], REGION, CostAssumptions(management_events_per_month=250_000)).lines
    (first,) = estimate([trail], REGION, CostAssumptions(trail_is_first_copy=True)).lines
    assert (paid.quantity, paid.unit_usd, paid.monthly_usd) == (2.5, pytest.approx(2.0), pytest.approx(5.0))
    assert first.monthly_usd == 0


def test_a_real_preview_prices_the_eks_plugins_node_groups_not_their_components():
    child = one("aws:eks/nodeGroup:NodeGroup", "nodes-child", **NODES.inputs)
    lines = lines_of(estimate([NODES, child], REGION), "EC2 nodes")
    assert [line.item for line in lines] == ["nodes-child (t3.large)"]


def test_a_gateway_endpoint_is_free_and_an_interface_endpoint_bills_every_zone():
    gateway = one("aws:ec2/vpcEndpoint:VpcEndpoint", "s3", vpcEndpointType="Gateway")
    interface = one("aws:ec2/vpcEndpoint:VpcEndpoint", "logs", vpcEndpointType="Interface", subnetIds=["a", "b", "c"])
    hours, data = estimate([gateway, interface], REGION).lines
    assert (hours.item, hours.monthly_usd) == ("logs (3 AZ)", pytest.approx(3 * 730 * 0.013))
    assert data.unit == "GB"


def test_a_stack_that_lives_part_of_the_month_pays_its_hours():
    key = one("aws:kms/key:Key")
    (line,) = estimate([key], REGION, CostAssumptions(hours_per_month=73)).lines
    assert line.monthly_usd == pytest.approx(0.10)


def test_custom_metrics_are_those_the_alarms_and_dashboards_name_unless_stated():
    dims = {"Environment": "dev"}
    alarm = one("aws:cloudwatch/metricAlarm:MetricAlarm", namespace="Retail", metricName="Latency", dimensions=dims)
    rows = [["Retail", "Latency", "Environment", "dev", {"stat": "p95"}], [".", "Errors", ".", "."]]
    dashboard = one("aws:cloudwatch/dashboard:Dashboard", dashboardBody=json.dumps(
        {"widgets": [{"properties": {"metrics": rows}}, {"properties": {"metrics": [["AWS/Events", "Rules"]]}}]}
    ))
    named = lines_of(estimate([alarm, dashboard], REGION), "CloudWatch")[-1]
    stated = lines_of(estimate([alarm, dashboard], REGION, CostAssumptions(custom_metrics=20)), "CloudWatch")[-1]
    assert (named.unit, named.quantity) == ("metric-months", 2)
    assert stated.quantity == 20


def test_an_instance_type_without_a_price_is_not_priced_rather_than_free():
    unknown = replace(NODES, inputs={**NODES.inputs, "instanceTypes": ["x9.huge"]})
    nodes = estimate([unknown], REGION).lines[0]
    assert nodes.unit_usd is None and nodes.monthly_usd is None and "not in the" in nodes.note


# --- assumptions and the price table --------------------------------------------------------------------------------


def test_the_stack_config_overrides_the_documented_defaults():
    assumptions = assumptions_from_config({"retail:cost": json.dumps({"natGbPerMonth": 100, "retrainsPerMonth": 8})})
    assert (assumptions.nat_gb_per_month, assumptions.retrains_per_month, assumptions.s3_gb) == (100, 8, 50)


def test_an_unknown_assumption_is_refused_with_its_key():
    with pytest.raises(ValueError, match="retail:cost.natGb"):
        assumptions_from_config({"retail:cost": json.dumps({"natGb": 100})})


TABLES = sorted(path for path in PRICES_DIR.glob("*.json") if path.name != EKS_VERSIONS_FILE)


def test_there_is_a_price_table_for_the_region_of_every_stack():
    regions = {
        line.split(":", 2)[-1].strip()
        for path in PROJECT_DIR.glob("Pulumi.*.yaml")
        for line in path.read_text().splitlines()
        if line.strip().startswith("aws:region:")
    }
    assert regions and {path.stem for path in TABLES} >= regions


@pytest.mark.parametrize("path", TABLES, ids=lambda p: p.name)
def test_every_price_has_its_date_and_source_or_says_why_it_is_missing(path: Path):
    raw = json.loads(path.read_text())["prices"]
    table = PriceTable.load(path.stem)
    assert set(table.prices) == set(raw)
    for key, price in table.prices.items():
        assert price.as_of <= date.today() and price.source.startswith("https://"), key
        assert (price.usd is not None and price.evidence) or price.missing, key


def test_the_price_readme_says_where_each_price_comes_from():
    readme = (PRICES_DIR / "README.md").read_text()
    for path in TABLES:
        for key in json.loads(path.read_text())["prices"]:
            stem = key.rsplit(".", 1)[0] if key.startswith("ec2/m6i") else key
            assert f"`{stem}" in readme, key


def test_a_price_without_its_source_is_refused(tmp_path: Path):
    table = json.loads((PRICES_DIR / f"{REGION}.json").read_text())
    del table["prices"]["kms/key-month"]["source"]
    (tmp_path / f"{REGION}.json").write_text(json.dumps(table))
    with pytest.raises(ValueError, match="kms/key-month"):
        PriceTable.load(REGION, tmp_path)
