"""What the workflows promise beyond being valid: OIDC only, one deploy per stack at a time, an approval before prod."""

from __future__ import annotations

import re

import yaml

from tests.cicd.commands import ROOT, WORKFLOWS

WORKFLOW_DIR = ROOT / ".github" / "workflows"


def load(name: str) -> dict:
    return yaml.safe_load((WORKFLOW_DIR / name).read_text())


def steps_using(workflow: dict, action: str) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])
            if step.get("uses", "").startswith(f"{action}@")]


def test_aws_credentials_come_from_oidc_role_assumption_never_from_stored_keys():
    for path in WORKFLOWS:
        text = path.read_text()
        assert "AWS_ACCESS_KEY_ID" not in text and "AWS_SECRET_ACCESS_KEY" not in text, path.name
        for step in steps_using(yaml.safe_load(text), "aws-actions/configure-aws-credentials"):
            assert step["with"]["role-to-assume"].startswith("${{ secrets."), path.name


def test_jobs_that_assume_an_aws_role_may_request_an_oidc_token():
    for path in WORKFLOWS:
        workflow = yaml.safe_load(path.read_text())
        for name, job in workflow["jobs"].items():
            if any(step.get("uses", "").startswith("aws-actions/configure-aws-credentials@")
                   for step in job.get("steps", [])):
                permissions = job.get("permissions", workflow.get("permissions", {}))
                assert permissions.get("id-token") == "write", f"{path.name}: {name}"


def test_every_action_is_pinned_to_a_major_version_or_a_commit():
    for path in WORKFLOWS:
        for ref in re.findall(r"uses:\s*([^\s#]+)", path.read_text()):
            if ref.startswith("./"):
                continue
            assert re.search(r"@(v\d+|[0-9a-f]{40})$", ref), f"{path.name}: {ref}"


def test_a_stack_is_deployed_by_one_run_at_a_time_and_a_deploy_is_never_cancelled():
    job = load("deploy.yml")["jobs"]["deploy"]
    assert job["concurrency"] == {"group": "deploy-${{ inputs.stack }}", "cancel-in-progress": False}
    callers = load("main.yml")["jobs"]
    assert {callers[name]["with"]["stack"] for name in ("deploy-dev", "deploy-prod")} == {"dev", "prod"}


def test_the_pull_request_environment_is_never_cancelled_half_way():
    assert load("pr-environment.yml")["concurrency"]["cancel-in-progress"] is False


def test_prod_waits_for_dev_and_for_the_production_environment_approval():
    jobs = load("main.yml")["jobs"]
    prod = jobs["deploy-prod"]
    assert "deploy-dev" in prod["needs"]
    assert prod["with"]["environment"] == "production"
    assert load("deploy.yml")["jobs"]["deploy"]["environment"] == "${{ inputs.environment }}"


def test_the_image_is_pushed_tagged_with_the_commit():
    (build,) = steps_using(load("main.yml"), "docker/build-push-action")
    assert build["with"]["push"] is True
    assert build["with"]["tags"].endswith(":${{ github.sha }}")


def test_training_runs_only_when_retraining_is_called_for():
    jobs = load("main.yml")["jobs"]
    assert jobs["train"]["if"] == "needs.changes.outputs.retrain == 'true'"
    assert "retail changed --since" in jobs["changes"]["steps"][-1]["run"]


def test_a_failed_smoke_test_rolls_back_the_champion_and_the_image():
    steps = {step.get("name"): step for step in load("deploy.yml")["jobs"]["deploy"]["steps"]}
    model, image = steps["Rollback: the previous champion"], steps["Rollback: the previous image"]
    assert "steps.smoke.outcome == 'failure'" in model["if"] and "retail models rollback" in model["run"]
    assert "steps.smoke.outcome == 'failure'" in image["if"] and "retail smoke" in image["run"]


def test_previews_run_the_policy_pack_of_their_stack():
    (preview,) = steps_using(load("pull-request.yml"), "pulumi/actions")
    assert preview["with"]["command"] == "preview"
    assert preview["with"]["policyPacks"] == "policies"
    assert preview["with"]["policyPackConfigs"] == "policies/config/${{ matrix.stack }}.json"


def test_the_pull_request_stack_is_destroyed_when_the_pull_request_closes():
    workflow = load("pr-environment.yml")
    assert "closed" in workflow[True]["pull_request"]["types"]  # YAML 1.1 reads the key `on` as True
    assert workflow["jobs"]["destroy"]["if"].startswith("github.event.action == 'closed'")
