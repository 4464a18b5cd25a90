"""Each dynamic provider is pickled as a reference to its class, so a state outlives the Python version that wrote it.

`pulumi.dynamic.Resource` stores its provider in `__provider` with dill
(`serialize_provider`: `dill.dumps(provider, recurse=True)`); the provider host
(`python -m pulumi.dynamic`) unpickles the one in the *stored outputs* for Read and Delete
(refresh, destroy, a replaced resource), however old. dill pickles a class by value (its
bytecode, which only the Python version that wrote it can load) unless it finds the class
under its module and qualified name outside `__main__`; then the pickle only names it. The
first tests read the payloads with pickletools and a recording unpickler: each is that
name and an empty constructor call, nothing else. The last ones write a state in this
interpreter (the program under the mock runtime, Create here) and hand it to a provider
host in a fresh process, on the nearest newer CPython found on this machine (its
environment built offline from uv's cache, with this environment's pulumi, dill and
boto3) and on this one, which reads, diffs, updates and deletes against moto.
"""

from __future__ import annotations

import ast
import base64
import glob
import importlib
import io
import os
import pickle
import pickletools
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import boto3
import dill
import pulumi
import pytest
from pulumi.dynamic import CreateResult, ResourceProvider
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import rpc
from pulumi.runtime._serialization import _serialize
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

from infra.providers.model_version import ModelVersionProvider
from infra.providers.training_job import TrainingJobProvider
from tests.providers.conftest import REGION
from tests.providers.test_provider_host import (
    aws_test_env,
    model_version,
    registered_inputs,
    started_host,
    training_job,
    wire,
)

REPO = Path(__file__).resolve().parents[2]
PROVIDERS = REPO / "infra" / "providers"
PROVIDER_KEY = "__provider"

STATE_NAMES = {
    ("infra.providers.lake_job", "LakeJobProvider"),
    ("infra.providers.model_version", "ModelVersionProvider"),
    ("infra.providers.registered_package", "RegisteredPackageProvider"),
    ("infra.providers.served_model", "ServedModelProvider"),
    ("infra.providers.training_job", "TrainingJobProvider"),
}
"""The names the stacks' states hold in `__provider`. Renaming a module or class breaks refresh and destroy of
every stack that stored the old name (until an update rewrites it), unless the old name stays importable."""

REFERENCE_OPCODES = {
    "PROTO", "FRAME", "SHORT_BINUNICODE", "BINUNICODE", "MEMOIZE", "STACK_GLOBAL", "EMPTY_TUPLE", "NEWOBJ", "STOP",
}
"""A class named by module and name, instantiated without arguments: no code, no state, no helper call."""

PINNED = ("pulumi", "dill", "boto3", "botocore")
"""What the newer interpreter's environment takes at this environment's versions: only Python differs."""


def stored_payload(provider: ResourceProvider) -> bytes:
    """The pickle `pulumi.dynamic.Resource` stores for `provider` (base64 in `__provider`), made as it makes it."""
    encoded, _ = _serialize(True, serialize_provider, provider)
    return base64.b64decode(encoded)


class RecordingUnpickler(dill.Unpickler):
    """dill's unpickler (the provider host's), noting every global the payload makes it import."""

    def __init__(self, payload: bytes) -> None:
        super().__init__(io.BytesIO(payload))
        self.imported: list[tuple[str, str]] = []

    def find_class(self, module: str, name: str):
        self.imported.append((module, name))
        return super().find_class(module, name)


def imported_globals(payload: bytes) -> list[tuple[str, str]]:
    unpickler = RecordingUnpickler(payload)
    unpickler.load()
    return unpickler.imported


def opcodes(payload: bytes) -> set[str]:
    return {opcode.name for opcode, _, _ in pickletools.genops(payload)}


def disassembly(payload: bytes) -> str:
    listing = io.StringIO()
    pickletools.dis(payload, out=listing)
    return listing.getvalue()


def declared_providers() -> set[tuple[str, str]]:
    """(module, class) of every ResourceProvider subclass in infra/providers, nested ones too, read from the source
    (importing every module would load pulumi_aws)."""
    return {
        (f"infra.providers.{path.stem}", node.name)
        for path in sorted(PROVIDERS.glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef) and any(ast.unparse(base).endswith("ResourceProvider") for base in node.bases)
    }


def test_every_provider_in_infra_providers_is_one_whose_name_the_states_hold():
    assert declared_providers() == STATE_NAMES


