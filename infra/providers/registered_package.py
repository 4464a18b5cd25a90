"""`RegisteredPackage`: what the SageMaker registry says about the model package a deploy serves, read at deploy time.

Its output `package` (approval status, gate verdict, comparison with the champion on the
same held-out weeks, lineage: `infra.providers.package_facts`) is the `ServedModel`'s
`package` input, so the policy pack judges the served version before it is published:
at `pulumi up` the facts are read first and the ServedModel is registered with them. In
a `pulumi preview` of a new package they are not known yet, and the lifecycle rules say
so instead of judging.

A new package ARN replaces the resource (it is another package); `pulumi refresh` reads
the facts again (an approval revoked since the last deploy). Deleting it changes nothing
in the registry.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider

from infra.providers import clients
from infra.providers.kinds import REGISTERED_PACKAGE
from infra.providers.package_facts import package_facts


def described(props: dict[str, Any]) -> dict[str, Any]:
    """The facts of the package `props` names, as the registry has them now."""
    client = clients.sagemaker(props["region"])
    return package_facts(client.describe_model_package(ModelPackageName=props["model_package_arn"]))


class RegisteredPackageProvider(ResourceProvider):
    """Reads a model package's facts; writes nothing; holds no client (it is pickled)."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(props["model_package_arn"], {**props, "package": described(props)})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changes = [key for key in ("model_package_arn", "region") if olds.get(key) != news.get(key)]
        return DiffResult(changes=bool(changes), replaces=changes, stables=[], delete_before_replace=False)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, {**props, "package": described(props)})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing to undo: reading a package leaves the registry as it was."""


class RegisteredPackage(pulumi.dynamic.Resource):
    """The facts of one model package version (`package`), for the ServedModel that serves it."""

    package: pulumi.Output[dict]

    def __init__(
        self,
        name: str,
        *,
        region: pulumi.Input[str],
        model_package_arn: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {"kind": REGISTERED_PACKAGE, "region": region, "model_package_arn": model_package_arn, "package": None}
        super().__init__(RegisteredPackageProvider(), name, props, opts)
