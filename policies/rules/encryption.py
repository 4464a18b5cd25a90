"""KMS keys and CloudTrail: rotation, and a trail that covers every region, is signed and encrypted."""

from __future__ import annotations

from policies.model import Resource, ResourceRule

KMS_KEY = "aws:kms/key:Key"
TRAIL = "aws:cloudtrail/trail:Trail"


def key_rotates(resource: Resource) -> list[str]:
    if resource.get("customerMasterKeySpec", default="SYMMETRIC_DEFAULT") != "SYMMETRIC_DEFAULT":
        return []  # AWS rotates only symmetric keys
    if resource.get("keySpec", default="SYMMETRIC_DEFAULT") != "SYMMETRIC_DEFAULT":
        return []
    return [] if resource.get("enableKeyRotation") is True else ["does not rotate its key material"]


def trail_multi_region(resource: Resource) -> list[str]:
    return [] if resource.get("isMultiRegionTrail") is True else ["records only its own region"]


def trail_log_validation(resource: Resource) -> list[str]:
    return [] if resource.get("enableLogFileValidation") is True else ["does not sign its log files"]


def trail_kms(resource: Resource) -> list[str]:
    return [] if resource.get("kmsKeyId") else ["does not encrypt its logs with a KMS key"]


RULES = [
    ResourceRule(
        "kms-key-rotation",
        "Turn on automatic rotation for symmetric KMS keys (enable_key_rotation=True).",
        frozenset({KMS_KEY}),
        key_rotates,
    ),
    ResourceRule(
        "cloudtrail-multi-region",
        "Make the trail multi-region (is_multi_region_trail=True) so no region goes unaudited.",
        frozenset({TRAIL}),
        trail_multi_region,
    ),
    ResourceRule(
        "cloudtrail-log-validation",
        "Turn on log file validation (enable_log_file_validation=True) so tampering is detectable.",
        frozenset({TRAIL}),
        trail_log_validation,
    ),
    ResourceRule(
        "cloudtrail-kms",
        "Encrypt the trail's logs with the platform's logs KMS key (kms_key_id=...).",
        frozenset({TRAIL}),
        trail_kms,
    ),
]
