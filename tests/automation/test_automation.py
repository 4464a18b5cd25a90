"""The Automation API's sequence of Pulumi operations across both projects, checked with recording runners."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import boto3
import pytest
import yaml

from infra import automation
from infra.automation import (
    PulumiCliMissing,
    Release,
    Runners,
    StackEmptier,
    TeardownFailed,
    command_env,
    ephemeral,
    ephemeral_stack_name,
    require_cli,
)
from tests.automation.recording import Journal, PulumiFailed, RecordingRunner

PROJECT_DIR = Path(__file__).resolve().parents[2]
STACK = "ephemeral-pr-42"
IMAGE = "123456789012.dkr.ecr.ap-southeast-1.amazonaws.com/retail/inference@sha256:" + "d" * 64
PACKAGE = "arn:aws:sagemaker:ap-southeast-1:123456789012:model-package/retail-dev-price-sensitivity/7"
RELEASE = Release(IMAGE, PACKAGE)
PLATFORM_OUTPUTS = {"clusterName": "eks", "kubeconfig": "{secret}", "lakeBuckets": {"raw": "lake-raw"}}
SERVICE_OUTPUTS = {"endpoint": "http://k8s-alb.elb.amazonaws.com", "deployApiKey": "k" * 40}


def runners(**platform_kwargs) -> Runners:
    journal = Journal()
    platform = RecordingRunner(
        "platform", journal, outputs_by_stack={STACK: PLATFORM_OUTPUTS, "dev": PLATFORM_OUTPUTS},
        secret_outputs={"kubeconfig"}, **platform_kwargs,
    )
    service = RecordingRunner(
        "service", journal, outputs_by_stack={STACK: SERVICE_OUTPUTS, "dev": SERVICE_OUTPUTS},
        secret_outputs={"deployApiKey"},
    )
    return Runners(platform, service)


def run_ephemeral(pair: Runners, command=("pytest", "-q"), **kwargs) -> int:
    return ephemeral(pair, "pr-42", list(command), PROJECT_DIR, lambda outputs: RELEASE, echo=lambda _: None, **kwargs)


def test_ephemeral_deploys_platform_then_service_runs_then_tears_down_service_first():
    pair = runners()
    assert run_ephemeral(pair) == 0
    assert pair.platform.journal.calls == [
        ("platform", "create_stack", STACK),
        ("platform", "set_config", STACK),
        ("platform", "preview", STACK, "ephemeral.json"),
        ("platform", "up", STACK, "ephemeral.json"),
        ("service", "create_stack", STACK),
        ("service", "set_config", STACK),
        ("service", "preview", STACK, "ephemeral.json"),
        ("service", "up", STACK, "ephemeral.json"),
        ("service", "run_command", "pytest -q"),
        ("service", "destroy", STACK),
        ("service", "remove_stack", STACK, "force"),
        ("platform", "destroy", STACK),
        ("platform", "remove_stack", STACK, "force"),
    ]


def test_ephemeral_stacks_get_the_ephemeral_config_and_the_release():
    pair = runners()
    run_ephemeral(pair)
    platform_values, platform_secret = pair.platform.config[STACK]
    service_values, _ = pair.service.config[STACK]
    assert json.loads(platform_values["retail:audit"]) == {"trail": False}
    assert json.loads(platform_values["retail:dataLake"])["forceDestroy"] is True
    assert platform_secret == {}
    assert service_values["retail:image"] == IMAGE and service_values["retail:modelPackageArn"] == PACKAGE


def test_the_command_sees_public_outputs_and_the_api_key_but_no_other_secret():
    pair = runners()
    run_ephemeral(pair)
    env = pair.service.command_env
    assert env["PULUMI_OUTPUT_ENDPOINT"] == SERVICE_OUTPUTS["endpoint"]
    assert env["PULUMI_OUTPUT_CLUSTERNAME"] == "eks"
    assert env["RETAIL_API_KEY"] == SERVICE_OUTPUTS["deployApiKey"]
    assert "PULUMI_OUTPUT_KUBECONFIG" not in env and "PULUMI_OUTPUT_DEPLOYAPIKEY" not in env
    assert "{secret}" not in env["PULUMI_OUTPUTS_JSON"] and "k" * 40 not in env["PULUMI_OUTPUTS_JSON"]


def test_a_failing_command_still_tears_both_stacks_down_and_its_exit_code_is_returned():
    pair = runners()
    pair.service.command_exit_code = 3
    assert run_ephemeral(pair) == 3
    assert [c[:2] for c in pair.platform.journal.calls[-4:]] == [
        ("service", "destroy"), ("service", "remove_stack"), ("platform", "destroy"), ("platform", "remove_stack"),
    ]


def test_a_failed_platform_up_tears_the_platform_down_and_never_touches_the_service():
    pair = runners(fail_on={"up": 1})
    with pytest.raises(PulumiFailed, match="pulumi up failed"):
        run_ephemeral(pair)
    assert pair.service.calls == []
    assert pair.platform.calls[-2:] == [("destroy", STACK), ("remove_stack", STACK, "force")]


def test_a_destroy_that_fails_is_retried_after_emptying_the_stack_and_refreshing():
    emptied: list[dict] = []
    pair = runners(fail_on={"destroy": 1})
    run_ephemeral(pair, empty=emptied.append)
    assert emptied == [PLATFORM_OUTPUTS]
    assert pair.platform.calls[-4:] == [
        ("destroy", STACK), ("refresh", STACK), ("destroy", STACK), ("remove_stack", STACK, "force"),
    ]


def test_a_stack_that_cannot_be_destroyed_is_kept_not_removed_and_the_error_says_how_to_finish():
    pair = runners(fail_on={"destroy": 99})
    with pytest.raises(TeardownFailed, match=f"finish with `pulumi destroy --stack {STACK}`"):
        run_ephemeral(pair)
    assert ("remove_stack", STACK, "force") not in pair.platform.calls
    assert [c for c in pair.platform.calls if c[0] == "destroy"] == [("destroy", STACK)] * automation.DESTROY_ATTEMPTS


def test_a_service_that_cannot_be_destroyed_keeps_the_platform_so_nothing_is_orphaned():
    pair = runners()
    pair.service.fail_on = {"destroy": 99}
    with pytest.raises(TeardownFailed, match=f"finish with `pulumi destroy --stack {STACK}`"):
        run_ephemeral(pair)
    assert ("destroy", STACK) not in pair.platform.calls
    assert ("remove_stack", STACK, "force") not in pair.service.calls


def test_ephemeral_without_a_command_is_refused_before_creating_anything():
    pair = runners()
    with pytest.raises(ValueError, match="give the command to run after `--`"):
        run_ephemeral(pair, command=())
    assert pair.platform.journal.calls == []


def _bucket_with_locked_logs(s3, name: str) -> None:
    s3.create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": "ap-southeast-1"}, ObjectLockEnabledForBucket=True
    )
    s3.put_object_lock_configuration(
        Bucket=name,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 7}},
        },
    )
    for i in range(3):
        s3.put_object(Bucket=name, Key=f"AWSLogs/123456789012/log-{i}.json.gz", Body=b"{}")
        s3.put_object(Bucket=name, Key=f"AWSLogs/123456789012/log-{i}.json.gz", Body=b"{} ")


def test_nothing_is_left_behind_when_the_first_destroy_meets_a_non_empty_locked_bucket(moto_deletes_model_packages):
    """`pulumi destroy` is modelled as deleting the stack's buckets and model group in moto, failing as AWS does
    while a bucket holds objects."""
    s3 = boto3.client("s3", region_name="ap-southeast-1")
    buckets = ["eph-lake-raw", "eph-lake-artifacts"]
    for name in buckets:
        _bucket_with_locked_logs(s3, name)

    sagemaker = boto3.client("sagemaker", region_name="ap-southeast-1")
    sagemaker.create_model_package_group(ModelPackageGroupName="eph-models")
    sagemaker.create_model_package(
        ModelPackageGroupName="eph-models", ModelApprovalStatus="Approved",
        InferenceSpecification={"Containers": [{"Image": IMAGE, "ModelDataUrl": "s3://eph-lake-artifacts/m.tar.gz"}],
                                "SupportedContentTypes": ["application/json"],
                                "SupportedResponseMIMETypes": ["application/json"]},
    )

    def destroy_buckets(_stack: str) -> None:
        for name in buckets:
            if s3.list_object_versions(Bucket=name).get("Versions"):
                raise PulumiFailed(f"deleting S3 Bucket ({name}): BucketNotEmpty")
        for name in buckets:
            s3.delete_bucket(Bucket=name)

    pair = runners(on_destroy=destroy_buckets)
    pair.platform.outputs_by_stack[STACK] = {
        **PLATFORM_OUTPUTS, "lakeBuckets": {"raw": buckets[0], "a": buckets[1]}, "modelPackageGroupName": "eph-models",
    }
    emptier = StackEmptier("ap-southeast-1")
    assert run_ephemeral(pair, empty=emptier) == 0
    assert not {b["Name"] for b in s3.list_buckets()["Buckets"]} & set(buckets)
    assert sagemaker.list_model_packages(ModelPackageGroupName="eph-models")["ModelPackageSummaryList"] == []
    assert emptier.deleted == {"eph-lake-artifacts": 6, "eph-lake-raw": 6, "eph-models": 1}
    assert pair.platform.calls[-1] == ("remove_stack", STACK, "force")


def test_deploy_brings_up_the_platform_resolves_the_release_against_it_then_the_service():
    pair = runners()
    seen: list[dict] = []

    def resolve(platform_outputs):
        seen.append(platform_outputs)
        return RELEASE

    platform, service = automation.deploy(pair, "dev", PROJECT_DIR, resolve)
    assert seen == [PLATFORM_OUTPUTS] and service == SERVICE_OUTPUTS
    assert pair.platform.journal.calls == [
        ("platform", "create_stack", "dev"),
        ("platform", "preview", "dev", "dev.json"),
        ("platform", "up", "dev", "dev.json"),
        ("service", "create_stack", "dev"),
        ("service", "preview", "dev", "dev.json"),
        ("service", "up", "dev", "dev.json"),
    ]


def test_the_release_reaches_the_service_through_a_temporary_config_file_not_the_repository():
    pair = runners()
    before = (PROJECT_DIR / "service" / "Pulumi.dev.yaml").read_text()
    automation.deploy(pair, "dev", PROJECT_DIR, lambda _: RELEASE)
    used = yaml.safe_load(pair.service.config_files["dev"])["config"]
    assert used["retail:image"] == IMAGE and used["retail:modelPackageArn"] == PACKAGE
    assert used["retail:inference"]["minReplicas"] == 1, "the stack file's own settings come along"
    assert (PROJECT_DIR / "service" / "Pulumi.dev.yaml").read_text() == before
    status = subprocess.run(["git", "-C", str(PROJECT_DIR), "status", "--porcelain", "service/"],
                            capture_output=True, text=True, check=True)
    assert status.stdout == ""


def test_destroy_takes_the_service_down_before_the_platform_and_keeps_the_stacks():
    pair = runners()
    automation.destroy(pair, "dev", empty=lambda _: None, echo=lambda _: None)
    assert [c[:2] for c in pair.platform.journal.calls if c[1] in {"destroy", "remove_stack"}] == [
        ("service", "destroy"), ("platform", "destroy"),
    ]


def test_a_live_preview_covers_the_service_only_when_a_release_is_known():
    pair = runners()
    automation.preview(pair, "prod", PROJECT_DIR, None)
    assert pair.service.calls == []
    automation.preview(pair, "prod", PROJECT_DIR, RELEASE)
    assert pair.service.calls == [("select_stack", "prod"), ("preview", "prod", "prod.json")]


def test_the_current_release_is_read_from_the_service_outputs():
    pair = runners()
    pair.service.outputs_by_stack["dev"] = {"image": IMAGE, "modelPackageArn": PACKAGE}
    assert automation.current_release(pair.service, "dev") == RELEASE
    assert automation.current_release(pair.service, "nope") is None


@pytest.mark.parametrize(
    ("stack", "levels"), [("dev", "dev.json"), ("prod", "prod.json"), (STACK, "ephemeral.json"), ("qa", "dev.json")]
)
def test_each_stack_runs_the_pack_with_its_levels(stack, levels):
    assert automation.policy_config_for(stack).name == levels


@pytest.mark.parametrize(
    ("name", "stack"), [("PR-42", "ephemeral-pr-42"), ("Lake fix", "ephemeral-lake-fix")]
)
def test_ephemeral_stack_names_are_valid_pulumi_stack_names(name, stack):
    assert ephemeral_stack_name(name) == stack


AUTONAME_SUFFIX = 8
"""Pulumi's auto-naming adds `-` and seven random characters to a logical name."""
LIMITS = {"aws:iam/role:Role": 64, "aws:s3/bucket:Bucket": 63}


