"""What AWS, pulumi-eks and Kubernetes would compute, for Pulumi's mock runtime.

The one place the offline preview and the tests get their fake provider results from.
Mocks echo a resource's inputs back as its outputs; `PlatformMocks` adds what the real
provider computes: ids, ARNs, auto-generated names, URLs, the caller's account, the
region's availability zones, the EKS cluster's kubeconfig and OIDC issuer, and the
`metadata.name` of Kubernetes objects, the generated value of a random password, what
the served-model provider publishes, the name, ARN and artifact location SageMaker gives
a training job (not its metrics: the job's results are not invented), the registry's
description of the placeholder model package a service preview serves, and the outputs
of the stacks a StackReference names (given to `PlatformMocks(stack_outputs=...)`, e.g.
the platform's offline run).

Nothing a controller in the cluster would write is invented: an Ingress has no load
balancer status here, so nothing the program derives from it can pass unnoticed.
Outputs that are references to other resources (e.g. pulumi-eks `Cluster.eksCluster`
or `ManagedNodeGroup.nodeGroup`) are not filled: the program does not read them.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from typing import Any

import pulumi

from infra.providers.kinds import DYNAMIC_TYPE, REGISTERED_PACKAGE, SERVED_MODEL, TRAINING_JOB
from infra.providers.package_facts import (
    BUNDLE_MANIFEST,
    CHAMPION_ARN,
    GATE_PASSED,
    HOLDOUT_RUN,
    NO_CHAMPION,
    REPORT_SHA256,
    SERVED,
    report_metrics,
    sha256_hex,
    verified_facts,
)
from infra.providers.served_model import bundle_folder

ACCOUNT_ID = "123456789012"
DEFAULT_REGION = "ap-southeast-1"
OIDC_ID = "EXAMPLED539D4633E53DE1B71EXAMPLE"
PLACEHOLDER_MANIFEST = json.dumps({"family": "offline", "files": {}}).encode()


def _placeholder_bundle() -> bytes:
    """The placeholder's model.tar.gz: a bundle archive holding only its manifest."""
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as archive:
        member = tarfile.TarInfo(BUNDLE_MANIFEST)
        member.size = len(PLACEHOLDER_MANIFEST)
        archive.addfile(member, io.BytesIO(PLACEHOLDER_MANIFEST))
    return packed.getvalue()


PLACEHOLDER_MODEL = "s3://offline/registry/local/offline/model.tar.gz"
PLACEHOLDER_REPORT_URI = "s3://offline/registry/local/offline/validation.json"
PLACEHOLDER_REPORT = json.dumps({"gate": {"passed": True}, "lineage": {"run_id": "offline"},
                                 "bundle_sha256": sha256_hex(PLACEHOLDER_MANIFEST)}).encode()
"""The placeholder package's validation report: the verdict and run its metadata states, no metrics, and the
digest of the placeholder bundle (`PLACEHOLDER_BUNDLE`, whose manifest is `PLACEHOLDER_MANIFEST`)."""


