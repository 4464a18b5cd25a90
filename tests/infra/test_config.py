"""Stack config files are read as the Pulumi CLI passes them, into typed objects that refuse what cannot deploy."""

import json

import pytest

from infra import cost, training_config
from infra.config import (
    PLATFORM_KEYS,
    READ_ELSEWHERE,
    SERVICE_KEYS,
    BatchScoringConfig,
    ClusterConfig,
    InferenceConfig,
    NetworkConfig,
    NodeGroupConfig,
    ObservabilityConfig,
    ServiceConfig,
    ThresholdsConfig,
    load_platform_config,
    load_service_config,
    parse_section,
    read_stack_file,
    stack_file_section,
)
from infra.offline import run_offline
from ml.settings import GateSettings, MonitorSettings

from .conftest import PROJECT_DIR

DIGEST_IMAGE = "123456789012.dkr.ecr.ap-southeast-1.amazonaws.com/retail-dev-registry/inference@sha256:" + "a" * 64
PACKAGE = "arn:aws:sagemaker:ap-southeast-1:123456789012:model-package/retail-dev-price-sensitivity/3"


def service(**overrides) -> ServiceConfig:
    values = dict(
        project="retail-mlops-service", environment="dev", region="ap-southeast-1", owner="o", cost_center="c",
        platform_stack="organization/retail-mlops/dev", image=DIGEST_IMAGE, model_package_arn=PACKAGE,
    )
    return ServiceConfig(**{**values, **overrides})


def test_keys_keep_their_namespace_and_structured_values_become_json():
    stack = read_stack_file(PROJECT_DIR, "dev")
    assert stack.project == "retail-mlops"
    assert stack.config["aws:region"] == "ap-southeast-1"
    assert json.loads(stack.config["retail:network"])["azCount"] == 2


def test_the_service_project_has_its_own_stack_files():
    stack = read_stack_file(PROJECT_DIR / "service", "dev")
    assert stack.project == "retail-mlops-service"
    assert "retail:image" not in stack.config, "the image digest is set at deploy time, not committed"


def test_keys_without_a_namespace_get_the_projects(tmp_path):
    (tmp_path / "Pulumi.yaml").write_text("name: demo\nruntime: python\n")
    (tmp_path / "Pulumi.s.yaml").write_text("config:\n  owner: me\n  flag: true\n")
    assert read_stack_file(tmp_path, "s").config == {"demo:owner": "me", "demo:flag": "true"}


def test_encrypted_values_are_listed_as_secrets_not_read(tmp_path):
    (tmp_path / "Pulumi.yaml").write_text("name: demo\n")
    (tmp_path / "Pulumi.s.yaml").write_text("config:\n  demo:apiKeys:\n    secure: v1:abc\n")
    stack = read_stack_file(tmp_path, "s")
    assert stack.config == {} and stack.secret_keys == ("demo:apiKeys",)


def test_a_missing_stack_file_names_the_path(tmp_path):
    (tmp_path / "Pulumi.yaml").write_text("name: demo\n")
    with pytest.raises(FileNotFoundError, match="Pulumi.nope.yaml"):
        read_stack_file(tmp_path, "nope")


def test_sections_read_camel_case_keys_into_typed_fields():
    cluster = parse_section(
        ClusterConfig,
        {"publicAccessCidrs": ["10.0.0.0/8"], "batchNodes": {"maxSize": 9, "spot": True}},
        "retail:cluster",
    )
    assert cluster.public_access_cidrs == ("10.0.0.0/8",)
    assert (cluster.batch_nodes.max_size, cluster.batch_nodes.spot) == (9, True)


def test_unknown_keys_are_rejected_with_their_location():
    with pytest.raises(ValueError, match=r"retail:network\.natPerZone: Extra inputs are not permitted"):
        parse_section(NetworkConfig, {"natPerZone": True}, "retail:network")


def loaded(load, project: str, config: dict[str, str]) -> None:
    """`load` (load_platform_config or load_service_config) run as a program of `project` with `config`."""
    run_offline(lambda: load() and None, project=project, stack="dev", config=config)


@pytest.mark.parametrize(("load", "project", "folder", "misspelt", "meant"), [
    (load_platform_config, "retail-mlops", PROJECT_DIR, "netwrok", "network"),
    (load_service_config, "retail-mlops-service", PROJECT_DIR / "service", "inferense", "inference"),
])
def test_a_misspelt_key_of_a_stack_is_refused_naming_it_and_the_key_meant(load, project, folder, misspelt, meant):
    """A section whose name is misspelt would be ignored and its defaults deployed (`retail:netwrok` leaves
    `retail:network` at its defaults): the program refuses any key of the namespace it does not read."""
    config = read_stack_file(folder, "dev").config
    if project == "retail-mlops-service":
        config |= {"retail:image": DIGEST_IMAGE, "retail:modelPackageArn": PACKAGE}
    loaded(load, project, config)  # the stack file as it is: every key known
    with pytest.raises(ValueError, match=rf"unknown config key in the {project} stack dev: "
                                         rf"retail:{misspelt} \(did you mean retail:{meant}\?\)"):
        loaded(load, project, config | {f"retail:{misspelt}": "{}"})
    loaded(load, project, config | {"aws:profile": "x", "other:anything": "y"})  # other namespaces are not ours


