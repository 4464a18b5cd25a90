"""The monthly cost of a stack, estimated from the resources its programs register.

`estimate(resources, region, assumptions)` walks the registered resources (an offline run
of `retail infra preview`, or what the policy pack sees during a real `pulumi preview`)
and prices each cost-bearing one from the region's table, `infra/data/prices/<region>.json`.
Every price there carries its date and source; a price that could not be found is null with
the reason, and its lines are reported as not priced (never guessed, never counted as $0).

What the resources cannot say (traffic volumes, hours a node group scaled from zero runs,
retrains a month) comes from the stack's `retail:cost` config, `CostAssumptions`, where every
field has a stated default. Free tiers are not deducted. Spot capacity (EC2 node groups,
SageMaker managed spot training) is priced at the on-demand price less
`spotDiscountPercent`, 0 by default: the on-demand price is the most spot capacity costs
(its default maximum price), so by default the estimate is an upper bound for spot.

What is priced, and how:

- EKS cluster: cluster-hours, at the extended support price when, on the day of the estimate, its
  Kubernetes version is past the end of standard support (`infra/data/prices/eks-versions.json`) and
  the upgrade policy is not STANDARD (AWS's default is EXTENDED); a version still in standard support
  names the day extended support would start as a risk;
- managed node group: desired nodes x hours of its first instance type, plus `scaleFromZeroNodeHours`
  for a group at zero; its gp3 disks (the size from its launch template when pulumi-eks made one);
- NAT gateway: gateway-hours, and `natGbPerMonth` processed;
- Elastic IP, internet-facing ALB: public IPv4 address-hours (an ALB holds one per public subnet);
- interface VPC endpoint: hours in each of its subnets' AZs, and `endpointGbPerMonth` processed;
- Ingress of class `alb` (one ALB per group): ALB-hours and `albLcu` LCU-hours; a Service of type
  LoadBalancer: NLB-hours;
- log groups: `logIngestionGbPerMonth` ingested and kept for the longest retention; alarms: alarm
  metrics; dashboards; custom metrics (those the alarms and dashboards name, or `customMetrics`);
- KMS key: key-months (the first year's figure: rotations add to it); CloudTrail trail: its management events,
  `managementEventsPerMonth`, as a paid copy unless `trailIsFirstCopy` (the first copy in each region is free);
- S3 buckets and ECR repositories: `s3Gb` and `ecrGb` stored;
- SageMaker training job: instance-hours, `retrainsPerMonth` x hours per run (the job's max runtime
  unless `trainingHoursPerRetrain`).

Everything that runs by the hour is prorated by `hoursPerMonth` / 730 (an ephemeral stack
that lives a few hours a month states its hours).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from infra.automation import EPHEMERAL_CONFIG
from infra.config import NAMESPACE, Section, parse_section, read_stack_file
from infra.providers.kinds import DYNAMIC_TYPE, TRAINING_JOB

PRICES_DIR = Path(__file__).resolve().parent / "data" / "prices"
EKS_VERSIONS_FILE = "eks-versions.json"
"""In PRICES_DIR: when each Kubernetes version leaves EKS standard support."""
REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
"""Where the platform's `Pulumi.<stack>.yaml` files live."""
HOURS_IN_MONTH = 730
"""AWS's month for hourly prices (the Pricing Calculator's 730 hours)."""
DAYS_IN_MONTH = HOURS_IN_MONTH / 24
COST_KEY = f"{NAMESPACE}:cost"
EKS_DEFAULT_DISK_GB = 20
"""A managed node group's disk when it sets no size (EKS's default)."""
ALB_MIN_AZS = 2