@pytest.mark.parametrize(("module", "name"), sorted(STATE_NAMES), ids=[name for _, name in sorted(STATE_NAMES)])
def test_the_provider_is_pickled_as_a_reference_to_its_class(module, name):
    provider_class = getattr(importlib.import_module(module), name)
    payload = stored_payload(provider_class())
    assert imported_globals(payload) == [(module, name)]
    assert opcodes(payload) <= REFERENCE_OPCODES, disassembly(payload)
    assert type(pickle.loads(payload)) is provider_class  # the standard library reads it: nothing of dill's in it


def test_the_inspection_sees_a_provider_pickled_by_value():
    """A provider class dill cannot find by name (here, defined in a function) goes in as bytecode."""

    class InlineProvider(ResourceProvider):
        def create(self, props):
            return CreateResult("inline", props)

    payload = stored_payload(InlineProvider())
    assert ("dill._dill", "_create_code") in imported_globals(payload)
    assert not opcodes(payload) <= REFERENCE_OPCODES


# A provider host in a fresh process, on a newer Python when this machine has one.


@dataclass(frozen=True)
class Interpreter:
    executable: str
    version: tuple[int, ...]


def interpreter(executable: str) -> Interpreter | None:
    done = subprocess.run([executable, "-c", "import sys; print(*sys.version_info[:3])"],
                          capture_output=True, text=True, timeout=60, check=False)
    return Interpreter(executable, tuple(map(int, done.stdout.split()))) if done.returncode == 0 else None


def newer_interpreters() -> list[Interpreter]:
    """CPython executables on this machine (system, pyenv, uv-managed) of a newer minor version than this one,
    one per minor version, nearest first."""
    patterns = ["/usr/bin/python3.*", "/usr/local/bin/python3.*", "~/.pyenv/versions/*/bin/python3",
                "~/.local/share/uv/python/*/bin/python3"]
    candidates = sorted({path for pattern in patterns for path in glob.glob(os.path.expanduser(pattern))
                         if re.fullmatch(r"python3(\.\d+)?", Path(path).name)})
    by_minor: dict[tuple[int, ...], Interpreter] = {}
    for found in filter(None, map(interpreter, candidates)):
        if found.version[:2] > sys.version_info[:2]:
            by_minor.setdefault(found.version[:2], found)
    return [by_minor[minor] for minor in sorted(by_minor)]


