"""`retail` names the extra that provides a library a command could not import (cli/extras.py)."""

from __future__ import annotations

import pytest

from cli.extras import extras_providing, missing_extra_message


@pytest.mark.parametrize(("module", "extras"), [
    ("fastapi", ["serve"]),
    ("pulumi_aws.ec2", ["infra"]),  # a submodule, and `_` read as the distribution name's `-`
    ("boto3", ["infra", "ml"]),
    ("mlflow", ["ml"]),
    ("numpy", []),  # a core dependency: no extra provides it
    ("no_such_library", []),
])
def test_the_extras_that_list_a_module_s_distribution(module, extras):
    assert extras_providing(module) == extras


def test_a_library_of_an_extra_gets_the_install_command():
    message = missing_extra_message(ModuleNotFoundError("No module named 'boto3'", name="boto3"))
    assert message is not None
    assert "pip install 'retail-mlops[infra]' or pip install 'retail-mlops[ml]'" in message


def test_any_other_missing_module_is_left_to_be_reported_as_it_is():
    assert missing_extra_message(ModuleNotFoundError("No module named 'cli.gone'", name="cli.gone")) is None
    assert missing_extra_message(ModuleNotFoundError("no name")) is None
