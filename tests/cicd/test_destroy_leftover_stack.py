""".ci/destroy-leftover-stack, run as the CI clean-ups run it, with a stand-in `pulumi` (tests/cicd/definitions.py):
an existing stack is cancelled then destroyed, a missing one is nothing to do, and a backend that cannot be asked
fails the clean-up instead of passing for "no stack"."""

from __future__ import annotations

import pytest

from tests.cicd.commands import ROOT
from tests.cicd.definitions import DESTROY_LEFTOVER_STACK, pulumi_run

SCRIPT = f'"{ROOT / DESTROY_LEFTOVER_STACK}" "$STACK" service'
SELECT = "stack select ephemeral-pr-42 --cwd service"


@pytest.mark.parametrize("open_update", ["", "yes"])
def test_an_existing_stack_s_open_update_is_cancelled_then_the_stack_destroyed_and_removed(tmp_path, open_update):
    """A run killed mid `pulumi up` leaves its update open, which refuses the destroy (409) until cancelled; with no
    update open, `pulumi cancel` fails and the destroy goes ahead."""
    code, calls, _ = pulumi_run(SCRIPT, tmp_path, OPEN=open_update)
    assert code == 0
    assert calls == [SELECT, "cancel --yes --stack ephemeral-pr-42 --cwd service",
                     "destroy --yes --remove --stack ephemeral-pr-42 --cwd service"]


def test_a_stack_that_does_not_exist_is_nothing_left(tmp_path):
    code, calls, printed = pulumi_run(SCRIPT, tmp_path, NO_STACK="yes")
    assert (code, calls) == (0, [SELECT])
    assert "no stack ephemeral-pr-42 of service left" in printed


def test_a_backend_that_cannot_be_asked_fails_the_clean_up_with_its_answer(tmp_path):
    """A refused token or an unreachable backend is not "no stack": the destroy would be skipped and the resources
    left running."""
    code, calls, printed = pulumi_run(SCRIPT, tmp_path, BACKEND_DOWN="yes")
    assert code == 1 and calls == [SELECT]
    assert "[401] Unauthorized" in printed
    assert "cannot tell whether stack ephemeral-pr-42 of service exists" in printed


def test_a_failed_destroy_fails_the_clean_up(tmp_path):
    code, calls, _ = pulumi_run(SCRIPT, tmp_path, DESTROY_FAILS="yes")
    assert code != 0 and calls[-1] == "destroy --yes --remove --stack ephemeral-pr-42 --cwd service"
