"""What the GitHub workflows promise beyond being valid: the model's road from a commit to prod.

OIDC only; the image deployed by the digest the build reported; the model published by the
service stack from an approved package; one deploy per stack at a time; a failed deploy
serves the release that ran before; prod after dev and an approval, with what dev served.
"""

from __future__ import annotations

import re
import subprocess
from collections import defaultdict

import pytest
import yaml

from tests.cicd.commands import WORKFLOWS
from tests.cicd.definitions import (
    DESTROY_LEFTOVER_STACK,
    all_workflows,
    load,
    position,
    pulumi_calls,
    run_step,
    step,
    steps,
    steps_using,
)

SHA_PIN = re.compile(r"^\s*(?:-\s*)?uses:\s*([\w.-]+/[\w./-]+)@([0-9a-f]{40}) # (v\d+\.\d+\.\d+)$")
PINNED_ACTIONS = {"actions/checkout", "astral-sh/setup-uv", "actions/setup-node",
                  "aws-actions/configure-aws-credentials", "aws-actions/amazon-ecr-login", "pulumi/actions",
                  "docker/setup-buildx-action", "docker/build-push-action"}
URI = "s3://retail-dev-raw-0123/lake/manifests/20260101T000000Z.json"


def test_aws_credentials_come_from_oidc_role_assumption_never_from_stored_keys():
    for path in WORKFLOWS:
        text = path.read_text()
        assert "AWS_ACCESS_KEY_ID" not in text and "AWS_SECRET_ACCESS_KEY" not in text, path.name
        for action in steps_using(yaml.safe_load(text), "aws-actions/configure-aws-credentials"):
            assert action["with"]["role-to-assume"].startswith("${{ secrets."), path.name


def test_jobs_that_assume_an_aws_role_may_request_an_oidc_token():
    for path in WORKFLOWS:
        workflow = yaml.safe_load(path.read_text())
        for name, job in workflow["jobs"].items():
            if any(s.get("uses", "").startswith("aws-actions/configure-aws-credentials@") for s in steps(job)):
                permissions = job.get("permissions", workflow.get("permissions", {}))
                assert permissions.get("id-token") == "write", f"{path.name}: {name}"


def test_every_action_is_pinned_to_a_full_commit_sha_with_its_release_in_a_comment():
    pins = defaultdict(set)
    for path in WORKFLOWS:
        for line in path.read_text().splitlines():
            if "uses:" not in line or "uses: ./" in line:
                continue
            match = SHA_PIN.match(line)
            assert match, f"{path.name}: {line.strip()}"
            action, sha, release = match.groups()
            pins[action].add((sha, release))
    assert set(pins) == PINNED_ACTIONS
    assert {action: len(found) for action, found in pins.items()} == dict.fromkeys(PINNED_ACTIONS, 1)


def test_uv_is_one_pinned_version_in_the_makefile_the_project_and_every_workflow():
    root = WORKFLOWS[0].parents[2]
    makefile = re.search(r"^UV_VERSION := (\S+)$", (root / "Makefile").read_text(), re.MULTILINE)
    assert makefile, "the Makefile sets no UV_VERSION"
    version = makefile.group(1)
    assert f'required-version = "=={version}"' in (root / "pyproject.toml").read_text()
    setup = subprocess.run(["make", "-n", "setup"], cwd=root, capture_output=True, text=True, check=True).stdout
    assert f'pip install --quiet "uv=={version}"' in setup
    setups = [(name, s) for name, w in all_workflows().items() for s in steps_using(w, "astral-sh/setup-uv")]
    assert setups
    for name, setup in setups:
        assert str((setup.get("with") or {}).get("version")) == version, f"{name}: setup-uv without version {version}"


def test_a_stack_is_deployed_by_one_run_at_a_time_and_a_deploy_is_never_cancelled():
    job = load("deploy.yml")["jobs"]["deploy"]
    assert job["concurrency"] == {"group": "deploy-${{ inputs.stack }}", "cancel-in-progress": False}
    callers = load("main.yml")["jobs"]
    assert {callers[name]["with"]["stack"] for name in ("deploy-dev", "deploy-prod")} == {"dev", "prod"}


def test_the_pull_request_environment_is_never_cancelled_half_way():
    """The environment job holds a group of its own that never cancels, shared with the close-time destroy (which
    then waits for it); its workflow has no group of its own, whose cancelling a newer push would cancel the job too.
    The checks before it are still cancelled by a newer push, each job in its own group."""
    checks = load("pr-environment.yml")
    workflow = load("pull-request.yml")
    environment = workflow["jobs"]["ephemeral"]["concurrency"]
    assert environment == {"group": "pr-environment-${{ github.event.pull_request.number }}",
                           "cancel-in-progress": False}
    assert checks["concurrency"] == environment
    assert "concurrency" not in workflow
    for job_id in ("test", "policy", "preview"):
        group = workflow["jobs"][job_id]["concurrency"]
        assert group["cancel-in-progress"] is True and group["group"] != environment["group"], job_id
    assert workflow["jobs"]["policy"]["concurrency"]["group"].endswith("${{ matrix.stack }}")


