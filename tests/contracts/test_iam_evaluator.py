"""`allows()`: when a policy's statements cover what a service's documentation requires.

A requirement (`Need`) is a set of requests: every action its patterns name, on every
resource, by its principal, with the request context the service sends. A statement
covers a request when its principal, action and resource patterns match (IAM wildcards)
and every one of its conditions holds in that context; an applicable Deny wins.
"""

from __future__ import annotations

from policies.documents import Need, allows, expand_actions, glob_match

CLOUDTRAIL = ("Service", "cloudtrail.amazonaws.com")
TRAIL = "arn:aws:cloudtrail:ap-southeast-1:123456789012:trail/audit"
GROUP = "arn:aws:logs:ap-southeast-1:123456789012:log-group:/retail/dev/inference"


def allow(**elements) -> dict:
    return {"Effect": "Allow", "Resource": "*", **elements}


def test_an_action_pattern_is_expanded_to_every_action_it_names():
    assert expand_actions(["kms:GenerateDataKey*"]) == [
        "kms:GenerateDataKey",
        "kms:GenerateDataKeyPair",
        "kms:GenerateDataKeyPairWithoutPlaintext",
        "kms:GenerateDataKeyWithoutPlaintext",
    ]


def test_an_action_unknown_to_parliament_is_kept_as_written():
    assert expand_actions(["elasticloadbalancing:ModifyIpPools"]) == ["elasticloadbalancing:ModifyIpPools"]


def test_a_wildcard_action_covers_every_action_of_the_pattern():
    statements = [allow(Principal={"Service": "cloudtrail.amazonaws.com"}, Action="kms:GenerateDataKey*")]
    assert allows(statements, Need(("kms:GenerateDataKey*",), CLOUDTRAIL)) == []


def test_a_narrower_action_does_not_cover_the_documented_pattern():
    statements = [allow(Principal={"Service": "cloudtrail.amazonaws.com"}, Action="kms:GenerateDataKey")]
    missing = allows(statements, Need(("kms:GenerateDataKey*",), CLOUDTRAIL))
    assert "kms:GenerateDataKeyPair on *" in missing
    assert "kms:GenerateDataKey on *" not in missing


def test_actions_match_without_regard_to_case():
    statements = [allow(Principal={"Service": "cloudtrail.amazonaws.com"}, Action="KMS:decrypt")]
    assert allows(statements, Need(("kms:Decrypt",), CLOUDTRAIL)) == []


def test_not_action_covers_every_action_it_does_not_name():
    assert allows([allow(NotAction="iam:*")], Need(("kms:Decrypt",))) == []
    assert allows([allow(NotAction="kms:*")], Need(("kms:Decrypt",))) == ["kms:Decrypt on *"]


def test_a_service_principal_must_be_named_by_the_statement():
    one_of_several = {"Service": ["cloudwatch.amazonaws.com", "cloudtrail.amazonaws.com"]}
    assert allows([allow(Principal=one_of_several, Action="kms:Decrypt")], Need(("kms:Decrypt",), CLOUDTRAIL)) == []
    account_root = {"AWS": "arn:aws:iam::123456789012:root"}
    assert allows([allow(Principal=account_root, Action="kms:*")], Need(("kms:Decrypt",), CLOUDTRAIL)) != []


def test_an_identity_requirement_is_not_met_by_a_resource_policy_statement():
    statement = allow(Principal={"Service": "cloudtrail.amazonaws.com"}, Action="kms:Decrypt")
    assert allows([statement], Need(("kms:Decrypt",))) == ["kms:Decrypt on *"]


def test_resource_patterns_follow_iam_wildcards():
    stream = f"{GROUP}:log-stream:retail-inference-1"
    need = Need(("logs:PutLogEvents",), resources=(stream,))
    assert allows([allow(Action="logs:PutLogEvents", Resource=f"{GROUP}:*")], need) == []
    assert allows([allow(Action="logs:PutLogEvents", Resource=GROUP)], need) == [f"logs:PutLogEvents on {stream}"]


def test_a_requirement_on_every_resource_needs_resource_star():
    need = Need(("ec2:DescribeVpcs",))
    assert allows([allow(Action="ec2:Describe*")], need) == []
    scoped = allow(Action="ec2:DescribeVpcs", Resource="arn:aws:ec2:*:*:vpc/*")
    assert allows([scoped], need) == ["ec2:DescribeVpcs on *"]


def test_a_trust_statement_without_resource_covers_its_role():
    trust = {"Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"}, "Action": "sts:AssumeRole"}
    assert allows([trust], Need(("sts:AssumeRole",), CLOUDTRAIL)) == []


def test_a_condition_on_a_key_the_request_does_not_carry_does_not_hold():
    encrypt_only = allow(
        Principal={"Service": "cloudtrail.amazonaws.com"},
        Action="kms:DescribeKey",
        Condition={"StringLike": {"kms:EncryptionContext:aws:cloudtrail:arn": "arn:aws:cloudtrail:*"}},
    )
    describe = Need(("kms:DescribeKey",), CLOUDTRAIL, context={"aws:SourceArn": TRAIL})
    assert allows([encrypt_only], describe) == ["kms:DescribeKey on *"]


