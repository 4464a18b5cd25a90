"""The monitoring CronJob's IRSA role: parliament finds nothing in it, and the deploy check holds it to what
`retail monitor` reads and writes (batch-job-s3-access).

The real deployments' role passes; each failing fixture is the dev deployment with one of its statements removed
or widened, or its CronJob running a command the check does not know, which the check must report.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from policies.documents import PARLIAMENT, check_id, document_findings, requirement_findings
from tests.contracts.helpers import STACKS, Statements, edit_document, edit_inputs, statement, without

ROLE_POLICY = "-monitoring-monitor-access"
ROW = "batch-job-s3-access"


def findings_of(runs) -> list:
    return [f for f in requirement_findings(runs) if check_id(f) == ROW]


@pytest.mark.parametrize("stack", STACKS)
def test_parliament_finds_nothing_in_the_monitor_policy_and_the_check_nothing_in_the_role(deployments, stack):
    findings = document_findings(deployments[stack], waivers=[])
    assert [f for f in findings if f.check == PARLIAMENT and ROLE_POLICY in f.subject] == []
    assert [f for f in findings if check_id(f) == ROW] == []


def _widened(sid: str, **changes) -> Callable[[Statements], Statements]:
    def edit(statements: Statements) -> Statements:
        statement(statements, sid).update(changes)
        return statements

    return edit


def _writes_predictions(statements: Statements) -> Statements:
    writes = statement(statements, "WriteMonitoringZone")
    writes["Resource"] = [writes["Resource"], writes["Resource"].replace("/lake/monitoring/*", "/lake/predictions/*")]
    return statements


def _reads_gold(statements: Statements) -> Statements:
    reads = statement(statements, "ReadSilverZone")
    reads["Resource"] = reads["Resource"].replace("/lake/silver/*", "/lake/*")
    return statements


@pytest.mark.parametrize(
    ("edit", "reported"),
    [
        (without("WriteMonitoringZone"), "does not allow s3:PutObject"),
        (without("ReadPredictionsZone"), "for reading s3://"),
        (without("ListPredictionsZone"), "does not allow s3:ListBucket"),
        (without("ReadMonitoringZone"), "/lake/monitoring/, the role does not allow s3:GetObject"),
        (without("ReadServedBundle"), "/models/price-sensitivity/serving/dev/"),
        (without("UseDataKeyThroughS3"), "for SSE-KMS objects"),
        (_writes_predictions, "allows s3:PutObject on"),
        (_widened("WriteMonitoringZone", Action=["s3:PutObject", "s3:DeleteObject"]), "allows s3:DeleteObject"),
        (_reads_gold, "ReadSilverZone allows s3:GetObject on arn:aws:s3:::"),
    ],
    ids=["reports write removed", "predictions read removed", "predictions listing removed", "reports read removed",
         "bundle read removed", "data key removed", "writes predictions", "may delete reports", "reads every zone"],
)
def test_a_monitor_role_beyond_or_short_of_what_the_monitor_does_is_reported(dev, edit, reported):
    findings = findings_of(edit_document(dev, ROLE_POLICY, edit))
    assert findings and all(f.subject == "retail-dev-monitoring-monitor" for f in findings)
    assert any(reported in f.message for f in findings), [f.message for f in findings]


def test_a_lake_job_running_a_command_the_check_does_not_know_is_reported(dev):
    def other_command(inputs: dict) -> None:
        container = inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        container["command"] = ["python", "-m", "cli.other"]

    (finding,) = findings_of(edit_inputs(dev, "-monitoring-cron-job", other_command))
    assert finding.subject == "retail-dev-monitoring-cron-job"
    assert "runs none of the batch commands this check knows (cli.score, cli.monitor)" in finding.message
