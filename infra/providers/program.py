"""The inline Pulumi program of `retail train --cloud`: a TrainingJob, then a ModelVersion the gate approves.

It runs as its own project (`retail-mlops-training`, stack `train-<platform stack>`) and
reads everything it needs from the platform stack's outputs (`training_inputs`): the VPC
and private subnets, the SageMaker role, the lake buckets, the data key's ARN, the model
package group and the image repositories. `training_offline_run` runs the same program
under the mock runtime, for the offline policy check.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.automation import TRAINING_PROJECT
from infra.offline import OfflineRun, run_offline
from infra.providers.model_version import ModelVersion
from infra.providers.package_facts import holdout_run_of, job_report_uri
from infra.providers.sourcedir import code_version, image_tag
from infra.providers.training_job import TrainingJob
from ml.evaluate import Metrics, apply_gate
from ml.lineage import git_commit
from ml.schema import TRAINABLE_LABELS
from ml.selection import ranking_key
from ml.settings import GateSettings

DEFAULT_FAMILIES = ("xgboost", "logistic_regression")
"""What `retail train --cloud` trains unless told otherwise (names from ml.families.FAMILIES)."""
REQUIRED_OUTPUTS = (
    "vpcId",
    "privateSubnetIds",
    "lakeBuckets",
    "repositoryUrls",
    "sagemakerExecutionRoleArn",
    "modelPackageGroupName",
    "dataKeyArn",
)
"""Platform stack outputs the program cannot do without."""
GATE_FLAGS = {"gate-min-accuracy": "min_accuracy", "gate-min-macro-f1": "min_macro_f1",
              "gate-min-class-precision": "min_class_precision"}
"""ml/train.py's gate flags (hyperparameter names, which ml/sagemaker_entry.py passes as `--<name>`) and the
GateSettings field each sets."""
METRIC_PATTERN = r"{name}=([-+0-9.eE]+);"
"""ml/train.py prints `name=value;` lines, e.g. `xgboost_holdout_macro_f1=0.998;`."""
REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


class MissingPlatformOutputs(ValueError):
    """The platform stack lacks outputs training needs; the message names them."""


@dataclass(frozen=True)
class TrainingInputs:
    """Everything the program needs; `training_inputs` gathers it from the platform stack and the lake."""

    stack: str
    region: str
    vpc_id: str
    subnet_ids: list[str]
    role_arn: str
    data_key_arn: str
    """The data KMS key's ARN: volume and output encryption (CreateTrainingJob takes no alias there)."""
    group_name: str
    artifacts_bucket: str
    image_uri: str
    """The training image, `<repository>@sha256:...` (infra.images.ensure_image)."""
    inference_image_uri: str
    train_uri: str
    code_version: str
    data_hash: str
    families: tuple[str, ...]
    tags: Mapping[str, str] = field(default_factory=dict)
    hyperparameters: Mapping[str, str] = field(default_factory=dict)
    use_spot: bool = True
    instance_type: str = "ml.m5.xlarge"
    instance_count: int = 1
    """Above 1, XGBoost trains distributed over the instances (ml/cluster.py); `families` must be xgboost alone."""


def require_outputs(stack: str, outputs: Mapping[str, Any]) -> None:
    """MissingPlatformOutputs unless the platform stack has every output training reads."""
    missing = [key for key in REQUIRED_OUTPUTS if not outputs.get(key)]
    missing += [f"repositoryUrls.{image}" for image in ("training", "inference")
                if outputs.get("repositoryUrls") and not outputs["repositoryUrls"].get(image)]
    if missing:
        raise MissingPlatformOutputs(
            f"the platform stack {stack!r} has no output(s) {', '.join(missing)}: "
            f"deploy the current platform (`retail infra up --stack {stack}`) before training"
        )


def require_distributable(families: tuple[str, ...], instance_count: int) -> None:
    """ValueError unless `families` can train on `instance_count` instances: several train xgboost alone."""
    if instance_count > 1 and families != ("xgboost",):
        raise ValueError(f"retail:training.instanceCount is {instance_count}: a multi-instance job trains the xgboost "
                         f"family only (the others cannot train distributed), not {', '.join(families)}; "
                         "train with --families xgboost, or set instanceCount to 1")


