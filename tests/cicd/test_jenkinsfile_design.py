"""The Jenkinsfile runs the workflows' road with the same commands: the same stages, the data pin guarded, the
release remembered before a deploy and served again after a failed one, prod from inside its VPC after an input."""

from __future__ import annotations

import re

from tests.cicd.definitions import DESTROY_LEFTOVER_STACK, groovy_function, jenkins_stage, jenkinsfile

STAGES = ["Lint and test", "Policy and deploy checks", "dev", "prod", "ephemeral", "Preview dev",
          "Ephemeral environment", "Retrain?", "Train, gate and register", "Build and push the image", "Deploy dev",
          "Approve prod", "Deploy prod"]


def test_the_stages_are_the_workflows_jobs_in_order():
    assert re.findall(r"stage\('([^']+)'\)", jenkinsfile()) == STAGES


def test_pull_requests_preview_dev_and_smoke_test_an_ephemeral_environment():
    assert "when { changeRequest() }" in jenkins_stage("Preview dev")
    assert "retail infra preview --live --stack dev" in jenkins_stage("Preview dev")
    ephemeral = jenkins_stage("Ephemeral environment")
    assert """--url "$PULUMI_OUTPUT_ENDPOINT" --api-key-env RETAIL_API_KEY""" in ephemeral
    assert 'destroyLeftovers("ephemeral-pr-${env.CHANGE_ID}")' in ephemeral


def test_leftover_ephemeral_stacks_are_destroyed_service_first_then_scanned_for_leaks():
    body = groovy_function("destroyLeftovers")
    assert re.findall(r"^    sh '(.*)'$", body, re.M) == [
        f'{DESTROY_LEFTOVER_STACK} "$STACK" service', f'{DESTROY_LEFTOVER_STACK} "$STACK" .',
        'uv run retail infra leaks --stack "$STACK"']
    assert "pulumi destroy" not in body


def test_training_needs_the_pin_and_a_reason():
    decision = groovy_function("retrainDecision")
    exists = decision.index("fileExists('datasets/training-manifest.txt')")
    assert exists < decision.index("readFile('datasets/training-manifest.txt')")
    assert "retail changed --since" in decision
    assert "environment name: 'RETRAIN_MODEL', value: 'true'" in jenkins_stage("Train, gate and register")
    assert '--manifest "$TRAINING_MANIFEST"' in jenkins_stage("Train, gate and register")


def test_the_image_is_deployed_by_digest():
    push = groovy_function("pushReleaseImage")
    assert "imageDetails[0].imageDigest" in push and 'return "${env.DEV_REPOSITORY}@${digest}"' in push
    assert "deployStack('dev', env.RETAIL_DEV_ROLE_ARN, env.RELEASE_IMAGE, '', false)" in jenkins_stage("Deploy dev")


def test_a_deploy_remembers_the_running_release_and_serves_it_again_when_it_fails():
    deploy = groovy_function("deployStack")
    remembered = deploy.index("List<String> previous = servedRelease()")
    up = deploy.index('retail infra up --stack "$STACK" --image "$IMAGE"')
    rollback = deploy.index('retail infra up --stack "$STACK" --service-only --image "$PREVIOUS_IMAGE" '
                            '--model-package "$PREVIOUS_PACKAGE"')
    assert remembered < up < rollback
    assert '"PREVIOUS_IMAGE=${previous[0]}", "PREVIOUS_PACKAGE=${previous[1]}"' in deploy
    assert "if (previous[0] && previous[1])" in deploy and "throw failure" in deploy
    served = groovy_function("servedRelease")
    assert "dir('service')" in served and "|| true" in served
    assert 'pulumi stack output image --stack "$STACK"' in served
    assert 'pulumi stack output modelPackageArn --stack "$STACK"' in served


def test_prod_deploys_what_dev_served_from_inside_its_vpc_after_an_input():
    assert "input message:" in jenkins_stage("Approve prod")
    prod = jenkins_stage("Deploy prod")
    assert "agent { label 'retail-prod-vpc' }" in prod and "lock('deploy-prod')" in prod
    assert "deployStack('prod', env.RETAIL_PROD_ROLE_ARN, env.PROMOTED_IMAGE, env.PROMOTED_MODEL_PACKAGE, true)" in prod
    assert "env.PROMOTED_MODEL_PACKAGE = served.modelPackage" in jenkins_stage("Deploy dev")
    copy = groovy_function("copyImageToStack")
    assert 'docker buildx imagetools create --prefer-index=false --tag "$target:$IMAGE_TAG" "$SOURCE_IMAGE"' in copy
    assert 'echo "$target@$digest"' in copy