def test_keys_are_found_where_the_cli_hands_them_to_a_program(monkeypatch):
    """Run by the CLI, a program gets its config in the PULUMI_CONFIG environment variable (pulumi-language-python),
    not through set_all_config: an unknown key there is refused too."""
    config = read_stack_file(PROJECT_DIR, "dev").config
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({**config, "retail:costCentre": "x"}))
    with pytest.raises(ValueError, match=r"retail:costCentre \(did you mean retail:costCenter\?\)"):
        loaded(load_platform_config, "retail-mlops", {})


def test_the_keys_other_commands_read_from_the_platform_s_stack_file_are_known():
    assert {cost.COST_KEY, training_config.KEY} == {f"retail:{key}" for key in READ_ELSEWHERE}
    assert set(READ_ELSEWHERE) <= PLATFORM_KEYS
    assert {"image", "modelPackageArn", "apiKeys"} <= SERVICE_KEYS


def test_a_value_of_the_wrong_type_is_rejected_naming_the_key_and_the_value():
    with pytest.raises(ValueError, match=r"retail:network\.azCount: .*integer.*'two'"):
        parse_section(NetworkConfig, {"azCount": "two"}, "retail:network")


def test_a_cluster_reachable_from_nowhere_is_refused():
    with pytest.raises(ValueError, match="reachable from nowhere"):
        parse_section(ClusterConfig, {"publicAccessCidrs": []}, "retail:cluster")
    assert parse_section(ClusterConfig, {"privateAccessCidrs": ["10.50.0.0/16"]}, "c").private_access_cidrs


def test_node_group_sizes_must_be_ordered():
    with pytest.raises(ValueError, match="minSize <= desiredSize <= maxSize"):
        parse_section(NodeGroupConfig, {"minSize": 3, "desiredSize": 1}, "retail:cluster.serviceNodes")


def test_a_spot_group_of_one_instance_type_is_refused():
    """Spot capacity runs out per type and zone: one type leaves the group unable to start or scale."""
    with pytest.raises(ValueError, match=r"spot: true with instanceTypes \['m6i.xlarge'\]: list at least 2 types"):
        parse_section(NodeGroupConfig, {"instanceTypes": ["m6i.xlarge"], "spot": True}, "retail:cluster.batchNodes")
    on_demand = parse_section(NodeGroupConfig, {"instanceTypes": ["m6i.xlarge"]}, "retail:cluster.serviceNodes")
    assert on_demand.instance_types == ("m6i.xlarge",)


@pytest.mark.parametrize("stack", ["dev", "ephemeral", "prod"])
def test_every_spot_group_of_the_stacks_offers_several_instance_types(stack):
    cluster = stack_file_section(ClusterConfig, PROJECT_DIR, stack, "retail:cluster")
    spot = [group for group in (cluster.service_nodes, cluster.batch_nodes) if group.spot]
    assert spot and all(len(set(group.instance_types)) >= 2 for group in spot)


def test_a_hostname_without_a_certificate_source_is_refused():
    with pytest.raises(ValueError, match="needs a certificate"):
        parse_section(InferenceConfig, {"hostname": "api.example.org"}, "retail:inference")
    assert parse_section(InferenceConfig, {"hostname": "api.example.org", "hostedZoneId": "Z1"}, "i").hostname


def test_the_release_must_be_a_digest_and_a_versioned_package():
    assert service().image == DIGEST_IMAGE
    with pytest.raises(ValueError, match="sha256"):
        service(image="123456789012.dkr.ecr.ap-southeast-1.amazonaws.com/inference:0.1.0")
    with pytest.raises(ValueError, match="versioned SageMaker model package ARN"):
        service(model_package_arn="arn:aws:sagemaker:ap-southeast-1:123456789012:model-package-group/g")


def test_a_retention_cloudwatch_does_not_offer_is_refused():
    with pytest.raises(ValueError, match="logRetentionDays: .*one of 1, 3, 5, 7, 14, 30.* not 10"):
        parse_section(ObservabilityConfig, {"logRetentionDays": 10}, "retail:observability")


def test_more_budget_alerts_than_aws_budgets_takes_are_refused():
    with pytest.raises(ValueError, match="at most 4 alert percents"):
        parse_section(ObservabilityConfig, {"budgetAlertPercents": [20, 40, 60, 80, 100]}, "retail:observability")


def test_the_batch_time_zone_is_an_iana_name():
    assert parse_section(ObservabilityConfig, {"batchTimeZone": "Asia/Singapore"}, "o").batch_time_zone == (
        "Asia/Singapore")
    with pytest.raises(ValueError, match="batchTimeZone must be an IANA time zone"):
        parse_section(ObservabilityConfig, {"batchTimeZone": "Mars/Olympus"}, "retail:observability")