def offline_environment(python: Interpreter, where: Path) -> tuple[str | None, str]:
    """A virtualenv for `python` with PINNED from uv's cache (no download) and this checkout on its path the way
    the editable install puts it (a .pth file); its python, or None and why not."""
    uv = shutil.which("uv")
    if uv is None:
        return None, "uv is not on PATH"
    venv = where / "py{}.{}".format(*python.version[:2])
    subprocess.run([uv, "venv", "--quiet", "--python", python.executable, str(venv)], check=True, timeout=120)
    executable = str(venv / "bin" / "python")
    pins = [f"{name}=={metadata.version(name)}" for name in PINNED]
    done = subprocess.run([uv, "pip", "install", "--offline", "--quiet", "--python", executable, *pins],
                          capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        return None, done.stderr.strip().splitlines()[0] if done.stderr.strip() else "uv pip install failed"
    site = subprocess.run([executable, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "retail_mlops_checkout.pth").write_text(f"{REPO}\n")
    return executable, ""


def newer_python_with_environment(where: Path) -> tuple[str, tuple[int, ...]]:
    """The nearest newer CPython whose environment can be built offline, or a skip saying what is missing."""
    reasons = []
    for python in newer_interpreters():
        executable, why_not = offline_environment(python, where)
        if executable is not None:
            return executable, python.version
        reasons.append("{}.{}: {}".format(*python.version[:2], why_not))
    pytest.skip(f"no CPython newer than {sys.version_info[0]}.{sys.version_info[1]} with {', '.join(PINNED)} in "
                f"uv's cache (these tests download nothing): {'; '.join(reasons) or 'none found'}")


@dataclass(frozen=True)
class ProviderHost:
    version: tuple[int, ...]
    stub: provider_pb2_grpc.ResourceProviderStub


@pytest.fixture(scope="module", params=["newer-python", "this-python"])
def fresh_host(request, moto_endpoint, tmp_path_factory) -> Iterator[ProviderHost]:
    """`python -m pulumi.dynamic` in a new process outside the checkout, finding `infra` through its environment's
    site-packages (as the engine starts it for the service project, from service/), reached over gRPC."""
    if request.param == "newer-python":
        executable, version = newer_python_with_environment(tmp_path_factory.mktemp("interpreters"))
    else:
        executable, version = sys.executable, tuple(sys.version_info[:3])
    env = aws_test_env(moto_endpoint, PYTHONDONTWRITEBYTECODE="1")
    with started_host(executable, tmp_path_factory.mktemp("host"), env) as stub:
        yield ProviderHost(version, stub)


@pytest.fixture(autouse=True)
def _neutral_pulumi_runtime():
    yield
    pulumi.runtime.reset_options()
    pulumi.runtime.set_all_config({})


def written_here(provider: ResourceProvider, inputs: dict) -> tuple[str, dict]:
    """Create in this interpreter; the id and the outputs the engine stores (the host adds `__provider` to them)."""
    result = provider.create(inputs)
    return result.id, {**(result.outs or {}), PROVIDER_KEY: inputs[PROVIDER_KEY]}


def test_the_fresh_host_is_on_the_python_it_was_started_with(fresh_host, request):
    if request.node.callspec.params["fresh_host"] == "newer-python":
        assert fresh_host.version[:2] > sys.version_info[:2]
    else:
        assert fresh_host.version[:2] == sys.version_info[:2]


def test_a_model_version_written_here_is_read_updated_and_deleted_by_the_fresh_host(fresh_host, model_group):
    urn, inputs = registered_inputs(lambda: model_version(model_group))
    assert imported_globals(base64.b64decode(inputs[PROVIDER_KEY])) == [
        ("infra.providers.model_version", "ModelVersionProvider")]
    arn, state = written_here(ModelVersionProvider(), inputs)
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Rejected")  # changed outside Pulumi

    read = fresh_host.stub.Read(provider_pb2.ReadRequest(id=arn, urn=urn, properties=wire(state)))
    refreshed = rpc.deserialize_properties(read.properties)
    assert refreshed["approval_status"] == "Rejected" and refreshed[PROVIDER_KEY] == inputs[PROVIDER_KEY]

    news = {**inputs, "approval_description": "approved again after review"}  # approval_status: Approved
    diff = fresh_host.stub.Diff(provider_pb2.DiffRequest(id=arn, urn=urn, olds=wire(refreshed), news=wire(news)))
    assert diff.changes == provider_pb2.DiffResponse.DIFF_SOME and list(diff.replaces) == []

    update = fresh_host.stub.Update(provider_pb2.UpdateRequest(id=arn, urn=urn, olds=wire(refreshed), news=wire(news)))
    updated = rpc.deserialize_properties(update.properties)
    package = sagemaker.describe_model_package(ModelPackageName=arn)
    assert package["ModelApprovalStatus"] == "Approved"
    assert package["ApprovalDescription"] == "approved again after review"
    assert updated[PROVIDER_KEY] == inputs[PROVIDER_KEY]

    fresh_host.stub.Delete(provider_pb2.DeleteRequest(id=arn, urn=urn, properties=wire(updated)))
    assert sagemaker.describe_model_package(ModelPackageName=arn)["ModelApprovalStatus"] == "Approved"


def test_a_training_job_written_here_is_read_diffed_and_updated_by_the_fresh_host(fresh_host, jobs):
    jobs.metrics = {"xgboost_holdout_macro_f1": 0.9}
    urn, inputs = registered_inputs(training_job)
    job_name, state = written_here(TrainingJobProvider(), inputs)

    read = fresh_host.stub.Read(provider_pb2.ReadRequest(id=job_name, urn=urn, properties=wire(state)))
    refreshed = rpc.deserialize_properties(read.properties)
    assert refreshed["status"] == "Completed" and refreshed["metrics"] == {"xgboost_holdout_macro_f1": 0.9}

    retrain = {**inputs, "data_hash": "data-2"}
    diff = fresh_host.stub.Diff(provider_pb2.DiffRequest(id=job_name, urn=urn, olds=wire(refreshed),
                                                         news=wire(retrain)))
    assert list(diff.replaces) == ["data_hash"]

    bigger = {**inputs, "instance_type": "ml.m5.2xlarge"}
    update = fresh_host.stub.Update(provider_pb2.UpdateRequest(id=job_name, urn=urn, olds=wire(refreshed),
                                                               news=wire(bigger)))
    updated = rpc.deserialize_properties(update.properties)
    assert updated["instance_type"] == "ml.m5.2xlarge" and updated["job_name"] == job_name
