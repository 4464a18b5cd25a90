"""The model's road from the registry to the pods: register, resolve, publish, roll back (moto on 127.0.0.1)."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import boto3
import pytest
from pulumi.dynamic.dynamic import serialize_provider

from infra.model_packages import approved_versions, pack_bundle, previous_approved, register_bundle
from infra.providers.kinds import REGISTERED_PACKAGE, SERVED_MODEL
from infra.providers.package_facts import ReportClaims, report_claims
from infra.providers.registered_package import RegisteredPackageProvider
from infra.providers.served_model import ModelNotApproved, ServedModelProvider, published_manifest_sha256
from infra.release import ReleaseRequest, ReleaseUnavailable, resolve_release
from ml.bundle import bundle_digest, load_bundle
from ml.registry import Registry
from tests.providers.conftest import REGION

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
IMAGE = "123456789012.dkr.ecr.ap-southeast-1.amazonaws.com/retail-dev-registry/inference@sha256:" + "e" * 64
ARTIFACTS = "served-model-artifacts"


@pytest.fixture(scope="module")
def champion(small_run) -> Path:
    return Registry(small_run.settings).download()


@pytest.fixture
def aws(moto_endpoint):
    s3 = boto3.client("s3", region_name=REGION)
    if ARTIFACTS not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=ARTIFACTS, CreateBucketConfiguration={"LocationConstraint": REGION})
    return boto3.client("sagemaker", region_name=REGION), s3


def register(aws, group: str, bundle: Path) -> str:
    sagemaker, s3 = aws
    return register_bundle(sagemaker, s3, bundle, group=group, artifacts_bucket=ARTIFACTS, image=IMAGE, source="test")


def props(arn: str, target: str) -> dict:
    return {"kind": SERVED_MODEL, "region": REGION, "model_package_arn": arn, "target_uri": target}


def test_a_registered_champion_is_an_approved_version_with_its_metrics_and_bundle_hash(aws, model_group, champion):
    sagemaker, _ = aws
    arn = register(aws, model_group, champion)
    package = sagemaker.describe_model_package(ModelPackageName=arn)
    metadata = package["CustomerMetadataProperties"]
    assert package["ModelApprovalStatus"] == "Approved"
    assert metadata["bundle_sha256"] == bundle_digest(champion)
    trained = load_bundle(champion).meta["metrics"]["macro_f1"]
    assert float(metadata["metric:holdout_macro_f1"]) == pytest.approx(trained, rel=1e-5)
    assert package["InferenceSpecification"]["Containers"][0]["Image"] == IMAGE
    assert approved_versions(sagemaker, model_group) == [arn]


def test_a_real_champions_facts_come_from_its_verified_report(aws, model_group, champion):
    """The report check on what ml/train.py really writes: a trained bundle's validation.json agrees with the
    metadata registered from it."""
    arn = register(aws, model_group, champion)
    facts = RegisteredPackageProvider().create(
        {"kind": REGISTERED_PACKAGE, "region": REGION, "model_package_arn": arn}).outs["package"]
    meta = load_bundle(champion).meta
    assert facts["report"]["problems"] == []
    assert (facts["gate_passed"], facts["holdout_run"]) == (meta["gate"]["passed"], meta["lineage"]["run_id"])
    assert facts["macro_f1"] == meta["metrics"]["macro_f1"]


def test_a_training_jobs_report_archive_is_read_as_the_job_wrote_it(small_run):
    """ml/train.py's output folder tarred as SageMaker uploads SM_OUTPUT_DATA_DIR (output.tar.gz, files at its
    root): the claims are its summary's gate, winner's macro-F1, lake run and winner."""
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as archive:
        for path in sorted(small_run.result.report_dir.iterdir()):
            archive.add(path, arcname=path.name)
    summary = json.loads((small_run.result.report_dir / "summary.json").read_text())
    claims = report_claims(packed.getvalue())
    assert claims == ReportClaims(summary["gate"]["passed"], summary["metrics"]["macro_f1"],
                                  small_run.result.run_id, summary["winner"])


def test_serving_a_package_publishes_its_bundle_in_a_folder_of_its_manifest_and_pins_it(aws, model_group, champion):
    arn = register(aws, model_group, champion)
    target = f"s3://{ARTIFACTS}/models/price-sensitivity/serving/test/"
    result = ServedModelProvider().create(props(arn, target))
    digest = bundle_digest(champion)
    assert result.id == target
    assert (result.outs["manifest_sha256"], result.outs["model_uri"]) == (digest, f"{target}{digest}/")
    _, s3 = aws
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=ARTIFACTS, Prefix="models/")["Contents"]}
    assert f"models/price-sensitivity/serving/test/{digest}/bundle.json" in keys
    assert "models/price-sensitivity/serving/test/bundle.json" not in keys


def other_bundle(champion: Path, folder: Path) -> Path:
    """The champion's files under a manifest of other metadata: another bundle, another digest."""
    shutil.copytree(champion, folder)
    manifest = json.loads((folder / "bundle.json").read_text())
    (folder / "bundle.json").write_text(json.dumps({**manifest, "source": "another training run"}))
    return folder


