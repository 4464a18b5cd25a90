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

from pydantic import Field

from infra.config import NAMESPACE, Section, stack_file_section

KEY = f"{NAMESPACE}:training"


class TrainingConfig(Section):
    instance_type: str = Field("ml.m5.xlarge", pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
    instance_count: int = Field(1, ge=1, le=20)
    """SageMaker instances of one job; above 1 the job trains the xgboost family distributed."""


def training_config(project_dir: Path, stack: str) -> TrainingConfig:
    """The stack file's `retail:training`, validated; the defaults without the file or the section."""
    parsed: TrainingConfig = stack_file_section(TrainingConfig, project_dir, stack, KEY)
    return parsed
