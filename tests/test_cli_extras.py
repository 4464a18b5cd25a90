"""`retail` names the extras a command lacks: checked before a command that needs them does any work, and when a
library it imports is missing (cli/extras.py)."""

from __future__ import annotations

import importlib.metadata

import pytest

from cli import extras
from cli.extras import missing_extra_message, missing_extras, require_extras


@pytest.fixture
def without(monkeypatch):
    """Make the named distributions read as not installed."""
    def hide(*names: str) -> None:
        real = importlib.metadata.distribution
        hidden = {name.lower() for name in names}

        def distribution(name: str):
            if name.lower() in hidden:
                raise importlib.metadata.PackageNotFoundError(name)
            return real(name)
        monkeypatch.setattr(extras.importlib.metadata, "distribution", distribution)
    return hide


def test_with_every_extra_installed_nothing_is_missing_and_a_missing_module_is_a_fault():
    assert missing_extras() == []
    assert missing_extra_message(ModuleNotFoundError("No module named 'x'", name="x")) is None


def test_an_extra_with_a_requirement_not_installed_is_named(without):
    without("pyyaml")  # imported as yaml: the name of the module does not matter
    assert missing_extras() == ["infra"]
    message = missing_extra_message(ModuleNotFoundError("No module named 'yaml'", name="yaml"))
    assert message is not None and "the extras not installed here: infra" in message
    assert "pip install 'retail-mlops[all]'" in message


def test_a_missing_submodule_of_an_installed_package_is_left_as_it_is(without):
    without("fastapi")
    assert missing_extra_message(ModuleNotFoundError("x", name="pulumi_aws.nonexistent_sub")) is None
    assert missing_extra_message(ModuleNotFoundError("no name")) is None


def test_serve_refuses_to_start_without_its_extra(without, capsys):
    without("uvicorn")
    with pytest.raises(SystemExit) as exit_:
        require_extras("retail serve", "serve")
    assert exit_.value.code == 1
    assert "retail serve needs the 'serve' extra" in capsys.readouterr().err


def test_a_command_names_only_the_extras_it_needs_that_are_missing(without, capsys):
    without("uvicorn", "pulumi")
    with pytest.raises(SystemExit):
        require_extras("retail demo", "ml", "serve")
    assert capsys.readouterr().err == ("retail: retail demo needs the 'serve' extra, not installed here: "
                                       "pip install 'retail-mlops[serve]'\n")
    with pytest.raises(SystemExit):
        require_extras("retail x", "infra", "ml", "serve")
    assert "needs the 'infra', 'serve' extras, not installed here: pip install 'retail-mlops[infra,serve]'" in \
        capsys.readouterr().err
    require_extras("retail pipeline run", "ml")  # installed: returns


def test_the_message_offers_the_option_that_does_without_the_missing_extras(without, capsys):
    without("uvicorn")
    with pytest.raises(SystemExit):
        require_extras("retail demo", "ml", "serve", without={"serve": "--no-serve"})
    assert capsys.readouterr().err.endswith("pip install 'retail-mlops[serve]', or run retail demo --no-serve\n")
    without("uvicorn", "mlflow")
    with pytest.raises(SystemExit):
        require_extras("retail demo", "ml", "serve", without={"serve": "--no-serve"})
    assert capsys.readouterr().err.endswith("pip install 'retail-mlops[ml,serve]'\n")  # --no-serve would not do
