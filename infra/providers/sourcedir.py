"""The training code as a SageMaker script-mode source directory, and its version.

SageMaker's framework containers (the sagemaker-training toolkit) download the tarball
named by the `sagemaker_submit_directory` hyperparameter, unpack it in /opt/ml/code,
pip-install its `requirements.txt`, and run `python <sagemaker_program> --name value ...`
there. The program is a two-line launcher at the root, not `ml/train.py` itself: Python
puts the script's own folder on `sys.path`, so running `ml/train.py` directly could not
`import ml`. The tarball is byte-for-byte reproducible, so its hash is the code version.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import tomllib
from pathlib import Path

ENTRY_POINT = "retail_train.py"
LAUNCHER = 'import sys\n\nfrom ml.train import main\n\nif __name__ == "__main__":\n    main(sys.argv[1:])\n'
TRAINING_EXTRAS = ("matplotlib", "markdown")
"""Packages of the `ml` dependency group the training entry point imports (plots, model card)."""


def requirements(pyproject: Path) -> str:
    """The project's core dependencies plus the training extras, as a requirements.txt."""
    project = tomllib.loads(pyproject.read_text())
    ml_group = project.get("dependency-groups", {}).get("ml", [])
    extras = [spec for spec in ml_group if spec.split(">")[0].split("=")[0].strip() in TRAINING_EXTRAS]
    return "\n".join([*project["project"]["dependencies"], *extras]) + "\n"


def build_sourcedir(repo_root: Path) -> bytes:
    """gzip'd tar of `ml/**/*.py`, `requirements.txt` and the launcher, with fixed times and owners."""
    files = {path.relative_to(repo_root).as_posix(): path.read_bytes() for path in sorted(repo_root.glob("ml/**/*.py"))}
    if not files:
        raise FileNotFoundError(f"no ml/**/*.py under {repo_root}; run from the retail-mlops repository")
    files["requirements.txt"] = requirements(repo_root / "pyproject.toml").encode()
    files[ENTRY_POINT] = LAUNCHER.encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(files[name]), 0, 0o644
            tar.addfile(info, io.BytesIO(files[name]))
    return gzip.compress(raw.getvalue(), mtime=0)


def code_version(tarball: bytes) -> str:
    return hashlib.sha256(tarball).hexdigest()[:16]
