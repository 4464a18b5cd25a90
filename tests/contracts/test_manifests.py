"""checkov over the deployment's Kubernetes objects, the Dockerfiles and the CI workflows.

One checkov process scans everything (it takes seconds to start): the objects of the
dev, prod and ephemeral deployments, a fixture stack holding an unhardened Deployment,
and the repository's files. The scan is skipped only when tools/checkov/.venv is missing
(`make setup-test` installs it); any other checkov failure fails the tests.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import yaml

from infra.offline import OfflineRun, RegisteredResource
from policies import manifests
from policies.documents import CHECKOV, apply_waivers, check_id, load_waivers, stale_waivers
from policies.manifests import (
    CHECKOV_BIN,
    CheckovMissing,
    CheckovReport,
    kubernetes_manifest,
    raw_manifest_findings_by_stack,
    render_manifests,
    repository_files,
    run_checkov,
)
from tests.contracts.helpers import PROJECT_DIR, STACKS

CHECKOV_TIMEOUT_SECONDS = 120
needs_checkov = pytest.mark.skipif(
    not (PROJECT_DIR / CHECKOV_BIN).is_file(),
    reason=f"{CHECKOV_BIN} is missing: `make setup-test` installs checkov (uv sync --project tools/checkov)",
)


def k8s(type_: str, name: str, inputs: dict, outputs: dict | None = None) -> RegisteredResource:
    return RegisteredResource(
        urn=f"urn:pulumi:fixture::fixture::{type_}::{name}",
        id=name,
        type=type_,
        name=name,
        parent="",
        custom=True,
        remote=False,
        inputs=inputs,
        outputs=outputs or {},
    )


UNHARDENED = k8s(
    "kubernetes:apps/v1:Deployment",
    "insecure-deployment",
    {
        "metadata": {"name": "insecure"},
        "spec": {
            "selector": {"matchLabels": {"app": "insecure"}},
            "template": {
                "metadata": {"labels": {"app": "insecure"}},
                "spec": {
                    "containers": [{"name": "app", "image": "nginx:latest", "securityContext": {"privileged": True}}]
                },
            },
        },
    },
)
FIXTURE_RUN = OfflineRun(
    "fixture", "fixture", "urn:pulumi:fixture::fixture::pulumi:pulumi:Stack::fixture", [UNHARDENED]
)


# --------------------------------------------------------------------------- rendering (no checkov)


def test_the_core_group_renders_as_api_version_v1():
    manifest = kubernetes_manifest(k8s("kubernetes:core/v1:Service", "svc", {"metadata": {"name": "api"}}))
    assert (manifest["apiVersion"], manifest["kind"]) == ("v1", "Service")


def test_a_named_group_renders_as_group_slash_version():
    manifest = kubernetes_manifest(k8s("kubernetes:networking.k8s.io/v1:Ingress", "ing", {"metadata": {"name": "api"}}))
    assert manifest["apiVersion"] == "networking.k8s.io/v1"


def test_integers_come_back_from_the_wire_format_as_integers():
    spec = {"ports": [{"port": 8000.0}], "ratio": 0.5}
    manifest = kubernetes_manifest(k8s("kubernetes:core/v1:Service", "svc", {"metadata": {"name": "a"}, "spec": spec}))
    assert manifest["spec"] == {"ports": [{"port": 8000}], "ratio": 0.5}


def test_an_auto_named_object_takes_the_name_the_mocks_gave_it():
    resource = k8s("kubernetes:core/v1:ConfigMap", "cm", {"metadata": {}}, {"metadata": {"name": "cm-1a2b3c4"}})
    assert kubernetes_manifest(resource)["metadata"]["name"] == "cm-1a2b3c4"


def test_helm_releases_and_providers_are_not_rendered():
    assert kubernetes_manifest(k8s("kubernetes:helm.sh/v3:Release", "release", {"chart": "x"})) is None
    assert kubernetes_manifest(k8s("pulumi:providers:kubernetes", "k8s", {})) is None


def test_every_kubernetes_object_of_the_service_is_rendered_once(deployments, tmp_path):
    files = render_manifests(deployments["dev"], tmp_path)
    objects = [
        r
        for run in deployments["dev"]
        for r in run.resources
        if r.type.startswith("kubernetes:") and "helm.sh" not in r.type
    ]
    assert len(files) == len(objects)
    assert "Deployment/retail-inference" in files.values()
    deployment = next(p for p, subject in files.items() if subject == "Deployment/retail-inference")
    assert yaml.safe_load(deployment.read_text())["spec"]["template"]["spec"]["containers"][0]["ports"] == [
        {"containerPort": 8000, "name": "http"}
    ]


def test_repository_files_are_the_dockerfiles_and_the_workflows(tmp_path):
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    for name in ("Dockerfile", "Dockerfile.training", ".github/workflows/main.yml", "README.md"):
        (tmp_path / name).write_text("x\n")
    assert sorted(repository_files(tmp_path).values()) == [
        ".github/workflows/main.yml",
        "Dockerfile",
        "Dockerfile.training",
    ]


def test_a_missing_checkov_environment_is_reported(tmp_path):
    with pytest.raises(CheckovMissing, match="make setup-test"):
        run_checkov([], tmp_path)


def test_a_repository_file_checkov_did_not_scan_is_a_finding(monkeypatch):
    monkeypatch.setattr(manifests, "run_checkov", lambda files, project_dir, timeout: CheckovReport([], set()))
    findings = raw_manifest_findings_by_stack({"dev": []}, PROJECT_DIR)["dev"]
    assert {check_id(f) for f in findings} == {"UNSCANNED"}
    assert "Dockerfile" in {f.subject for f in findings}


# --------------------------------------------------------------------------- checkov


@pytest.fixture(scope="module")
def scanned(deployments):
    """One checkov run over all three deployments, the fixture stack and the repository files."""
    started = time.monotonic()
    findings = raw_manifest_findings_by_stack(
        {**{stack: deployments[stack] for stack in STACKS}, "fixture": [FIXTURE_RUN]},
        PROJECT_DIR,
        timeout=CHECKOV_TIMEOUT_SECONDS,
    )
    return findings, time.monotonic() - started


@needs_checkov
@pytest.mark.parametrize("stack", STACKS)
def test_the_real_deployment_has_no_unwaived_checkov_finding(scanned, stack):
    findings = apply_waivers(scanned[0][stack], load_waivers())
    assert [f"{f.subject}: {f.message}" for f in findings if f.blocking] == []


@needs_checkov
def test_checkov_reports_an_unhardened_deployment(scanned):
    checks = {check_id(f) for f in scanned[0]["fixture"] if f.subject == "Deployment/insecure"}
    assert {"CKV_K8S_16", "CKV_K8S_20", "CKV_K8S_43"} <= checks  # privileged, privilege escalation, no digest


@needs_checkov
def test_checkov_reads_the_dockerfile_and_the_workflows(scanned):
    subjects = {f.subject for f in scanned[0]["dev"] if check_id(f) == "UNSCANNED"}
    assert subjects == set()


@needs_checkov
def test_no_checkov_waiver_is_stale(scanned):
    findings = [f for stack in STACKS for f in scanned[0][stack]]
    assert stale_waivers([w for w in load_waivers() if w.tool == CHECKOV], findings) == []


@needs_checkov
def test_checkov_runs_once_within_its_bound(scanned):
    assert scanned[1] < CHECKOV_TIMEOUT_SECONDS


def test_a_checkov_that_overruns_its_bound_is_stopped(tmp_path):
    fake = tmp_path / CHECKOV_BIN
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\nsleep 30\n")
    fake.chmod(0o755)
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_checkov([Path("Dockerfile")], tmp_path, timeout=0.5)
    assert time.monotonic() - started < 10