def test_a_new_package_leaves_the_bundle_the_running_pods_read_and_a_rollback_copies_nothing(
        aws, model_group, champion, tmp_path, monkeypatch):
    first = register(aws, model_group, champion)
    second = register(aws, model_group, other_bundle(champion, tmp_path / "second"))
    target = f"s3://{ARTIFACTS}/models/price-sensitivity/serving/rollout/"
    provider = ServedModelProvider()
    old = provider.create(props(first, target)).outs
    new = provider.update(target, old, props(second, target)).outs
    assert new["model_uri"] != old["model_uri"] and new["manifest_sha256"] != old["manifest_sha256"]
    assert published_manifest_sha256(REGION, old["model_uri"]) == old["manifest_sha256"]  # the old pods' bundle
    assert published_manifest_sha256(REGION, new["model_uri"]) == new["manifest_sha256"]

    import ml.publish

    def copies(*_):
        raise AssertionError("a bundle already published was copied again")

    monkeypatch.setattr(ml.publish, "publish_bundle", copies)
    assert provider.update(target, new, props(first, target)).outs["model_uri"] == old["model_uri"]


def test_a_package_the_gate_rejected_is_never_served(aws, model_group, champion):
    sagemaker, _ = aws
    arn = register(aws, model_group, champion)
    sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Rejected")
    with pytest.raises(ModelNotApproved, match="is Rejected: only approved versions are served"):
        ServedModelProvider().create(props(arn, f"s3://{ARTIFACTS}/serving/rejected/"))


def test_a_refresh_that_finds_the_bundle_gone_makes_the_next_up_publish_it_again(aws, model_group, champion):
    _, s3 = aws
    arn = register(aws, model_group, champion)
    target = f"s3://{ARTIFACTS}/models/price-sensitivity/serving/refresh/"
    provider = ServedModelProvider()
    state = provider.create(props(arn, target)).outs
    assert provider.read(target, state).outs["found_sha256"] == state["manifest_sha256"]
    assert provider.diff(target, provider.read(target, state).outs, props(arn, target)).changes is False
    s3.delete_object(Bucket=ARTIFACTS,
                     Key=f"models/price-sensitivity/serving/refresh/{state['manifest_sha256']}/bundle.json")
    refreshed = provider.read(target, state).outs
    assert refreshed["found_sha256"] == ""
    assert provider.diff(target, refreshed, props(arn, target)).changes is True
    assert provider.update(target, refreshed, props(arn, target)).outs["found_sha256"] == state["manifest_sha256"]


def test_a_new_package_is_an_update_a_new_target_a_replacement_and_a_bundle_published_in_place_is_published_again():
    provider = ServedModelProvider()
    new = props("arn:old", "s3://a/")
    old = {**new, "model_uri": f"s3://a/{'f' * 64}/", "manifest_sha256": "f" * 64, "found_sha256": "f" * 64}
    assert provider.diff("s3://a/", old, {**new, "model_package_arn": "arn:new"}).replaces == []
    assert provider.diff("s3://a/", old, {**new, "target_uri": "s3://b/"}).replaces == ["target_uri"]
    assert provider.diff("s3://a/", old, new).changes is False
    in_place = {key: value for key, value in old.items() if key != "model_uri"}
    assert provider.diff("s3://a/", in_place, new).changes is True


def test_rollback_serves_the_approved_version_registered_before_the_current_one(aws, model_group, champion):
    sagemaker, _ = aws
    first = register(aws, model_group, champion)
    second = register(aws, model_group, champion)
    assert approved_versions(sagemaker, model_group) == [second, first]
    assert previous_approved(sagemaker, model_group, second) == first
    assert previous_approved(sagemaker, model_group, first) is None


