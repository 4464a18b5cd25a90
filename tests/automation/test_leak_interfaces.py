"""The leak scan tells the VPC CNI's network interfaces by their node tag and description, inside the stack's VPCs only,
and gives each interface the remove command its kind needs.

Against moto (a real HTTP server on 127.0.0.1): interfaces in a VPC tagged for the stack
and in another VPC; an instance's primary interface, an attached secondary one, a
detached one, and requester-managed ones (a NAT gateway's, a load balancer's). moto
never marks an interface requester-managed, so those tests set the flag, the type and
the description on moto's record as AWS reports them for such interfaces.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from infra import leaks
from infra.leaks import interface_remove_command
from tests.automation.test_teardown import REGION, client, stack_tags, vpc_with_subnets

ACCOUNT = "123456789012"
IMAGE = "ami-12c6146b"
"""One of the images moto knows (moto/ec2/resources/amis.json.gz)."""


@pytest.fixture
def stack(moto_endpoint) -> str:
    """A stack name no other test uses (moto's account is shared by the session)."""
    return f"ephemeral-n{uuid.uuid4().hex[:8]}"


def stack_vpc(stack: str) -> tuple[str, list[str]]:
    vpc, subnets = vpc_with_subnets()
    client("ec2").create_tags(Resources=[vpc], Tags=stack_tags(stack))
    return vpc, subnets


def instance_in(subnet: str) -> str:
    """An instance whose primary interface is deleted with it, as EC2 launches one by default."""
    primary = {"DeviceIndex": 0, "SubnetId": subnet, "DeleteOnTermination": True}
    return client("ec2").run_instances(ImageId=IMAGE, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                                       NetworkInterfaces=[primary])["Instances"][0]["InstanceId"]


def cni_interface(subnet: str, node: str) -> str:
    """A network interface as the VPC CNI makes one when its CLUSTER_NAME is not set (pulumi-eks)."""
    return client("ec2").create_network_interface(
        SubnetId=subnet, Description=f"aws-K8S-{node}",
        TagSpecifications=[{"ResourceType": "network-interface", "Tags": [
            {"Key": "node.k8s.amazonaws.com/instance_id", "Value": node}]}],
    )["NetworkInterface"]["NetworkInterfaceId"]


def requester_managed(eni: str, interface_type: str, description: str) -> None:
    """Mark moto's record of `eni` as AWS reports an interface a service made and manages (in use, not detachable)."""
    from moto.backends import get_backend

    record = get_backend("ec2")[ACCOUNT][REGION].enis[eni]
    record.requester_managed, record.interface_type, record.description = True, interface_type, description
    record.status = "in-use"


def interfaces(stack: str) -> dict[str, leaks.Finding]:
    report = leaks.scan(leaks.LeakScope.of(stack, REGION), client)
    return {f.ident: f for f in report.leftovers if f.kind == "ec2:network-interface"}


def test_a_cni_interface_without_the_cluster_tag_is_told_by_its_node_tag_and_description(stack):
    _, subnets = stack_vpc(stack)
    node = instance_in(subnets[0])
    eni = cni_interface(subnets[0], node)
    found = interfaces(stack)
    assert found[eni].detail.endswith(f"made by the VPC CNI for node {node}")


def test_a_cni_interface_of_another_cluster_s_vpc_is_not_this_stack_s(stack):
    _, subnets = stack_vpc(stack)
    _, elsewhere = vpc_with_subnets()
    mine = cni_interface(subnets[0], "i-0aaaaaaaaaaaaaaaa")
    theirs = cni_interface(elsewhere[0], "i-0bbbbbbbbbbbbbbbb")
    found = interfaces(stack)
    assert mine in found and theirs not in found


def test_an_instance_s_primary_interface_goes_by_terminating_the_instance(stack):
    _, subnets = stack_vpc(stack)
    node = instance_in(subnets[0])
    (primary,) = [f for f in interfaces(stack).values() if node in f.remove]
    assert primary.remove == ("terminate its instance, a primary interface cannot be detached: aws ec2 "
                              f"terminate-instances --instance-ids {node} --region {REGION}")


def test_an_attached_secondary_interface_is_detached_then_deleted_and_a_detached_one_deleted(stack):
    _, subnets = stack_vpc(stack)
    node = instance_in(subnets[0])
    attached, detached = cni_interface(subnets[0], node), cni_interface(subnets[1], node)
    attachment = client("ec2").attach_network_interface(NetworkInterfaceId=attached, InstanceId=node,
                                                         DeviceIndex=1)["AttachmentId"]
    found = interfaces(stack)
    delete = "aws ec2 delete-network-interface --network-interface-id {} --region " + REGION
    assert found[attached].remove == (f"aws ec2 detach-network-interface --attachment-id {attachment} --region "
                                      f"{REGION} (attached to {node}), then {delete.format(attached)}")
    assert found[detached].remove == delete.format(detached)


def test_a_requester_managed_interface_goes_with_the_resource_it_belongs_to(stack):
    _, subnets = stack_vpc(stack)
    ec2 = client("ec2")
    nat = ec2.create_nat_gateway(SubnetId=subnets[0], AllocationId=ec2.allocate_address(Domain="vpc")[
        "AllocationId"])["NatGateway"]
    nat_eni = nat["NatGatewayAddresses"][0]["NetworkInterfaceId"]
    requester_managed(nat_eni, "nat_gateway", f"Interface for NAT Gateway {nat['NatGatewayId']}")
    alb_eni = ec2.create_network_interface(SubnetId=subnets[1])["NetworkInterface"]["NetworkInterfaceId"]
    requester_managed(alb_eni, "interface", "ELB app/k8s-retailin-inferenc-1a2b3c4d5e/0123456789abcdef")

    found = interfaces(stack)
    assert found[nat_eni].remove == (
        f"none of its own: it is requester-managed and goes when NAT gateway {nat['NatGatewayId']} is deleted "
        f"(aws ec2 delete-nat-gateway --nat-gateway-id {nat['NatGatewayId']} --region {REGION})")
    assert found[alb_eni].remove.startswith(
        "none of its own: it is requester-managed and goes when load balancer "
        "app/k8s-retailin-inferenc-1a2b3c4d5e/0123456789abcdef is deleted (aws elbv2 delete-load-balancer "
        "--load-balancer-arn $(aws elbv2 describe-load-balancers --names k8s-retailin-inferenc-1a2b3c4d5e ")


def test_a_requester_managed_interface_its_service_detached_but_left_is_deleted():
    interface: dict[str, Any] = {"NetworkInterfaceId": "eni-1", "RequesterManaged": True, "Status": "available",
                                 "InterfaceType": "vpc_endpoint", "Description": "VPC Endpoint Interface vpce-0abc"}
    assert interface_remove_command(interface, "r") == "aws ec2 delete-network-interface --network-interface-id " \
                                                        "eni-1 --region r"
    interface["Status"] = "in-use"
    assert interface_remove_command(interface, "r").endswith(
        "goes when VPC endpoint vpce-0abc is deleted (aws ec2 delete-vpc-endpoints --vpc-endpoint-ids vpce-0abc "
        "--region r)")
