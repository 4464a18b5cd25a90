"""A copy of the repository's training sources, as a fresh clone has them."""

from __future__ import annotations

import shutil
from pathlib import Path

from infra.providers.sourcedir import training_files

ROOT = Path(__file__).resolve().parents[2]


def checkout(destination: Path, extra: tuple[str, ...] = ()) -> Path:
    """The training source set (and `extra` repository files) copied under `destination`."""
    for path in [*training_files(ROOT), *(ROOT / name for name in extra)]:
        target = destination / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return destination