@pytest.mark.parametrize(("state", "deploys"), [("OPEN", True), ("CLOSED", False), ("MERGED", False)])
def test_the_environment_deploys_only_while_its_pull_request_is_still_open(tmp_path, state, deploys):
    """A run whose pull request closed while its checks ran neither deploys nor queues in the environment's group,
    where it would displace the close-time destroy waiting there: the gate reads the state when the checks passed."""
    jobs = load("pull-request.yml")["jobs"]
    gate, environment = jobs["open"], jobs["ephemeral"]
    assert set(gate["needs"]) == {"test", "policy"} and "open" in environment["needs"]
    assert environment["if"] == "needs.open.outputs.open == 'true'"
    assert gate["outputs"]["open"] == "${{ steps.state.outputs.open }}"
    (read,) = steps(gate)
    gh = f'[ "$*" = "pr view 42 --json state --jq .state" ] || exit 9\necho {state}'
    code, outputs, log = run_step(read["run"], tmp_path, {"PR_NUMBER": "42"}, {"gh": gh})
    assert code == 0, log
    assert outputs == {"open": "true" if deploys else "false"}


def test_the_environment_gate_fails_when_the_pull_request_s_state_cannot_be_read(tmp_path):
    (read,) = steps(load("pull-request.yml")["jobs"]["open"])
    code, outputs, _ = run_step(read["run"], tmp_path, {"PR_NUMBER": "42"}, {"gh": "echo 'HTTP 401' >&2; exit 1"})
    assert code != 0 and outputs == {}


def test_offline_checks_cover_dev_prod_and_ephemeral_on_pull_requests_and_on_main():
    for name in ("main.yml", "pull-request.yml"):
        policy = load(name)["jobs"]["policy"]
        assert policy["strategy"]["matrix"]["stack"] == ["dev", "prod", "ephemeral"]
        assert steps(policy)[-1]["run"] == 'uv run retail infra check --stack "$STACK"'


def test_a_pull_request_previews_both_dev_stacks_live_with_the_policy_pack():
    preview = load("pull-request.yml")["jobs"]["preview"]
    assert steps(preview)[-1]["run"] == "uv run retail infra preview --live --stack dev"
    assert "head.repo.full_name == github.repository" in preview["if"]


def test_the_image_is_deployed_by_the_digest_the_build_reported():
    jobs = load("main.yml")["jobs"]
    image = jobs["image"]
    build = step(image, "build")
    assert build["uses"].startswith("docker/build-push-action@") and build["with"]["push"] is True
    assert build["with"]["tags"] == "${{ steps.repository.outputs.url }}:${{ env.TAG }}"
    assert image["env"]["TAG"] == "git-${{ github.sha }}"
    digest = step(image, "digest")
    assert digest["env"]["BUILT"] == "${{ steps.build.outputs.digest }}"
    assert 'image=$REPOSITORY@$digest' in digest["run"]
    assert image["outputs"]["image"] == "${{ steps.digest.outputs.image }}"
    assert jobs["deploy-dev"]["with"]["image"] == "${{ needs.image.outputs.image }}"


def test_the_digest_step_takes_the_build_s_digest_or_the_one_an_earlier_attempt_pushed(tmp_path):
    script = step(load("main.yml")["jobs"]["image"], "digest")["run"]
    repo = "123456789012.dkr.ecr.ap-southeast-1.amazonaws.com/retail-dev-inference"
    built = "sha256:" + "a" * 64
    for env, expected in (({"BUILT": built, "EXISTING": ""}, built), ({"BUILT": "", "EXISTING": built}, built)):
        code, outputs, _ = run_step(script, tmp_path, {"REPOSITORY": repo, **env}, {})
        assert code == 0 and outputs == {"image": f"{repo}@{expected}"}
    code, outputs, log = run_step(script, tmp_path, {"REPOSITORY": repo, "BUILT": "", "EXISTING": ""}, {})
    assert code == 1 and outputs == {} and "no image digest" in log


def test_training_runs_only_when_retraining_is_called_for_on_the_pinned_manifest():
    jobs = load("main.yml")["jobs"]
    assert jobs["train"]["if"] == "needs.changes.outputs.retrain == 'true'"
    assert jobs["train"]["env"]["MANIFEST"] == "${{ needs.changes.outputs.manifest }}"
    assert steps(jobs["train"])[-1]["run"] == 'uv run retail train --cloud --stack dev --manifest "$MANIFEST"'
    assert 'retail changed --since "$BEFORE"' in step(jobs["changes"], "decide")["run"]


