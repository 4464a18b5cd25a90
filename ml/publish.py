"""Publishing a model bundle where the inference service reads it.

The service serves the bundle folder at `RETAIL_MODEL_URI` (a local folder or an
`s3://bucket/prefix`) and reloads when its manifest changes. A bundle comes from the
local registry, from a bundle folder, or from SageMaker's `model.tar.gz` (the training
job's SM_MODEL_DIR, packed). It is verified before it is copied, and the manifest is
written last, so a service that polls mid-copy sees either the old manifest or a
complete new bundle (and refuses anything whose checksums do not match).
"""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pyarrow.fs as pafs

from ml.bundle import MANIFEST, bundle_digest, verify_bundle
from ml.lake import Lake, file_name, filesystem


def fetch_model_data(uri: str, workdir: Path) -> Path:
    """A local bundle folder from a bundle folder or a `model.tar.gz`, local or on S3."""
    if not file_name(uri).endswith((".tar.gz", ".tgz")):  # an s3:// URI's name, without Arrow's options
        if "://" in uri:
            raise ValueError(f"{uri}: give a local bundle folder or a model.tar.gz (local or s3://)")
        return Path(uri)
    fs, path = filesystem(uri)
    if fs.get_file_info(path).type != pafs.FileType.File:
        raise FileNotFoundError(f"{uri}: no such model archive")
    workdir.mkdir(parents=True, exist_ok=True)
    archive = workdir / "model.tar.gz"
    with fs.open_input_stream(path) as source, archive.open("wb") as sink:
        shutil.copyfileobj(source, sink, 1 << 20)
    folder = workdir / "bundle"
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")  # no links out, no absolute paths, no devices
    return folder


def publish_bundle(bundle: Path, target_uri: str) -> str:
    """Copy a verified bundle to `target_uri`, manifest last; returns the manifest's SHA-256."""
    meta = verify_bundle(bundle)
    target = Lake(target_uri)
    for relative in sorted(meta["files"]):
        target.put_file(bundle / relative, relative)
    target.put_file(bundle / MANIFEST, MANIFEST)
    return bundle_digest(bundle)
