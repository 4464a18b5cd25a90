"""`retail:training` in the platform's `Pulumi.<stack>.yaml`: the instances `retail train --cloud` trains on.

The training program runs as its own project (infra/providers/program.py) and reads the
platform's stack file offline, as it reads the owner and cost-center tags, so `retail train
--cloud`, the offline preview, preflight (`TrainingPlan`: the SageMaker instance quota) and the
cost estimate (instance-hours = instances x hours) all see the same count:

    retail:training:
      instanceType: ml.m5.xlarge
      instanceCount: 2        # > 1: XGBoost trains distributed (ml/cluster.py), families=xgboost only

A missing file or section means the defaults: one ml.m5.xlarge.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from infra.config import NAMESPACE, Section, stack_file_section

KEY = f"{NAMESPACE}:training"
EBS_ONLY_FAMILIES = frozenset({
    "c4", "c5", "c5n", "c6i", "c7i", "c7i-flex", "c8i", "c8i-flex", "m4", "m5", "m6i", "m7i", "m7i-flex", "m8i",
    "m8i-flex", "r5", "r6i", "r7i", "r8i", "r8i-flex", "t3", "p2", "p3",
})
"""The families of botocore's TrainingInstanceType whose instances have no local instance storage. The job's volume
is encrypted with the data key (VolumeKmsKeyId), which SageMaker refuses for an instance type with local storage
(NVMe, encrypted by the instance itself: ml.g4dn, ml.g5, ml.p4d and the others; ResourceConfig in the SageMaker API
reference)."""


class TrainingConfig(Section):
    instance_type: str = Field("ml.m5.xlarge", pattern=r"^ml\.[a-z0-9-]+\.[a-z0-9]+$")
    instance_count: int = Field(1, ge=1, le=20)
    """SageMaker instances of one job; above 1 the job trains the xgboost family distributed."""

    @field_validator("instance_type")
    @classmethod
    def _without_local_storage(cls, value: str) -> str:
        family = value.split(".")[1]
        if family not in EBS_ONLY_FAMILIES:
            raise ValueError(
                f"{value}: the ml.{family} family is not one this platform trains on. The job's volume is encrypted "
                "with the data key, which SageMaker refuses for instance types with local storage; families "
                f"without: {', '.join(f'ml.{f}' for f in sorted(EBS_ONLY_FAMILIES))}")
        return value


def training_config(project_dir: Path, stack: str) -> TrainingConfig:
    """The stack file's `retail:training`, validated; the defaults without the file or the section."""
    parsed: TrainingConfig = stack_file_section(TrainingConfig, project_dir, stack, KEY)
    return parsed