def decide(tmp_path, pin: str | None, changed: str = "true", event: str = "push", forced: str = ""):
    if pin is not None:
        (tmp_path / "datasets").mkdir(exist_ok=True)
        (tmp_path / "datasets" / "training-manifest.txt").write_text(pin)
    script = step(load("main.yml")["jobs"]["changes"], "decide")["run"]
    env = {"BEFORE": "0" * 40, "FORCED": forced, "GITHUB_EVENT_NAME": event}
    return run_step(script, tmp_path, env, {"uv": f'echo "uv $*" >&2; echo {changed}'})


def test_without_a_data_pin_nothing_trains_and_nothing_reads_the_pin(tmp_path):
    code, outputs, log = decide(tmp_path, pin=None)
    assert (code, outputs) == (0, {"retrain": "false"})
    assert "serves the newest approved model version" in log and "uv run" not in log


def test_a_pinned_manifest_trains_when_retail_changed_says_so(tmp_path):
    assert decide(tmp_path, pin=f"{URI}\n")[:2] == (0, {"manifest": URI, "retrain": "true"})
    assert decide(tmp_path, pin=URI, changed="false")[:2] == (0, {"manifest": URI, "retrain": "false"})


def test_a_manual_run_retrains_on_request_and_fails_when_nothing_is_pinned(tmp_path):
    assert decide(tmp_path / "x", pin=None, event="workflow_dispatch", forced="true")[0] == 1
    (tmp_path / "y").mkdir()
    code, outputs, log = decide(tmp_path / "y", pin=URI, event="workflow_dispatch", forced="true", changed="false")
    assert (code, outputs) == (0, {"manifest": URI, "retrain": "true"}) and "uv run" not in log


def test_a_pin_that_is_not_a_lake_manifest_uri_fails_the_run(tmp_path):
    code, _, log = decide(tmp_path, pin="lake/manifests/run.json")
    assert code == 1 and "expected one s3://" in log


def test_dev_deploys_after_a_skipped_training_but_not_after_a_failed_one():
    condition = load("main.yml")["jobs"]["deploy-dev"]["if"]
    assert "needs.changes.result == 'success'" in condition and "needs.image.result == 'success'" in condition
    assert """contains(fromJSON('["success", "skipped"]'), needs.train.result)""" in condition


def test_the_deploy_remembers_the_running_release_before_changing_anything():
    job = load("deploy.yml")["jobs"]["deploy"]
    previous = step(job, "previous")
    assert previous["working-directory"] == "service"
    assert 'pulumi stack output image --stack "$STACK"' in previous["run"]
    assert 'pulumi stack output modelPackageArn --stack "$STACK"' in previous["run"]
    assert position(job, "previous") < position(job, "copy") < position(job, "deploy")


def test_remembering_tolerates_a_first_deploy_with_no_service_stack(tmp_path):
    script = step(load("deploy.yml")["jobs"]["deploy"], "previous")["run"]
    missing = 'echo "error: no stack named \'dev\' found" >&2; exit 255'
    code, outputs, _ = run_step(script, tmp_path, {"STACK": "dev"}, {"pulumi": missing})
    assert (code, outputs) == (0, {"image": "", "model-package": ""})
    running = 'case "$3" in image) echo repo@sha256:1;; modelPackageArn) echo arn:pkg/3;; esac'  # stack output NAME
    code, outputs, _ = run_step(script, tmp_path, {"STACK": "dev"}, {"pulumi": running})
    assert (code, outputs) == (0, {"image": "repo@sha256:1", "model-package": "arn:pkg/3"})


def test_a_failed_deploy_serves_the_remembered_release_again():
    job = load("deploy.yml")["jobs"]["deploy"]
    rollback = steps(job)[-1]
    assert rollback["if"] == "failure() && steps.deploy.outcome == 'failure' && steps.previous.outputs.image != ''"
    assert rollback["env"] == {"PREVIOUS_IMAGE": "${{ steps.previous.outputs.image }}",
                               "PREVIOUS_PACKAGE": "${{ steps.previous.outputs.model-package }}"}
    assert ('uv run retail infra up --stack "$STACK" --service-only --image "$PREVIOUS_IMAGE" '
            '--model-package "$PREVIOUS_PACKAGE"') in rollback["run"]
    assert position(job, "deploy") < len(steps(job)) - 1


def test_the_deploy_passes_the_release_and_leaves_the_smoke_test_on():
    deploy = step(load("deploy.yml")["jobs"]["deploy"], "deploy")
    assert deploy["env"]["IMAGE"] == "${{ steps.copy.outputs.image || inputs.image }}"
    assert 'uv run retail infra up --stack "$STACK" --image "$IMAGE" --model-package "$MODEL_PACKAGE"' in deploy["run"]
    assert "--no-smoke" not in deploy["run"]


