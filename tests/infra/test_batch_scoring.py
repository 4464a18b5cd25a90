"""BatchScoring: `retail score` weekly on the batch spot nodes, bounded, hardened, with an IRSA role that reads the
silver zone and the served bundle and writes predictions, nothing else."""

import json

import pulumi
import pytest

from infra.batch_scoring import APP, BatchScoring, BatchScoringArgs
from infra.config import BatchScoringConfig
from infra.offline import OfflineRun

from .helpers import build, policy_of, statements

ISSUER = "oidc.eks.ap-southeast-1.amazonaws.com/id/EXAMPLE"
LAKE = "arn:aws:s3:::lake-raw"
ARTIFACTS = "arn:aws:s3:::lake-artifacts"
DATA_KEY = "arn:aws:kms:ap-southeast-1:123456789012:key/data"
IMAGE = "123456789012.dkr.ecr.ap-southeast-1.amazonaws.com/reg/inference@sha256:" + "b" * 64
BUNDLE_PREFIX = "models/price-sensitivity/serving/test"
BUNDLE_SHA = "c" * 64
BATCH_LABELS = {"retail.io/workload": "batch"}
BATCH_TAINTS = [{"key": "retail.io/workload", "value": "batch", "effect": "NoSchedule"}]


class Autoscaler(pulumi.CustomResource):
    """Stands in for the Cluster Autoscaler's Helm release."""

    def __init__(self, name: str) -> None:
        super().__init__("test:index:Autoscaler", name, {})


def scoring(**sizing) -> OfflineRun:
    def program() -> None:
        args = BatchScoringArgs(
            environment="test",
            region="ap-southeast-1",
            image=IMAGE,
            lake_bucket="lake-raw",
            lake_bucket_arn=LAKE,
            bundle_uri=f"s3://lake-artifacts/{BUNDLE_PREFIX}/{BUNDLE_SHA}/",
            bundle_bucket_arn=ARTIFACTS,
            bundle_prefix=BUNDLE_PREFIX,
            bundle_sha256=BUNDLE_SHA,
            data_kms_key_arn=DATA_KEY,
            oidc_provider_arn=f"arn:aws:iam::123456789012:oidc-provider/{ISSUER}",
            oidc_issuer=ISSUER,
            node_labels=BATCH_LABELS,
            node_taints=BATCH_TAINTS,
            vpc_cidr="10.40.0.0/16",
            s3_cidrs=["52.219.0.0/20"],
            autoscaler=Autoscaler("autoscaler"),
            sizing=BatchScoringConfig(**sizing),
        )
        BatchScoring("batch", args)

    return build(program)


@pytest.fixture(scope="module")
def run() -> OfflineRun:
    return scoring()


def one(run, kind):
    (resource,) = [r for r in run.resources if r.type.endswith(f":{kind}")]
    return resource


@pytest.fixture(scope="module")
def cron(run):
    return one(run, "CronJob").inputs["spec"]


@pytest.fixture(scope="module")
def job(cron):
    return cron["jobTemplate"]["spec"]


@pytest.fixture(scope="module")
def pod(job):
    return job["template"]["spec"]


@pytest.fixture(scope="module")
def container(pod):
    (only,) = pod["containers"]
    return only


def env_of(container) -> dict:
    return {e["name"]: e["value"] for e in container["env"]}


# --- the schedule and the job's bounds ---------------------------------------------------------------------------
def test_the_cron_job_runs_weekly_on_the_configured_schedule_and_zone(cron):
    assert (cron["schedule"], cron["timeZone"], cron["suspend"]) == ("0 3 * * 1", "Etc/UTC", False)


def test_a_run_still_going_makes_the_next_one_skip_and_late_starts_are_bounded(cron):
    """An hour's grace to create a late Job: with the 2-hour deadline, the Monday 03:00 run ends by 06:00."""
    assert cron["concurrencyPolicy"] == "Forbid"
    assert cron["startingDeadlineSeconds"] == 3600


def test_a_run_is_stopped_after_its_deadline_retried_twice_and_deleted_after_four_days(job):
    assert (job["activeDeadlineSeconds"], job["backoffLimit"], job["ttlSecondsAfterFinished"]) == (7200, 2, 345600)


def test_spot_interruptions_use_no_retry_and_an_input_error_fails_at_once(job, pod):
    ignore, fail = job["podFailurePolicy"]["rules"]
    assert ignore == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    assert fail["action"] == "FailJob"
    assert fail["onExitCodes"] == {"containerName": "score", "operator": "In", "values": [2]}
    assert pod["restartPolicy"] == "Never"  # podFailurePolicy requires it


def test_a_suspended_stack_keeps_the_cron_job_but_starts_nothing():
    assert one(scoring(suspend=True), "CronJob").inputs["spec"]["suspend"] is True


# --- where it runs --------------------------------------------------------------------------------------------------
def test_pods_select_the_batch_nodes_and_tolerate_their_taint(pod):
    assert pod["nodeSelector"] == BATCH_LABELS
    assert pod["tolerations"] == [
        {"key": "retail.io/workload", "operator": "Equal", "value": "batch", "effect": "NoSchedule"}
    ]


def test_the_autoscaler_never_removes_the_node_under_a_running_job(job):
    annotations = job["template"]["metadata"]["annotations"]
    assert annotations == {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}


def test_the_cron_job_is_created_after_the_autoscaler(run):
    (autoscaler,) = run.of_type("test:index:Autoscaler")
    assert autoscaler.urn in one(run, "CronJob").dependencies


