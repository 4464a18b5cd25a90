"""The inference pods' prediction log on AWS: the pods write it under the lake's predictions/service/, nothing more.

With a `PredictionLogTarget` the pods are told where (RETAIL_PREDICTION_LOG_URI) and their
role may put objects under that prefix's week folders and use the data key through S3, and
nothing else; the Deployment waits for that permission. A service stack logs under the lake
root batch scoring writes to. Without a target (`retail:inference.predictionLog: false`) the
pods keep no log and the role gains nothing. The service's shutdown budget (api/shutdown.py),
with the settings the Deployment gives it, fits the pod's grace period after its preStop sleep.
"""

import pytest

from api.settings import ApiSettings
from api.shutdown import budget_seconds
from infra.config import InferenceConfig
from infra.inference import InferenceService
from infra.prediction_log import PredictionLogTarget

from .helpers import build, statements
from .test_inference import DATA_KEY, service_args

LAKE = "arn:aws:s3:::lake-raw"


def service(target: PredictionLogTarget | None):
    args = service_args(sizing=InferenceConfig(namespace="serving"), prediction_log=target)
    return build(lambda: InferenceService("svc", args))


@pytest.fixture(scope="module")
def logging():
    return service(PredictionLogTarget("lake-raw", LAKE, "/lake/"))


def env_of(run) -> dict[str, str]:
    (deployment,) = run.of_type("kubernetes:apps/v1:Deployment")
    (container,) = deployment.inputs["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"]}


def test_the_pods_are_told_to_log_under_the_lakes_predictions_zone(logging):
    env = env_of(logging)
    assert env["RETAIL_PREDICTION_LOG_ENABLED"] == "true"
    assert env["RETAIL_PREDICTION_LOG_URI"] == "s3://lake-raw/lake/predictions/service"


def test_the_role_may_put_objects_under_that_prefix_and_use_the_data_key_through_s3_only(logging):
    (policy,) = [p for p in logging.of_type("aws:iam/rolePolicy:RolePolicy") if p.name == "svc-prediction-log"]
    assert {s["Sid"]: (s["Action"], s["Resource"], s.get("Condition")) for s in statements(policy)} == {
        "WritePredictionLog": ("s3:PutObject", f"{LAKE}/lake/predictions/service/week=*", None),
        "EncryptThroughS3": (["kms:GenerateDataKey", "kms:Decrypt"], DATA_KEY,
                             {"StringEquals": {"kms:ViaService": "s3.ap-southeast-1.amazonaws.com"}}),
    }
    (role,) = logging.of_type("aws:iam/role:Role")
    assert policy.inputs["role"] == role.id


def test_the_deployment_waits_for_the_permission_to_write(logging):
    (policy,) = [p for p in logging.of_type("aws:iam/rolePolicy:RolePolicy") if p.name == "svc-prediction-log"]
    (deployment,) = logging.of_type("kubernetes:apps/v1:Deployment")
    assert policy.urn in deployment.dependencies


def test_without_a_target_the_pods_keep_no_log_and_the_role_gains_nothing():
    run = service(None)
    assert not {"RETAIL_PREDICTION_LOG_ENABLED", "RETAIL_PREDICTION_LOG_URI"} & set(env_of(run))
    assert [p.name for p in run.of_type("aws:iam/rolePolicy:RolePolicy")] == ["svc-model-read"]


def test_the_dev_service_logs_under_the_lake_root_batch_scoring_writes_to(dev, dev_service):
    (deployment,) = dev_service.of_type("kubernetes:apps/v1:Deployment")
    (container,) = deployment.inputs["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    raw, raw_arn = dev.stack_outputs["lakeBuckets"]["raw"], dev.stack_outputs["lakeBucketArns"]["raw"]
    assert dev_service.stack_outputs["predictionsUri"] == f"s3://{raw}/lake/predictions/"
    assert env["RETAIL_PREDICTION_LOG_URI"] == f"s3://{raw}/lake/predictions/service"
    (policy,) = [p for p in dev_service.of_type("aws:iam/rolePolicy:RolePolicy") if p.name.endswith("-prediction-log")]
    resources = {s["Sid"]: s["Resource"] for s in statements(policy)}
    assert resources == {"WritePredictionLog": f"{raw_arn}/lake/predictions/service/week=*",
                         "EncryptThroughS3": dev.stack_outputs["dataKeyArn"]}


def test_the_services_shutdown_fits_the_pods_grace_period_after_its_pre_stop_sleep(logging, monkeypatch):
    (deployment,) = logging.of_type("kubernetes:apps/v1:Deployment")
    pod = deployment.inputs["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    for name, value in env_of(logging).items():
        monkeypatch.setenv(name, value)
    settings = ApiSettings()  # as the pod reads them: the Deployment's environment over the defaults
    assert settings.prediction_log_enabled
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop + budget_seconds(settings) < pod["terminationGracePeriodSeconds"]