def test_if_exists_and_null_hold_when_the_key_is_absent():
    statements = [
        allow(
            Action="kms:Decrypt",
            Condition={"StringEqualsIfExists": {"kms:ViaService": "s3.x"}, "Null": {"aws:SourceArn": "true"}},
        )
    ]
    assert allows(statements, Need(("kms:Decrypt",))) == []


def test_a_negated_condition_holds_when_the_key_is_absent():
    deny_elsewhere = {
        "Effect": "Deny",
        "Action": "kms:*",
        "Resource": "*",
        "Condition": {"StringNotEquals": {"kms:ViaService": "s3.ap-southeast-1.amazonaws.com"}},
    }
    assert allows([allow(Action="kms:*"), deny_elsewhere], Need(("kms:Decrypt",))) == ["kms:Decrypt on *"]
    through_s3 = {"kms:ViaService": "s3.ap-southeast-1.amazonaws.com"}
    assert allows([allow(Action="kms:*"), deny_elsewhere], Need(("kms:Decrypt",), context=through_s3)) == []


def test_condition_keys_match_without_regard_to_case():
    statement = allow(Action="kms:Decrypt", Condition={"StringEquals": {"KMS:ViaService": "s3.x"}})
    assert allows([statement], Need(("kms:Decrypt",), context={"kms:viaservice": "s3.x"})) == []


def test_string_conditions_compare_exactly_or_with_wildcards():
    context = {"aws:SourceArn": TRAIL}
    equals = allow(Action="kms:Decrypt", Condition={"StringEquals": {"aws:SourceArn": TRAIL + "-other"}})
    like = allow(Action="kms:Decrypt", Condition={"StringLike": {"aws:SourceArn": "arn:aws:cloudtrail:*:trail/*"}})
    assert allows([equals], Need(("kms:Decrypt",), context=context)) == ["kms:Decrypt on *"]
    assert allows([like], Need(("kms:Decrypt",), context=context)) == []


def test_arn_like_matches_each_arn_part_on_its_own():
    account_groups = allow(
        Action="kms:Decrypt", Condition={"ArnLike": {"k": "arn:aws:logs:ap-southeast-1:123456789012:*"}}
    )
    other_account = allow(
        Action="kms:Decrypt", Condition={"ArnLike": {"k": "arn:aws:logs:ap-southeast-1:999999999999:*"}}
    )
    need = Need(("kms:Decrypt",), context={"k": GROUP})
    assert allows([account_groups], need) == []
    assert allows([other_account], need) == ["kms:Decrypt on *"]


def test_an_operator_the_evaluator_does_not_know_never_holds():
    statement = allow(Action="kms:Decrypt", Condition={"ForAnyValue:StringEquals": {"k": "v"}})
    assert allows([statement], Need(("kms:Decrypt",), context={"k": "v"})) == ["kms:Decrypt on *"]


def test_an_applicable_deny_wins_over_an_allow():
    statements = [allow(Action="kms:*"), {"Effect": "Deny", "Action": "kms:Decrypt", "Resource": "*"}]
    assert allows(statements, Need(("kms:Decrypt", "kms:Encrypt"))) == ["kms:Decrypt on *"]


def test_a_deny_whose_condition_does_not_hold_does_not_apply():
    deny = {"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
    assert allows([allow(Action="kms:*"), deny], Need(("kms:Decrypt",), context={"aws:SecureTransport": "true"})) == []


def test_a_required_scoping_condition_must_be_tested_by_the_allowing_statement():
    need = Need(("kms:Decrypt",), CLOUDTRAIL, context={"aws:SourceArn": TRAIL}, constrained_by={"aws:SourceArn": ()})
    unscoped = allow(Principal={"Service": "cloudtrail.amazonaws.com"}, Action="kms:Decrypt")
    scoped = {**unscoped, "Condition": {"StringEquals": {"aws:SourceArn": TRAIL}}}
    assert allows([unscoped], need) == ["kms:Decrypt on *"]
    assert allows([scoped], need) == []


def test_a_required_condition_operator_is_enforced():
    key = "kms:EncryptionContext:aws:logs:arn"
    need = Need(("kms:Decrypt",), context={key: GROUP}, constrained_by={key: ("ArnLike", "ArnEquals")})
    string_like = allow(Action="kms:Decrypt", Condition={"StringLike": {key: "arn:aws:logs:*:*:*"}})
    arn_like = allow(Action="kms:Decrypt", Condition={"ArnLike": {key: "arn:aws:logs:*:*:*"}})
    assert allows([string_like], need) == ["kms:Decrypt on *"]
    assert allows([arn_like], need) == []


def test_glob_treats_only_star_and_question_mark_as_wildcards():
    assert glob_match("name#statement-?", "name#statement-1")
    assert glob_match("a[1]*", "a[1]b")
    assert not glob_match("a[1]", "a1")
