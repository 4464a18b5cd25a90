"""The AWS credentials a stack's provider would use, for `retail infra doctor`'s boto3 clients.

The AWS provider reads `aws:profile` and `aws:assumeRoles` from the stack's config; so does
the doctor: the profile's session (else the environment's default chain), then each role of
`aws:assumeRoles` assumed in turn with the credentials of the step before, with its session
name, external id, session policy, policy ARNs, tags and source identity (`duration` is not
used: the doctor's calls take seconds). Other credential settings of the provider
(`aws:accessKey`, `aws:sharedCredentialsFiles`, `aws:assumeRoleWithWebIdentity`, ...) are not
read: the session refuses a stack that sets one, naming it, rather than check other
credentials than the deploy would use.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError

PROFILE_KEY = "aws:profile"
ASSUME_ROLES_KEY = "aws:assumeRoles"
UNREAD_KEYS = (
    "aws:accessKey",
    "aws:secretKey",
    "aws:token",
    "aws:sharedCredentialsFiles",
    "aws:sharedConfigFiles",
    "aws:assumeRoleWithWebIdentity",
)
DOCTOR_SESSION_NAME = "retail-infra-doctor"


class UnreadCredentialSettings(BotoCoreError):
    """The stack sets credentials the doctor does not read (a BotoCoreError, so the checks report it)."""

    fmt = "{message}"


def describe(config: Mapping[str, str]) -> str:
    """How the stack's credentials are chosen, e.g. "aws:profile deploy, then aws:assumeRoles arn:..."; "" if not."""
    parts = [f"{PROFILE_KEY} {config[PROFILE_KEY]}"] if config.get(PROFILE_KEY) else []
    roles = [str(role.get("roleArn")) for role in _roles(config)]
    if roles:
        parts.append(f"{ASSUME_ROLES_KEY} {' -> '.join(roles)}")
    return ", then ".join(parts)


def stack_session(config: Mapping[str, str], secret_keys: Collection[str] = ()) -> boto3.session.Session:
    """The session the stack's AWS provider would have: its profile, then its roles assumed in order."""
    unread = [key for key in UNREAD_KEYS if config.get(key) or key in secret_keys]
    if unread:
        raise UnreadCredentialSettings(
            message=f"the stack sets {', '.join(unread)}, which retail infra doctor does not read: remove it from "
            f"the stack file and give the shell those credentials (AWS_PROFILE, or {PROFILE_KEY} / "
            f"{ASSUME_ROLES_KEY}, which the doctor reads)"
        )
    profile = config.get(PROFILE_KEY)
    session = boto3.session.Session(profile_name=profile) if profile else boto3.session.Session()
    for role in _roles(config):
        session = _assumed(session, role, config.get("aws:region"))
    return session


def stack_clients(
    config: Mapping[str, str], secret_keys: Collection[str] = ()
) -> Callable[[str, str], Any]:
    """A client factory on `stack_session`, made on the first client, so its errors reach the credentials check."""
    sessions: list[boto3.session.Session] = []

    def client(service: str, region: str) -> Any:
        if not sessions:
            sessions.append(stack_session(config, secret_keys))
        return sessions[0].client(service, region_name=region)

    return client


def _roles(config: Mapping[str, str]) -> list[dict[str, Any]]:
    raw = config.get(ASSUME_ROLES_KEY)
    roles = json.loads(raw) if raw else []
    return [roles] if isinstance(roles, dict) else list(roles)


def _assumed(session: boto3.session.Session, role: Mapping[str, Any], region: str | None) -> boto3.session.Session:
    request: dict[str, Any] = {
        "RoleArn": role["roleArn"],
        "RoleSessionName": role.get("sessionName") or DOCTOR_SESSION_NAME,
    }
    if role.get("externalId"):
        request["ExternalId"] = role["externalId"]
    if role.get("policy"):
        request["Policy"] = role["policy"]
    if role.get("policyArns"):
        request["PolicyArns"] = [{"arn": arn} for arn in role["policyArns"]]
    if role.get("tags"):
        request["Tags"] = [{"Key": key, "Value": value} for key, value in role["tags"].items()]
    if role.get("transitiveTagKeys"):
        request["TransitiveTagKeys"] = list(role["transitiveTagKeys"])
    if role.get("sourceIdentity"):
        request["SourceIdentity"] = role["sourceIdentity"]
    credentials = session.client("sts", region_name=region).assume_role(**request)["Credentials"]
    return boto3.session.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=session.region_name,
    )
