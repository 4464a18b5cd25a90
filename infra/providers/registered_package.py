"""`RegisteredPackage`: what the SageMaker registry says about the model package a deploy serves, read at deploy time.

Its output `package` (approval status, gate verdict, held-out run and macro-F1, lineage:
`infra.providers.package_facts`; and `served`, the version it takes over from) is the
`ServedModel`'s `package` input, so the policy pack judges the served version before it
is published: at `pulumi up` the facts are read first and the ServedModel is registered
with them. In a `pulumi preview` of a new package they are not known yet, and the
lifecycle rules say so instead of judging.

`served` is what the promotion is judged against (policies/rules/lifecycle.py): the
version this stack served until this deploy, with its own held-out run and macro-F1 read
from the registry now, or `{"arn": "none"}` when the stack served nothing before (the
resource's first deploy). A new package ARN is an update, not a replacement, so the
provider still has the state of the version it takes over from; `served_history` keeps
every ARN the stack served before, and serving one of them again is a rollback
(`served.rollback`), which the rules exempt from the comparison. Redeploying the version
served now keeps the comparison made when it was promoted.

The registry can change under a deployed package (UpdateModelPackage: a version rejected
after its deploy, its metadata rewritten), so `diff` reads the facts again and reports a
change when they differ from the state's, and `pulumi refresh` reads them too. Deleting
the resource changes nothing in the registry.

The gate verdict, held-out run and macro-F1 (of the package and of the version served
before it) come from the validation report whose URI and sha256 the registration recorded
in the package's ModelMetrics, and which belongs to the package's own model
(`package_facts.verified_facts`), not from the rewritable metadata;
`package.report.problems` names any disagreement, which served-version-report-verified
fails on. Reading the report (and a local bundle's model.tar.gz) needs s3:GetObject and
kms:Decrypt; s3:ListBucket too, or a deleted report reads as AccessDenied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi
from botocore.exceptions import BotoCoreError, ClientError
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

from infra.providers import clients
from infra.providers.kinds import REGISTERED_PACKAGE
from infra.providers.package_facts import NO_CHAMPION, SERVED, UNANCHORED, ReportUnavailable, verified_facts

ACCESS_DENIED = ("AccessDenied", "403", "Forbidden")
"""The codes S3's GetObject answers a denied read with (HeadObject-style errors carry only the status)."""


def report_reader(region: str) -> Callable[[str], bytes]:
    """Reads an `s3://bucket/key` report; ReportUnavailable says why it could not."""
    s3 = clients.s3(region)

    def read(uri: str) -> bytes:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        if not uri.startswith("s3://") or not bucket or not key:
            raise ReportUnavailable("not an s3://bucket/key URI")
        try:
            return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code") or str(error)
            if code in ACCESS_DENIED:
                code = (f"{code}: either this role lacks s3:GetObject on s3://{bucket}/{key} or kms:Decrypt on "
                        f"its KMS key, or the object does not exist and the role lacks s3:ListBucket on {bucket} "
                        "(without it S3 answers a missing key with AccessDenied)")
            raise ReportUnavailable(code) from error
        except BotoCoreError as error:
            raise ReportUnavailable(str(error)) from error

    return read


def described(props: dict[str, Any]) -> dict[str, Any]:
    """The facts of the package `props` names, as the registry and its validation report have them now."""
    client = clients.sagemaker(props["region"])
    description = client.describe_model_package(ModelPackageName=props["model_package_arn"])
    return verified_facts(description, report_reader(props["region"]))


def nothing_served() -> dict[str, Any]:
    """`served` of the stack's first deploy."""
    return {"arn": NO_CHAMPION}


def served_before(region: str, arn: str) -> dict[str, Any]:
    """What the comparison needs of the version served before this deploy (`arn`), as its verified report has it
    now; `report_problems` when its report does not check out (then its figures are unknown), or `unanchored`
    when it was registered before registrations recorded the report (ModelMetrics cannot be added later, so
    this is the one promotion away from such a version, which the rules do not compare: docs/policy.md)."""
    facts = described({"region": region, "model_package_arn": arn})
    served = {"arn": arn, "holdout_run": facts["holdout_run"], "macro_f1": facts["macro_f1"], "rollback": False}
    if facts["report"]["problems"] == [UNANCHORED]:
        served["unanchored"] = True
    elif facts["report"]["problems"]:
        served["report_problems"] = facts["report"]["problems"]
    return served


class RegisteredPackageProvider(ResourceProvider):
    """Reads a model package's facts; writes nothing; holds no client (it is pickled)."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        """The stack's first served version: nothing was served before it."""
        package = {**described(props), SERVED: nothing_served()}
        return CreateResult(props["model_package_arn"], {**props, "package": package, "served_history": []})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changes = [key for key in ("model_package_arn", "region") if olds.get(key) != news.get(key)]
        if not changes and self._registry_changed(olds, news):
            changes = ["package"]
        return DiffResult(changes=bool(changes), replaces=[], stables=[], delete_before_replace=False)

    @staticmethod
    def _registry_changed(olds: dict[str, Any], news: dict[str, Any]) -> bool:
        """True when the registry's facts of the package differ from those the state holds (H1: a later rejection)."""
        recorded = {k: v for k, v in (olds.get("package") or {}).items() if k != SERVED}
        return described(news) != recorded

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """The facts read again; a new ARN is judged against the version served until now."""
        previous = olds.get("model_package_arn")
        history = list(olds.get("served_history") or [])
        if news["model_package_arn"] == previous:
            served = (olds.get("package") or {}).get(SERVED) or nothing_served()
        else:
            served = served_before(news["region"], previous)
            served["rollback"] = news["model_package_arn"] in history
            history = [arn for arn in [*history, previous] if arn and arn != news["model_package_arn"]]
        package = {**described(news), SERVED: served}
        return UpdateResult({**news, "package": package, "served_history": history})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        served = (props.get("package") or {}).get(SERVED) or nothing_served()
        return ReadResult(id_, {**props, "package": {**described(props), SERVED: served}})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing to undo: reading a package leaves the registry as it was."""


class RegisteredPackage(pulumi.dynamic.Resource):
    """The facts of one model package version (`package`), for the ServedModel that serves it."""

    package: pulumi.Output[dict]
    served_history: pulumi.Output[list]

    def __init__(
        self,
        name: str,
        *,
        region: pulumi.Input[str],
        model_package_arn: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "kind": REGISTERED_PACKAGE,
            "region": region,
            "model_package_arn": model_package_arn,
            "package": None,
            "served_history": None,
        }
        super().__init__(RegisteredPackageProvider(), name, props, opts)
