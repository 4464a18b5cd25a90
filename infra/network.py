"""The VPC: public and private subnets over several AZs, NAT, VPC endpoints, flow logs."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.iam import policy_document, service_trust_policy

INTERFACE_ENDPOINTS = ("ecr.api", "ecr.dkr", "logs", "sts", "kms")
"""Services reached over PrivateLink so images, logs, IRSA tokens and key calls skip the NAT."""


@dataclass
class NetworkArgs:
    account_id: pulumi.Input[str]
    region: str
    logs_kms_key_arn: pulumi.Input[str]
    cidr: str = "10.40.0.0/16"
    az_count: int = 2
    nat_per_az: bool = False
    flow_log_retention_days: int = 30


REGULAR_ZONES = {"name": "opt-in-status", "values": ["opt-in-not-required"]}
"""Availability Zones only: opted-in Local and Wavelength Zones (us-west-2-lax-1a) sort before them by name.
The doctor (infra/aws_checks.py) picks the zones with the same filter."""


def subnet_cidrs(vpc_cidr: str, az_count: int) -> tuple[list[str], list[str]]:
    """Split the VPC into sixteenths: private subnets first, public ones from the middle."""
    blocks = list(ipaddress.ip_network(vpc_cidr).subnets(prefixlen_diff=4))
    private = [str(blocks[i]) for i in range(az_count)]
    public = [str(blocks[8 + i]) for i in range(az_count)]
    return private, public


class Network(pulumi.ComponentResource):
    """A VPC whose workloads live in private subnets and leave through NAT.

    One NAT gateway serves every AZ unless `nat_per_az`; private route tables are per AZ
    either way. S3 is a gateway endpoint on the private route tables; ECR (api, dkr),
    CloudWatch Logs, STS and KMS are interface endpoints admitting HTTPS from the VPC. The
    default security group is emptied and all traffic is recorded in flow logs.
    Public subnets are tagged for internet-facing load balancers, private ones for
    internal ones, as the AWS Load Balancer Controller expects.
    """

    vpc_id: pulumi.Output[str]
    public_subnet_ids: list[pulumi.Output[str]]
    public_subnet_cidrs: list[str]
    """Where an internet-facing load balancer's nodes (and so its source addresses) live."""
    private_subnet_ids: list[pulumi.Output[str]]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("retail:infra:Network", name, None, opts)
        if not 2 <= args.az_count <= 3:
            raise ValueError(f"{name}: az_count must be 2 or 3, got {args.az_count}")
        self._name, self._args = name, args
        child = pulumi.ResourceOptions(parent=self)
        zones = aws.get_availability_zones_output(
            state="available", filters=[REGULAR_ZONES], opts=pulumi.InvokeOutputOptions(parent=self)
        ).names
        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={"Name": f"{name}-vpc"},
            opts=child,
        )
        aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=self.vpc.id, ingress=[], egress=[], opts=child)
        private_cidrs, public_cidrs = subnet_cidrs(args.cidr, args.az_count)
        self.public_subnets = [
            self._subnet("public", i, cidr, zones[i], {"kubernetes.io/role/elb": "1"})
            for i, cidr in enumerate(public_cidrs)
        ]
        self.private_subnets = [
            self._subnet("private", i, cidr, zones[i], {"kubernetes.io/role/internal-elb": "1"})
            for i, cidr in enumerate(private_cidrs)
        ]
        gateway = self._public_routes()
        private_route_tables = self._private_routes(self._nat_gateways(gateway))
        self._endpoints(private_route_tables)
        self._flow_logs()
        self.vpc_id = self.vpc.id
        self.public_subnet_ids = [s.id for s in self.public_subnets]
        self.public_subnet_cidrs = public_cidrs
        self.private_subnet_ids = [s.id for s in self.private_subnets]
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "public_subnet_ids": self.public_subnet_ids,
                "public_subnet_cidrs": self.public_subnet_cidrs,
                "private_subnet_ids": self.private_subnet_ids,
            }
        )

    def _subnet(
        self, tier: str, index: int, cidr: str, zone: pulumi.Input[str], tags: dict[str, str]
    ) -> aws.ec2.Subnet:
        return aws.ec2.Subnet(
            f"{self._name}-{tier}-{index}",
            vpc_id=self.vpc.id,
            cidr_block=cidr,
            availability_zone=zone,
            map_public_ip_on_launch=False,
            tags={"Name": f"{self._name}-{tier}-{index}", "tier": tier, **tags},
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _public_routes(self) -> aws.ec2.InternetGateway:
        child = pulumi.ResourceOptions(parent=self)
        gateway = aws.ec2.InternetGateway(f"{self._name}-igw", vpc_id=self.vpc.id, opts=child)
        table = aws.ec2.RouteTable(
            f"{self._name}-public-rt",
            vpc_id=self.vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": gateway.id}],
            opts=child,
        )
        for i, subnet in enumerate(self.public_subnets):
            aws.ec2.RouteTableAssociation(
                f"{self._name}-public-rta-{i}",
                subnet_id=subnet.id,
                route_table_id=table.id,
                opts=child,
            )
        return gateway

    def _nat_gateways(self, gateway: aws.ec2.InternetGateway) -> list[aws.ec2.NatGateway]:
        """NAT gateways in the public subnets; each waits for the internet gateway, as AWS requires of public NAT."""
        count = self._args.az_count if self._args.nat_per_az else 1
        gateways = []
        for i in range(count):
            eip = aws.ec2.Eip(f"{self._name}-nat-eip-{i}", domain="vpc", opts=pulumi.ResourceOptions(parent=self))
            gateways.append(
                aws.ec2.NatGateway(
                    f"{self._name}-nat-{i}",
                    allocation_id=eip.id,
                    subnet_id=self.public_subnets[i].id,
                    tags={"Name": f"{self._name}-nat-{i}"},
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[gateway]),
                )
            )
        return gateways

    def _private_routes(self, nat_gateways: list[aws.ec2.NatGateway]) -> list[aws.ec2.RouteTable]:
        tables = []
        for i, subnet in enumerate(self.private_subnets):
            nat = nat_gateways[i % len(nat_gateways)]
            table = aws.ec2.RouteTable(
                f"{self._name}-private-rt-{i}",
                vpc_id=self.vpc.id,
                routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nat.id}],
                opts=pulumi.ResourceOptions(parent=self),
            )
            aws.ec2.RouteTableAssociation(
                f"{self._name}-private-rta-{i}",
                subnet_id=subnet.id,
                route_table_id=table.id,
                opts=pulumi.ResourceOptions(parent=self),
            )
            tables.append(table)
        return tables

    def _endpoints(self, private_route_tables: list[aws.ec2.RouteTable]) -> None:
        child = pulumi.ResourceOptions(parent=self)
        region = self._args.region
        aws.ec2.VpcEndpoint(
            f"{self._name}-s3-endpoint",
            vpc_id=self.vpc.id,
            service_name=f"com.amazonaws.{region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[t.id for t in private_route_tables],
            opts=child,
        )
        https_from_vpc = aws.ec2.SecurityGroup(
            f"{self._name}-endpoints-sg",
            vpc_id=self.vpc.id,
            description="HTTPS from inside the VPC to the interface endpoints",
            ingress=[
                {
                    "protocol": "tcp",
                    "from_port": 443,
                    "to_port": 443,
                    "cidr_blocks": [self._args.cidr],
                    "description": "HTTPS from the VPC",
                }
            ],
            opts=child,
        )
        for service in INTERFACE_ENDPOINTS:
            aws.ec2.VpcEndpoint(
                f"{self._name}-{service.replace('.', '-')}-endpoint",
                vpc_id=self.vpc.id,
                service_name=f"com.amazonaws.{region}.{service}",
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=[s.id for s in self.private_subnets],
                security_group_ids=[https_from_vpc.id],
                opts=child,
            )

    def _flow_logs(self) -> None:
        child = pulumi.ResourceOptions(parent=self)
        log_group = aws.cloudwatch.LogGroup(
            f"{self._name}-flow-logs",
            name=f"/retail/{self._name}/vpc-flow-logs",
            retention_in_days=self._args.flow_log_retention_days,
            kms_key_id=self._args.logs_kms_key_arn,
            opts=child,
        )
        role = aws.iam.Role(
            f"{self._name}-flow-logs-role",
            assume_role_policy=service_trust_policy("vpc-flow-logs.amazonaws.com", self._args.account_id),
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{self._name}-flow-logs-write",
            role=role.id,
            policy=policy_document(
                [
                    {
                        "Effect": "Allow",
                        "Action": [
                            "logs:CreateLogStream",
                            "logs:PutLogEvents",
                            "logs:DescribeLogStreams",
                        ],
                        "Resource": pulumi.Output.concat(log_group.arn, ":*"),
                    },
                    {
                        # In the VPC guide's policy for a flow logs role ("IAM role for publishing flow logs to
                        # CloudWatch Logs"); DescribeLogGroups takes no resource, so it cannot be scoped.
                        "Effect": "Allow",
                        "Action": "logs:DescribeLogGroups",
                        "Resource": "*",
                    },
                    {
                        # CloudWatch Logs' KMS page asks roles that write to an encrypted group for this.
                        "Effect": "Allow",
                        "Action": ["kms:Encrypt", "kms:ReEncrypt*", "kms:Decrypt", "kms:GenerateDataKey*",
                                   "kms:DescribeKey"],
                        "Resource": self._args.logs_kms_key_arn,
                        "Condition": {"StringEquals": {"kms:ViaService": f"logs.{self._args.region}.amazonaws.com"}},
                    },
                ]
            ),
            opts=child,
        )
        aws.ec2.FlowLog(
            f"{self._name}-flow-log",
            vpc_id=self.vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=log_group.arn,
            iam_role_arn=role.arn,
            max_aggregation_interval=60,
            opts=child,
        )