def _suffix(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()[:7]


def _service(token: str) -> str:
    """`aws:s3/bucket:Bucket` -> `s3`."""
    return token.split(":")[1].split("/")[0]


class PlatformMocks(pulumi.runtime.Mocks):
    """Mocks for the AWS, EKS and Kubernetes providers this project uses."""

    def __init__(self, stack_outputs: dict[str, dict[str, Any]] | None = None) -> None:
        self.region = DEFAULT_REGION
        self.stack_outputs = dict(stack_outputs or {})
        """Outputs of each stack a StackReference may name, by fully qualified stack name."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        outputs = dict(args.inputs)
        if args.typ == "pulumi:providers:aws":
            self.region = args.inputs.get("region", self.region)
            return f"{args.name}-provider-id", outputs
        if args.typ == "pulumi:pulumi:StackReference":
            return self._stack_reference(args.inputs["name"])
        if args.typ == "random:index/randomPassword:RandomPassword":
            outputs["result"] = f"offline-{hashlib.sha256(args.name.encode()).hexdigest()[:32]}"
            return f"{args.name}-id", outputs
        if args.typ == DYNAMIC_TYPE and args.inputs.get("kind") == SERVED_MODEL:
            published = hashlib.sha256(str(args.inputs.get("model_package_arn")).encode()).hexdigest()
            outputs.update(
                model_uri=bundle_folder(str(args.inputs.get("target_uri")), published),
                manifest_sha256=published, found_sha256=published, package_version=1,
                model_data_url="s3://offline/model.tar.gz",
            )
            return str(args.inputs.get("target_uri")), outputs
        if args.typ == DYNAMIC_TYPE and args.inputs.get("kind") == TRAINING_JOB:
            return self._training_job(args.inputs, outputs)
        if args.typ == DYNAMIC_TYPE and args.inputs.get("kind") == REGISTERED_PACKAGE:
            arn = str(args.inputs.get("model_package_arn"))
            # The placeholder cannot say what the stack serves now: it stands for the stack's first deploy.
            objects = {PLACEHOLDER_REPORT_URI: PLACEHOLDER_REPORT, PLACEHOLDER_MODEL: _placeholder_bundle()}
            placeholder = verified_facts(self._placeholder_package(arn), objects.__getitem__)
            outputs["package"] = {**placeholder, SERVED: {"arn": NO_CHAMPION}}
            outputs["served_history"] = []
            return arn, outputs
        if args.typ.startswith("kubernetes:"):
            return self._kubernetes(args, outputs)
        if args.typ.startswith("eks:"):
            outputs.update(self._eks(args))
            return f"{args.name}-id", outputs
        if args.typ.startswith("aws:"):
            return self._aws(args, outputs)
        return f"{args.name}-id", outputs

    def _training_job(self, inputs: dict[str, Any], outputs: dict) -> tuple[str, dict]:
        """DescribeTrainingJob's name, ARN and S3ModelArtifacts (`<output path><job>/output/model.tar.gz`)."""
        name = f"{inputs['name_prefix']}-offline"
        outputs.update(
            job_name=name,
            job_arn=f"arn:aws:sagemaker:{self.region}:{ACCOUNT_ID}:training-job/{name}",
            model_artifact_uri=f"{str(inputs['output_uri']).rstrip('/')}/{name}/output/model.tar.gz",
        )
        return name, outputs

    @staticmethod
    def _placeholder_package(arn: str) -> dict[str, Any]:
        """DescribeModelPackage of the version `infra.offline.deploy_time_placeholders` serves: the group's first
        (`.../1`, so registered when there was no champion), approved after passing the gate, with its lineage and
        `PLACEHOLDER_REPORT` recorded as its validation report (ModelMetrics) beside its bundle (the offline
        report labels the rules judging it as judged at deploy time only)."""
        return {
            "ModelPackageArn": arn,
            "ModelPackageVersion": int(arn.rsplit("/", 1)[-1]),
            "ModelApprovalStatus": "Approved",
            "InferenceSpecification": {"Containers": [{"ModelDataUrl": PLACEHOLDER_MODEL}]},
            "ModelMetrics": report_metrics(PLACEHOLDER_REPORT_URI, PLACEHOLDER_REPORT),
            "CustomerMetadataProperties": {
                GATE_PASSED: "true",
                HOLDOUT_RUN: "offline",
                CHAMPION_ARN: NO_CHAMPION,
                "lineage:data_hash": "0" * 64,
                "lineage:code_version": "offline",
                "lineage:validation_report": PLACEHOLDER_REPORT_URI,
                REPORT_SHA256: sha256_hex(PLACEHOLDER_REPORT),
            },
        }

    def _stack_reference(self, name: str) -> tuple[str, dict]:
        if name not in self.stack_outputs:
            known = ", ".join(sorted(self.stack_outputs)) or "none"
            raise KeyError(f"StackReference to {name!r}: no outputs given to PlatformMocks (known: {known})")
        outputs = self.stack_outputs[name]
        return name, {"name": name, "outputs": outputs, "secretOutputNames": ["kubeconfig"]}

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": ACCOUNT_ID,
                "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/offline-preview",
                "userId": "AIDAOFFLINEPREVIEW",
                "id": ACCOUNT_ID,
            }
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return {
                "id": self.region,
                "names": [f"{self.region}{letter}" for letter in "abc"],
                "zoneIds": [f"{self.region}-az{i}" for i in (1, 2, 3)],
            }
        if args.token == "aws:ec2/getPrefixList:getPrefixList":
            return {"id": "pl-6fa54006", "name": args.args.get("name"), "cidrBlocks": ["52.219.0.0/20", "3.5.144.0/22"]}
        if args.token == "aws:lb/getHostedZoneId:getHostedZoneId":
            return {"id": "Z1LMS91P8CMLE5"}
        if args.token == "aws:eks/getNodeGroup:getNodeGroup":
            return self._node_group(args.args["clusterName"], args.args["nodeGroupName"])
        raise NotImplementedError(f"PlatformMocks has no result for invoke {args.token}; add it in infra/mocks.py")

    def _node_group(self, cluster: str, node_group: str) -> dict:
        """DescribeNodegroup's answer: EKS names a managed node group's Auto Scaling group eks-<group>-<uuid>."""
        uuid = hashlib.sha1(f"{cluster}/{node_group}".encode()).hexdigest()
        asg = f"eks-{node_group}-{uuid[:8]}-{uuid[8:12]}-{uuid[12:16]}-{uuid[16:20]}-{uuid[20:32]}"
        return {
            "id": f"{cluster}:{node_group}",
            "clusterName": cluster,
            "nodeGroupName": node_group,
            "arn": f"arn:aws:eks:{self.region}:{ACCOUNT_ID}:nodegroup/{cluster}/{node_group}/{uuid[:32]}",
            "resources": [{"autoscalingGroups": [{"name": asg}], "remoteAccessSecurityGroupId": ""}],
        }

    def _arn(self, token: str, resource: str, *, regional: bool = True) -> str:
        region = self.region if regional else ""
        return f"arn:aws:{_service(token)}:{region}:{ACCOUNT_ID}:{resource}"

    def _aws(self, args: pulumi.runtime.MockResourceArgs, outputs: dict) -> tuple[str, dict]:
        name, token, inputs = args.name, args.typ, args.inputs
        physical = f"{name}-{_suffix(name)}"
        if token == "aws:s3/bucket:Bucket":
            bucket = inputs.get("bucket") or physical
            outputs.update(bucket=bucket, arn=f"arn:aws:s3:::{bucket}", region=self.region)
            return bucket, outputs
        if token == "aws:kms/key:Key":
            key_id = f"mrk-{hashlib.sha1(name.encode()).hexdigest()[:24]}"
            outputs.update(keyId=key_id, arn=self._arn(token, f"key/{key_id}"))
            return key_id, outputs
        if token == "aws:iam/role:Role":
            role = inputs.get("name") or physical
            outputs.update(name=role, arn=f"arn:aws:iam::{ACCOUNT_ID}:role/{role}")
            return role, outputs
        if token == "aws:ecr/repository:Repository":
            repo = inputs.get("name") or physical
            outputs.update(
                name=repo,
                arn=self._arn(token, f"repository/{repo}"),
                repositoryUrl=f"{ACCOUNT_ID}.dkr.ecr.{self.region}.amazonaws.com/{repo}",
            )
            return repo, outputs
        if token == "aws:cloudwatch/logGroup:LogGroup":
            group = inputs.get("name") or physical
            outputs.update(name=group, arn=self._arn("aws:logs", f"log-group:{group}"))
            return group, outputs
        if token == "aws:sns/topic:Topic":
            topic = inputs.get("name") or physical
            arn = self._arn(token, topic)
            outputs.update(name=topic, arn=arn)
            return arn, outputs
        if token == "aws:cloudwatch/eventRule:EventRule":
            rule = inputs.get("name") or physical
            outputs.update(name=rule, arn=self._arn("aws:events", f"rule/{rule}"))
            return rule, outputs
        if token == "aws:cloudwatch/metricAlarm:MetricAlarm":
            outputs["arn"] = self._arn(token, f"alarm:{inputs['name']}")
            return inputs["name"], outputs
        if token == "aws:cloudtrail/trail:Trail":
            outputs["arn"] = self._arn(token, f"trail/{inputs['name']}")
            return inputs["name"], outputs
        if token == "aws:acm/certificate:Certificate":
            domain = inputs["domainName"]
            outputs["arn"] = self._arn(token, f"certificate/{_suffix(domain)}")
            outputs["domainValidationOptions"] = [
                {
                    "domainName": domain,
                    "resourceRecordName": f"_{_suffix(domain + 'name')}.{domain}.",
                    "resourceRecordType": "CNAME",
                    "resourceRecordValue": f"_{_suffix(domain + 'value')}.acm-validations.aws.",
                }
            ]
            return outputs["arn"], outputs
        if token == "aws:route53/record:Record":
            outputs["fqdn"] = inputs["name"].rstrip(".")
            return f"{inputs['zoneId']}_{inputs['name']}_{inputs['type']}", outputs
        if token == "aws:sagemaker/modelPackageGroup:ModelPackageGroup":
            group = inputs["modelPackageGroupName"]
            outputs["arn"] = self._arn(token, f"model-package-group/{group}")
            return group, outputs
        resource_id = f"{name}-{_suffix(token + name)}"
        outputs.setdefault("arn", self._arn(token, resource_id))
        return resource_id, outputs

    def _eks(self, args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
        if args.typ != "eks:index:Cluster":
            return {}
        cluster = args.inputs.get("name") or args.name
        issuer = f"oidc.eks.{self.region}.amazonaws.com/id/{OIDC_ID}"
        endpoint = f"https://{OIDC_ID}.gr7.{self.region}.eks.amazonaws.com"
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": cluster, "cluster": {"server": endpoint}}],
            "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": "aws"}}],
            "current-context": cluster,
            "users": [{"name": "aws", "user": {}}],
        }
        return {
            "kubeconfig": kubeconfig,
            "kubeconfigJson": json.dumps(kubeconfig),
            "oidcIssuer": issuer,
            "oidcProviderUrl": f"https://{issuer}",
            "oidcProviderArn": f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{issuer}",
            "clusterSecurityGroupId": f"sg-{_suffix(cluster + 'cluster')}",
            "nodeSecurityGroupId": f"sg-{_suffix(cluster + 'node')}",
        }

    def _kubernetes(self, args: pulumi.runtime.MockResourceArgs, outputs: dict) -> tuple[str, dict]:
        metadata = dict(outputs.get("metadata") or {})
        metadata.setdefault("name", f"{args.name}-{_suffix(args.name)}")
        outputs["metadata"] = metadata
        namespace = metadata.get("namespace")
        resource_id = f"{namespace}/{metadata['name']}" if namespace else metadata["name"]
        return resource_id, outputs