# --- retail:thresholds ------------------------------------------------------------------------------------------
def test_thresholds_default_to_ml_settings_defaults_whatever_the_environment(monkeypatch):
    monkeypatch.setenv("RETAIL_GATE_MIN_ACCURACY", "0.1")
    monkeypatch.setenv("RETAIL_MONITOR_MIN_BASKETS", "5")
    defaults = parse_section(ThresholdsConfig, {}, "retail:thresholds")
    assert defaults.gate.model_dump() == GateSettings.model_construct().model_dump()
    assert defaults.monitor.model_dump() == MonitorSettings.model_construct().model_dump()
    assert defaults.gate_settings().min_accuracy == 0.75 and defaults.monitor_settings().min_baskets == 100


def test_thresholds_read_camel_case_keys_and_become_the_variables_ml_settings_reads(monkeypatch):
    """What the monitoring CronJob's pod is given: ml/settings.py there reads back exactly the configured values."""
    config = parse_section(ThresholdsConfig, {"gate": {"minMacroF1": 0.6}, "monitor": {"minBaskets": 250}}, "t")
    for name, value in config.environment().items():
        monkeypatch.setenv(name, value)
    assert GateSettings() == config.gate_settings() and MonitorSettings() == config.monitor_settings()
    assert (GateSettings().min_macro_f1, MonitorSettings().min_baskets) == (0.6, 250)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"gate": {"minAcc": 0.7}}, r"retail:thresholds.gate.minAcc: Extra inputs"),
        ({"gate": {"minAccuracy": 1.5}}, r"gate.minAccuracy: Input should be less than or equal to 1"),
        ({"monitor": {"minBaskets": 0}}, r"monitor.minBaskets: Input should be greater than or equal to 1"),
        ({"drift": 0.3}, "Extra inputs"),
    ],
)
def test_thresholds_refuse_what_ml_settings_would(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_section(ThresholdsConfig, raw, "retail:thresholds")


def test_the_platform_exports_its_thresholds_and_batch_time_zone_for_the_service(dev):
    assert dev.stack_outputs["thresholds"] == ThresholdsConfig().model_dump(by_alias=True)
    assert parse_section(ThresholdsConfig, dev.stack_outputs["thresholds"], "output") == ThresholdsConfig()
    assert dev.stack_outputs["batchTimeZone"] == "Etc/UTC"


def test_defaults_are_secure_and_cost_aware():
    cluster = parse_section(ClusterConfig, {"privateAccessCidrs": ["10.0.0.0/16"]}, "c")
    assert cluster.public_access_cidrs == ()
    assert cluster.batch_nodes.spot is True
    assert parse_section(NetworkConfig, {}, "n").nat_per_az is False
    observability = ObservabilityConfig()
    assert observability.latency_p95_threshold_ms == 200 and observability.heartbeat_missing_breaches is True
    assert observability.monthly_budget_usd == 500


def test_batch_scoring_reads_camel_case_keys_and_defaults_to_a_weekly_bounded_run():
    config = parse_section(BatchScoringConfig, {"lakeZone": "gold", "inputPath": "run-7/"}, "b")
    assert (config.lake_zone, config.input_path) == ("gold", "run-7")
    defaults = BatchScoringConfig()
    assert defaults.schedule == "0 3 * * 1" and defaults.suspend is False
    assert defaults.active_deadline_seconds and defaults.backoff_limit and defaults.ttl_seconds_after_finished


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"schedule": "@weekly"}, "five cron fields"),
        ({"schedule": "CRON_TZ=UTC 0 3 * * 1"}, "five cron fields"),
        ({"timeZone": "Asia/Singapore"}, "the platform stack's retail:observability.batchTimeZone"),
        ({"lakeZone": "predictions"}, "lakeZone must be one of"),
        ({"inputPath": ""}, "must name a silver run folder"),
        ({"inputPath": "../raw"}, "relative"),
        ({"lakePrefix": "s3://bucket/lake"}, "relative"),
        ({"memoryLimit": "1Gi", "memoryRequest": "1Gi"}, "needs up to 2 GB"),
        ({"memoryRequest": "4Gi"}, "exceeds memoryLimit"),
        ({"memoryLimit": "3G"}, "whole number of Mi or Gi"),
        ({"activeDeadlineSeconds": 0}, "activeDeadlineSeconds"),
    ],
)
def test_batch_scoring_refuses_what_cannot_run(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_section(BatchScoringConfig, raw, "retail:batchScoring")


def test_every_service_stack_declares_batch_scoring_and_only_ephemeral_suspends_it():
    for stack in ("dev", "prod", "ephemeral"):
        raw = json.loads(read_stack_file(PROJECT_DIR / "service", stack).config["retail:batchScoring"])
        config = parse_section(BatchScoringConfig, raw, f"{stack}: retail:batchScoring")
        assert config.suspend is (stack == "ephemeral")
