"""The policy documents a deployment renders, linted by parliament and checked against AWS's documentation.

`document_findings(runs)` collects every IAM and resource policy document the offline
runs (`infra.offline.preview_deployment`) registered: role trust policies, inline role
policies, managed policies, KMS key policies, S3 bucket policies, SNS topic policies
(and the other resource-policy types in `DOCUMENT_INPUTS`). Under the mock runtime the
documents arrive as JSON strings with every Output already resolved (the mocks run
with `preview=False`), so ARNs of other resources are the mocks' ARNs; a document that
still holds Pulumi's unknown-value marker is reported rather than guessed at.

Two checks run on them:

- parliament (1.6.4), an independent IAM linter. It has no policy-type parameter
  (https://github.com/duo-labs/parliament/issues/14): it lints every document as an
  identity policy that may carry a Principal. A role trust policy has no Resource
  element, which parliament reports as MALFORMED and then stops
  (https://github.com/duo-labs/parliament/issues/229); AWS calls the trust policy the
  role's resource-based policy
  (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html),
  so each trust statement is linted with the role's own ARN as its Resource. Resource
  "*" in a KMS key policy means "this key"; parliament cannot know that, and those
  findings are waived in policies/waivers.yaml with the KMS page that says so. The
  community auditors stay off: they flag the actions these documents exist to grant
  (sts:AssumeRole* in every trust policy, kms:* for the account's administrators),
  so every one of their findings would be a waiver and none a defect.
- documented permissions: `REQUIREMENTS`, one row per service requirement with the
  page that states it, checked against the documents with `allows()`, a small IAM
  evaluator (wildcards in actions and resources, principals, condition operators
  against the request context the service sends, explicit denies).

Findings carry their check id as the first word of the message (`RESOURCE_STAR: ...`,
`cloudtrail-encrypt: ...`); policies/waivers.yaml accepts a finding by tool, check id
and subject (a glob), with a reason. `load_waivers()` reads it strictly and
`stale_waivers()` lists entries no finding needs any more.

Not rendered offline: documents inside pulumi-eks's remote components (its cluster and
node roles are created by the provider plugin, not registered under the mocks) and
AWS-managed policies attached by ARN.
"""

from __future__ import annotations

import copy
import json
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from pulumi.runtime import rpc

import infra
from infra.config import PLATFORM_PROJECT
from infra.offline import OfflineRun, RegisteredResource
from policies.findings import Finding
from policies.model import Resource, as_list
from policies.rules.kubernetes import BATCH, containers, env_of, option_values, pod_spec
from policies.rules.lake_job import ATTACHING

WAIVERS_FILE = Path(__file__).parent / "waivers.yaml"
PARLIAMENT = "parliament"
DOCUMENTED = "documented-permissions"
CHECKOV = "checkov"
TOOLS = (PARLIAMENT, CHECKOV, DOCUMENTED)
CONTROLLER_POLICY_FILE = Path(infra.__file__).parent / "data" / "aws-load-balancer-controller-iam-policy.json"
ROLE_ARN_ANNOTATION = "eks.amazonaws.com/role-arn"
SERVICE_ACCOUNT_VALUES: Mapping[str, tuple[str, ...]] = {
    # kubernetes/autoscaler's chart keeps its service account under rbac.serviceAccount (values.yaml)
    "cluster-autoscaler": ("rbac",),
}
"""Charts whose `serviceAccount` values are not at the top level: the keys leading to them."""

ECR_REPOSITORY_POLICY = "aws:ecr/repositoryPolicy:RepositoryPolicy"
DOCUMENT_INPUTS: Mapping[str, tuple[str, str]] = {
    "aws:iam/role:Role": ("assumeRolePolicy", "trust"),
    "aws:iam/rolePolicy:RolePolicy": ("policy", "identity"),
    "aws:iam/policy:Policy": ("policy", "identity"),
    "aws:iam/userPolicy:UserPolicy": ("policy", "identity"),
    "aws:iam/groupPolicy:GroupPolicy": ("policy", "identity"),
    "aws:kms/key:Key": ("policy", "key"),
    "aws:kms/keyPolicy:KeyPolicy": ("policy", "key"),
    "aws:kms/replicaKey:ReplicaKey": ("policy", "key"),
    "aws:kms/externalKey:ExternalKey": ("policy", "key"),
    "aws:kms/replicaExternalKey:ReplicaExternalKey": ("policy", "key"),
    "aws:s3control/bucketPolicy:BucketPolicy": ("policy", "resource"),
    "aws:s3control/objectLambdaAccessPointPolicy:ObjectLambdaAccessPointPolicy": ("policy", "resource"),
    "aws:s3/bucketPolicy:BucketPolicy": ("policy", "resource"),
    "aws:s3/bucket:Bucket": ("policy", "resource"),
    "aws:s3/bucketV2:BucketV2": ("policy", "resource"),
    "aws:s3/accessPoint:AccessPoint": ("policy", "resource"),
    "aws:s3control/accessPointPolicy:AccessPointPolicy": ("policy", "resource"),
    "aws:sqs/queue:Queue": ("policy", "resource"),
    "aws:sns/topic:Topic": ("policy", "resource"),
    "aws:sns/topicPolicy:TopicPolicy": ("policy", "resource"),
    "aws:sqs/queuePolicy:QueuePolicy": ("policy", "resource"),
    ECR_REPOSITORY_POLICY: ("policy", "resource"),
}
"""Resource type -> (input holding a policy document, kind of document)."""
KEY_TYPES = ("aws:kms/key:Key", "aws:kms/replicaKey:ReplicaKey", "aws:kms/externalKey:ExternalKey",
             "aws:kms/replicaExternalKey:ReplicaExternalKey")
"""The KMS key types, whose `policy` is their own key's (a KeyPolicy names its key by `keyId`)."""


# --------------------------------------------------------------------------- findings and waivers


def finding(tool: str, check_id: str, subject: str, text: str, fix: str) -> Finding:
    """A Finding whose message starts with its check id, which is what waivers match on."""
    return Finding(check=tool, subject=subject, message=f"{check_id}: {text}", fix=fix)


def check_id(found: Finding) -> str:
    return found.message.split(":", 1)[0]


@dataclass(frozen=True)
class Waiver:
    tool: str
    check: str
    subject: str
    """Glob (`*`, `?`) over the finding's subject."""
    reason: str
    doc: str = ""
    """The page that makes the finding correct (required for parliament and documented-permissions)."""
    message: str = ""
    """Optional glob over the finding's message, to accept one variant of a check only."""

    def matches(self, found: Finding) -> bool:
        return (
            found.check == self.tool
            and check_id(found) == self.check
            and glob_match(self.subject, found.subject)
            and (not self.message or glob_match(self.message, found.message))
        )


_WAIVER_KEYS = {"tool", "check", "subject", "reason", "doc", "message"}
_REQUIRED_WAIVER_KEYS = {"tool", "check", "subject", "reason"}


def load_waivers(path: Path = WAIVERS_FILE) -> list[Waiver]:
    """Read the waivers file strictly: known keys only, every required key, known tools, no duplicates."""
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or set(data) != {"waivers"} or not isinstance(data["waivers"], list):
        raise ValueError(f"{path}: expected one top-level key `waivers` holding a list")
    waivers = []
    for index, entry in enumerate(data["waivers"], 1):
        where = f"{path}: waiver {index}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected a mapping, got {entry!r}")
        if unknown := set(entry) - _WAIVER_KEYS:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(_WAIVER_KEYS)}")
        if missing := _REQUIRED_WAIVER_KEYS - {k for k, v in entry.items() if str(v or "").strip()}:
            raise ValueError(f"{where}: missing {sorted(missing)}")
        if entry["tool"] not in TOOLS:
            raise ValueError(f"{where}: tool {entry['tool']!r} is none of {list(TOOLS)}")
        if entry["tool"] != CHECKOV and not str(entry.get("doc") or "").startswith("https://"):
            raise ValueError(f"{where}: a {entry['tool']} waiver needs `doc`, the https:// page that makes it correct")
        waiver = Waiver(**{k: str(v).strip() for k, v in entry.items()})
        if waiver in waivers:
            raise ValueError(f"{where}: duplicates an earlier waiver")
        waivers.append(waiver)
    return waivers


