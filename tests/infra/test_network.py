"""Network: private workloads, NAT per config, endpoints, flow logs."""

import ipaddress

import pytest

from infra.network import Network, NetworkArgs, subnet_cidrs

from .helpers import build

LOGS_KEY = "arn:aws:kms:ap-southeast-1:123456789012:key/logs"


def network(az_count: int, nat_per_az: bool):
    args = NetworkArgs(
        account_id="123456789012",
        region="ap-southeast-1",
        logs_kms_key_arn=LOGS_KEY,
        cidr="10.40.0.0/16",
        az_count=az_count,
        nat_per_az=nat_per_az,
        flow_log_retention_days=14,
    )
    return build(lambda: Network("n", args))


@pytest.fixture(scope="module")
def shared_nat():
    return network(az_count=2, nat_per_az=False)


@pytest.fixture(scope="module")
def nat_per_az():
    return network(az_count=3, nat_per_az=True)


def subnets(run, tier):
    return [s for s in run.of_type("aws:ec2/subnet:Subnet") if s.inputs["tags"]["tier"] == tier]


def test_one_public_and_one_private_subnet_per_az(nat_per_az):
    zones = {s.inputs["availabilityZone"] for s in subnets(nat_per_az, "private")}
    assert zones == {"ap-southeast-1a", "ap-southeast-1b", "ap-southeast-1c"}
    assert len(subnets(nat_per_az, "public")) == 3


def test_subnets_are_disjoint_and_inside_the_vpc():
    private, public = subnet_cidrs("10.40.0.0/16", 3)
    blocks = [ipaddress.ip_network(c) for c in private + public]
    vpc = ipaddress.ip_network("10.40.0.0/16")
    assert all(b.subnet_of(vpc) for b in blocks)
    assert all(not a.overlaps(b) for i, a in enumerate(blocks) for b in blocks[i + 1 :])


def test_no_subnet_gives_instances_public_ips(shared_nat):
    assert all(s.inputs["mapPublicIpOnLaunch"] is False for s in shared_nat.of_type("aws:ec2/subnet:Subnet"))


def test_one_nat_gateway_when_not_per_az(shared_nat):
    assert len(shared_nat.of_type("aws:ec2/natGateway:NatGateway")) == 1


def test_one_nat_gateway_per_az_when_configured(nat_per_az):
    gateways = nat_per_az.of_type("aws:ec2/natGateway:NatGateway")
    assert len(gateways) == 3
    assert len({g.inputs["subnetId"] for g in gateways}) == 3


def test_nat_gateways_sit_in_public_subnets(nat_per_az):
    public_ids = {s.id for s in subnets(nat_per_az, "public")}
    gateways = nat_per_az.of_type("aws:ec2/natGateway:NatGateway")
    assert {g.inputs["subnetId"] for g in gateways} <= public_ids


def test_private_route_tables_send_internet_traffic_through_nat(nat_per_az):
    private_tables = [t for t in nat_per_az.of_type("aws:ec2/routeTable:RouteTable") if "-private-rt-" in t.name]
    assert len(private_tables) == 3
    for table in private_tables:
        (route,) = table.inputs["routes"]
        assert route["cidrBlock"] == "0.0.0.0/0"
        assert "natGatewayId" in route and "gatewayId" not in route


def test_s3_is_a_gateway_endpoint_on_the_private_route_tables(shared_nat):
    s3 = shared_nat.named("n-s3-endpoint")
    assert s3.inputs["vpcEndpointType"] == "Gateway"
    assert s3.inputs["serviceName"] == "com.amazonaws.ap-southeast-1.s3"
    assert len(s3.inputs["routeTableIds"]) == 2


def test_ecr_logs_sts_and_kms_are_private_interface_endpoints(shared_nat):
    services = {
        e.inputs["serviceName"].removeprefix("com.amazonaws.ap-southeast-1.")
        for e in shared_nat.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
        if e.inputs["vpcEndpointType"] == "Interface"
    }
    assert services == {"ecr.api", "ecr.dkr", "logs", "sts", "kms"}
    for endpoint in shared_nat.of_type("aws:ec2/vpcEndpoint:VpcEndpoint"):
        if endpoint.inputs["vpcEndpointType"] == "Interface":
            assert endpoint.inputs["privateDnsEnabled"] is True


def test_interface_endpoints_admit_only_https_from_the_vpc(shared_nat):
    (group,) = shared_nat.of_type("aws:ec2/securityGroup:SecurityGroup")
    (rule,) = group.inputs["ingress"]
    assert (rule["fromPort"], rule["toPort"], rule["cidrBlocks"]) == (443, 443, ["10.40.0.0/16"])


def test_default_security_group_allows_nothing(shared_nat):
    (default,) = shared_nat.of_type("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert default.inputs.get("ingress", []) == [] and default.inputs.get("egress", []) == []


def test_flow_logs_record_all_traffic_into_an_encrypted_log_group_with_retention(shared_nat):
    (flow_log,) = shared_nat.of_type("aws:ec2/flowLog:FlowLog")
    (group,) = shared_nat.of_type("aws:cloudwatch/logGroup:LogGroup")
    assert flow_log.inputs["trafficType"] == "ALL"
    assert flow_log.inputs["logDestination"] == group.outputs["arn"]
    assert group.inputs["kmsKeyId"] == LOGS_KEY
    assert group.inputs["retentionInDays"] == 14


def test_more_than_three_zones_is_refused():
    with pytest.raises(ValueError, match="az_count must be 2 or 3"):
        network(az_count=4, nat_per_az=False)


def test_nat_gateways_wait_for_the_internet_gateway(shared_nat):
    (gateway,) = shared_nat.of_type("aws:ec2/internetGateway:InternetGateway")
    assert all(gateway.urn in nat.dependencies for nat in shared_nat.of_type("aws:ec2/natGateway:NatGateway"))
