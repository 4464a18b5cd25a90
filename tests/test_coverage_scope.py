"""Coverage traces the tests whose subjects it measures (ml/ and api/) and stops, every running measurement of it, for
the tests of the folders it does not (tests/conftest.py `UNMEASURED_FOLDERS`), then starts them again."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import coverage
import pytest

import tests.conftest as conftest

TESTS = Path(conftest.__file__).parent


def inside_the_hook(test_file: str) -> tuple[object, object, object]:
    """The tracer and the current measurement while the conftest's runtest wrapper runs a test in `test_file`, and
    the current measurement after it, with two measurements started here (as a pytest-xdist worker has two)."""
    outer, inner = coverage.Coverage(data_file=None), coverage.Coverage(data_file=None)
    outer.start()
    inner.start()
    try:
        wrapper = conftest.pytest_runtest_protocol(SimpleNamespace(path=TESTS / test_file), None)
        next(wrapper)
        tracer, current = sys.gettrace(), coverage.Coverage.current()
        with pytest.raises(StopIteration):
            wrapper.send(None)
        after = coverage.Coverage.current()
    finally:
        inner.stop()
        outer.stop()
    return tracer, current, (after is inner)


@pytest.mark.parametrize("folder", sorted(conftest.UNMEASURED_FOLDERS))
def test_a_test_of_an_unmeasured_folder_runs_with_no_measurement_and_they_start_again_after(folder):
    assert (TESTS / folder).is_dir()
    assert inside_the_hook(f"{folder}/test_example.py") == (None, None, True)


@pytest.mark.parametrize("test_file", ["test_tiers.py", "api/test_predictions.py", "training/test_images.py"])
def test_a_test_of_ml_or_api_runs_traced(test_file):
    tracer, current, restored = inside_the_hook(test_file)
    assert tracer is not None and current is not None and restored


def test_the_unmeasured_folders_test_no_measured_package():
    """A folder named after a package coverage measures would lose its measure."""
    measured = tomllib.loads((TESTS.parent / "pyproject.toml").read_text())["tool"]["coverage"]["run"]["source"]
    assert set(measured) == {"ml", "api"}
    assert not conftest.UNMEASURED_FOLDERS & {*measured, "training"}
