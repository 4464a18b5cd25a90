"""Publishing a bundle where the service reads it: from the registry or a SageMaker archive."""

from __future__ import annotations

import io
import tarfile

import boto3
import pytest
from typer.testing import CliRunner

from cli.main import app
from ml.bundle import BundleIntegrityError, bundle_digest, load_bundle
from ml.publish import fetch_model_data, publish_bundle
from ml.registry import Registry

runner = CliRunner()


@pytest.fixture(scope="module")
def champion(small_run):
    return Registry(small_run.settings).download()


def _registry_env(small_run) -> dict[str, str]:
    return {"RETAIL_REGISTRY_URI": small_run.settings.registry_uri}


def test_publishing_the_champion_to_a_folder_gives_a_loadable_bundle(small_run, champion, tmp_path):
    result = runner.invoke(app, ["models", "publish", "--to", str(tmp_path / "serving")], env=_registry_env(small_run))
    assert result.exit_code == 0, result.output
    assert bundle_digest(tmp_path / "serving") == bundle_digest(champion)
    assert load_bundle(tmp_path / "serving").meta["family"] == load_bundle(champion).meta["family"]


def test_a_sagemaker_archive_on_s3_is_published_to_the_serving_prefix(moto_endpoint, champion, tmp_path):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="artifacts", CreateBucketConfiguration={"LocationConstraint": "ap-southeast-1"})
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as tar:  # SageMaker packs SM_MODEL_DIR like this
        for path in sorted(champion.rglob("*")):
            tar.add(path, arcname=path.relative_to(champion).as_posix(), recursive=False)
    s3.put_object(Bucket="artifacts", Key="jobs/train-1/output/model.tar.gz", Body=packed.getvalue())

    bundle = fetch_model_data("s3://artifacts/jobs/train-1/output/model.tar.gz", tmp_path / "scratch")
    digest = publish_bundle(bundle, "s3://artifacts/models/champion")

    assert digest == bundle_digest(champion)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="artifacts", Prefix="models/champion/")["Contents"]}
    assert "models/champion/bundle.json" in keys
    assert any(k.startswith("models/champion/featurizer/") for k in keys)
    with_options = fetch_model_data("s3://artifacts/jobs/train-1/output/model.tar.gz?region=ap-southeast-1",
                                    tmp_path / "scratch-with-options")  # the archive's name read without them
    assert bundle_digest(with_options) == bundle_digest(champion)


def test_a_tampered_bundle_is_not_published(champion, tmp_path):
    import shutil

    tampered = tmp_path / "tampered"
    shutil.copytree(champion, tampered)
    (tampered / "featurizer" / "featurizer.json").write_text("{}")
    with pytest.raises(BundleIntegrityError):
        publish_bundle(tampered, str(tmp_path / "serving"))
    assert not (tmp_path / "serving").exists()


def test_an_archive_with_a_path_outside_the_bundle_is_refused(tmp_path):
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        payload = b"x"
        info = tarfile.TarInfo("../escape.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(tarfile.TarError):
        fetch_model_data(str(archive), tmp_path / "scratch")
    assert not (tmp_path / "escape.txt").exists()