def training_inputs(
    stack: str,
    outputs: Mapping[str, Any],
    *,
    data_hash: str,
    train_uri: str,
    code_version: str,
    image_uri: str,
    families: tuple[str, ...] = DEFAULT_FAMILIES,
    use_spot: bool = True,
    tags: Mapping[str, str] | None = None,
    region: str | None = None,
    instance_type: str = "ml.m5.xlarge",
    instance_count: int = 1,
) -> TrainingInputs:
    """The program's inputs from the platform stack's outputs; MissingPlatformOutputs names any that are absent, a
    ValueError families a multi-instance job cannot train."""
    require_outputs(stack, outputs)
    require_distributable(tuple(families), instance_count)
    return TrainingInputs(
        stack=stack,
        region=region or outputs.get("region") or "ap-southeast-1",
        vpc_id=outputs["vpcId"],
        subnet_ids=list(outputs["privateSubnetIds"]),
        role_arn=outputs["sagemakerExecutionRoleArn"],
        data_key_arn=outputs["dataKeyArn"],
        group_name=outputs["modelPackageGroupName"],
        artifacts_bucket=outputs["lakeBuckets"]["artifacts"],
        image_uri=image_uri,
        # The registered version names an image that exists and holds the code that made the model:
        # the training image (this platform serves versions with its own inference image, by digest).
        inference_image_uri=image_uri,
        train_uri=train_uri,
        code_version=code_version,
        data_hash=data_hash,
        families=tuple(families),
        tags=dict(tags or {}),
        use_spot=use_spot,
        instance_type=instance_type,
        instance_count=instance_count,
    )


def platform_tags(stack: str, outputs: Mapping[str, Any], project_dir: Path) -> dict[str, str]:
    """The platform's cost and ownership tags, for the training stack's resources and the job.

    The platform stack's `defaultTags` output when it has one; else the tags its
    `Pulumi.<stack>.yaml` gives (project, environment, owner, cost-center), as
    `infra.config` derives them. Empty values are left out, so the policy check says which
    tag is missing.
    """
    if outputs.get("defaultTags"):
        return {str(k): str(v) for k, v in dict(outputs["defaultTags"]).items()}
    from infra.config import NAMESPACE, PLATFORM_PROJECT, read_stack_file

    try:
        stack_file = read_stack_file(project_dir, stack)
    except FileNotFoundError:
        project, config = PLATFORM_PROJECT, {}
    else:
        project, config = stack_file.project, stack_file.config
    tags = {
        "project": project,
        "environment": str(outputs.get("environment") or stack),
        "owner": config.get(f"{NAMESPACE}:owner", ""),
        "cost-center": config.get(f"{NAMESPACE}:costCenter", ""),
        "managed-by": "pulumi",
    }
    return {k: v for k, v in tags.items() if v}


GATE_METRICS = ("accuracy", "macro_f1", *(f"precision_{c}" for c in TRAINABLE_LABELS))


MAX_METRIC_DEFINITIONS = 40
"""CreateTrainingJob takes at most 40 metric definitions (botocore's MetricDefinitionList)."""


SELECTION_METRICS = ("macro_f1", "accuracy")
"""What ml/selection.py ranks the families on, in order, over the validation weeks."""


def metric_definitions(families: tuple[str, ...]) -> dict[str, str]:
    names = [f"{family}_holdout_{metric}" for family in families for metric in GATE_METRICS]
    names += [f"{family}_validation_{metric}" for family in families for metric in SELECTION_METRICS]
    if len(names) > MAX_METRIC_DEFINITIONS:
        raise ValueError(f"{len(families)} families need {len(names)} metric definitions; SageMaker takes at most "
                         f"{MAX_METRIC_DEFINITIONS}: train fewer families per job")
    return {name: METRIC_PATTERN.format(name=name) for name in names}


