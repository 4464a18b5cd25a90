"""policies/waivers.yaml: read strictly, applied by tool, check id and subject, and never stale.

A waiver that matches no finding of the dev, prod or ephemeral deployment is an error:
the defect it excused is gone (or its subject was renamed), and an entry left behind
would silently accept the next finding that happens to match it. The checkov waivers
are checked for staleness in test_manifests.py, which runs checkov.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from policies.documents import (
    CHECKOV,
    WAIVERS_FILE,
    Waiver,
    apply_waivers,
    finding,
    load_waivers,
    raw_document_findings,
    stale_waivers,
)
from tests.contracts.helpers import STACKS

VALID = """\
waivers:
  - tool: parliament
    check: RESOURCE_STAR
    subject: "retail-*-kms-*-key#*"
    reason: Resource "*" in a key policy is the key itself.
    doc: https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-overview.html
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "waivers.yaml"
    path.write_text(text)
    return path


def test_the_projects_waivers_file_loads():
    waivers = load_waivers()
    assert waivers
    assert all(w.reason for w in waivers)


def test_a_valid_waiver_is_read(tmp_path):
    [waiver] = load_waivers(write(tmp_path, VALID))
    assert (waiver.tool, waiver.check, waiver.subject) == ("parliament", "RESOURCE_STAR", "retail-*-kms-*-key#*")


@pytest.mark.parametrize(
    "text, error",
    [
        (VALID + "    severity: low\n", "unknown keys \\['severity'\\]"),
        (VALID.replace('    reason: Resource "*" in a key policy is the key itself.\n', ""), "missing \\['reason'\\]"),
        (VALID.replace("tool: parliament", "tool: tfsec"), "tool 'tfsec' is none of"),
        (
            VALID.replace(
                "    doc: https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-overview.html\n", ""
            ),
            "needs `doc`",
        ),
        (VALID + VALID.split("\n", 1)[1], "duplicates an earlier waiver"),
        (VALID.replace("waivers:", "accepted:"), "one top-level key `waivers`"),
        (VALID + "extra: 1\n", "one top-level key `waivers`"),
        ("waivers:\n  - just a string\n", "expected a mapping"),
    ],
    ids=[
        "unknown key",
        "no reason",
        "unknown tool",
        "no doc",
        "duplicate",
        "other top-level key",
        "extra top-level key",
        "not a mapping",
    ],
)
def test_a_malformed_waivers_file_is_an_error(tmp_path, text, error):
    with pytest.raises(ValueError, match=error):
        load_waivers(write(tmp_path, text))


def test_a_checkov_waiver_needs_no_doc(tmp_path):
    text = "waivers:\n  - {tool: checkov, check: CKV_K8S_1, subject: Deployment/x, reason: not used}\n"
    assert load_waivers(write(tmp_path, text))[0].tool == CHECKOV


def test_a_waiver_accepts_only_its_tool_check_and_subject():
    waiver = Waiver("parliament", "RESOURCE_STAR", "retail-*-kms-*-key#*", "the key itself")
    accepted = finding("parliament", "RESOURCE_STAR", "retail-dev-kms-data-key#Admin", "Resource *", "")
    other_check = finding("parliament", "UNKNOWN_ACTION", "retail-dev-kms-data-key#Admin", "x", "")
    other_subject = finding("parliament", "RESOURCE_STAR", "retail-dev-ml-sagemaker-access#EcrLogin", "x", "")
    other_tool = finding("checkov", "RESOURCE_STAR", "retail-dev-kms-data-key#Admin", "x", "")
    results = apply_waivers([accepted, other_check, other_subject, other_tool], [waiver])
    assert [f.waived for f in results] == ["the key itself", "", "", ""]
    assert [f.blocking for f in results] == [False, True, True, True]


def test_a_message_glob_narrows_a_waiver_to_one_variant():
    waiver = Waiver("parliament", "UNKNOWN_ACTION", "*", "newer than parliament", message="*ModifyIpPools*")
    known = finding(
        "parliament", "UNKNOWN_ACTION", "p#statement-13", "Unknown action (elasticloadbalancing:ModifyIpPools)", ""
    )
    typo = finding(
        "parliament", "UNKNOWN_ACTION", "p#statement-13", "Unknown action (elasticloadbalancing:ModifyIpPool)", ""
    )
    assert [f.blocking for f in apply_waivers([known, typo], [waiver])] == [False, True]


def test_a_waiver_that_matches_nothing_is_stale():
    waiver = Waiver("parliament", "RESOURCE_STAR", "retail-*-gone#*", "the resource was removed")
    findings = [finding("parliament", "RESOURCE_STAR", "retail-dev-kms-data-key#Admin", "x", "")]
    assert stale_waivers([waiver], findings) == [waiver]


def test_no_parliament_or_documented_waiver_is_stale_across_the_deployments(deployments):
    findings = [f for stack in STACKS for f in raw_document_findings(deployments[stack])]
    waivers = [w for w in load_waivers(WAIVERS_FILE) if w.tool != CHECKOV]
    assert stale_waivers(waivers, findings) == []