class CostAssumptions(Section):
    """`retail:cost`: what the estimate cannot read from the resources."""

    hours_per_month: float = Field(HOURS_IN_MONTH, gt=0, le=744)
    """Hours the stack exists in a month: 730 for a standing stack, less for an ephemeral one."""
    spot_discount_percent: float = Field(0, ge=0, lt=100)
    """Spot capacity is priced at on-demand less this; 0 prices it at on-demand, the most it costs."""
    scale_from_zero_node_hours: float = Field(10, ge=0)
    """Node-hours a month of each node group that starts at zero (the weekly batch scoring: 4-5 runs of at most 2 h)."""
    nat_gb_per_month: float = Field(20, ge=0)
    """Data through the NAT gateways (images and logs take the endpoints; this is the rest)."""
    endpoint_gb_per_month: float = Field(20, ge=0)
    """Data through the interface endpoints (image pulls, log shipping, key and STS calls)."""
    alb_lcu: float = Field(1, ge=0)
    """Average load balancer capacity units each ALB uses (1 LCU: 25 new connections/s, 1 GB/h processed)."""
    log_ingestion_gb_per_month: float = Field(10, ge=0)
    """Logs ingested into all log groups together (EKS control plane, VPC flow logs, the API's lines)."""
    custom_metrics: int | None = Field(None, ge=0)
    """Custom metrics published; unset: the distinct custom metrics the stack's alarms and dashboards name."""
    s3_gb: float = Field(50, ge=0)
    """Data kept in all buckets together (lake zones, artifacts, the audit trail)."""
    ecr_gb: float = Field(10, ge=0)
    """Images kept in all repositories together (inference and training, tagged images the lifecycle keeps)."""
    retrains_per_month: float = Field(4, ge=0)
    """SageMaker training runs a month (a weekly data pin)."""
    training_hours_per_retrain: float | None = Field(None, gt=0)
    """Billed hours per training run; unset: the job's max runtime, the longest a run is billed."""
    management_events_per_month: float = Field(1_000_000, ge=0)
    """Management events the stack's trail delivers a month, all regions together (a multi-region trail). Not
    measured: an assumption to replace with the account's own count (Cost Explorer, usage type
    <region>-PaidEventsRecorded or -FreeEventsRecorded); an EKS cluster's controllers call AWS all the time."""
    trail_is_first_copy: bool = False
    """True when no other trail of the account records management events (each region's first copy is free).
    False by default: dev and prod each create a multi-region trail, and an account or organization trail may
    exist, so the trail is priced as a paid copy: the upper bound."""

    @property
    def month_fraction(self) -> float:
        return self.hours_per_month / HOURS_IN_MONTH

    @property
    def spot_factor(self) -> float:
        return 1 - self.spot_discount_percent / 100


class Price(BaseModel):
    """One entry of a price table: the price, or null with why it is missing; always its date and source."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    usd: float | None = Field(ge=0)
    unit: str
    as_of: date
    source: str = Field(pattern=r"^https://")
    evidence: str
    region_confirmed: bool
    missing: str = ""

    @model_validator(mode="after")
    def _price_or_reason(self) -> Price:
        if (self.usd is None) != bool(self.missing):
            raise ValueError("give either a price (usd) or, with usd null, why it is missing (missing)")
        if self.usd is not None and not self.evidence:
            raise ValueError("a price needs its evidence: where it was read")
        return self


class EksVersion(BaseModel):
    """When a Kubernetes version leaves EKS standard support, and extended support."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    end_of_standard_support: date
    end_of_extended_support: date
    evidence: str = Field(min_length=1)
    aws_source: bool
    """False when the dates were not read from AWS (the evidence says from where)."""


class EksVersions(BaseModel):
    """`infra/data/prices/eks-versions.json`: the support calendar of EKS's Kubernetes versions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    about: str
    source: str = Field(pattern=r"^https://")
    compiled: date
    versions: dict[str, EksVersion]

    @classmethod
    def load(cls, prices_dir: Path = PRICES_DIR) -> EksVersions:
        return cls.model_validate(json.loads((prices_dir / EKS_VERSIONS_FILE).read_text()))


class PriceTable(BaseModel):
    """A region's prices (`infra/data/prices/<region>.json`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    region: str
    location: str
    currency: str = Field(pattern=r"^USD$")
    compiled: date
    terms: str
    prices: dict[str, Price]

    @classmethod
    def load(cls, region: str, prices_dir: Path = PRICES_DIR) -> PriceTable:
        path = prices_dir / f"{region}.json"
        if not path.is_file():
            raise FileNotFoundError(f"no price table for region {region}: add {path} (see {prices_dir}/README.md)")
        table = cls.model_validate(json.loads(path.read_text()))
        if table.region != region:
            raise ValueError(f"{path} holds prices for {table.region}, not {region}")
        return table

    def unit_price(self, key: str) -> float | None:
        """The price of `key`, or None when the table has no price for it."""
        price = self.prices.get(key)
        return price.usd if price else None

    def why_missing(self, key: str) -> str:
        price = self.prices.get(key)
        return price.missing if price else f"{key} is not in the {self.region} price table"