def best_family(metrics: Mapping[str, float], families: tuple[str, ...]) -> str | None:
    """The family ml/train.py bundles: best validation macro-F1, then accuracy (ml/selection.py), among those
    with every gate and selection metric."""
    needed = [f"holdout_{m}" for m in GATE_METRICS] + [f"validation_{m}" for m in SELECTION_METRICS]
    scored = [f for f in families if all(f"{f}_{m}" in metrics for m in needed)]
    if not scored:
        return None
    return max(scored, key=lambda f: ranking_key(*(metrics[f"{f}_validation_{m}"] for m in SELECTION_METRICS)))


def gate_hyperparameters(gate: GateSettings) -> dict[str, str]:
    """The gate's thresholds as the job's hyperparameters, so the verdict the job writes in its report
    (summary.json, which a deploy verifies) is judged by the thresholds `gate_approval` registers the version by,
    not by the image's defaults."""
    return {flag: str(getattr(gate, name)) for flag, name in GATE_FLAGS.items()}


def gate_approval(metrics: Mapping[str, float], families: tuple[str, ...], gate: GateSettings) -> tuple[str, str]:
    """Approved or Rejected, and why, for the best family (`best_family`).

    The job's metric lines carry, per family, every KPI the gate checks: accuracy,
    macro-F1 and each class's precision. A family missing any of them is not scored.
    """
    best = best_family(metrics, families)
    if best is None:
        return "Rejected", f"the job reported no complete holdout metrics for {', '.join(families)}"
    per_class = {c: {"precision": metrics[f"{best}_holdout_precision_{c}"]} for c in TRAINABLE_LABELS}
    result = apply_gate(
        Metrics(metrics[f"{best}_holdout_accuracy"], metrics[f"{best}_holdout_macro_f1"], per_class, [], []), gate
    )
    if result.passed:
        return "Approved", f"{best}: gate passed (accuracy, macro-F1, per-class precision)"
    return "Rejected", f"{best}: " + "; ".join(result.failures)


def source_commit(repo_root: Path = REPOSITORY_ROOT) -> dict[str, str]:
    """`git_commit` (GITHUB_SHA in CI, else the checkout's HEAD: the one holding this module, else the project
    directory the command runs in, as for an installed wheel) and, in GitHub Actions, `repository` (its URL)."""
    commit = os.environ.get("GITHUB_SHA") or git_commit(repo_root)
    if commit == "unknown":
        commit = git_commit(Path.cwd())
    lineage = {"git_commit": commit}
    if os.environ.get("GITHUB_REPOSITORY"):
        server = os.environ.get("GITHUB_SERVER_URL", "https://github.com")
        lineage["repository"] = f"{server}/{os.environ['GITHUB_REPOSITORY']}"
    return lineage


def training_program(inputs: TrainingInputs, gate: GateSettings) -> Callable[[], None]:
    def program() -> None:
        provider = aws.Provider("aws", region=inputs.region, default_tags={"tags": dict(inputs.tags)})
        security_group = aws.ec2.SecurityGroup(
            f"retail-{inputs.stack}-training-sg",
            vpc_id=inputs.vpc_id,
            description=_group_description(inputs.instance_count),
            egress=[{"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": ["0.0.0.0/0"]}]
            + _between_instances(inputs.instance_count),
            ingress=_between_instances(inputs.instance_count),
            opts=pulumi.ResourceOptions(provider=provider),
        )
        artifacts = f"s3://{inputs.artifacts_bucket}"
        job = TrainingJob(
            f"retail-{inputs.stack}-train",
            region=inputs.region,
            role_arn=inputs.role_arn,
            image_uri=inputs.image_uri,
            train_uri=inputs.train_uri,
            output_uri=f"{artifacts}/training/",
            checkpoint_uri=f"{artifacts}/checkpoints/{inputs.data_hash[:12]}-{inputs.code_version}/",
            data_hash=inputs.data_hash,
            code_version=inputs.code_version,
            # The gate last: the job judges by the thresholds the version is registered by, whatever else is set.
            hyperparameters={"families": ",".join(inputs.families), **inputs.hyperparameters,
                             **gate_hyperparameters(gate)},
            kms_key_id=inputs.data_key_arn,
            subnet_ids=inputs.subnet_ids,
            security_group_ids=[security_group.id],
            metric_definitions=metric_definitions(inputs.families),
            instance_type=inputs.instance_type,
            instance_count=inputs.instance_count,
            use_spot=inputs.use_spot,
            tags=dict(inputs.tags),
        )
        approval = job.metrics.apply(lambda metrics: gate_approval(metrics or {}, inputs.families, gate))
        family = job.metrics.apply(lambda metrics: best_family(metrics or {}, inputs.families) or "")
        version = ModelVersion(
            f"retail-{inputs.stack}-model",
            region=inputs.region,
            group_name=inputs.group_name,
            model_artifact_uri=job.model_artifact_uri,
            image_uri=inputs.inference_image_uri,
            metrics=job.metrics,
            lineage={
                "data_hash": inputs.data_hash,
                "code_version": inputs.code_version,
                **source_commit(),
                "training_job_arn": job.job_arn,
                "validation_report": job.model_artifact_uri.apply(job_report_uri),
            },
            family=family,
            approval_status=approval[0],
            gate_passed=approval.apply(lambda verdict: verdict[0] == "Approved"),
            holdout_run=holdout_run_of(inputs.train_uri),
            approval_description=approval[1],
            description=f"Trained on {inputs.data_hash[:12]} with code {inputs.code_version}",
        )
        pulumi.export("trainingJobName", job.job_name)
        pulumi.export("modelArtifactUri", job.model_artifact_uri)
        pulumi.export("metrics", job.metrics)
        pulumi.export("family", family)
        pulumi.export("modelPackageArn", version.model_package_arn)
        pulumi.export("modelPackageVersion", version.version)
        pulumi.export("approvalStatus", approval[0])
        pulumi.export("approvalDescription", approval[1])

    return program