def test_metadata_values_sagemaker_would_refuse_are_cleaned_or_left_out():
    from infra.model_packages import customer_metadata

    meta = {"family": "xgboost", "lineage": {"input": "C:\\data\\weeks (1-3).csv", "empty": ""}, "gate": {}}
    values = customer_metadata(meta, "f" * 64, "the local pipeline")
    assert values["lineage:input"] == "C:_data_weeks _1-3_.csv"
    assert "lineage:empty" not in values and all(0 < len(v) <= 256 for v in values.values())


def test_the_packed_bundle_has_the_files_at_its_root_like_sagemakers_model_tar_gz(champion, tmp_path):
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(pack_bundle(champion))) as tar:
        names = set(tar.getnames())
    assert "bundle.json" in names and all(not n.startswith("/") for n in names)


def test_the_release_takes_the_newest_approved_version_before_registering_anything(aws, model_group, champion):
    sagemaker, s3 = aws
    arn = register(aws, model_group, champion)
    platform = {"repositoryUrls": {"inference": IMAGE.split("@")[0]}, "modelPackageGroupName": model_group,
                "lakeBuckets": {"artifacts": ARTIFACTS}}
    release = resolve_release(
        platform, ReleaseRequest(image=IMAGE), project_dir=REPO, sagemaker=sagemaker, s3=s3,
        build_image=_no_build, champion=_no_champion, echo=lambda _: None,
    )
    assert (release.image, release.model_package_arn) == (IMAGE, arn)


def test_an_empty_registry_gets_the_local_champion_registered(aws, model_group, champion):
    sagemaker, s3 = aws
    platform = {"repositoryUrls": {"inference": IMAGE.split("@")[0]}, "modelPackageGroupName": model_group,
                "lakeBuckets": {"artifacts": ARTIFACTS}}
    release = resolve_release(
        platform, ReleaseRequest(image=IMAGE), project_dir=REPO, sagemaker=sagemaker, s3=s3,
        build_image=_no_build, champion=lambda: champion, echo=lambda _: None,
    )
    assert approved_versions(sagemaker, model_group) == [release.model_package_arn]


def test_with_no_model_anywhere_the_deploy_stops_and_says_how_to_get_one(aws, model_group):
    sagemaker, s3 = aws
    platform = {"repositoryUrls": {"inference": "r"}, "modelPackageGroupName": model_group,
                "lakeBuckets": {"artifacts": ARTIFACTS}}
    with pytest.raises(ReleaseUnavailable, match="make demo"):
        resolve_release(
            platform, ReleaseRequest(image=IMAGE), project_dir=REPO, sagemaker=sagemaker, s3=s3,
            build_image=_no_build, champion=_no_champion, echo=lambda _: None,
        )


def test_an_image_given_by_tag_instead_of_digest_is_refused():
    with pytest.raises(ReleaseUnavailable, match="sha256"):
        resolve_release(
            {}, ReleaseRequest(image="repo/inference:0.1.0"), project_dir=REPO, sagemaker=None, s3=None,
            build_image=_no_build, champion=_no_champion,
        )


def test_the_provider_runs_from_the_engines_serialization_in_a_fresh_interpreter(
    aws, model_group, champion, moto_endpoint
):
    """What the engine stores in `__provider` is enough for a new Python process to publish a package."""
    arn = register(aws, model_group, champion)
    pickled = serialize_provider(ServedModelProvider())
    target = f"s3://{ARTIFACTS}/serving/fresh-interpreter/"
    script = (
        "import base64, dill, json, sys\n"
        "provider = dill.loads(base64.b64decode(sys.argv[1]))  # what pulumi.dynamic.__main__.get_provider does\n"
        "result = provider.create(json.loads(sys.argv[2]))\n"
        "print(json.dumps(result.outs['manifest_sha256']))\n"
    )
    env = {**os.environ, "AWS_ENDPOINT_URL": moto_endpoint}
    done = subprocess.run(
        [sys.executable, "-c", script, pickled, json.dumps(props(arn, target))],
        capture_output=True, text=True, env=env, cwd="/", timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == bundle_digest(champion)
    _, s3 = aws
    key = f"serving/fresh-interpreter/{bundle_digest(champion)}/bundle.json"
    published = s3.get_object(Bucket=ARTIFACTS, Key=key)["Body"].read()
    assert published == (champion / "bundle.json").read_bytes(), "the fresh interpreter published the champion"
    raw = base64.b64decode(pickled)
    assert b"infra.providers.served_model" in raw and b"tests." not in raw and b"botocore" not in raw


def _no_build(repository: str, tag: str) -> str:
    raise AssertionError("no image build was expected")


def _no_champion() -> Path | None:
    return None