@dataclass(frozen=True)
class Billable:
    """What the estimate reads of a resource: its type, name and inputs (pulumi-policy's props)."""

    type: str
    name: str
    inputs: Mapping[str, Any]

    def get(self, *path: str, default: Any = None) -> Any:
        value: Any = self.inputs
        for key in path:
            if not isinstance(value, Mapping) or value.get(key) is None:
                return default
            value = value[key]
        return value


@dataclass(frozen=True)
class LineItem:
    category: str
    item: str
    quantity: float
    unit: str
    price_key: str
    unit_usd: float | None
    """The price applied per unit (spot discount included); None when the table has no price."""
    note: str = ""

    @property
    def monthly_usd(self) -> float | None:
        return None if self.unit_usd is None else self.quantity * self.unit_usd


@dataclass(frozen=True)
class Estimate:
    region: str
    lines: tuple[LineItem, ...]
    assumptions: CostAssumptions
    prices: PriceTable
    on: date
    """The day the estimate prices (EKS versions' support status)."""

    @property
    def total_usd(self) -> float:
        """The priced lines' sum; the unpriced lines are not in it."""
        return sum(line.monthly_usd for line in self.lines if line.monthly_usd is not None)

    @property
    def unpriced(self) -> list[LineItem]:
        return [line for line in self.lines if line.unit_usd is None]

    def by_category(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for line in self.lines:
            totals[line.category] = totals.get(line.category, 0.0) + (line.monthly_usd or 0.0)
        return totals


@dataclass(frozen=True)
class Budget:
    name: str
    usd: float


def monthly_budget(resources: Iterable[Billable]) -> Budget | None:
    """The tightest monthly USD budget among the resources (AWS Budgets), or None when there is none."""
    budgets = []
    for resource in resources:
        if resource.type != BUDGET or resource.get("timeUnit") != "MONTHLY" or resource.get("limitUnit") != "USD":
            continue
        try:
            budgets.append(Budget(resource.name, float(resource.get("limitAmount"))))
        except (TypeError, ValueError):
            continue  # not known yet (computed during a preview)
    return min(budgets, key=lambda b: b.usd, default=None)


def stack_assumptions(stack: str, project_dir: Path = REPOSITORY_ROOT) -> CostAssumptions:
    """`retail:cost` of the platform's `Pulumi.<stack>.yaml` (ephemeral-* stacks: `Pulumi.ephemeral.yaml`)."""
    name = EPHEMERAL_CONFIG if stack.startswith(f"{EPHEMERAL_CONFIG}-") else stack
    if not (project_dir / f"Pulumi.{name}.yaml").is_file():
        return CostAssumptions()
    return assumptions_from_config(read_stack_file(project_dir, name).config)


def assumptions_from_config(config: Mapping[str, str]) -> CostAssumptions:
    """`retail:cost` from a flat `namespace:key -> string` config map; defaults where unset."""
    raw = config.get(COST_KEY)
    parsed: CostAssumptions = parse_section(CostAssumptions, json.loads(raw) if raw else {}, COST_KEY)
    return parsed


def estimate(
    resources: Iterable[Billable], region: str, assumptions: CostAssumptions | None = None,
    prices: PriceTable | None = None, on: date | None = None, eks_versions: EksVersions | None = None,
) -> Estimate:
    """Price every cost-bearing resource as of `on` (today); see the module docstring for what is priced how."""
    stack = _Stack(tuple(resources), assumptions or CostAssumptions(), prices or PriceTable.load(region),
                   on or date.today(), eks_versions or EksVersions.load())
    lines = tuple(line for pricer in PRICERS for line in pricer(stack))
    return Estimate(region, lines, stack.assumptions, stack.prices, stack.on)


# --- the pricers ---------------------------------------------------------------------------------------------------

EKS_CLUSTER, EKS_CLUSTER_COMPONENT = "aws:eks/cluster:Cluster", "eks:index:Cluster"
NODE_GROUP, NODE_GROUP_COMPONENT = "aws:eks/nodeGroup:NodeGroup", "eks:index:ManagedNodeGroup"
BUDGET = "aws:budgets/budget:Budget"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
K8S_SERVICE = "kubernetes:core/v1:Service"
ALB_GROUP = "alb.ingress.kubernetes.io/group.name"
ALB_SCHEME = "alb.ingress.kubernetes.io/scheme"


@dataclass(frozen=True)
class _Stack:
    resources: tuple[Billable, ...]
    assumptions: CostAssumptions
    prices: PriceTable
    on: date
    eks_versions: EksVersions

    def of_type(self, *types: str) -> list[Billable]:
        return [r for r in self.resources if r.type in types]

    def either(self, child_type: str, component_type: str) -> list[Billable]:
        """A pulumi-eks component's AWS children when the engine made them (a real preview), else the component.

        The mock runtime does not run pulumi-eks's plugin, so offline only the component exists;
        a real preview has both, and pricing both would count the cluster twice.
        """
        return self.of_type(child_type) or self.of_type(component_type)

    @property
    def hours(self) -> float:
        return self.assumptions.hours_per_month

    def line(self, category: str, item: str, quantity: float, unit: str, key: str, factor: float = 1.0,
             note: str = "") -> LineItem:
        price = self.prices.unit_price(key)
        if price is None:
            note = "; ".join(filter(None, [note, f"not priced: {self.prices.why_missing(key)}"]))
        return LineItem(category, item, quantity, unit, key, None if price is None else price * factor, note)

    def spot(self, is_spot: bool) -> tuple[float, str]:
        if not is_spot:
            return 1.0, ""
        discount = self.assumptions.spot_discount_percent
        return self.assumptions.spot_factor, f"spot, priced at on-demand less {discount:g}%"


STANDARD_HOUR, EXTENDED_HOUR = "eks/cluster-hour", "eks/cluster-hour-extended-support"


def _eks(stack: _Stack) -> list[LineItem]:
    return [_control_plane(stack, cluster) for cluster in stack.either(EKS_CLUSTER, EKS_CLUSTER_COMPONENT)]


def _control_plane(stack: _Stack, cluster: Billable) -> LineItem:
    """Extended support is billed only for a version past its end of standard support, with an EXTENDED policy."""
    category, version = "EKS control plane", cluster.get("version")
    policy = cluster.get("upgradePolicy", "supportType", default="EXTENDED")
    item = f"{cluster.name} (Kubernetes {version or 'default'}, upgrade policy {policy})"
    if version is None:
        return stack.line(category, item, stack.hours, "cluster-hours", STANDARD_HOUR,
                          note="no version set: EKS creates it on its default version, in standard support")
    support = stack.eks_versions.versions.get(str(version))
    if support is None:
        return LineItem(category, item, stack.hours, "cluster-hours", STANDARD_HOUR, None,
                        f"not priced: Kubernetes {version} is not in infra/data/prices/{EKS_VERSIONS_FILE}, so "
                        "whether standard or extended support is billed is not known")
    standard_ends, extended_ends = support.end_of_standard_support, support.end_of_extended_support
    if stack.on >= extended_ends:
        return LineItem(category, item, stack.hours, "cluster-hours", STANDARD_HOUR, None,
                        f"not priced: EKS support for Kubernetes {version} ended on {extended_ends}")
    if stack.on < standard_ends and policy == "STANDARD":
        note = f"standard support until {standard_ends}; then EKS upgrades the cluster (upgrade policy STANDARD)"
    elif stack.on < standard_ends:
        extended = stack.prices.unit_price(EXTENDED_HOUR)
        rate = "extended support" if extended is None else f"extended support at ${extended:.2f}/h"
        note = f"RISK: standard support ends {standard_ends}; from then on {rate} is billed unless upgraded"
    elif policy == "STANDARD":
        note = f"past the end of standard support ({standard_ends}): EKS upgrades it rather than bill extended support"
    else:
        return stack.line(category, item, stack.hours, "cluster-hours", EXTENDED_HOUR,
                          note=f"past the end of standard support ({standard_ends}): extended support is billed")
    return stack.line(category, item, stack.hours, "cluster-hours", STANDARD_HOUR, note=note)


def _node_groups(stack: _Stack) -> list[LineItem]:
    lines = []
    for group in stack.either(NODE_GROUP, NODE_GROUP_COMPONENT):
        types = group.get("instanceTypes", default=[])
        instance = types[0] if types else "unknown"
        desired = float(group.get("scalingConfig", "desiredSize", default=0))
        scaling_up = not desired and float(group.get("scalingConfig", "maxSize", default=0)) > 0
        node_hours = desired * stack.hours + (stack.assumptions.scale_from_zero_node_hours if scaling_up else 0.0)
        factor, note = stack.spot(group.get("capacityType") == "SPOT")
        if len(types) > 1:
            note = "; ".join(filter(None, [note, f"priced as {instance}, the first of {', '.join(types)}"]))
        if scaling_up:
            note = "; ".join(filter(None, [note, "scales from zero: scaleFromZeroNodeHours"]))
        lines.append(stack.line("EC2 nodes", f"{group.name} ({instance})", node_hours, "node-hours",
                                f"ec2/{instance}", factor, note))
        disk_gb, disk_note = _disk_size(stack, group)
        lines.append(stack.line("EBS volumes", f"{group.name} node disks (gp3, {disk_gb:g} GB each)",
                                disk_gb * node_hours / HOURS_IN_MONTH, "GB-months", "ebs/gp3-gb-month", note=disk_note))
    return lines


LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"


def _disk_size(stack: _Stack, group: Billable) -> tuple[float, str]:
    """A node's disk: diskSize, else (pulumi-eks moves it there, e.g. with enableIMDSv2) the volume of the launch
    template it names `<group>-launchTemplate`, else EKS's default."""
    if group.get("diskSize") is not None:
        return float(group.get("diskSize")), ""
    if group.get("launchTemplate") is None:
        return float(EKS_DEFAULT_DISK_GB), ""
    templates = [t for t in stack.of_type(LAUNCH_TEMPLATE) if t.name == f"{group.name}-launchTemplate"]
    sizes = [m.get("ebs", {}).get("volumeSize") for t in templates for m in t.get("blockDeviceMappings", default=[])]
    sized = [float(size) for size in sizes if size is not None]
    if sized:
        return max(sized), ""
    return float(EKS_DEFAULT_DISK_GB), f"its launch template sets no volume size: {EKS_DEFAULT_DISK_GB} GB assumed"


def _nat(stack: _Stack) -> list[LineItem]:
    gateways = stack.of_type("aws:ec2/natGateway:NatGateway")
    lines = [stack.line("NAT gateway", g.name, stack.hours, "gateway-hours", "nat-gateway/hour") for g in gateways]
    if gateways:
        lines.append(stack.line("NAT gateway", "data processed (natGbPerMonth)", stack.assumptions.nat_gb_per_month,
                                "GB", "nat-gateway/gb"))
    return lines


def _public_addresses(stack: _Stack) -> list[LineItem]:
    return [stack.line("Public IPv4", f"{eip.name} (Elastic IP)", stack.hours, "address-hours", "vpc/public-ipv4-hour")
            for eip in stack.of_type("aws:ec2/eip:Eip")]


def _endpoints(stack: _Stack) -> list[LineItem]:
    interface = [e for e in stack.of_type("aws:ec2/vpcEndpoint:VpcEndpoint") if e.get("vpcEndpointType") == "Interface"]
    lines = []
    for endpoint in interface:
        zones = max(len(endpoint.get("subnetIds", default=[])), 1)
        lines.append(stack.line("VPC endpoints", f"{endpoint.name} ({zones} AZ)", zones * stack.hours,
                                "endpoint-AZ-hours", "vpc/interface-endpoint-az-hour"))
    if interface:
        lines.append(stack.line("VPC endpoints", "data processed (endpointGbPerMonth)",
                                stack.assumptions.endpoint_gb_per_month, "GB", "vpc/interface-endpoint-gb"))
    return lines


def _load_balancers(stack: _Stack) -> list[LineItem]:
    albs: dict[str, Billable] = {}
    for ingress in stack.of_type(INGRESS):
        annotations = ingress.get("metadata", "annotations", default={})
        if ingress.get("spec", "ingressClassName") == "alb" or annotations.get("kubernetes.io/ingress.class") == "alb":
            albs.setdefault(annotations.get(ALB_GROUP) or ingress.name, ingress)
    lines = []
    for name, ingress in albs.items():
        lines.append(stack.line("Load balancer", f"ALB for {name}", stack.hours, "ALB-hours", "elb/alb-hour"))
        lines.append(stack.line("Load balancer", f"ALB for {name}: capacity (albLcu)",
                                stack.assumptions.alb_lcu * stack.hours, "LCU-hours", "elb/alb-lcu-hour"))
        if ingress.get("metadata", "annotations", ALB_SCHEME) == "internet-facing":
            lines.append(_alb_addresses(stack, name))
    for service in stack.of_type(K8S_SERVICE):
        if service.get("spec", "type") == "LoadBalancer":
            lines.append(stack.line("Load balancer", f"NLB for {service.name}", stack.hours, "NLB-hours",
                                    "elb/nlb-hour"))
    return lines


def _alb_addresses(stack: _Stack, name: str) -> LineItem:
    public = [s for s in stack.of_type("aws:ec2/subnet:Subnet") if s.get("tags", "kubernetes.io/role/elb") == "1"]
    note = "" if public else f"no public subnet in this project: at least {ALB_MIN_AZS} AZs assumed"
    zones = len(public) or ALB_MIN_AZS
    return stack.line("Public IPv4", f"ALB for {name} ({zones} public subnets)", zones * stack.hours,
                      "address-hours", "vpc/public-ipv4-hour", note=note)


def _cloudwatch(stack: _Stack) -> list[LineItem]:
    lines, fraction = [], stack.assumptions.month_fraction
    log_groups = stack.of_type("aws:cloudwatch/logGroup:LogGroup")
    if log_groups:
        ingested = stack.assumptions.log_ingestion_gb_per_month
        days = max(float(g.get("retentionInDays", default=365)) for g in log_groups)
        lines.append(stack.line("CloudWatch", f"log ingestion into {len(log_groups)} log groups "
                                "(logIngestionGbPerMonth)", ingested, "GB", "cloudwatch/log-ingestion-gb"))
        stored = ingested * days / DAYS_IN_MONTH * fraction
        lines.append(stack.line("CloudWatch", f"log storage, kept up to {days:g} days", stored, "GB-months",
                                "cloudwatch/log-storage-gb-month", note="uncompressed size: an upper bound"))
    alarms = stack.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    if alarms:
        metrics = sum(len([q for q in a.get("metricQueries", default=[]) if q.get("metric")]) or 1 for a in alarms)
        lines.append(stack.line("CloudWatch", f"alarms ({len(alarms)})", metrics * fraction, "alarm-metric-months",
                                "cloudwatch/alarm-metric-month"))
    dashboards = stack.of_type("aws:cloudwatch/dashboard:Dashboard")
    if dashboards:
        lines.append(stack.line("CloudWatch", f"dashboards ({len(dashboards)})", len(dashboards) * fraction,
                                "dashboard-months", "cloudwatch/dashboard-month"))
    named = _custom_metrics(alarms, dashboards)
    count = stack.assumptions.custom_metrics
    if count is None and named:
        lines.append(stack.line("CloudWatch", f"custom metrics the alarms and dashboards name ({len(named)})",
                                len(named) * fraction, "metric-months", "cloudwatch/custom-metric-month"))
    elif count:
        lines.append(stack.line("CloudWatch", "custom metrics (customMetrics)", count * fraction, "metric-months",
                                "cloudwatch/custom-metric-month"))
    return lines


def _custom_metrics(alarms: list[Billable], dashboards: list[Billable]) -> set[tuple[str, str, str]]:
    """(namespace, name, dimensions) of every metric outside AWS's namespaces an alarm or a dashboard names."""
    metrics: list[tuple[Any, Any, Mapping[str, Any]]] = []
    for alarm in alarms:
        queried = [q["metric"] for q in alarm.get("metricQueries", default=[]) if q.get("metric")]
        for metric in queried or [alarm.inputs]:
            metrics.append((metric.get("namespace"), metric.get("metricName"), metric.get("dimensions") or {}))
    for dashboard in dashboards:
        metrics.extend(_dashboard_metrics(dashboard.get("dashboardBody")))
    return {(ns, name, json.dumps(dims, sort_keys=True)) for ns, name, dims in metrics
            if isinstance(ns, str) and not ns.startswith("AWS/") and name}


def _dashboard_metrics(body: Any) -> list[tuple[Any, Any, Mapping[str, Any]]]:
    """The metrics of a dashboard body's widgets: rows of [namespace, name, dim, value, ..., {options}]."""
    try:
        widgets = json.loads(body)["widgets"]
    except (TypeError, ValueError, KeyError):
        return []  # not known yet (computed during a preview)
    metrics = []
    for widget in widgets:
        previous: list[Any] = []
        for row in widget.get("properties", {}).get("metrics", []):
            fields = [field for field in row if not isinstance(field, dict)]
            # "." repeats the field at the same place in the row above
            fields = [previous[i] if field == "." and i < len(previous) else field for i, field in enumerate(fields)]
            previous = fields
            if len(fields) >= 2:
                dims = dict(zip(fields[2::2], fields[3::2], strict=False))
                metrics.append((fields[0], fields[1], dims))
    return metrics


KMS_DEFAULT_ROTATION_DAYS = 365


def _kms(stack: _Stack) -> list[LineItem]:
    keys = stack.of_type("aws:kms/key:Key")
    if not keys:
        return []
    rotating = [k for k in keys if k.get("enableKeyRotation") is True]
    note = ""
    if rotating:
        days = min(int(k.get("rotationPeriodInDays", default=KMS_DEFAULT_ROTATION_DAYS)) for k in rotating)
        note = (f"the figure before the first rotation: {len(rotating)} keys rotate (every {days} days or more), and "
                "each of a key's first two rotations adds a key-month a month (AWS KMS pricing since April 2024; "
                "see kms/key-month), so from the second rotation they cost up to three times this")
    return [stack.line("KMS", f"customer managed keys ({len(keys)})", len(keys) * stack.assumptions.month_fraction,
                       "key-months", "kms/key-month", note=note)]


def _cloudtrail(stack: _Stack) -> list[LineItem]:
    lines = []
    events = stack.assumptions.management_events_per_month * stack.assumptions.month_fraction
    for trail in stack.of_type("aws:cloudtrail/trail:Trail"):
        if stack.assumptions.trail_is_first_copy:
            lines.append(stack.line("CloudTrail", f"{trail.name}: management events, first copy (trailIsFirstCopy)",
                                    stack.assumptions.month_fraction, "trail-months",
                                    "cloudtrail/management-events-first-copy"))
            continue
        lines.append(stack.line(
            "CloudTrail", f"{trail.name}: management events as a paid copy (managementEventsPerMonth)",
            events / 100_000, "100k events", "cloudtrail/management-events-paid-copy-100k",
            note="another trail of the account (dev's and prod's each, an organization trail) may already deliver "
                 "the free first copy; set trailIsFirstCopy when this is the only one",
        ))
    return lines


def _storage(stack: _Stack) -> list[LineItem]:
    lines, fraction = [], stack.assumptions.month_fraction
    buckets = stack.of_type("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
    if buckets:
        lines.append(stack.line("S3", f"S3 Standard in {len(buckets)} buckets (s3Gb)",
                                stack.assumptions.s3_gb * fraction, "GB-months", "s3/standard-gb-month"))
    repositories = stack.of_type("aws:ecr/repository:Repository")
    if repositories:
        lines.append(stack.line("ECR", f"images in {len(repositories)} repositories (ecrGb)",
                                stack.assumptions.ecr_gb * fraction, "GB-months", "ecr/storage-gb-month"))
    return lines


def _training(stack: _Stack) -> list[LineItem]:
    lines = []
    for job in stack.of_type(DYNAMIC_TYPE):
        if job.get("kind") != TRAINING_JOB:
            continue
        hours = stack.assumptions.training_hours_per_retrain or float(job.get("max_runtime_seconds", default=0)) / 3600
        count = float(job.get("instance_count", default=1))
        instance = job.get("instance_type", default="unknown")
        factor, note = stack.spot(job.get("use_spot") is True)
        runs = stack.assumptions.retrains_per_month
        lines.append(stack.line(
            "SageMaker training", f"{job.name} ({instance}): {runs:g} retrains x {hours:g} h", runs * hours * count,
            "instance-hours", f"sagemaker-training/{instance}", factor, note,
        ))
    return lines


PRICERS: Sequence[Callable[[_Stack], list[LineItem]]] = (
    _eks, _node_groups, _nat, _public_addresses, _endpoints, _load_balancers,
    _cloudwatch, _kms, _cloudtrail, _storage, _training,
)
"""In the order the breakdown lists them."""
