"""Service Quotas lookups for `retail infra doctor`: a quota's value in the account and region.

GetServiceQuota answers with the applied value, but raises NoSuchResourceException for
some quotas that were never adjusted; the AWS default (GetAWSDefaultServiceQuota) is then
the value in force. Quotas whose code depends on the configuration (SageMaker's
`ml.<type> for training job usage`) or that we only know by name are found by name in
ListAWSDefaultServiceQuotas. Anything Service Quotas cannot answer raises
QuotaUnavailable with the reason, so the check reports it as unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra.preflight import AWS_ERRORS, error_code, error_text

NO_SUCH_RESOURCE = "NoSuchResourceException"

VPCS_PER_REGION = ("vpc", "L-F678F1CE")
"""VPCs per Region."""
ELASTIC_IPS = ("ec2", "L-0263D0A3")
"""EC2-VPC Elastic IPs."""
STANDARD_SPOT_VCPUS = ("ec2", "L-34B43A08")
"""All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests, in vCPUs."""
STANDARD_ON_DEMAND_VCPUS = ("ec2", "L-1216C47A")
"""Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances, in vCPUs."""
TRAILS_PER_REGION = ("cloudtrail", "Trails per region")
"""CloudTrail's quota, by name (it cannot be raised)."""


class QuotaUnavailable(Exception):
    """Service Quotas could not say; the message says why."""


@dataclass(frozen=True)
class Quota:
    service: str
    code: str
    name: str
    value: float
    applied: bool
    """True: the account's applied value; False: the AWS default (no applied value exists)."""
    documented: str = ""
    """Where AWS documents the value, for a fixed quota Service Quotas did not answer for."""

    def describe(self) -> str:
        if self.documented:
            return f"{self.name} = {self.value:g} (fixed; Service Quotas did not list it; {self.documented})"
        source = "applied" if self.applied else "AWS default"
        return f"{self.name} ({self.service} {self.code}) = {self.value:g} ({source})"


DOCUMENTED_TRAILS_PER_REGION = Quota(
    "cloudtrail", "", "Trails per Region", 5, applied=False,
    documented="https://docs.aws.amazon.com/awscloudtrail/latest/userguide/WhatIsCloudTrail-Limits.html",
)
"""CloudTrail's fixed quota as AWS documents it: 5 trails per Region, a multi-Region trail counting in each."""


def quota_by_code(client: Any, service: str, code: str) -> Quota:
    """The value in force of quota `code` of `service`: the applied one, else the AWS default."""
    try:
        found, applied = client.get_service_quota(ServiceCode=service, QuotaCode=code)["Quota"], True
    except AWS_ERRORS as error:
        if error_code(error) != NO_SUCH_RESOURCE:
            raise QuotaUnavailable(f"GetServiceQuota {service} {code}: {error_text(error)}") from error
        try:
            found, applied = client.get_aws_default_service_quota(ServiceCode=service, QuotaCode=code)["Quota"], False
        except AWS_ERRORS as default_error:
            raise QuotaUnavailable(
                f"Service Quotas has no value for {service} {code} here: GetServiceQuota said {error_text(error)}, "
                f"GetAWSDefaultServiceQuota said {error_text(default_error)}"
            ) from default_error
    return Quota(service, code, str(found.get("QuotaName") or code), float(found["Value"]), applied)


def quota_by_name(client: Any, service: str, name: str) -> Quota | None:
    """The quota of `service` named `name` (case-insensitive), or None when the region lists no such quota."""
    try:
        pages = client.get_paginator("list_aws_default_service_quotas").paginate(ServiceCode=service)
        listed = [quota for page in pages for quota in page.get("Quotas", [])]
    except AWS_ERRORS as error:
        raise QuotaUnavailable(f"ListAWSDefaultServiceQuotas {service}: {error_text(error)}") from error
    for quota in listed:
        if str(quota.get("QuotaName", "")).lower() == name.lower():
            return quota_by_code(client, service, quota["QuotaCode"])
    return None