def test_prod_waits_for_dev_and_the_production_approval_and_runs_inside_its_vpc():
    prod = load("main.yml")["jobs"]["deploy-prod"]
    assert prod["needs"] == ["deploy-dev"] and "needs.deploy-dev.result == 'success'" in prod["if"]
    assert prod["with"]["environment"] == "production"
    assert prod["with"]["runner"] == '["self-hosted", "linux", "retail-prod-vpc"]'
    assert load("deploy.yml")["jobs"]["deploy"]["environment"] == "${{ inputs.environment }}"


def test_prod_gets_the_image_and_model_package_dev_served_after_its_smoke_test():
    jobs = load("main.yml")["jobs"]
    prod = jobs["deploy-prod"]["with"]
    assert prod["image"] == "${{ needs.deploy-dev.outputs.image }}"
    assert prod["model-package"] == "${{ needs.deploy-dev.outputs.model-package }}"
    assert prod["copy-image"] is True
    deploy = load("deploy.yml")
    outputs = deploy[True]["workflow_call"]["outputs"]  # YAML 1.1 reads the key `on` as True
    assert outputs["model-package"]["value"] == "${{ jobs.deploy.outputs.model-package }}"
    job = deploy["jobs"]["deploy"]
    assert job["outputs"]["model-package"] == "${{ steps.served.outputs.model-package }}"
    assert position(job, "deploy") < position(job, "served")


def test_prod_copies_the_image_into_its_own_registry_keeping_the_digest():
    copy = step(load("deploy.yml")["jobs"]["deploy"], "copy")
    assert copy["if"] == "inputs.copy-image"
    create = 'docker buildx imagetools create --prefer-index=false --tag "$target:git-$GITHUB_SHA" "$SOURCE"'
    assert create in copy["run"]
    assert 'docker buildx imagetools inspect "$target@$digest" >/dev/null\n' in copy["run"]
    assert 'image=$target@$digest' in copy["run"]


def test_ephemeral_smoke_test_uses_the_endpoint_output_and_the_key_the_stack_generated():
    (run,) = [s["run"] for s in steps(load("pull-request.yml")["jobs"]["ephemeral"])
              if s.get("run", "").startswith("uv run retail infra")]
    assert run.startswith('uv run retail infra ephemeral --name "$NAME"')
    assert """sh -c 'uv run retail smoke --url "$PULUMI_OUTPUT_ENDPOINT" --api-key-env RETAIL_API_KEY'""" in run


def test_closing_a_pull_request_destroys_what_is_left_of_both_projects_service_first():
    workflow = load("pr-environment.yml")
    assert workflow[True]["pull_request"]["types"] == ["closed"]  # YAML 1.1 reads the key `on` as True
    name = load("pull-request.yml")["jobs"]["ephemeral"]["env"]["NAME"]  # `retail infra ephemeral --name "$NAME"`
    assert workflow["env"]["STACK"] == f"ephemeral-{name}" == "ephemeral-pr-${{ github.event.pull_request.number }}"
    destroy = workflow["jobs"]["destroy"]
    runs = [s.get("run") for s in steps(destroy)]
    service = runs.index(f'{DESTROY_LEFTOVER_STACK} "$STACK" service')
    assert runs[service + 1] == f'{DESTROY_LEFTOVER_STACK} "$STACK" .'
    assert runs[-1] == LEAK_SCAN
    assert not any("pulumi destroy" in (run or "") for run in runs)  # the script's destroy, not one of its own


LEAK_SCAN = 'uv run retail infra leaks --stack "$STACK"'


def test_a_cancelled_environment_run_cancels_its_open_updates_and_only_that(tmp_path):
    """Its `retail infra ephemeral` is killed seconds after the cancel, and an update the kill left open would refuse
    the next push's run. Only the cancels run: the steps after a cancel get 5 minutes, less than a destroy takes."""
    job = load("pull-request.yml")["jobs"]["ephemeral"]
    cleanup = steps(job)[-1]
    assert cleanup["if"] == "cancelled()"
    assert cleanup["env"]["STACK"] == "ephemeral-${{ env.NAME }}" and job["env"]["NAME"].startswith("pr-")
    for open_update in ("", "yes"):
        assert pulumi_calls(cleanup["run"], tmp_path, OPEN=open_update) == (
            0, [f"cancel --yes --stack ephemeral-pr-42 --cwd {project}" for project in ("service", ".")])
    without_pulumi = {"PATH": "/usr/bin:/bin", "STACK": "ephemeral-pr-42"}
    code, _, log = run_step(cleanup["run"], tmp_path, without_pulumi, {})
    assert code == 0 and "before the Pulumi CLI was installed" in log