def _group_description(instance_count: int) -> str:
    """The training security group's description. AWS cannot change a group's description in place (Pulumi replaces
    the group), so one instance keeps the words its groups were created with, and several, whose group has the
    self-referencing rule, say so; changing instanceCount between 1 and more replaces the group, alongside the new
    job a count change starts anyway."""
    if instance_count == 1:
        return "SageMaker training: no ingress, HTTPS out to the VPC endpoints and S3"
    return "SageMaker training: ingress only from its own instances, HTTPS out to the VPC endpoints and S3"


def _between_instances(instance_count: int) -> list[dict[str, Any]]:
    """The rule letting a multi-instance job's containers reach each other (XGBoost's tracker and collective, and
    the encrypted inter-container traffic) within this security group; none for one instance."""
    if instance_count == 1:
        return []
    return [{"protocol": "-1", "from_port": 0, "to_port": 0, "self": True,
             "description": "the training job's instances: XGBoost's collective"}]


OFFLINE_DATA_HASH = "0" * 64
"""Stands in for a lake manifest's input hash in the offline run (no lake is read)."""


def training_offline_run(
    stack: str,
    platform_outputs: Mapping[str, Any],
    *,
    project_dir: Path = REPOSITORY_ROOT,
    use_spot: bool = True,
    gate: GateSettings | None = None,
) -> OfflineRun:
    """The training program for `stack` under the mock runtime, as `retail train --cloud` would build it.

    `platform_outputs` are the platform stack's outputs (e.g. an offline preview's); the
    data hash and run are placeholders, the code version is this checkout's, and the
    image is named by its tag (no registry is asked for a digest).
    """
    from infra.training_config import training_config

    version = code_version(project_dir)
    resources = training_config(project_dir, stack)
    inputs = training_inputs(
        stack,
        platform_outputs,
        data_hash=OFFLINE_DATA_HASH,
        train_uri=f"s3://{platform_outputs.get('lakeBuckets', {}).get('gold', 'gold')}/gold/offline/",
        code_version=version,
        image_uri=f"{platform_outputs.get('repositoryUrls', {}).get('training', 'training')}:{image_tag(version)}",
        use_spot=use_spot,
        tags=platform_tags(stack, platform_outputs, project_dir),
        families=DEFAULT_FAMILIES if resources.instance_count == 1 else ("xgboost",),
        instance_type=resources.instance_type,
        instance_count=resources.instance_count,
    )
    return run_offline(
        training_program(inputs, gate or GateSettings()),
        project=TRAINING_PROJECT,
        stack=f"train-{stack}",
        config={"aws:region": inputs.region},
    )
