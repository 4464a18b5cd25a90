"""Where a model comes from: a registry alias (the champion's, or a challenger's) or version, or a bundle location.

A source answers two questions: which model it holds now (a cheap fingerprint, polled
for hot reload) and where that model's bundle folder is on local disk. Checksums are
verified on the way: the registry compares the bundle with its own record, a bundle
location can be pinned to a manifest SHA-256 (RETAIL_MODEL_SHA256), and `load_bundle`
checks every file against the manifest.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pyarrow.fs as pafs

from ml.bundle import MANIFEST, BundleIntegrityError, bundle_digest
from ml.lake import filesystem
from ml.settings import Settings

if TYPE_CHECKING:
    from ml.registry import Registry

CHAMPION = "champion"
"""The registry alias the service answers with (`ml.registry.CHAMPION`, which imports MLflow)."""


@dataclass(frozen=True)
class FetchedBundle:
    folder: Path
    version: str
    sha256: str


class ModelSource(Protocol):
    description: str

    def fingerprint(self) -> str:
        """Identifies the model the source holds now; a change means a new model to load."""

    def fetch(self, fingerprint: str) -> FetchedBundle:
        """The bundle folder of that model on local disk."""


class RegistrySource:
    """A version of the MLflow registry's model (RETAIL_REGISTRY_URI, RETAIL_MODEL_NAME): the one an alias names
    (`champion` by default; a challenger's is typically `challenger`), or a version given by its number."""

    def __init__(self, settings: Settings, model: str = CHAMPION):
        self.settings = settings
        self.model = model
        self.description = (f"models:/{settings.model_name}/{model}" if model.isdigit()
                            else f"models:/{settings.model_name}@{model}")
        self._registry: Registry | None = None

    def _client(self) -> Registry:
        if self._registry is None:
            from ml.registry import Registry  # MLflow is imported only when the registry is the source

            self._registry = Registry(self.settings)
        return self._registry

    def fingerprint(self) -> str:
        if self.model.isdigit():
            return self.model
        registry = self._client()
        if self.model == CHAMPION:
            version = registry.champion_version()
        else:
            from mlflow.exceptions import MlflowException

            try:
                version = str(registry.client.get_model_version_by_alias(registry.name, self.model).version)
            except MlflowException:
                version = None
        if version is None:
            raise LookupError(f"{self.description}: the registry has no {self.model} yet")
        return version

    def fetch(self, fingerprint: str) -> FetchedBundle:
        folder = self._client().download(fingerprint)
        return FetchedBundle(folder=folder, version=fingerprint, sha256=bundle_digest(folder))


class BundleLocationSource:
    """A bundle folder at a local path or an s3:// prefix; S3 bundles are copied to a local cache."""

    def __init__(self, uri: str, cache_dir: Path, expected_sha256: str | None = None):
        self.description = uri
        self.expected_sha256 = expected_sha256
        self.cache_dir = cache_dir
        if "://" in uri:
            # with the region the environment names (AWS_REGION on EKS), not one Arrow asks S3 for while the app
            # is built, so an unreachable S3 leaves the service live but not ready instead of failing its start
            self.fs, self.base = filesystem(uri)
        else:
            self.fs, self.base = pafs.LocalFileSystem(), Path(uri).expanduser().resolve().as_posix()
        self.base = self.base.rstrip("/")

    def _read(self, relative: str) -> bytes:
        with self.fs.open_input_stream(f"{self.base}/{relative}") as stream:
            data: bytes = stream.read()  # pyarrow has no type information; NativeFile.read() returns bytes
        return data

    def fingerprint(self) -> str:
        try:
            return hashlib.sha256(self._read(MANIFEST)).hexdigest()
        except FileNotFoundError as exc:
            raise LookupError(f"{self.description}: no {MANIFEST}; is this a model bundle folder?") from exc

    def fetch(self, fingerprint: str) -> FetchedBundle:
        if self.expected_sha256 and fingerprint != self.expected_sha256:
            raise BundleIntegrityError(
                f"{self.description}: manifest SHA-256 {fingerprint} is not the pinned RETAIL_MODEL_SHA256"
            )
        if isinstance(self.fs, pafs.LocalFileSystem):
            folder = Path(self.base)
        else:
            folder = self._download(fingerprint)
        if bundle_digest(folder) != fingerprint:
            raise BundleIntegrityError(f"{self.description}: the manifest changed while the bundle was fetched")
        return FetchedBundle(folder=folder, version=f"sha256:{fingerprint[:12]}", sha256=fingerprint)

    def _download(self, fingerprint: str) -> Path:
        """Copy the manifest and the files it lists into the cache folder of that manifest digest."""
        folder = self.cache_dir / fingerprint
        manifest = self._read(MANIFEST)
        for relative in json.loads(manifest)["files"]:
            target = folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self._read(relative))
        (folder / MANIFEST).write_bytes(manifest)
        return folder
