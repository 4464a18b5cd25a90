"""A multi-instance training job from stack config: `retail:training.instanceCount` reaches the CreateTrainingJob
request (FullyReplicated channel, inter-container traffic encrypted, valid for botocore's model), the security group
lets the instances reach each other and says so, preflight and the cost estimate count the instances, the policy pack
passes it, families other than xgboost are refused before any job starts, and a change of the count alone starts a
new job.
"""

from __future__ import annotations

import time
from pathlib import Path

import pulumi
import pytest
import yaml

from infra.cost import Billable, CostAssumptions, estimate
from infra.offline import OfflineRun
from infra.preflight import plan_from_runs
from infra.providers.kinds import TRAINING_JOB
from infra.providers.program import training_inputs, training_offline_run
from infra.providers.training_job import TrainingJobProvider, create_request, job_name
from infra.training_config import EBS_ONLY_FAMILIES, TrainingConfig, training_config
from policies.catalog import RULES
from policies.enforcement import load_levels
from policies.evaluate import evaluate
from policies.offline import resources_of
from tests.training.code_checkout import checkout
from tests.training.fakes import PLATFORM_OUTPUTS, REGION
from tests.training.sagemaker_contract import botocore_problems, model_problems

SG = "aws:ec2/securityGroup:SecurityGroup"


@pytest.fixture(autouse=True)
def _neutral_pulumi_runtime():
    yield
    pulumi.runtime.reset_options()
    pulumi.runtime.set_all_config({})


def project_with(tmp_path: Path, training: dict | None) -> Path:
    """The training sources and the platform's dev stack file, with `retail:training` set to `training`."""
    repo = checkout(tmp_path, extra=("Pulumi.yaml", "Pulumi.dev.yaml"))
    stack_file = repo / "Pulumi.dev.yaml"
    settings = yaml.safe_load(stack_file.read_text())
    if training is not None:
        settings["config"]["retail:training"] = training
    stack_file.write_text(yaml.safe_dump(settings))
    return repo


def job_inputs(run: OfflineRun) -> dict:
    return next(r.inputs for r in run.resources if r.inputs.get("kind") == TRAINING_JOB)


@pytest.fixture(scope="module")
def two_instances(tmp_path_factory) -> OfflineRun:
    repo = project_with(tmp_path_factory.mktemp("repo"), {"instanceType": "ml.m5.2xlarge", "instanceCount": 2})
    return training_offline_run("dev", PLATFORM_OUTPUTS, project_dir=repo)


def test_the_stack_files_instance_count_reaches_the_job_with_xgboost_alone(two_instances):
    job = job_inputs(two_instances)
    assert (job["instance_count"], job["instance_type"]) == (2, "ml.m5.2xlarge")
    assert job["hyperparameters"]["families"] == "xgboost"
    assert job["inter_container_encryption"] is True


def test_the_request_of_two_instances_is_a_valid_encrypted_fully_replicated_job(two_instances):
    props = job_inputs(two_instances)
    request = create_request(job_name(props, time.time()), props)
    assert request["ResourceConfig"]["InstanceCount"] == 2
    assert request["EnableInterContainerTrafficEncryption"] is True
    assert request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3DataDistributionType"] == "FullyReplicated"
    assert botocore_problems(request) == []
    assert model_problems(request) == []


def test_the_security_group_lets_the_instances_reach_each_other_only(two_instances):
    (group,) = [r.inputs for r in two_instances.resources if r.type == SG]
    between = {"protocol": "-1", "fromPort": 0, "toPort": 0, "self": True,
               "description": "the training job's instances: XGBoost's collective"}
    assert group["ingress"] == [between]
    assert between in group["egress"]
    assert group["description"] == ("SageMaker training: ingress only from its own instances, HTTPS out to the VPC "
                                    "endpoints and S3")


def test_a_change_of_the_instance_count_alone_starts_a_new_job(two_instances):
    """Several instances fit XGBoost over merged histogram sketches: another model, so another job."""
    props = job_inputs(two_instances)
    diff = TrainingJobProvider().diff("job", props | {"instance_count": 1, "inter_container_encryption": False}, props)
    assert diff.changes and "instance_count" in diff.replaces


def test_two_instances_break_no_rule_at_devs_levels(two_instances):
    assert evaluate(RULES, resources_of(two_instances), load_levels(RULES, "dev")) == []


def test_preflight_and_the_cost_estimate_count_both_instances(two_instances):
    training = plan_from_runs("dev", REGION, [two_instances]).training
    assert training is not None and (training.instance_type, training.instance_count) == ("ml.m5.2xlarge", 2)
    assumptions = CostAssumptions(training_hours_per_retrain=1.0, retrains_per_month=4)
    resources = [Billable(r.type, r.name, r.inputs) for r in two_instances.resources]
    (line,) = [line for line in estimate(resources, REGION, assumptions).lines if line.category == "SageMaker training"]
    assert (line.quantity, line.unit) == (8.0, "instance-hours")


def test_one_instance_without_the_section_keeps_todays_job(tmp_path):
    run = training_offline_run("dev", PLATFORM_OUTPUTS, project_dir=project_with(tmp_path, None))
    job = job_inputs(run)
    assert (job["instance_count"], job["inter_container_encryption"]) == (1, False)
    assert job["hyperparameters"]["families"] == "xgboost,logistic_regression"
    (group,) = [r.inputs for r in run.resources if r.type == SG]
    assert not group.get("ingress")
    # The words one-instance groups were created with: AWS replaces a group whose description changes.
    assert group["description"] == "SageMaker training: no ingress, HTTPS out to the VPC endpoints and S3"
    request = create_request(job_name(job, time.time()), job)
    assert request["EnableInterContainerTrafficEncryption"] is False


def test_a_multi_instance_job_of_other_families_is_refused_before_any_job():
    with pytest.raises(ValueError, match="instanceCount is 3: a multi-instance job trains the xgboost family only"):
        training_inputs("dev", PLATFORM_OUTPUTS, data_hash="0" * 64, train_uri="s3://gold/run/", code_version="c",
                        image_uri="img", families=("xgboost", "logistic_regression"), instance_count=3)


@pytest.mark.parametrize("instance_type", ["ml.g5.xlarge", "ml.p4d.24xlarge", "ml.r5d.2xlarge", "ml.trn1.2xlarge"])
def test_an_instance_type_with_local_storage_is_refused_as_sagemaker_would_refuse_its_volume_key(
        tmp_path, instance_type):
    """SageMaker refuses a VolumeKmsKeyId for an instance type with local storage (the SageMaker API reference,
    ResourceConfig); the job always sends the data key."""
    with pytest.raises(ValueError, match=rf"retail:training.instanceType.*{instance_type}.*refuses for instance types "
                                         "with local storage"):
        training_config(project_with(tmp_path, {"instanceType": instance_type}), "dev")


def test_every_family_allowed_is_a_sagemaker_training_family_and_the_default_is_one():
    import botocore.session

    enum = botocore.session.get_session().get_service_model("sagemaker").shape_for("TrainingInstanceType").enum
    assert EBS_ONLY_FAMILIES <= {name.split(".")[1] for name in enum}
    assert TrainingConfig().instance_type.split(".")[1] in EBS_ONLY_FAMILIES


def test_a_bad_training_section_is_an_error_naming_the_key(tmp_path):
    with pytest.raises(ValueError, match="retail:training.instanceCount"):
        training_config(project_with(tmp_path, {"instanceCount": 0}), "dev")
    assert training_config(tmp_path / "nowhere", "dev") == TrainingConfig()
