"""Coverage traces the tests whose subjects it measures (ml/ and api/). A test of the folders it does not measure
(tests/conftest.py `UNMEASURED_FOLDERS`) runs with no tracer on its thread and none for threads started meanwhile;
both come back after it, a thread that was running before it stays traced throughout, and the frame that ran it
goes on being measured in its own file. A test marked `untraced_client` runs its call with no tracer on its own
thread only: a thread running before it (the service it drives) and threads started meanwhile stay traced.

The measurements are made in a fresh interpreter (`OBSERVE`): a measurement started and stopped inside a pytest-cov
worker would hand the worker's tracers back to the wrong threads."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import tests.conftest as conftest

TESTS = Path(conftest.__file__).parent
MEASURED = ["test_tiers.py", "api/test_predictions.py", "training/test_images.py"]

CALLER = """def run(wrapper):
    next(wrapper)
    try:
        wrapper.send(None)
    except StopIteration:
        pass
    after = "the test is over"
    return after
"""
"""A measured module running a test through the runtest wrapper as pluggy does: the wrapper's frame is entered
from it while traced, and its lines after the test must be recorded in its own file."""
LINES_AFTER_THE_TEST = [5, 6, 7, 8]

OBSERVE = r"""
import json, sys, threading
from pathlib import Path
from types import SimpleNamespace
import coverage
import tests.conftest as conftest

folder, test_files = sys.argv[1], sys.argv[2:]


def wrapper_for(test_file):
    return conftest.pytest_runtest_protocol(SimpleNamespace(path=Path(conftest.__file__).parent / test_file), None)


def call_wrapper(marked):
    marker = SimpleNamespace(name="untraced_client")
    item = SimpleNamespace(get_closest_marker=lambda name: marker if marked and name == marker.name else None)
    return conftest.pytest_runtest_call(item)


def traces_around(wrapper):
    traced, turn, done = {}, threading.Event(), threading.Event()

    def running_before():
        for moment in ("during", "after"):
            turn.wait()
            turn.clear()
            traced[f"running before, {moment}"] = sys.gettrace() is not None
            done.set()

    def let_it_look():
        turn.set()
        assert done.wait(10)
        done.clear()

    def started(moment):
        thread = threading.Thread(target=lambda: traced.__setitem__(f"started {moment}", sys.gettrace() is not None))
        thread.start()
        thread.join()

    earlier = threading.Thread(target=running_before)
    earlier.start()
    next(wrapper)
    traced["this thread, during"] = sys.gettrace() is not None
    started("during")
    let_it_look()
    try:
        wrapper.send(None)
    except StopIteration:
        pass
    traced["this thread, after"] = sys.gettrace() is not None
    started("after")
    let_it_look()
    earlier.join()
    return traced


def observe():
    import caller

    import client_caller

    traces = {test_file: traces_around(wrapper_for(test_file)) for test_file in test_files}
    traces |= {f"call, {name}": traces_around(call_wrapper(marked))
               for name, marked in (("marked untraced_client", True), ("unmarked", False))}
    caller.run(wrapper_for("infra/test_example.py"))
    client_caller.run(call_wrapper(True))
    return traces


sys.path.insert(0, folder)
measuring = coverage.Coverage(data_file=None, config_file=False, include=[f"{folder}/*"])
measuring.start()
try:
    traces = observe()
finally:
    measuring.stop()
print(json.dumps({"traces": traces, "caller lines": measuring.get_data().lines(f"{folder}/caller.py"),
                  "client caller lines": measuring.get_data().lines(f"{folder}/client_caller.py")}))
"""


@pytest.fixture(scope="module")
def observed(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("measured")
    (folder / "caller.py").write_text(CALLER)
    (folder / "client_caller.py").write_text(CALLER)
    unmeasured = [f"{name}/test_example.py" for name in sorted(conftest.UNMEASURED_FOLDERS)]
    done = subprocess.run([sys.executable, "-c", OBSERVE, str(folder), *unmeasured, *MEASURED], cwd=TESTS.parent,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("folder", sorted(conftest.UNMEASURED_FOLDERS))
def test_a_test_of_an_unmeasured_folder_runs_untraced_and_threads_running_before_it_stay_traced(observed, folder):
    assert (TESTS / folder).is_dir()
    assert observed["traces"][f"{folder}/test_example.py"] == {
        "this thread, during": False, "started during": False, "running before, during": True,
        "this thread, after": True, "started after": True, "running before, after": True,
    }


@pytest.mark.parametrize("test_file", MEASURED)
def test_a_test_of_ml_or_api_runs_traced(observed, test_file):
    assert all(observed["traces"][test_file].values())


def test_the_frame_that_ran_an_untraced_test_goes_on_being_measured_in_its_own_file(observed):
    assert set(LINES_AFTER_THE_TEST) <= set(observed["caller lines"])


def test_an_untraced_client_call_leaves_only_its_own_thread_untraced(observed):
    assert observed["traces"]["call, marked untraced_client"] == {
        "this thread, during": False, "started during": True, "running before, during": True,
        "this thread, after": True, "started after": True, "running before, after": True,
    }
    assert all(observed["traces"]["call, unmarked"].values())
    assert set(LINES_AFTER_THE_TEST) <= set(observed["client caller lines"])


def test_the_unmeasured_folders_test_no_measured_package():
    """A folder named after a package coverage measures would lose its measure."""
    measured = tomllib.loads((TESTS.parent / "pyproject.toml").read_text())["tool"]["coverage"]["run"]["source"]
    assert set(measured) == {"ml", "api"}
    assert not conftest.UNMEASURED_FOLDERS & {*measured, "training"}