def test_long_branch_names_are_shortened_and_stay_distinct():
    one = ephemeral_stack_name("feature/a-very-long-branch-name-about-the-lake")
    two = ephemeral_stack_name("feature/a-very-long-branch-name-about-the-api")
    assert one != two and len(one) <= len("ephemeral-") + automation.EPHEMERAL_NAME_LENGTH


def test_every_auto_named_role_and_bucket_of_the_longest_ephemeral_stack_fits_aws_limits():
    """The offline ephemeral run is named `ephemeral`; a real one adds `-<name>` to every logical name."""
    import pulumi

    from infra.offline import preview_deployment

    runs = preview_deployment("ephemeral", PROJECT_DIR)
    pulumi.runtime.reset_options()
    extra = len(ephemeral_stack_name("x" * 99)) - len("ephemeral")
    names = [(r.type, r.name) for run in runs for r in run.resources if r.type in LIMITS and not r.inputs.get("name")]
    names += [("aws:iam/role:Role", f"{r.name}-eksRole-role") for r in runs[0].of_type("eks:index:Cluster")]
    too_long = [(t, n) for t, n in names if len(n) + extra + AUTONAME_SUFFIX > LIMITS[t]]
    assert names and too_long == []


def test_inline_runners_work_outside_the_repository(tmp_path):
    pair = automation.inline_runners(tmp_path / "work")
    assert pair.platform.work_dir.is_dir() and pair.service.work_dir.is_dir()
    assert pair.platform.project_name == "retail-mlops" and pair.service.project_name == "retail-mlops-service"


def test_command_env_gives_strings_as_is_and_everything_else_as_json():
    env = command_env({"name": "x", "ids": ["a", "b"]}, set())
    assert env["PULUMI_OUTPUT_NAME"] == "x" and env["PULUMI_OUTPUT_IDS"] == '["a", "b"]'
    assert json.loads(env["PULUMI_OUTPUTS_JSON"]) == {"ids": ["a", "b"], "name": "x"}


def test_without_the_cli_the_error_names_the_command_and_how_to_install(monkeypatch):
    monkeypatch.setattr(automation.shutil, "which", lambda _: None)
    with pytest.raises(PulumiCliMissing, match=r"required for `retail infra up`: install it with `curl -fsSL"):
        require_cli("retail infra up")


def test_a_mandatory_stack_rule_failing_in_the_preview_stops_the_deploy_before_any_up():
    """`up` alone runs the pack's stack rules after its steps: the preview before it is what blocks."""
    pair = runners()
    pair.platform.fail_on["preview"] = 1
    with pytest.raises(PulumiFailed):
        automation.deploy(pair, "dev", PROJECT_DIR, lambda _: RELEASE)
    assert [c[1] for c in pair.platform.journal.calls] == ["create_stack", "preview"]
