"""Bucket policies: parsing errors, wildcard matching, conditions, and public-ness."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3torrent.access import (
    ANONYMOUS,
    PublicAccessBlock,
    RequestContext,
    check_policy_allowed,
    condition_keys,
    parse_policy,
    policy_is_public,
    wildcard_match,
)
from s3torrent.access.actions import is_s3_action
from s3torrent.access.conditions import condition_holds, parse_condition_block
from s3torrent.access.errors import AccessError
from s3torrent.access.facts import decode_policy
from s3torrent.s3.routing import VERSION_ACTIONS, Endpoint

GOOD_STATEMENT: dict[str, Any] = {
    "Sid": "Read",
    "Effect": "Allow",
    "Principal": "*",
    "Action": "s3:GetObject",
    "Resource": "arn:aws:s3:::b/*",
}


def doc(**changes: Any) -> str:
    statement = {**GOOD_STATEMENT, **changes}
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{k: v for k, v in statement.items() if v is not None}],
        }
    )


# --- parsing ---------------------------------------------------------------------------------


def test_policy_keeps_its_text_and_accepts_both_versions_and_statement_shapes() -> None:
    text = doc()
    assert parse_policy(text, bucket="b").text == text
    single = json.dumps({"Version": "2008-10-17", "Statement": GOOD_STATEMENT})
    assert len(parse_policy(single, bucket="b").statements) == 1
    no_version = json.dumps({"Id": "x", "Statement": [GOOD_STATEMENT]})
    assert parse_policy(no_version, bucket="b").version == "2008-10-17"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "valid JSON"),
        ("[1, 2]", "first byte must be '{'"),
        (json.dumps({"Version": "2012-10-17"}), "Missing required field Statement"),
        (json.dumps({"Version": "2012-10-17", "Statement": []}), "non-empty"),
        (json.dumps({"Version": "2020-01-01", "Statement": [GOOD_STATEMENT]}), "Version"),
        (json.dumps({"Statement": [GOOD_STATEMENT], "Extra": 1}), "top-level field(s): Extra"),
        (doc(Effect="Maybe"), "Invalid effect"),
        (doc(Effect=None), "Invalid effect"),
        (doc(Principal=None), "Missing required field Principal"),
        (doc(NotPrincipal="*"), "both Principal and NotPrincipal"),
        (doc(Principal={"AWS": "bob"}), "Invalid principal"),
        (doc(Principal={"Spaceship": "x"}), "unknown principal type Spaceship"),
        (doc(Principal={"CanonicalUser": "xyz"}), "bad canonical id"),
        (doc(Principal=7), "Invalid principal"),
        (doc(Action=None), "Missing required field Action"),
        (doc(Action="ec2:RunInstances"), "Policy has invalid action"),
        (doc(Action="GetObject"), "Policy has invalid action"),
        (doc(Action=[]), "non-empty"),
        (doc(NotAction="s3:Get*"), "both Action and NotAction"),
        (doc(Resource=None), "Missing required field Resource"),
        (doc(Resource="arn:aws:s3:::other/*"), "Policy has invalid resource"),
        (doc(Resource="arn:aws:s3:::bb"), "Policy has invalid resource"),
        (doc(Resource="arn:aws:iam::000000000000:user/x"), "Policy has invalid resource"),
        (doc(Condition={"StringLooksLike": {"s3:prefix": "a"}}), "Invalid Condition type"),
        (doc(Condition={"ForSomeValues:StringLike": {"s3:prefix": "a"}}), "Invalid Condition"),
        (doc(Condition={"NullIfExists": {"s3:prefix": "true"}}), "Invalid Condition type"),
        (doc(Condition={"IpAddress": {"aws:SourceIp": "300.1.1.1/8"}}), "Invalid value"),
        (doc(Condition={"NumericLessThan": {"s3:max-keys": "ten"}}), "Invalid value"),
        (doc(Condition={"DateLessThan": {"aws:CurrentTime": "someday"}}), "Invalid value"),
        (doc(Condition={"Bool": {"aws:SecureTransport": "yes"}}), "Invalid value"),
        (doc(Condition={"StringEquals": {"s3:prefix": []}}), "has no values"),
        (doc(Condition={"StringEquals": {"s3:prefix": {"a": 1}}}), "must be strings"),
        (doc(Condition=["x"]), "Condition must be an object"),
        (doc(Colour="red"), "unknown field(s): Colour"),
        (doc(Sid=5), "Sid"),
        (
            json.dumps({"Statement": [GOOD_STATEMENT, GOOD_STATEMENT]}),
            "must be unique",
        ),
        (doc(Resource="arn:aws:s3:::b/" + "x" * 21000), "maximum allowed document size"),
    ],
)
def test_malformed_policies_say_why(text: str, message: str) -> None:
    with pytest.raises(AccessError) as info:
        parse_policy(text, bucket="b")
    assert info.value.code == "MalformedPolicy"
    assert message in info.value.message


def test_only_actions_s3_defines_are_accepted_and_a_stored_policy_still_reads() -> None:
    with pytest.raises(AccessError) as info:
        parse_policy(doc(Action="s3:GetObjectz"), bucket="b")
    assert info.value.code == "MalformedPolicy"
    assert "Policy has invalid action: s3:GetObjectz" in info.value.message
    # Stored before PutBucketPolicy checked names: read as written, matching nothing.
    stored = decode_policy(doc(Action=["s3:GetObjectz", "s3:GetObject"]), "b")
    assert [s.actions for s in stored.statements] == [("s3:GetObjectz", "s3:GetObject")]


@pytest.mark.parametrize(
    ("condition", "accepted"),
    [
        ({"StringEquals": {"s3:x-amz-server-side-encrption": "AES256"}}, False),  # misspelt
        ({"StringNotEquals": {"s3:Prefixx": "home/"}}, False),
        ({"StringEquals": {"s3:ExistingObjectTag/": "x"}}, False),  # a family needs a name
        ({"StringEquals": {"s3:x-amz-server-side-encryption": "AES256"}}, True),
        ({"StringEquals": {"S3:PREFIX": "home/"}}, True),  # any case
        ({"StringEquals": {"s3:ExistingObjectTag/Share": "yes"}}, True),
        ({"NumericLessThan": {"s3:signatureAge": "600000"}}, True),  # defined, not supplied
        ({"StringEquals": {"aws:SomeFutureKey": "x"}}, False),  # not a global key
        ({"IpAddress": {"aws:SourceIP4": "10.0.0.0/8"}}, False),  # a typo of aws:SourceIp
        ({"NotIpAddress": {"AWS:SOURCEIP": "10.0.0.0/8"}}, True),  # any case
        ({"StringNotEquals": {"aws:SourceVpce": "vpce-1"}}, True),  # defined, never supplied
        ({"StringEquals": {"aws:PrincipalTag/team": "a"}}, True),
        ({"StringEquals": {"aws:PrincipalTag/": "a"}}, False),  # a family needs its tag key
        ({"StringEquals": {"aws:Principal/team": "a"}}, False),
        ({"StringEquals": {"ec2:SourceInstanceArn": "x"}}, True),  # cross-service keys pass
        ({"StringEquals": {"SourceIp": "x"}}, False),  # no service prefix
        ({"StringEquals": {"aws:": "x"}}, False),
    ],
)
def test_only_condition_keys_s3_defines_are_accepted(condition: Any, accepted: bool) -> None:
    text = doc(Condition=condition)
    if accepted:
        parse_policy(text, bucket="b")
        return
    with pytest.raises(AccessError) as info:
        parse_policy(text, bucket="b")
    assert info.value.code == "MalformedPolicy"
    assert "Policy has an invalid condition key" in info.value.message
    assert len(decode_policy(text, "b").statements) == 1  # stored before the check: read


def test_every_action_the_router_asks_is_one_s3_defines() -> None:
    asked = {e.action for e in Endpoint} | set(VERSION_ACTIONS.values())
    assert [a for a in asked if not is_s3_action(a.split(":", 1)[1])] == []


@pytest.mark.parametrize(
    "principal",
    [
        "*",
        {"AWS": "*"},
        {"AWS": "arn:aws:iam::000000000000:user/bob"},
        {"AWS": ["arn:aws:iam::000000000000:root", "000000000000"]},
        {"CanonicalUser": "a" * 64},
        {"Service": "logging.s3.amazonaws.com"},
    ],
)
def test_accepted_principals(principal: Any) -> None:
    parse_policy(doc(Principal=principal), bucket="b")


@pytest.mark.parametrize(
    "resource",
    ["arn:aws:s3:::b", "arn:aws:s3:::b/*", "arn:aws:s3:::b*", "arn:aws:s3:::*/k", "*"],
)
def test_resources_within_the_bucket_are_accepted(resource: str) -> None:
    parse_policy(doc(Resource=resource), bucket="b")


# --- wildcards -----------------------------------------------------------------------------------


def reference_match(pattern: str, text: str) -> bool:
    """Obviously-correct (memoised recursive) wildcard matcher."""

    @cache
    def go(i: int, j: int) -> bool:
        if i == len(pattern):
            return j == len(text)
        if pattern[i] == "*":
            return go(i + 1, j) or (j < len(text) and go(i, j + 1))
        return j < len(text) and pattern[i] in ("?", text[j]) and go(i + 1, j + 1)

    return go(0, 0)


_alphabet = st.text(alphabet="ab*?/", max_size=12)


@settings(max_examples=500, deadline=None)
@given(pattern=_alphabet, text=st.text(alphabet="ab/", max_size=14))
def test_wildcard_match_agrees_with_reference(pattern: str, text: str) -> None:
    assert wildcard_match(pattern, text) == reference_match(pattern, text)


@given(pattern=st.text(max_size=10), text=st.text(max_size=10))
def test_wildcard_match_on_arbitrary_text_agrees_with_reference(pattern: str, text: str) -> None:
    assert wildcard_match(pattern, text) == reference_match(pattern, text)


def test_wildcard_match_ignores_case_on_request() -> None:
    assert wildcard_match("s3:get*", "S3:GetObject", ignore_case=True)
    assert not wildcard_match("s3:get*", "S3:GetObject")


def test_wildcard_match_has_no_catastrophic_backtracking() -> None:
    pattern = "*a" * 200 + "*b"
    text = "a" * 5000
    started = time.perf_counter()
    assert not wildcard_match(pattern, text)
    assert time.perf_counter() - started < 1.0


# --- conditions ----------------------------------------------------------------------------------


def holds(block: dict[str, Any], context: dict[str, list[str]]) -> bool:
    return all(condition_holds(c, context) for c in parse_condition_block(block))


@pytest.mark.parametrize(
    ("block", "context", "expected"),
    [
        ({"StringEqualsIgnoreCase": {"aws:UserAgent": "CURL"}}, {"aws:useragent": ["curl"]}, True),
        ({"StringNotLike": {"s3:prefix": "tmp/*"}}, {"s3:prefix": ["tmp/x"]}, False),
        ({"StringNotLike": {"s3:prefix": "tmp/*"}}, {"s3:prefix": ["doc/x"]}, True),
        ({"Null": {"s3:prefix": "true"}}, {}, True),
        ({"Null": {"s3:prefix": "false"}}, {}, False),
        ({"Null": {"s3:prefix": "false"}}, {"s3:prefix": [""]}, True),
        ({"NumericGreaterThan": {"s3:max-keys": 5}}, {"s3:max-keys": ["6"]}, True),
        ({"NumericNotEquals": {"s3:max-keys": 5}}, {"s3:max-keys": ["5"]}, False),
        (
            {"DateGreaterThanEquals": {"aws:EpochTime": "1700000000"}},
            {"aws:epochtime": ["1700000000"]},
            True,
        ),
        (
            {"DateEquals": {"aws:CurrentTime": "2025-01-01"}},
            {"aws:currenttime": ["2025-01-01T00:00:00Z"]},
            True,
        ),
        ({"ForAnyValue:StringEquals": {"s3:tags": ["a", "b"]}}, {"s3:tags": ["c", "b"]}, True),
        ({"ForAnyValue:StringEquals": {"s3:tags": ["a", "b"]}}, {}, False),
        ({"ForAllValues:StringEquals": {"s3:tags": ["a", "b"]}}, {"s3:tags": ["a", "c"]}, False),
        ({"ForAllValues:StringEquals": {"s3:tags": ["a", "b"]}}, {"s3:tags": ["b", "a"]}, True),
        ({"ForAllValues:StringEquals": {"s3:tags": ["a", "b"]}}, {}, True),
        (
            {"ArnLike": {"aws:SourceArn": "arn:aws:sns:*:*:t"}},
            {"aws:sourcearn": ["arn:aws:sns:x:1:t"]},
            True,
        ),
        ({"NumericLessThanIfExists": {"s3:max-keys": 5}}, {}, True),
        (
            {"NotIpAddressIfExists": {"aws:SourceIp": "10.0.0.0/8"}},
            {"aws:sourceip": ["10.1.1.1"]},
            False,
        ),
        ({"StringEquals": {"s3:prefix": "a", "s3:delimiter": "/"}}, {"s3:prefix": ["a"]}, False),
        (
            {"StringEquals": {"s3:prefix": "a"}, "Bool": {"aws:SecureTransport": "true"}},
            {"s3:prefix": ["a"], "aws:securetransport": ["true"]},
            True,
        ),
        ({"StringEquals": {"aws:unknownkey": "a"}}, {}, False),
    ],
)
def test_condition_operators(
    block: dict[str, Any], context: dict[str, list[str]], expected: bool
) -> None:
    assert holds(block, context) is expected


def test_condition_keys_come_from_the_context() -> None:
    ctx = RequestContext(
        now=datetime(2025, 6, 1, 12, 0, tzinfo=UTC),
        source_ip="192.0.2.1",
        secure_transport=True,
        values={"s3:Prefix": "docs/", "aws:UserAgent": "curl/8"},
    )
    keys = condition_keys(ANONYMOUS, ctx)
    assert keys["aws:sourceip"] == ["192.0.2.1"]
    assert keys["aws:securetransport"] == ["true"]
    assert keys["aws:currenttime"] == ["2025-06-01T12:00:00Z"]
    assert keys["aws:epochtime"] == [str(int(ctx.now.timestamp()))]
    assert keys["aws:principaltype"] == ["Anonymous"]
    assert keys["s3:prefix"] == ["docs/"]
    assert keys["aws:useragent"] == ["curl/8"]
    assert "aws:username" not in keys


# --- public-ness ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "public"),
    [
        ({}, True),
        ({"Principal": {"AWS": "*"}}, True),
        ({"Principal": {"AWS": "arn:aws:iam::000000000000:user/bob"}}, False),
        ({"Principal": {"CanonicalUser": "a" * 64}}, False),
        ({"Principal": None, "NotPrincipal": {"AWS": "arn:aws:iam::000000000000:user/bob"}}, True),
        ({"Effect": "Deny"}, False),
        ({"Action": "s3:*"}, True),
        ({"Action": "s3:*Object"}, True),
        ({"Action": "s3:CreateJob"}, False),
        ({"Action": None, "NotAction": "s3:CreateJob"}, True),
        ({"Condition": {"IpAddress": {"aws:SourceIp": "192.0.2.0/24"}}}, False),
        ({"Condition": {"IpAddress": {"aws:SourceIp": ["192.0.2.0/24", "0.0.0.0/0"]}}}, True),
        ({"Condition": {"IpAddress": {"aws:SourceIp": "2001:db8::/48"}}}, False),
        ({"Condition": {"IpAddress": {"aws:SourceIp": "::/0"}}}, True),
        ({"Condition": {"NotIpAddress": {"aws:SourceIp": "192.0.2.0/24"}}}, True),
        ({"Condition": {"IpAddressIfExists": {"aws:SourceIp": "192.0.2.0/24"}}}, True),
        ({"Condition": {"StringEquals": {"aws:SourceAccount": "111122223333"}}}, False),
        ({"Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-abc"}}}, False),
        ({"Condition": {"StringLike": {"aws:PrincipalOrgID": "o-*"}}}, True),
        ({"Condition": {"ArnEquals": {"aws:SourceArn": "arn:aws:sns:us-east-1:1:t"}}}, False),
        ({"Condition": {"StringEquals": {"aws:SourceVpce": "vpce-1"}}}, False),
        ({"Condition": {"StringEquals": {"s3:prefix": "docs/"}}}, True),
        ({"Condition": {"Bool": {"aws:SecureTransport": "true"}}}, True),
    ],
)
def test_policy_is_public_follows_s3(changes: dict[str, Any], public: bool) -> None:
    assert policy_is_public(parse_policy(doc(**changes), bucket="b")) is public


def test_block_public_policy_refuses_public_policies_only() -> None:
    public = parse_policy(doc(), bucket="b")
    private = parse_policy(doc(Principal={"AWS": "000000000000"}), bucket="b")
    blocked = PublicAccessBlock(block_public_policy=True)
    with pytest.raises(AccessError) as info:
        check_policy_allowed(public, blocked)
    assert info.value.code == "AccessDenied"
    check_policy_allowed(private, blocked)
    check_policy_allowed(public, None)
    check_policy_allowed(public, PublicAccessBlock(restrict_public_buckets=True))
