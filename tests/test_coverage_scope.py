"""Coverage traces the tests whose subjects it measures (ml/ and api/). A test of the folders it does not measure
(tests/conftest.py `UNMEASURED_FOLDERS`) runs with no tracer on its thread and none for the threads it starts; both
come back after it, and a thread that was running before it stays traced throughout."""

from __future__ import annotations

import sys
import threading
import tomllib
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import TypeVar

import coverage
import pytest

import tests.conftest as conftest

TESTS = Path(conftest.__file__).parent
T = TypeVar("T")


def measured(observe: Callable[[], T]) -> T:
    """`observe()` under a measurement started here, called once it is running: frames entered before it carry
    the tracer they were entered under (coverage sets it as their local trace function), so what is observed
    runs in frames of its own."""
    measuring = coverage.Coverage(data_file=None, config_file=False)
    measuring.start()
    try:
        return observe()
    finally:
        measuring.stop()


def traces_around_a_test(test_file: str) -> dict[str, bool]:
    """Whether each thread had a tracer while the conftest's runtest wrapper ran a test in `test_file`, and after
    it: this thread, a thread started before the test that looks during it and after it, threads started during
    and after the test."""
    traced: dict[str, bool] = {}
    turn, done = threading.Event(), threading.Event()

    def running_before() -> None:
        for moment in ("during", "after"):
            turn.wait()
            turn.clear()
            traced[f"running before, {moment}"] = sys.gettrace() is not None
            done.set()

    def let_it_look() -> None:
        turn.set()
        assert done.wait(10)
        done.clear()

    def started(moment: str) -> None:
        thread = threading.Thread(target=lambda: traced.__setitem__(f"started {moment}", sys.gettrace() is not None))
        thread.start()
        thread.join()

    def observe() -> dict[str, bool]:
        earlier = threading.Thread(target=running_before)
        earlier.start()
        wrapper = conftest.pytest_runtest_protocol(SimpleNamespace(path=TESTS / test_file), None)
        next(wrapper)
        traced["this thread, during"] = sys.gettrace() is not None
        started("during")
        let_it_look()
        with pytest.raises(StopIteration):
            wrapper.send(None)
        traced["this thread, after"] = sys.gettrace() is not None
        started("after")
        let_it_look()
        earlier.join()
        return traced

    return measured(observe)


@pytest.mark.parametrize("folder", sorted(conftest.UNMEASURED_FOLDERS))
def test_a_test_of_an_unmeasured_folder_runs_untraced_and_threads_running_before_it_stay_traced(folder):
    assert (TESTS / folder).is_dir()
    assert traces_around_a_test(f"{folder}/test_example.py") == {
        "this thread, during": False, "started during": False, "running before, during": True,
        "this thread, after": True, "started after": True, "running before, after": True,
    }


@pytest.mark.parametrize("test_file", ["test_tiers.py", "api/test_predictions.py", "training/test_images.py"])
def test_a_test_of_ml_or_api_runs_traced(test_file):
    assert all(traces_around_a_test(test_file).values())


def test_the_lines_run_after_an_untraced_test_are_measured(tmp_path):
    """Coverage's tracer, put back with `sys.settrace`, records again from the next call on."""
    module = tmp_path / "measured_after.py"
    module.write_text("def answer():\n    return 42\n")
    measuring = coverage.Coverage(data_file=None, config_file=False, include=[str(module)])

    def observe() -> int:
        wrapper = conftest.pytest_runtest_protocol(SimpleNamespace(path=TESTS / "infra/test_example.py"), None)
        next(wrapper)
        with pytest.raises(StopIteration):
            wrapper.send(None)
        return measured_after.answer()

    sys.path.insert(0, str(tmp_path))
    try:
        import measured_after

        measuring.start()
        try:
            assert observe() == 42
        finally:
            measuring.stop()
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("measured_after", None)
    assert measuring.get_data().lines(str(module)) == [2]


def test_the_unmeasured_folders_test_no_measured_package():
    """A folder named after a package coverage measures would lose its measure."""
    measured = tomllib.loads((TESTS.parent / "pyproject.toml").read_text())["tool"]["coverage"]["run"]["source"]
    assert set(measured) == {"ml", "api"}
    assert not conftest.UNMEASURED_FOLDERS & {*measured, "training"}