# --- what it runs ---------------------------------------------------------------------------------------------------
def test_the_container_runs_retail_score_on_the_silver_run_with_the_served_bundle(container):
    assert container["image"] == IMAGE
    assert container["command"] == ["python", "-m", "cli.score"]  # `retail score` as the image ships it
    assert container["args"] == [
        "--input", "s3://lake-raw/lake/silver/latest/", "--bundle", f"s3://lake-artifacts/{BUNDLE_PREFIX}/{BUNDLE_SHA}/",
    ]  # fmt: skip


def test_predictions_go_to_the_lake_root_and_only_the_published_bundle_is_accepted(run, container):
    env = env_of(container)
    assert env["RETAIL_LAKE_ROOT"] == "s3://lake-raw/lake"
    assert env["RETAIL_MODEL_SHA256"] == BUNDLE_SHA


def test_every_run_publishes_its_outcome_as_emf_in_the_stacks_environment(container):
    """cli/score.py writes one EMF line per run with these set; the platform's scoring alarms read it."""
    env = env_of(container)
    assert (env["RETAIL_EMF_ENABLED"], env["RETAIL_ENVIRONMENT"]) == ("true", "test")


def test_the_bundle_cache_and_scratch_space_are_on_the_writable_tmp(container):
    env = env_of(container)
    assert env["RETAIL_MODEL_CACHE_DIR"].startswith("/tmp/") and env["RETAIL_WORK_DIR"].startswith("/tmp/")
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]


def test_the_input_and_lake_prefix_come_from_config():
    container = one(scoring(lake_prefix="", input_path="20260101T000000Z-abc"), "CronJob").inputs["spec"]
    container = container["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][1] == "s3://lake-raw/silver/20260101T000000Z-abc/"
    assert env_of(container)["RETAIL_LAKE_ROOT"] == "s3://lake-raw"


# --- pod security, like the inference pods ------------------------------------------------------------------------
def test_the_namespace_enforces_the_restricted_pod_security_standard(run):
    labels = one(run, "Namespace").inputs["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_pods_run_as_non_root_with_runtime_default_seccomp_and_no_api_token(pod):
    context = pod["securityContext"]
    assert context["runAsNonRoot"] is True and context["runAsUser"] == 10001
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False


def test_the_container_has_a_read_only_root_no_escalation_and_no_capabilities(container):
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}


def test_tmp_is_a_size_limited_empty_dir(pod):
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "4Gi"}}]


def test_requests_and_limits_leave_room_for_the_commands_two_gigabytes(container):
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": "3Gi"},
        "limits": {"cpu": "2", "memory": "3Gi"},
    }


def test_nothing_reaches_the_pods_and_they_reach_only_dns_the_vpc_endpoints_and_s3(run):
    policy = one(run, "NetworkPolicy").inputs["spec"]
    assert policy["podSelector"] == {"matchLabels": {"app": APP}}
    assert policy["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in policy
    dns, vpc, s3 = policy["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert vpc["to"] == [{"ipBlock": {"cidr": "10.40.0.0/16"}}] and vpc["ports"] == [{"protocol": "TCP", "port": 443}]
    assert s3["to"] == [{"ipBlock": {"cidr": "52.219.0.0/20"}}]


def test_the_cron_job_is_created_after_its_network_policy(run):
    assert one(run, "NetworkPolicy").urn in one(run, "CronJob").dependencies


# --- identity and permissions ---------------------------------------------------------------------------------------
def test_the_service_account_is_annotated_with_the_scorer_role(run, pod):
    (role,) = run.of_type("aws:iam/role:Role")
    account = one(run, "ServiceAccount").inputs
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": role.outputs["arn"]}
    assert pod["serviceAccountName"] == account["metadata"]["name"] == APP


def test_only_that_service_account_can_assume_the_role(run):
    (role,) = run.of_type("aws:iam/role:Role")
    (trust,) = policy_of(role, "assumeRolePolicy")["Statement"]
    assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert trust["Principal"] == {"Federated": f"arn:aws:iam::123456789012:oidc-provider/{ISSUER}"}
    assert trust["Condition"] == {
        "StringEquals": {
            f"{ISSUER}:sub": f"system:serviceaccount:retail-batch:{APP}",
            f"{ISSUER}:aud": "sts.amazonaws.com",
        }
    }


def test_the_role_reads_silver_and_the_bundle_writes_predictions_and_nothing_else(run):
    (access,) = run.of_type("aws:iam/rolePolicy:RolePolicy")
    assert {s["Sid"]: (s["Action"], s["Resource"], s.get("Condition")) for s in statements(access)} == {
        "ListSilverZone": ("s3:ListBucket", LAKE, {"StringLike": {"s3:prefix": "lake/silver/*"}}),
        "ReadSilverZone": ("s3:GetObject", f"{LAKE}/lake/silver/*", None),
        "ListServedBundle": ("s3:ListBucket", ARTIFACTS, {"StringLike": {"s3:prefix": f"{BUNDLE_PREFIX}/*"}}),
        "ReadServedBundle": ("s3:GetObject", f"{ARTIFACTS}/{BUNDLE_PREFIX}/*", None),
        "WritePredictions": ("s3:PutObject", f"{LAKE}/lake/predictions/*", None),
        "UseDataKeyThroughS3": (
            ["kms:Decrypt", "kms:GenerateDataKey"],
            DATA_KEY,
            {"StringEquals": {"kms:ViaService": "s3.ap-southeast-1.amazonaws.com"}},
        ),
    }
    assert all(s["Effect"] == "Allow" for s in statements(access))


def test_no_statement_allows_deleting_or_listing_the_whole_lake(run):
    (access,) = run.of_type("aws:iam/rolePolicy:RolePolicy")
    text = json.dumps(statements(access))
    assert "Delete" not in text and '"*"' not in text
    listing = [s for s in statements(access) if s["Action"] == "s3:ListBucket"]
    assert all("s3:prefix" in s["Condition"]["StringLike"] for s in listing)