def apply_waivers(findings: Iterable[Finding], waivers: Sequence[Waiver]) -> list[Finding]:
    """The findings, each accepted (`waived` = the reason) by the first waiver that matches it."""
    result = []
    for found in findings:
        waiver = next((w for w in waivers if w.matches(found)), None)
        result.append(_waived(found, waiver.reason) if waiver else found)
    return result


def _waived(found: Finding, reason: str) -> Finding:
    return Finding(found.check, found.subject, found.message, found.fix, waived=reason)


def stale_waivers(waivers: Sequence[Waiver], findings: Iterable[Finding]) -> list[Waiver]:
    """Waivers that match none of `findings` (pass the findings of every stack the waivers cover)."""
    findings = list(findings)
    return [w for w in waivers if not any(w.matches(f) for f in findings)]


def glob_match(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """IAM-style wildcards: `*` any run of characters, `?` one character, everything else literal."""
    return _glob_regex(pattern, ignore_case).fullmatch(value) is not None


@cache
def _glob_regex(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


# --------------------------------------------------------------------------- rendered documents


@dataclass(frozen=True)
class PolicyDocument:
    resource: RegisteredResource
    kind: str
    """`trust`, `identity`, `key` or `resource`."""
    text: str

    @property
    def statements(self) -> list[dict[str, Any]]:
        statements = json.loads(self.text).get("Statement", [])
        return statements if isinstance(statements, list) else [statements]


def rendered_documents(runs: Sequence[OfflineRun]) -> list[PolicyDocument]:
    """Every policy document the runs registered, in registration order."""
    documents = []
    for run in runs:
        for resource in run.resources:
            input_name, kind = DOCUMENT_INPUTS.get(resource.type, ("", ""))
            value = resource.inputs.get(input_name) if input_name else None
            if value:
                documents.append(PolicyDocument(resource, kind, value if isinstance(value, str) else json.dumps(value)))
            if resource.type == "aws:iam/role:Role":
                for inline in resource.inputs.get("inlinePolicies") or []:
                    if inline.get("policy"):
                        documents.append(PolicyDocument(resource, "identity", inline["policy"]))
    return documents


def _unrendered(document: PolicyDocument) -> Finding | None:
    """A finding when the document cannot be checked: not JSON, or holding a value unknown offline."""
    problem = "holds a value unknown offline" if rpc.UNKNOWN in document.text else ""
    try:
        json.loads(document.text)
    except json.JSONDecodeError as error:
        problem = f"is not JSON ({error})"
    if not problem:
        return None
    return finding(
        PARLIAMENT,
        "UNRENDERED",
        document.resource.name,
        f"the {document.kind} policy document {problem}",
        "Build the document from resolved values (pulumi.Output.json_dumps) so it can be checked before deploy",
    )


# --------------------------------------------------------------------------- parliament


def parliament_findings(document: PolicyDocument) -> list[Finding]:
    """parliament's findings on one document; subject = `<resource>#<Sid>` (or `#statement-<n>`)."""
    analyze = _parliament().analyze_policy_string
    parsed = json.loads(document.text)
    if document.kind == "trust":
        parsed = _with_role_as_resource(parsed, document.resource.outputs.get("arn", "*"))
    elif document.resource.type == ECR_REPOSITORY_POLICY:  # ECR takes no Resource: the policy's repository is it
        repository = document.resource.inputs.get("repository", "*")
        parsed = _with_role_as_resource(parsed, f"arn:aws:ecr:*:*:repository/{repository}")
    policy = analyze(json.dumps(parsed), ignore_private_auditors=True, include_community_auditors=False)
    findings = []
    statement_findings = set()
    for index, statement in enumerate(policy.statements, 1):
        subject = f"{document.resource.name}#{statement.sid or f'statement-{index}'}"
        for issue in statement.findings:
            statement_findings.add(id(issue))
            findings.append(_parliament_finding(issue, subject))
    for issue in policy.findings:
        if id(issue) not in statement_findings:
            findings.append(_parliament_finding(issue, document.resource.name))
    return list(dict.fromkeys(findings))  # parliament repeats a finding once per expanded action


def _with_role_as_resource(parsed: dict[str, Any], role_arn: str) -> dict[str, Any]:
    parsed = copy.deepcopy(parsed)
    statements = parsed.get("Statement", [])
    for statement in statements if isinstance(statements, list) else [statements]:
        if "Resource" not in statement and "NotResource" not in statement:
            statement["Resource"] = role_arn
    return parsed


def _parliament_finding(issue: Any, subject: str) -> Finding:
    issue = _parliament().enhance_finding(issue)
    detail = issue.detail if isinstance(issue.detail, str) else json.dumps(issue.detail, default=str)
    text = f"{issue.title}" + (f" ({detail})" if detail else "")
    fix = (issue.description or issue.title).strip() + (
        ". Correct the statement; if AWS documents it as written, waive it in policies/waivers.yaml citing that page"
    )
    return finding(PARLIAMENT, issue.issue, subject, text, fix)


@cache
def _parliament() -> ModuleType:
    """parliament, imported once with its import-time warnings (pkg_resources, regex escapes) silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import parliament
        import parliament.policy
        import parliament.statement  # noqa: F401  (compiled here, so its warnings are silenced too)
    return parliament


# --------------------------------------------------------------------------- the IAM evaluator


@dataclass(frozen=True)
class Need:
    """Requests a service's documentation says a policy must allow: every action on every resource.

    `actions` are the documented action names or patterns, expanded to the service's
    actions (parliament's IAM data) so a statement must allow each of them. `context`
    holds the request's condition keys and values as the service sends them; a statement
    condition on a key absent from it does not hold (unless `...IfExists`, `Null`, or a
    negated operator such as `StringNotEquals`).
    `constrained_by` names condition keys the allowing statement must test (the
    documented confused-deputy or scoping conditions), each with the operators allowed
    for it (empty: any).
    """

    actions: tuple[str, ...]
    principal: tuple[str, str] | None = None
    """(`Service`/`AWS`/`Federated`, value) for resource policies; None for identity policies."""
    resources: tuple[str, ...] = ("*",)
    context: Mapping[str, str] = field(default_factory=dict)
    constrained_by: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def allows(statements: Sequence[Mapping[str, Any]], need: Need) -> list[str]:
    """The requests of `need` the statements do not allow (empty: all allowed), as `action on resource`."""
    missing = []
    for action in expand_actions(need.actions):
        for resource in need.resources:
            applicable = [s for s in statements if _applies(s, need, action, resource)]
            denied = any(s.get("Effect") == "Deny" for s in applicable)
            allowed = any(s.get("Effect") == "Allow" and _constrains(s, need.constrained_by) for s in applicable)
            if denied or not allowed:
                missing.append(f"{action} on {resource}")
    return missing


def expand_actions(patterns: Iterable[str]) -> list[str]:
    """Documented action names and patterns as the concrete actions parliament's IAM data knows."""
    parliament = _parliament()
    actions: list[str] = []
    for pattern in patterns:
        try:
            expanded = [f"{a['service']}:{a['action']}" for a in parliament.expand_action(pattern)]
        except (parliament.UnknownActionException, parliament.UnknownPrefixException):
            expanded = []
        actions += [a for a in expanded or [pattern] if a not in actions]
    return actions


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


def _applies(statement: Mapping[str, Any], need: Need, action: str, resource: str) -> bool:
    return (
        _principal_matches(statement, need.principal)
        and _element_matches(statement, "Action", action, ignore_case=True)
        and _element_matches(statement, "Resource", resource, ignore_case=False)
        and all(
            _condition_holds(operator, key, values, need.context)
            for operator, block in (statement.get("Condition") or {}).items()
            for key, values in block.items()
        )
    )


def _principal_matches(statement: Mapping[str, Any], principal: tuple[str, str] | None) -> bool:
    if "NotPrincipal" in statement:
        return False  # not evaluated: never used here, and too easy to get wrong
    if principal is None:
        return "Principal" not in statement
    named = statement.get("Principal")
    if named == "*":
        return True
    kind, value = principal
    return isinstance(named, dict) and any(v in ("*", value) for v in _listed(named.get(kind)))


SERVICE_REQUEST_KEYS = ("aws:SourceArn", "aws:SourceAccount", "aws:SourceOrgID", "aws:SourceOrgPaths",
                        "aws:PrincipalServiceName", "aws:PrincipalServiceNamesList")
"""Condition keys only a request an AWS service makes on someone's behalf carries: absent from a role's own."""


def _applies_to_the_role(statement: Mapping[str, Any], arn: str) -> bool:
    """Whether a resource policy's statement may apply to requests of the role of ARN `arn`: its Principal names
    that ARN or anyone (`*`), and none of its conditions on the principal (aws:PrincipalArn, PrincipalAccount and
    PrincipalType, known for the role's own requests; SERVICE_REQUEST_KEYS, absent from them) rules the role out.
    Conditions on other keys may or may not hold: the statement may apply."""
    if not _principal_matches(statement, ("AWS", arn or "*")):
        return False
    context = {"aws:PrincipalType": "AssumedRole"}  # an IRSA session: AssumeRoleWithWebIdentity
    if arn:
        context |= {"aws:PrincipalArn": arn, "aws:PrincipalAccount": _account(arn)}
    known = {key.lower() for key in (*context, *SERVICE_REQUEST_KEYS)}
    return all(
        _condition_holds(operator, key, values, context)
        for operator, block in (statement.get("Condition") or {}).items()
        for key, values in block.items()
        if key.lower() in known and _evaluable(operator, values)
    )


def _evaluable(operator: str, values: Any) -> bool:
    """Whether `_condition_holds` can tell if a condition holds: an operator it evaluates, values without policy
    variables (`${aws:ResourceAccount}`, read as the literal text), and for the ARN operators, ARN patterns of six
    parts (`_arn_like` matches no other). A condition it cannot tell may hold."""
    base = operator.removesuffix("IfExists")
    if base != "Null" and base not in _OPERATORS:
        return False
    listed = [str(v) for v in _listed(values)]
    if any("${" in v for v in listed):
        return False
    return not base.startswith("Arn") or all(v.count(":") >= 5 for v in listed)


def _element_matches(statement: Mapping[str, Any], element: str, value: str, ignore_case: bool) -> bool:
    """Action/NotAction, Resource/NotResource; a trust policy's absent Resource is the role itself."""
    if element in statement:
        return any(glob_match(p, value, ignore_case) for p in _listed(statement[element]))
    if f"Not{element}" in statement:
        return not any(glob_match(p, value, ignore_case) for p in _listed(statement[f"Not{element}"]))
    return element == "Resource"


def _condition_holds(operator: str, key: str, values: Any, context: Mapping[str, str]) -> bool:
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists")
    actual = next((v for k, v in context.items() if k.lower() == key.lower()), None)
    wanted = [str(v).lower() if isinstance(v, bool) else str(v) for v in _listed(values)]
    if base == "Null":
        return str(actual is None).lower() in [w.lower() for w in wanted]
    if actual is None:  # IAM: an absent key matches no value, so only negated and ...IfExists operators hold
        return if_exists or "Not" in base
    compare = _OPERATORS.get(base)
    return compare is not None and compare(str(actual), wanted)


def _arn_like(value: str, pattern: str) -> bool:
    """ArnLike/ArnEquals: each of the six colon-separated ARN parts matched on its own, with wildcards."""
    value_parts, pattern_parts = value.split(":", 5), pattern.split(":", 5)
    return len(value_parts) == len(pattern_parts) == 6 and all(
        glob_match(p, v) for p, v in zip(pattern_parts, value_parts, strict=True)
    )


_OPERATORS: Mapping[str, Callable[[str, list[str]], bool]] = {
    "StringEquals": lambda actual, wanted: actual in wanted,
    "StringNotEquals": lambda actual, wanted: actual not in wanted,
    "StringEqualsIgnoreCase": lambda actual, wanted: actual.lower() in [w.lower() for w in wanted],
    "StringNotEqualsIgnoreCase": lambda actual, wanted: actual.lower() not in [w.lower() for w in wanted],
    "StringLike": lambda actual, wanted: any(glob_match(w, actual) for w in wanted),
    "StringNotLike": lambda actual, wanted: not any(glob_match(w, actual) for w in wanted),
    "ArnEquals": lambda actual, wanted: any(_arn_like(actual, w) for w in wanted),
    "ArnLike": lambda actual, wanted: any(_arn_like(actual, w) for w in wanted),
    "ArnNotEquals": lambda actual, wanted: not any(_arn_like(actual, w) for w in wanted),
    "ArnNotLike": lambda actual, wanted: not any(_arn_like(actual, w) for w in wanted),
    "Bool": lambda actual, wanted: actual.lower() in [w.lower() for w in wanted],
}
"""Condition operators evaluated; any other (ForAnyValue:..., numeric, date) does not hold."""


def _constrains(statement: Mapping[str, Any], constrained_by: Mapping[str, tuple[str, ...]]) -> bool:
    tested = {
        (key.lower(), operator.removesuffix("IfExists"))
        for operator, block in (statement.get("Condition") or {}).items()
        for key in block
    }
    return all(
        any(k == key.lower() and (not operators or op in operators) for k, op in tested)
        for key, operators in constrained_by.items()
    )


# --------------------------------------------------------------------------- the deployment, indexed


class Deployment:
    """The resources of all runs of one deployment, with the look-ups the requirements need."""

    def __init__(self, runs: Sequence[OfflineRun]) -> None:
        self.resources = [r for run in runs for r in run.resources]
        platform = [run for run in runs if run.project == PLATFORM_PROJECT]
        self.platform_outputs: Mapping[str, Any] = platform[0].stack_outputs if platform else {}
        self.documents = rendered_documents(runs)

    def of_type(self, type_: str) -> list[RegisteredResource]:
        return [r for r in self.resources if r.type == type_]

    def by_arn(self, type_: str, arn: str) -> RegisteredResource | None:
        return next((r for r in self.of_type(type_) if arn and r.outputs.get("arn") == arn), None)

    def key(self, reference: str) -> RegisteredResource | None:
        """The KMS key a `kmsKeyId`-style input names, by ARN or key id."""
        return next(
            (
                k
                for type_ in KEY_TYPES
                for k in self.of_type(type_)
                if reference in (k.outputs.get("arn"), k.outputs.get("keyId"), k.id)
            ),
            None,
        )

    def key_statements(self, key: RegisteredResource) -> list[dict[str, Any]]:
        """The key's policy: its own `policy`, or a separate aws.kms.KeyPolicy naming it."""
        names = {key.id, key.outputs.get("arn"), key.outputs.get("keyId")} - {None, ""}
        attached = [p for p in self.of_type("aws:kms/keyPolicy:KeyPolicy") if p.inputs.get("keyId") in names]
        return self.statements(key, "key") + [s for p in attached for s in self.statements(p)]

    def statements(self, resource: RegisteredResource, kind: str | None = None) -> list[dict[str, Any]]:
        return [s for d in self.documents if d.resource is resource and kind in (None, d.kind) for s in d.statements]

    def role_policies(self, role: RegisteredResource) -> list[dict[str, Any]]:
        """The identity statements of a role: inline ones and attached customer-managed policies."""
        names = {role.id, role.outputs.get("name"), role.outputs.get("arn")} - {None, ""}
        statements = self.statements(role, "identity")
        for inline in self.of_type("aws:iam/rolePolicy:RolePolicy"):
            if inline.inputs.get("role") in names:
                statements += self.statements(inline)
        for policy in self.attached_policies(role):
            statements += self.statements(policy)
        return statements

    def resource_grants(self, role: RegisteredResource) -> dict[str, list[dict[str, Any]]]:
        """The Allow statements of the deployment's resource policies (buckets, access points, keys, topics, queues,
        repositories) that may apply to the role's own requests, by where they are ("the key policy of <key>", "the
        resource policy of <resource>"): those whose Principal names the role's ARN (alone or among others) or
        anyone (`*`) and whose conditions on the principal (`_applies_to_the_role`) do not rule the role out, and
        those that allow with NotPrincipal (everyone but whom it names). An account's root as principal grants
        nothing itself (it lets the account's IAM policies decide), so it is not the role's. Each statement is
        as the policy means it: a key policy's `*` resource is its key, a statement without Resource (a
        repository's) is about its holder, and one without Sid is named by its place in its document."""
        arn = str(role.outputs.get("arn") or "")
        grants: dict[str, list[dict[str, Any]]] = {}
        for document in self.documents:
            if document.kind not in ("key", "resource"):
                continue
            holder = document.resource
            itself = self._key_arn(holder) if document.kind == "key" else str(
                holder.inputs.get("repository") or holder.outputs.get("arn") or holder.name)
            for number, statement in enumerate(document.statements, start=1):
                if statement.get("Effect") != "Allow" or not (
                        "NotPrincipal" in statement or _applies_to_the_role(statement, arn)):
                    continue
                resources = _listed(statement.get("Resource", itself))
                meant = {**statement, "Sid": statement.get("Sid") or f"statement {number}",
                         "Resource": [itself if r == "*" and document.kind == "key" else r for r in resources]}
                where = f"the {'key' if document.kind == 'key' else 'resource'} policy of {holder.name}"
                grants.setdefault(where, []).append(meant)
        return grants

    def kms_grants(self, role: RegisteredResource) -> list[RegisteredResource]:
        """The KMS grants of the deployment whose grantee is the role: each lets it use a key with no policy
        statement at all, and with no condition but the grant's encryption-context constraints."""
        arn = role.outputs.get("arn")
        return [g for g in self.of_type("aws:kms/grant:Grant") if arn and g.inputs.get("granteePrincipal") == arn]

    def _key_arn(self, holder: RegisteredResource) -> str:
        """The ARN of the key a key policy is about: the Key's own, or the key a KeyPolicy names."""
        key = holder if holder.type in KEY_TYPES else self.key(str(holder.inputs.get("keyId") or ""))
        return str((key.outputs.get("arn") if key else None) or "*")

    def attached_policies(self, role: RegisteredResource) -> list[RegisteredResource]:
        """The stack's managed policies the role has (`managed_policy_arns`)."""
        return [p for arn in self.managed_policy_arns(role) if (p := self.by_arn("aws:iam/policy:Policy", arn))]

    def unread_policies(self, role: RegisteredResource) -> list[str]:
        """The ARNs of managed policies the role has whose statements this deployment does not hold (AWS-managed
        ones, or another stack's): `role_policies` cannot read them."""
        return [arn for arn in self.managed_policy_arns(role) if not self.by_arn("aws:iam/policy:Policy", arn)]

    def managed_policy_arns(self, role: RegisteredResource) -> list[str]:
        """The ARNs of the managed policies the role has, each once: its own `managedPolicyArns`, and those of the
        resources that attach managed policies to a role by its name (the lake job rules' `ATTACHING`, but for the
        RolePolicy, whose document is its own)."""
        names = {role.id, role.outputs.get("name")} - {None, ""}
        arns = [str(arn) for arn in as_list(role.inputs.get("managedPolicyArns"))]
        for type_, (role_input, policy_input) in ATTACHING.items():
            if policy_input is None:
                continue
            for attaching in self.of_type(type_):
                if names & {str(name) for name in as_list(attaching.inputs.get(role_input))}:
                    arns += [str(arn) for arn in as_list(attaching.inputs.get(policy_input))]
        return list(dict.fromkeys(arns))

    def service_accounts(self) -> list[ServiceAccount]:
        """Service accounts annotated with an IAM role: Kubernetes objects and the ones Helm releases create."""
        accounts = []
        for account in self.of_type("kubernetes:core/v1:ServiceAccount"):
            metadata = {**account.outputs.get("metadata", {}), **account.inputs.get("metadata", {})}
            role = (metadata.get("annotations") or {}).get(ROLE_ARN_ANNOTATION)
            if role:
                accounts.append(ServiceAccount(metadata.get("namespace") or "default", metadata["name"], role, account))
        for release in self.of_type("kubernetes:helm.sh/v3:Release"):
            values = release.inputs.get("values") or {}
            for key in SERVICE_ACCOUNT_VALUES.get(str(release.inputs.get("chart", "")).rsplit("/", 1)[-1], ()):
                values = values.get(key) or {}
            values = values.get("serviceAccount") or {}
            role = (values.get("annotations") or {}).get(ROLE_ARN_ANNOTATION)
            if role and values.get("create", True):
                name = values.get("name") or release.inputs.get("name") or release.name
                accounts.append(ServiceAccount(release.inputs.get("namespace") or "default", name, role, release))
        return accounts

    def pod_role(self, workload: RegisteredResource, spec: Mapping[str, Any]) -> RegisteredResource | None:
        """The IAM role of the service account a workload's pods run as (same namespace)."""
        namespace = (workload.inputs.get("metadata") or {}).get("namespace") or "default"
        name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        account = next((a for a in self.service_accounts() if (a.namespace, a.name) == (namespace, name)), None)
        return self.by_arn("aws:iam/role:Role", account.role_arn) if account else None

    def node_group_names(self, cluster: str) -> list[str]:
        """Names of the managed node groups of `cluster` (pulumi-eks `nodeGroupName`, set by the platform)."""
        return sorted(
            str(g.inputs["nodeGroupName"])
            for g in self.of_type("eks:index:ManagedNodeGroup")
            if str(g.inputs.get("nodeGroupName", "")).startswith(f"{cluster}-")
        )

    def auto_scaling_groups(self, prefix: str) -> list[str]:
        """Names of the Auto Scaling groups the deployment tags, starting with `prefix`."""
        names = {str(t.inputs.get("autoscalingGroupName", "")) for t in self.of_type(AUTOSCALING_TAG)}
        return sorted(n for n in names if n.startswith(prefix))

    def chart(self, chart: str) -> list[RegisteredResource]:
        return [r for r in self.of_type("kubernetes:helm.sh/v3:Release") if r.inputs.get("chart") == chart]

    def role_of(self, source: RegisteredResource) -> RegisteredResource | None:
        """The IAM role of the service account a ServiceAccount object or Helm release creates."""
        account = next((a for a in self.service_accounts() if a.source is source), None)
        return self.by_arn("aws:iam/role:Role", account.role_arn) if account else None


@dataclass(frozen=True)
class ServiceAccount:
    namespace: str
    name: str
    role_arn: str
    source: RegisteredResource

    @property
    def subject(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"


# --------------------------------------------------------------------------- documented requirements


@dataclass(frozen=True)
class Requirement:
    id: str
    summary: str
    doc: str
    check: Callable[[Deployment], Iterator[tuple[str, str]]]
    """Yields (subject, what is missing) for each place the deployment falls short."""

    def findings(self, deployment: Deployment) -> list[Finding]:
        fix = f"{self.summary}, as {self.doc} documents"
        return [finding(DOCUMENTED, self.id, subject, problem, fix) for subject, problem in self.check(deployment)]


def _unmet(subject: str, need: Need, statements: Sequence[Mapping[str, Any]], what: str) -> Iterator[tuple[str, str]]:
    """(subject, problem) when `statements` do not allow all of `need`; `what` names the document in the message."""
    missing = allows(statements, need)
    if missing:
        yield subject, f"{what} does not allow {', '.join(missing)}"


def _account(arn: str) -> str:
    return arn.split(":")[4] if arn.count(":") >= 5 else ""


def _region(arn: str) -> str:
    return arn.split(":")[3] if arn.count(":") >= 5 else ""


def _keys_of(
    deployment: Deployment, type_: str, key_input: str
) -> Iterator[tuple[RegisteredResource, RegisteredResource | None]]:
    for resource in deployment.of_type(type_):
        if reference := resource.inputs.get(key_input):
            yield resource, deployment.key(reference)


def _cloudtrail_needs(deployment: Deployment, build: Callable[[str], Need]) -> Iterator[tuple[str, str]]:
    for trail, key in _keys_of(deployment, "aws:cloudtrail/trail:Trail", "kmsKeyId"):
        if key is None:
            yield trail.name, f"encrypts with {trail.inputs['kmsKeyId']}, a key this deployment does not create"
            continue
        need = build(trail.outputs.get("arn", ""))
        yield from _unmet(key.name, need, deployment.key_statements(key), f"for trail {trail.name}, the key policy")


CLOUDTRAIL_DOC = "https://docs.aws.amazon.com/awscloudtrail/latest/userguide/create-kms-key-policy-for-cloudtrail.html"
CLOUDTRAIL = ("Service", "cloudtrail.amazonaws.com")


def _trail_context(trail_arn: str, **extra: str) -> dict[str, str]:
    return {"aws:SourceArn": trail_arn, "aws:SourceAccount": _account(trail_arn), **extra}


def _cloudtrail_encrypt(deployment: Deployment) -> Iterator[tuple[str, str]]:
    return _cloudtrail_needs(
        deployment,
        lambda trail: Need(
            ("kms:GenerateDataKey*",),
            CLOUDTRAIL,
            context=_trail_context(trail, **{"kms:EncryptionContext:aws:cloudtrail:arn": trail}),
            constrained_by={"kms:EncryptionContext:aws:cloudtrail:arn": (), "aws:SourceArn": ()},
        ),
    )


def _cloudtrail_describe_key(deployment: Deployment) -> Iterator[tuple[str, str]]:
    # DescribeKey carries no encryption context: a statement that requires one never allows it.
    return _cloudtrail_needs(
        deployment,
        lambda trail: Need(
            ("kms:DescribeKey",), CLOUDTRAIL, context=_trail_context(trail), constrained_by={"aws:SourceArn": ()}
        ),
    )


def _cloudtrail_decrypt(deployment: Deployment) -> Iterator[tuple[str, str]]:
    return _cloudtrail_needs(
        deployment, lambda trail: Need(("kms:Decrypt",), CLOUDTRAIL, context=_trail_context(trail))
    )


LOGS_ACTIONS = ("kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*")
LOGS_CONTEXT_KEY = "kms:EncryptionContext:aws:logs:arn"


def _cloudwatch_logs_key(deployment: Deployment) -> Iterator[tuple[str, str]]:
    for group, key in _keys_of(deployment, "aws:cloudwatch/logGroup:LogGroup", "kmsKeyId"):
        arn = group.outputs.get("arn", "")
        if key is None:
            yield group.name, f"is encrypted with {group.inputs['kmsKeyId']}, a key this deployment does not create"
            continue
        need = Need(
            LOGS_ACTIONS,
            ("Service", f"logs.{_region(arn)}.amazonaws.com"),
            context={LOGS_CONTEXT_KEY: arn},
            constrained_by={LOGS_CONTEXT_KEY: ("ArnLike", "ArnEquals")},
        )
        yield from _unmet(key.name, need, deployment.key_statements(key), f"for log group {arn}, the key policy")


SNS_DOC = "https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services"
SNS_KEY_ACTIONS = ("kms:GenerateDataKey*", "kms:Decrypt")


def _topic_keys(deployment: Deployment) -> Iterator[tuple[str, RegisteredResource, RegisteredResource | None]]:
    for topic, key in _keys_of(deployment, "aws:sns/topic:Topic", "kmsMasterKeyId"):
        yield topic.outputs.get("arn", ""), topic, key


def _publishers(deployment: Deployment, topic_arn: str, service: str) -> list[tuple[str, dict[str, str]]]:
    """(publisher, request context) for each resource of `service` wired to publish to the topic."""
    account = _account(topic_arn)
    source = {"aws:SourceAccount": account}
    if service == "cloudwatch":
        return [
            (a.name, {**source, "aws:SourceArn": a.outputs.get("arn", "")})
            for a in deployment.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
            if topic_arn in [*_listed(a.inputs.get("alarmActions")), *_listed(a.inputs.get("okActions"))]
        ]
    if service == "events":  # EventBridge supports no source condition on this statement (SNS_DOC)
        return [
            (t.name, {})
            for t in deployment.of_type("aws:cloudwatch/eventTarget:EventTarget")
            if t.inputs.get("arn") == topic_arn
        ]
    return [
        (b.name, {**source, "aws:SourceArn": f"arn:aws:budgets::{account}:budget/{b.inputs.get('name') or b.id}"})
        for b in deployment.of_type("aws:budgets/budget:Budget")
        if any(topic_arn in _listed(n.get("subscriberSnsTopicArns")) for n in b.inputs.get("notifications") or [])
    ]


def _sns_publisher(service: str) -> Callable[[Deployment], Iterator[tuple[str, str]]]:
    def check(deployment: Deployment) -> Iterator[tuple[str, str]]:
        for topic_arn, topic, key in _topic_keys(deployment):
            publishers = _publishers(deployment, topic_arn, service)
            if publishers and key is None:
                yield (
                    topic.name,
                    f"is encrypted with {topic.inputs['kmsMasterKeyId']}, a key this deployment does not create",
                )
            for publisher, context in publishers if key else []:
                need = Need(SNS_KEY_ACTIONS, ("Service", f"{service}.amazonaws.com"), context=context)
                what = f"for {publisher} publishing to {topic.name}, the key policy"
                yield from _unmet(key.name, need, deployment.key_statements(key), what)

    return check


SAGEMAKER_DOC = (
    "https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-roles.html#sagemaker-roles-createtrainingjob-perms"
)
SAGEMAKER_VPC_ACTIONS = (
    "ec2:CreateNetworkInterface",
    "ec2:CreateNetworkInterfacePermission",
    "ec2:DeleteNetworkInterface",
    "ec2:DeleteNetworkInterfacePermission",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeVpcs",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
)


def _execution_role(deployment: Deployment) -> tuple[RegisteredResource | None, str]:
    arn = deployment.platform_outputs.get("sagemakerExecutionRoleArn", "")
    return deployment.by_arn("aws:iam/role:Role", arn), arn


def _sagemaker(needs: Callable[[Deployment], Iterable[Need]]) -> Callable[[Deployment], Iterator[tuple[str, str]]]:
    def check(deployment: Deployment) -> Iterator[tuple[str, str]]:
        role, arn = _execution_role(deployment)
        if not arn:
            return
        if role is None:
            yield arn, "the platform exports this SageMaker execution role, but the deployment does not create it"
            return
        statements = deployment.role_policies(role)
        for need in needs(deployment):
            yield from _unmet(role.name, need, statements, "the execution role")

    return check


def _sagemaker_vpc(deployment: Deployment) -> Iterable[Need]:
    return [Need(SAGEMAKER_VPC_ACTIONS)]


def _sagemaker_kms(deployment: Deployment) -> Iterable[Need]:
    """Volume key: CreateGrant (SageMaker creates the grant for the instance's volume with the execution role); output
    key: Encrypt and GenerateDataKey for the S3 server-side encryption of the artifacts; inputs: Decrypt through S3.

    The grant is judged with no `kms:GrantIsForAWSResource` in the request: the guide lists kms:CreateGrant without
    a condition, and no SageMaker or KMS page says the key is set when SageMaker makes the volume's grant, so a
    statement that needs it may never apply (infra/ml_platform.py)."""
    key = deployment.platform_outputs.get("dataKeyArn", "")
    if not key:
        return []
    through_s3 = {"kms:ViaService": f"s3.{_region(key)}.amazonaws.com"}
    return [
        Need(("kms:CreateGrant",), resources=(key,)),
        Need(("kms:Encrypt",), resources=(key,)),  # as the guide lists it: SageMaker may call it outside S3
        Need(("kms:GenerateDataKey",), resources=(key,), context=through_s3),
        Need(("kms:Decrypt",), resources=(key,), context=through_s3),
    ]


def _sagemaker_ecr(deployment: Deployment) -> Iterable[Need]:
    url = (deployment.platform_outputs.get("repositoryUrls") or {}).get("training", "")
    repository = next(
        (
            r
            for r in deployment.of_type("aws:ecr/repository:Repository")
            if url and r.outputs.get("repositoryUrl") == url
        ),
        None,
    )
    needs = [Need(("ecr:GetAuthorizationToken",))]
    if repository is not None:
        pull = ("ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage")
        needs.append(Need(pull, resources=(repository.outputs["arn"],)))
    return needs


LBC_DOC = "https://docs.aws.amazon.com/eks/latest/userguide/lbc-helm.html"


def _controller_policy(deployment: Deployment) -> Iterator[tuple[str, str]]:
    documented = json.loads(CONTROLLER_POLICY_FILE.read_text())
    for release in deployment.chart("aws-load-balancer-controller"):
        role = deployment.role_of(release)
        if role is None:
            yield release.name, "the controller's service account names no IAM role this deployment creates"
            continue
        policies = deployment.attached_policies(role)
        if not any(json.loads(p.inputs.get("policy") or "{}") == documented for p in policies):
            attached = ", ".join(p.name for p in policies) or "none"
            yield role.name, f"no attached managed policy equals {CONTROLLER_POLICY_FILE.name} (attached: {attached})"


FLUENT_BIT_DOC = "https://docs.fluentbit.io/manual/pipeline/outputs/cloudwatch"


def _fluent_bit_writes(deployment: Deployment) -> Iterator[tuple[str, str]]:
    group_name = deployment.platform_outputs.get("inferenceLogGroupName", "")
    for release in deployment.chart("aws-for-fluent-bit"):
        values = (release.inputs.get("values") or {}).get("cloudWatchLogs") or {}
        if values.get("logGroupName") != group_name:
            yield release.name, f"ships to {values.get('logGroupName')!r}, not the platform's log group {group_name!r}"
        group = next(
            (g for g in deployment.of_type("aws:cloudwatch/logGroup:LogGroup") if g.outputs.get("name") == group_name),
            None,
        )
        role = deployment.role_of(release)
        if group is None or role is None:
            yield release.name, f"the log group {group_name!r} or the shipper's IAM role is not in this deployment"
            continue
        stream = f"{group.outputs['arn']}:log-stream:{values.get('logStreamPrefix') or ''}example"
        need = Need(("logs:CreateLogStream", "logs:PutLogEvents"), resources=(stream,))
        yield from _unmet(role.name, need, deployment.role_policies(role), "the Fluent Bit role")


FLOW_LOGS_DOC = "https://docs.aws.amazon.com/vpc/latest/userguide/flow-logs-iam-role.html"


def _flow_log_writes(deployment: Deployment) -> Iterator[tuple[str, str]]:
    """Each flow log to CloudWatch Logs: its role may write its group's streams and describe groups and streams."""
    for flow_log in deployment.of_type("aws:ec2/flowLog:FlowLog"):
        if flow_log.inputs.get("logDestinationType", "cloud-watch-logs") != "cloud-watch-logs":
            continue
        role = deployment.by_arn("aws:iam/role:Role", str(flow_log.inputs.get("iamRoleArn") or ""))
        if role is None:
            yield flow_log.name, "delivers to CloudWatch Logs through no IAM role this deployment creates"
            continue
        group, statements = str(flow_log.inputs.get("logDestination") or ""), deployment.role_policies(role)
        needs = [
            Need(("logs:CreateLogStream", "logs:PutLogEvents"), resources=(f"{group}:log-stream:eni-example-all",)),
            Need(("logs:DescribeLogStreams",), resources=(f"{group}:*",)),
            Need(("logs:DescribeLogGroups",)),
        ]
        for need in needs:
            yield from _unmet(role.name, need, statements, "the flow log's role")


IRSA_DOC = "https://docs.aws.amazon.com/eks/latest/userguide/associate-service-account-role.html"


def _irsa_trust(deployment: Deployment) -> Iterator[tuple[str, str]]:
    """Each annotated service account's role trusts exactly it; each IRSA role is some account's."""
    provider = deployment.platform_outputs.get("oidcProviderArn", "")
    issuer = deployment.platform_outputs.get("oidcIssuer") or provider.partition(":oidc-provider/")[2]
    accounts = deployment.service_accounts()
    for account in accounts:
        role = deployment.by_arn("aws:iam/role:Role", account.role_arn)
        if role is None:
            yield account.source.name, f"{account.subject} names {account.role_arn}, a role this deployment lacks"
            continue
        need = Need(
            ("sts:AssumeRoleWithWebIdentity",),
            ("Federated", provider),
            context={f"{issuer}:sub": account.subject, f"{issuer}:aud": "sts.amazonaws.com"},
            constrained_by={f"{issuer}:sub": ("StringEquals",)},
        )
        yield from _unmet(role.name, need, deployment.statements(role, "trust"), f"for {account.subject}, the trust")
    used = {a.role_arn for a in accounts}
    for role in deployment.of_type("aws:iam/role:Role"):
        if _trusts_oidc(deployment.statements(role, "trust")) and role.outputs.get("arn") not in used:
            yield role.name, "trusts the cluster's OIDC provider, but no service account is annotated with it"


def _trusts_oidc(statements: Sequence[Mapping[str, Any]]) -> bool:
    principals = [s.get("Principal") for s in statements]
    return any(
        ":oidc-provider/" in p
        for named in principals
        if isinstance(named, dict)
        for p in _listed(named.get("Federated"))
    )


AUTOSCALER_DOC = "https://github.com/kubernetes/autoscaler/blob/master/cluster-autoscaler/cloudprovider/aws/README.md"
AUTOSCALER_DESCRIBE = (
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeAutoScalingInstances",
    "autoscaling:DescribeLaunchConfigurations",
    "autoscaling:DescribeScalingActivities",
    "ec2:DescribeImages",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeLaunchTemplateVersions",
    "ec2:GetInstanceTypesFromInstanceRequirements",
)
"""The README's "Full Cluster Autoscaler Features Policy", first block (eks:DescribeNodegroup is checked per group)."""
AUTOSCALER_SCALE = ("autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup")
AUTOSCALING_TAG = "aws:autoscaling/tag:Tag"
DISCOVERY_TAG = "k8s.io/cluster-autoscaler"


def _autoscaler_permissions(deployment: Deployment) -> Iterator[tuple[str, str]]:
    """The autoscaler's role may describe, may resize each node group of its cluster, and read each group from EKS.

    A node group's Auto Scaling group is known by the tags the platform puts on it (its name is an input of
    `aws:autoscaling/tag:Tag`); EKS tags it `k8s.io/cluster-autoscaler/<cluster>: owned` and
    `k8s.io/cluster-autoscaler/enabled: true` for auto-discovery, which is the request context here.
    """
    region = str(deployment.platform_outputs.get("region", ""))
    for release in deployment.chart("cluster-autoscaler"):
        role = deployment.role_of(release)
        if role is None:
            yield release.name, "the autoscaler's service account names no IAM role this deployment creates"
            continue
        cluster = str(((release.inputs.get("values") or {}).get("autoDiscovery") or {}).get("clusterName", ""))
        account = _account(role.outputs.get("arn", ""))
        statements = deployment.role_policies(role)
        yield from _unmet(role.name, Need(AUTOSCALER_DESCRIBE), statements, "the autoscaler role")
        discovered = {
            f"aws:ResourceTag/{DISCOVERY_TAG}/{cluster}": "owned",
            f"aws:ResourceTag/{DISCOVERY_TAG}/enabled": "true",
        }
        groups = deployment.node_group_names(cluster)
        if not groups:
            yield release.name, f"discovers the node groups of {cluster!r}, which this deployment does not create"
        for group in groups:
            arn = f"arn:aws:eks:{region}:{account}:nodegroup/{cluster}/{group}/00000000-0000-0000-0000-000000000000"
            need = Need(("eks:DescribeNodegroup",), resources=(arn,))
            yield from _unmet(role.name, need, statements, f"for node group {group}, the autoscaler role")
        for asg in deployment.auto_scaling_groups(f"eks-{cluster}-"):
            arn = (
                f"arn:aws:autoscaling:{region}:{account}:autoScalingGroup:00000000-0000-0000-0000-000000000000:"
                f"autoScalingGroupName/{asg}"
            )
            need = Need(AUTOSCALER_SCALE, resources=(arn,), context=discovered)
            yield from _unmet(role.name, need, statements, f"for Auto Scaling group {asg}, the autoscaler role")


S3_ACTIONS_DOC = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-with-s3-policy-actions.html"
LAKE_ROOT_ENV = "RETAIL_LAKE_ROOT"
BATCH_READS = ("--input", "--bundle")
"""Batch job arguments naming what the job reads (a folder: objects below it, listed by prefix)."""
LAKE_ZONES = ("silver", "predictions", "monitoring", "manifests")
"""The zones under RETAIL_LAKE_ROOT a batch job could write; each writes one, and none of the others."""


@dataclass(frozen=True)
class LakeJob:
    """What a batch command reads and writes under RETAIL_LAKE_ROOT, beside what its arguments name."""

    command: str
    """The module its container runs (a token of its command or args)."""
    reads: tuple[str, ...]
    """Zones it lists and reads."""
    writes: str
    """The zone it puts objects in."""
    written: tuple[str, ...]
    """Files it writes, relative to that zone."""


LAKE_JOBS = (
    LakeJob("cli.score", ("silver",), "predictions", ("run-1/week=1/part-0.parquet", "run-1/manifest.json")),
    LakeJob("cli.monitor", ("predictions", "silver", "monitoring"), "monitoring",
            ("week=200620/report.json", "week=200620/trends.png")),
)
"""`retail score` reads silver runs (its --input names one, or `silver/latest/`, the newest of them) and writes a
run's predictions and manifest; `retail monitor` reads the week's predictions and
silver lines and the earlier weeks' reports, and writes the week's report."""


def _batch_job_access(deployment: Deployment) -> Iterator[tuple[str, str]]:
    """A batch job's role allows what its command, arguments and lake root say it reads and writes, and nothing
    more.

    The role may read the folder the --bundle folder is in: the serving prefix, which holds each served bundle in a
    folder of its manifest's SHA-256, so that a release changes the job's arguments, not its role.
    Reads: s3:ListBucket with the folder as `s3:prefix`, s3:GetObject below it, for each folder its arguments
    name and each zone its command reads; writes: s3:PutObject below the zone its command writes; S3 with
    SSE-KMS needs kms:Decrypt and kms:GenerateDataKey on the data key, requested by S3 (`kms:ViaService`).
    Nothing more: `_beyond_the_job` reads every Allow statement of the role for what it grants past that, and every
    Allow statement of the deployment's resource policies that may apply to the role (`Deployment.resource_grants`):
    a bucket or key policy naming the role grants it what it allows, whatever the role's own policies say. A KMS
    grant to the role is reported too: it lets the role use the key with no condition on how.
    """
    key = str(deployment.platform_outputs.get("dataKeyArn", ""))
    through_s3 = {"kms:ViaService": f"s3.{_region(key)}.amazonaws.com"}
    for job in [r for r in deployment.resources if r.type in BATCH]:
        resource = Resource(job.type, job.name, job.inputs, job.urn)
        for container in containers(resource):
            root = str(env_of(container).get(LAKE_ROOT_ENV) or "").rstrip("/")
            if not root.startswith("s3://"):
                continue
            tokens = {str(t) for t in as_list(container.get("command")) + as_list(container.get("args"))}
            command = next((c for c in LAKE_JOBS if c.command in tokens), None)
            if command is None:
                known = ", ".join(c.command for c in LAKE_JOBS)
                yield job.name, f"runs none of the batch commands this check knows ({known}) on the lake {root}"
                continue
            role = deployment.pod_role(job, pod_spec(resource))
            if role is None:
                yield job.name, "the pods' service account names no IAM role this deployment creates"
                continue
            statements = deployment.role_policies(role)
            for arn in deployment.unread_policies(role):
                yield role.name, f"has {arn} attached, a policy this check cannot read: it may allow beyond what " \
                                 "the job reads and writes"
            needed = [*option_values(container, BATCH_READS), *(f"{root}/{zone}/" for zone in command.reads)]
            for folder in needed:
                for need in _read_needs(folder):
                    yield from _unmet(role.name, need, statements, f"for reading {folder}, the role")
            for file in command.written:
                written = f"{root}/{command.writes}/{file}"
                yield from _unmet(role.name, Need(("s3:PutObject",), resources=(_object_arn(written),)), statements,
                                  f"for writing {written}, the role")
            if key:
                need = Need(("kms:Decrypt", "kms:GenerateDataKey"), resources=(key,), context=through_s3)
                yield from _unmet(role.name, need, statements, "for SSE-KMS objects, the role")
            served = [_serving_prefix(folder) for folder in option_values(container, ("--bundle",))]
            for where, granted in {"": statements, **deployment.resource_grants(role)}.items():
                in_where = f" (in {where})" if where else ""
                for problem in _beyond_the_job(granted, [*needed, *served], f"{root}/{command.writes}/", key):
                    yield role.name, f"{problem}{in_where}, beyond what the job reads and writes"
            for grant in deployment.kms_grants(role):
                operations = ", ".join(str(o) for o in as_list(grant.inputs.get("operations")))
                yield role.name, (f"the KMS grant {grant.name} lets it {operations} with the key "
                                  f"{grant.inputs.get('keyId')}, not only through S3 (a grant takes no "
                                  "kms:ViaService), beyond what the job reads and writes")


def _read_needs(folder: str) -> list[Need]:
    bucket, _, key = folder.removeprefix("s3://").partition("/")
    prefix = key.rstrip("/") + "/" if key.strip("/") else ""
    return [
        Need(("s3:ListBucket",), resources=(f"arn:aws:s3:::{bucket}",), context={"s3:prefix": prefix}),
        Need(("s3:GetObject",), resources=(_object_arn(f"{folder.rstrip('/')}/part-0.parquet"),)),
    ]


JOB_REQUESTS = ("s3:ListBucket", "s3:GetObject", "s3:PutObject", "kms:Decrypt", "kms:GenerateDataKey")
"""Every action a batch job's requests need: its role allows no other."""
PREFIX_TESTS = ("StringEquals", "StringLike")
"""Condition operators whose s3:prefix values bound what s3:ListBucket lists."""


def _beyond_the_job(statements: Sequence[Mapping[str, Any]], reading: Sequence[str], writing: str, key: str
                    ) -> Iterator[str]:
    """What Allow statements that apply to a job's role grant past the requests of a job that reads the folders
    `reading` and writes below `writing` (s3:// URIs): an action not in JOB_REQUESTS; s3:GetObject outside the
    folders it reads, s3:PutObject outside the one it writes; s3:ListBucket on another bucket, or with no s3:prefix
    bound inside the folders it reads; the data key's actions on another key or without S3 as `kms:ViaService`;
    NotAction, NotResource or (in a resource policy) NotPrincipal, which allow all but what they name. Read from the
    statements themselves rather than by asking about sample requests, so that a widening no sample foresaw is found
    too. A resource or prefix is inside a folder when it starts with the folder's path and its `/`: a wildcard before
    that could match anything."""
    objects = {"s3:GetObject": [_object_arn(_folder(f)) for f in reading],
               "s3:PutObject": [_object_arn(_folder(writing))]}
    listed: dict[str, list[str]] = {}  # bucket ARN -> the key prefixes the job lists in it
    for folder in reading:
        bucket, _, prefix = _folder(folder).removeprefix("s3://").partition("/")
        listed.setdefault(f"arn:aws:s3:::{bucket}", []).append(prefix)
    for number, statement in enumerate(statements, start=1):
        if statement.get("Effect") != "Allow":
            continue
        sid = str(statement.get("Sid") or f"statement {number}")
        negated = [element for element in ("NotAction", "NotResource", "NotPrincipal") if element in statement]
        if negated:
            yield f"{sid} allows with {' and '.join(negated)} (all but what they name)"
            continue
        resources = [str(r) for r in as_list(statement.get("Resource"))]
        for action in expand_actions(str(a) for a in as_list(statement.get("Action"))):
            if action not in JOB_REQUESTS:
                yield f"{sid} allows {action} on {', '.join(resources)}"
            elif action in objects:
                yield from (f"{sid} allows {action} on {r}" for r in resources if not _inside(r, objects[action]))
            elif action == "s3:ListBucket":
                prefixes = _condition_values(statement, "s3:prefix", PREFIX_TESTS)
                bound = f"s3:prefix {', '.join(prefixes)}" if prefixes else "no s3:prefix condition"
                for bucket in resources:
                    if bucket not in listed or not prefixes or not all(_inside(p, listed[bucket]) for p in prefixes):
                        yield f"{sid} allows s3:ListBucket on {bucket} with {bound}"
            elif (resources != [key] if key else any("*" in r for r in resources)) or not _through_s3(statement, key):
                yield f"{sid} allows {action} on {', '.join(resources)} without S3 as kms:ViaService"


def _serving_prefix(bundle: str) -> str:
    """The folder a --bundle folder is in (the serving prefix: a folder per served bundle), unless that is a bucket's
    root, which the job may not read whole: then the bundle folder itself."""
    bucket, _, key = bundle.removeprefix("s3://").strip("/").partition("/")
    parent = key.rpartition("/")[0]
    return f"s3://{bucket}/{parent}" if parent else bundle


def _folder(uri: str) -> str:
    return uri.rstrip("/") + "/"


def _inside(pattern: str, folders: Sequence[str]) -> bool:
    return any(pattern.startswith(folder) for folder in folders)


def _condition_values(statement: Mapping[str, Any], key: str, operators: Sequence[str]) -> list[str]:
    """The values `statement` tests `key` against with one of `operators` (condition keys are case-insensitive);
    empty when it tests no such thing, or when another operator tests that key too (which may loosen it)."""
    values: list[str] = []
    for operator, block in (statement.get("Condition") or {}).items():
        for name, tested in block.items():
            if name.lower() == key.lower():
                if operator not in operators:
                    return []
                values += [str(v) for v in as_list(tested)]
    return values


def _through_s3(statement: Mapping[str, Any], key: str) -> bool:
    """Whether `statement` holds only for requests S3 makes (`kms:ViaService` equal to S3's endpoint: in the data
    key's region, or in any one region when there is no key to take it from)."""
    services = _condition_values(statement, "kms:ViaService", ("StringEquals",))
    if key:
        return services == [f"s3.{_region(key)}.amazonaws.com"]
    return len(services) == 1 and re.fullmatch(r"s3\.[a-z0-9-]+\.amazonaws\.com", services[0]) is not None


def _object_arn(uri: str) -> str:
    return "arn:aws:s3:::" + uri.removeprefix("s3://")


REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement(
        "cloudtrail-encrypt",
        "Let cloudtrail.amazonaws.com use kms:GenerateDataKey* under the trail's encryption context and aws:SourceArn",
        CLOUDTRAIL_DOC,
        _cloudtrail_encrypt,
    ),
    Requirement(
        "cloudtrail-describe-key",
        "Let cloudtrail.amazonaws.com use kms:DescribeKey in a statement without an encryption-context condition, "
        "scoped by aws:SourceArn",
        CLOUDTRAIL_DOC,
        _cloudtrail_describe_key,
    ),
    Requirement(
        "cloudtrail-decrypt",
        "Let cloudtrail.amazonaws.com use kms:Decrypt (a trail writing to a bucket with an S3 Bucket Key)",
        CLOUDTRAIL_DOC,
        _cloudtrail_decrypt,
    ),
    Requirement(
        "cloudwatch-logs-key",
        "Let logs.<region>.amazonaws.com use kms:Encrypt, Decrypt, ReEncrypt*, GenerateDataKey* and Describe* "
        "under ArnLike/ArnEquals on kms:EncryptionContext:aws:logs:arn",
        "https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html",
        _cloudwatch_logs_key,
    ),
    Requirement(
        "sns-cloudwatch-alarms",
        "Let cloudwatch.amazonaws.com use kms:GenerateDataKey* and kms:Decrypt on the encrypted topic's key",
        SNS_DOC,
        _sns_publisher("cloudwatch"),
    ),
    Requirement(
        "sns-eventbridge",
        "Let events.amazonaws.com use kms:GenerateDataKey* and kms:Decrypt with no aws:Source* condition "
        "(not supported for EventBridge to encrypted topics)",
        SNS_DOC,
        _sns_publisher("events"),
    ),
    Requirement(
        "sns-budgets",
        "Let budgets.amazonaws.com use kms:GenerateDataKey* and kms:Decrypt on the encrypted topic's key",
        "https://docs.aws.amazon.com/cost-management/latest/userguide/budgets-sns-policy.html",
        _sns_publisher("budgets"),
    ),
    Requirement(
        "sagemaker-vpc",
        "Give the SageMaker execution role the nine EC2 network-interface and describe actions for VPC training jobs",
        SAGEMAKER_DOC,
        _sagemaker(_sagemaker_vpc),
    ),
    Requirement(
        "sagemaker-kms",
        "Give the SageMaker execution role kms:CreateGrant on the volume key, kms:Encrypt/GenerateDataKey on the "
        "output key and kms:Decrypt on the input key",
        SAGEMAKER_DOC,
        _sagemaker(_sagemaker_kms),
    ),
    Requirement(
        "sagemaker-ecr",
        "Give the SageMaker execution role ecr:GetAuthorizationToken and BatchCheckLayerAvailability, "
        "GetDownloadUrlForLayer and BatchGetImage on the training repository",
        SAGEMAKER_DOC,
        _sagemaker(_sagemaker_ecr),
    ),
    Requirement(
        "lb-controller-policy",
        f"Attach the controller's published IAM policy unchanged ({CONTROLLER_POLICY_FILE.name}, "
        "see infra/data/README.md)",
        LBC_DOC,
        _controller_policy,
    ),
    Requirement(
        "fluent-bit-log-group",
        "Let the Fluent Bit role CreateLogStream and PutLogEvents on the platform's inferenceLogGroupName "
        "(log group ARN with :* for these actions)",
        FLUENT_BIT_DOC,
        _fluent_bit_writes,
    ),
    Requirement(
        "cluster-autoscaler-permissions",
        "Give the Cluster Autoscaler role the describe actions, eks:DescribeNodegroup on its cluster's node groups "
        "and SetDesiredCapacity/TerminateInstanceInAutoScalingGroup on their Auto Scaling groups",
        AUTOSCALER_DOC,
        _autoscaler_permissions,
    ),
    Requirement(
        "batch-job-s3-access",
        "Let a batch job's role list and read what its --input and --bundle name and the zones its command reads "
        "(retail monitor: <RETAIL_LAKE_ROOT>/predictions/, silver/, monitoring/), put objects under the zone it "
        "writes (retail score: predictions/, retail monitor: monitoring/) and use the data key through S3, and "
        "nothing more: no other action, bucket, folder, listing prefix or key in any of its Allow statements, nor "
        "in a statement of a bucket, key or other resource policy of the stack that may apply to the role (naming "
        "it or anyone, with no condition on the principal that rules it out), and no KMS grant to it",
        S3_ACTIONS_DOC,
        _batch_job_access,
    ),
    Requirement(
        "vpc-flow-logs-role",
        "Let a flow log's role CreateLogStream, PutLogEvents and DescribeLogStreams on its log group and "
        "DescribeLogGroups (logs:CreateLogGroup, also listed, is not needed: the group is declared)",
        FLOW_LOGS_DOC,
        _flow_log_writes,
    ),
    Requirement(
        "irsa-trust",
        "Trust exactly system:serviceaccount:<namespace>:<name> of the service account annotated with the role "
        "(StringEquals on <issuer>:sub, aud sts.amazonaws.com)",
        IRSA_DOC,
        _irsa_trust,
    ),
)


def requirement_findings(runs: Sequence[OfflineRun]) -> list[Finding]:
    deployment = Deployment(runs)
    return [f for requirement in REQUIREMENTS for f in requirement.findings(deployment)]


# --------------------------------------------------------------------------- entry point


def raw_document_findings(runs: Sequence[OfflineRun]) -> list[Finding]:
    """parliament's and the documented-permission findings, before waivers."""
    findings = []
    for document in rendered_documents(runs):
        unrendered = _unrendered(document)
        findings += [unrendered] if unrendered else parliament_findings(document)
    return findings + requirement_findings(runs)


def document_findings(runs: Sequence[OfflineRun], waivers: Sequence[Waiver] | None = None) -> list[Finding]:
    """Every finding on the runs' policy documents, accepted ones carrying their waiver's reason."""
    return apply_waivers(raw_document_findings(runs), load_waivers() if waivers is None else waivers)
