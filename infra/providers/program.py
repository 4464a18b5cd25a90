"""The inline Pulumi program of `retail train --cloud`: a TrainingJob, then a ModelVersion the gate approves."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.providers.model_version import ModelVersion
from infra.providers.sourcedir import ENTRY_POINT
from infra.providers.training_job import TrainingJob
from ml.evaluate import Metrics, apply_gate
from ml.schema import TRAINABLE_LABELS
from ml.settings import GateSettings

METRIC_PATTERN = r"{name}=([-+0-9.eE]+);"
"""ml/train.py prints `name=value;` lines, e.g. `xgboost_holdout_macro_f1=0.998;`."""


@dataclass(frozen=True)
class TrainingInputs:
    """Everything the program needs; `cli/train.py` gathers it from the platform stack and the lake."""

    stack: str
    region: str
    vpc_id: str
    subnet_ids: list[str]
    role_arn: str
    kms_key_id: str
    group_name: str
    artifacts_bucket: str
    image_uri: str
    inference_image_uri: str
    train_uri: str
    code_uri: str
    code_version: str
    data_hash: str
    families: tuple[str, ...]
    hyperparameters: Mapping[str, str] = field(default_factory=dict)
    use_spot: bool = True
    instance_type: str = "ml.m5.xlarge"


GATE_METRICS = ("accuracy", "macro_f1", *(f"precision_{c}" for c in TRAINABLE_LABELS))


def metric_definitions(families: tuple[str, ...]) -> dict[str, str]:
    names = [f"{family}_holdout_{metric}" for family in families for metric in GATE_METRICS]
    return {name: METRIC_PATTERN.format(name=name) for name in names}


def gate_approval(metrics: Mapping[str, float], families: tuple[str, ...], gate: GateSettings) -> tuple[str, str]:
    """Approved or Rejected, and why, for the best family by holdout macro-F1.

    The job's metric lines carry, per family, every KPI the gate checks: accuracy,
    macro-F1 and each class's precision. A family missing any of them is not scored.
    """
    scored = [f for f in families if all(f"{f}_holdout_{m}" in metrics for m in GATE_METRICS)]
    if not scored:
        return "Rejected", f"the job reported no complete holdout metrics for {', '.join(families)}"
    best = max(scored, key=lambda f: metrics[f"{f}_holdout_macro_f1"])
    per_class = {c: {"precision": metrics[f"{best}_holdout_precision_{c}"]} for c in TRAINABLE_LABELS}
    result = apply_gate(
        Metrics(metrics[f"{best}_holdout_accuracy"], metrics[f"{best}_holdout_macro_f1"], per_class, [], []), gate
    )
    if result.passed:
        return "Approved", f"{best}: gate passed (accuracy, macro-F1, per-class precision)"
    return "Rejected", f"{best}: " + "; ".join(result.failures)


def training_program(inputs: TrainingInputs, gate: GateSettings) -> Callable[[], None]:
    def program() -> None:
        security_group = aws.ec2.SecurityGroup(
            f"retail-{inputs.stack}-training-sg",
            vpc_id=inputs.vpc_id,
            description="SageMaker training: no ingress, HTTPS out to the VPC endpoints and S3",
            egress=[{"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": ["0.0.0.0/0"]}],
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
            code_uri=inputs.code_uri,
            entry_point=ENTRY_POINT,
            data_hash=inputs.data_hash,
            code_version=inputs.code_version,
            hyperparameters={"families": ",".join(inputs.families), **inputs.hyperparameters},
            kms_key_id=inputs.kms_key_id,
            subnet_ids=inputs.subnet_ids,
            security_group_ids=[security_group.id],
            metric_definitions=metric_definitions(inputs.families),
            instance_type=inputs.instance_type,
            use_spot=inputs.use_spot,
        )
        approval = job.metrics.apply(lambda metrics: gate_approval(metrics or {}, inputs.families, gate))
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
                "training_job_arn": job.job_arn,
            },
            approval_status=approval[0],
            approval_description=approval[1],
            description=f"Trained on {inputs.data_hash[:12]} with code {inputs.code_version}",
        )
        pulumi.export("trainingJobName", job.job_name)
        pulumi.export("modelArtifactUri", job.model_artifact_uri)
        pulumi.export("metrics", job.metrics)
        pulumi.export("modelPackageArn", version.model_package_arn)
        pulumi.export("approvalStatus", approval[0])
        pulumi.export("approvalDescription", approval[1])

    return program
