"""The policy grammar as IAM reads it: ARN conditions per colon-separated part, and
condition values IAM would refuse refused at PutBucketPolicy (MalformedPolicy), not read
leniently into something the owner did not write."""

from __future__ import annotations

import json
from typing import Any

import pytest

from s3torrent.access import AccessError, parse_policy
from s3torrent.access.conditions import condition_holds, parse_condition_block
from s3torrent.access.principals import ACCOUNT_ID, user_arn


def _holds(block: dict[str, Any], context: dict[str, list[str]]) -> bool:
    (condition,) = parse_condition_block(block, variables=True)
    return condition_holds(condition, context)


def _policy(condition: dict[str, Any]) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": "arn:aws:s3:::b/*",
                    "Condition": condition,
                }
            ],
        }
    )


def _malformed(condition: dict[str, Any]) -> None:
    with pytest.raises(AccessError) as exc:
        parse_policy(_policy(condition), bucket="b")
    assert exc.value.code == "MalformedPolicy"


# --- ArnLike / ArnNotLike: each of the six colon-separated parts on its own ------------------

BOB_ARN = user_arn("bob")  # arn:aws:iam::000000000000:user/bob


@pytest.mark.parametrize(
    ("pattern", "arn", "expected"),
    [
        (f"arn:aws:iam::{ACCOUNT_ID}:user/*", BOB_ARN, True),
        ("arn:aws:iam::*:user/b?b", BOB_ARN, True),
        ("arn:aws:*:*:*:*", BOB_ARN, True),
        # A `*` in one part does not reach into the next.
        ("arn:*::*:*:*", "arn:aws:iam::0:a:b", False),
        ("arn:aws:*:*:*:user/*", "arn:aws:iam::1:x:user/bob", False),
        ("arn:aws:iam::?:user/bob", BOB_ARN, False),
        # The resource part may hold colons, and its wildcards cross them.
        ("arn:aws:sns:*:*:topic:*", "arn:aws:sns:us-east-1:1:topic:sub:x", True),
        ("arn:aws:sns:*:*:*", "arn:aws:sns:us-east-1:1:topic:sub:x", True),
        ("arn:aws:sns:*:*:topic:s?b:x", "arn:aws:sns:us-east-1:1:topic:sub:x", True),
        # A request value that is no ARN (fewer parts) matches nothing.
        ("arn:aws:iam::*:*", "arn:aws:iam::1", False),
        ("*", BOB_ARN, True),
    ],
)
def test_arn_like_matches_part_by_part(pattern: str, arn: str, expected: bool) -> None:
    context = {"aws:principalarn": [arn]}
    assert _holds({"ArnLike": {"aws:PrincipalArn": pattern}}, context) is expected
    assert _holds({"ArnNotLike": {"aws:PrincipalArn": pattern}}, context) is not expected
    assert _holds({"ArnEquals": {"aws:PrincipalArn": pattern}}, context) is expected


@pytest.mark.parametrize("pattern", ["arn:aws:iam::*", "arn:*", "arn:aws:iam:*:user/bob"])
def test_an_arn_value_with_fewer_than_six_parts_is_malformed(pattern: str) -> None:
    """One would match no ARN at all: a Deny holding it would deny nobody."""
    _malformed({"ArnLike": {"aws:PrincipalArn": pattern}})
    _malformed({"ArnNotEquals": {"aws:PrincipalArn": pattern}})


def test_a_variable_in_an_arn_value_is_split_into_parts_after_it_is_resolved() -> None:
    block = {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/${aws:username}"}}
    context = {"aws:principalarn": [BOB_ARN], "aws:username": ["bob"]}
    assert _holds(block, context)
    assert not _holds(block, {**context, "aws:username": ["alice"]})
    # A variable's value is text: its `*` is no wildcard, in any part.
    assert not _holds(block, {**context, "aws:username": ["*"]})
    whole = {"ArnLike": {"aws:PrincipalArn": "${aws:PrincipalArn}"}}
    assert _holds(whole, context)


def test_arn_patterns_count_against_the_wildcard_cost_bound() -> None:
    from s3torrent.access.policy import MAX_WILDCARD_COST

    values = [f"arn:aws:iam::*:*w{i}*" for i in range(MAX_WILDCARD_COST + 1)]
    with pytest.raises(AccessError) as exc:
        parse_policy(_policy({"ArnLike": {"aws:PrincipalArn": values}}), bucket="b")
    assert "too costly" in exc.value.message


def test_a_stored_arn_value_keeps_the_reading_it_was_stored_with() -> None:
    """A policy stored before ARNs were matched part by part still reads (not every
    request on its bucket refused)."""
    policy = parse_policy(
        _policy({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*"}}), bucket="b", strict=False
    )
    (condition,) = policy.statements[0].conditions
    assert condition_holds(condition, {"aws:principalarn": [BOB_ARN]})


# --- Numeric values: an integer or a decimal, as IAM's operators compare them -----------------


@pytest.mark.parametrize(
    "value", ["1_0", "+5", " 5", "5 ", "inf", "Infinity", "NaN", "1e3", "0x10", "\u0665", "", ".5"]
)
def test_a_numeric_value_iam_would_refuse_is_malformed(value: str) -> None:
    _malformed({"NumericLessThan": {"s3:max-keys": value}})
    _malformed({"NumericNotEquals": {"s3:max-keys": [value]}})


@pytest.mark.parametrize(
    ("value", "sent", "expected"),
    [
        ("10", "9", True),
        (10, "9", True),
        ("1.5", "1", True),
        (1.5, "2", False),
        ("-3", "-4", True),
        # Compared exactly: as floats these two are one number.
        ("9007199254740993", "9007199254740992", True),
    ],
)
def test_numeric_values_compare_exactly(value: Any, sent: str, expected: bool) -> None:
    context = {"s3:max-keys": [sent]}
    assert _holds({"NumericLessThan": {"s3:max-keys": value}}, context) is expected


@pytest.mark.parametrize("sent", ["1_0", "+10", " 10", "10.0e0", "\u0661\u0660"])
def test_a_request_value_that_is_no_number_matches_no_numeric_value(sent: str) -> None:
    context = {"s3:max-keys": [sent]}
    assert not _holds({"NumericEquals": {"s3:max-keys": "10"}}, context)
    assert _holds({"NumericNotEquals": {"s3:max-keys": "10"}}, context)


def test_a_stored_numeric_value_keeps_the_reading_it_was_stored_with() -> None:
    text = _policy({"NumericLessThan": {"s3:max-keys": "1_0"}})
    (condition,) = parse_policy(text, bucket="b", strict=False).statements[0].conditions
    assert condition_holds(condition, {"s3:max-keys": ["9"]})
    assert not condition_holds(condition, {"s3:max-keys": ["10"]})


# --- Date values: epoch seconds or the W3C profile of ISO 8601 -------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "1_900_000_000",  # int() took it as epoch seconds
        "+1900000000",
        "\u0661\u0669\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660",
        "2030-01-01 00:00:00Z",  # a space for the T
        "20300101T000000Z",  # ISO 8601's basic format
        "2030-W01-1",  # a week date
        "2030-01-01T00",  # an hour alone
        "2030-01-01T00:00:00+0100",  # an offset without its colon
        "2030-01-01T00:00:00,5Z",
        "2030-13-01",
        "tomorrow",
    ],
)
def test_a_date_value_iam_would_refuse_is_malformed(value: str) -> None:
    _malformed({"DateLessThan": {"aws:CurrentTime": value}})


@pytest.mark.parametrize(
    ("value", "now", "expected"),
    [
        ("2030-01-01T00:00:00Z", "2029-12-31T23:59:59Z", True),
        ("2030-01-01T01:00:00+01:00", "2030-01-01T00:00:00Z", False),
        ("2030-01-01T00:00:00.500Z", "2030-01-01T00:00:00Z", True),
        ("2030-01-01T00:00Z", "2029-12-31T23:59:59Z", True),
        ("2030-01-01", "2029-12-31T23:59:59Z", True),
        ("1893456000", "2029-12-31T23:59:59Z", True),
        (1893456000, "2030-01-01T00:00:00Z", False),
    ],
)
def test_date_values_iam_takes(value: Any, now: str, expected: bool) -> None:
    parse_policy(_policy({"DateLessThan": {"aws:CurrentTime": value}}), bucket="b")
    assert _holds({"DateLessThan": {"aws:CurrentTime": value}}, {"aws:currenttime": [now]}) is (
        expected
    )


def test_a_stored_date_value_keeps_the_reading_it_was_stored_with() -> None:
    text = _policy({"DateLessThan": {"aws:CurrentTime": "2030-01-01 00:00:00Z"}})
    (condition,) = parse_policy(text, bucket="b", strict=False).statements[0].conditions
    assert condition_holds(condition, {"aws:currenttime": ["2029-12-31T23:59:59Z"]})


# --- IpAddress values: CIDR blocks ------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "10.0.0.0/0.0.0.255",  # a host mask, which Python read as /24
        "10.0.0.0/255.0.0.0",  # a netmask
        "10.0.0.0/08",
        "fe80::1%eth0/64",  # a scope
        "10.0.0.0/33",
        " 10.0.0.0/8",
    ],
)
def test_an_ip_value_that_is_no_cidr_block_is_malformed(value: str) -> None:
    _malformed({"IpAddress": {"aws:SourceIp": value}})
    _malformed({"NotIpAddress": {"aws:SourceIp": value}})


@pytest.mark.parametrize(
    ("value", "sent", "expected"),
    [
        ("10.0.0.0/8", "10.1.2.3", True),
        ("10.0.0.0/8", "::ffff:10.1.2.3", True),
        ("10.1.2.3", "10.1.2.3", True),
        ("10.1.2.3", "10.1.2.4", False),
        ("::ffff:10.0.0.0/104", "10.9.9.9", True),
        ("2001:db8::/32", "2001:db8::1", True),
        ("2001:db8::/32", "10.0.0.1", False),
        ("0.0.0.0/0", "2001:db8::1", False),
    ],
)
def test_ip_values_iam_takes(value: str, sent: str, expected: bool) -> None:
    parse_policy(_policy({"IpAddress": {"aws:SourceIp": value}}), bucket="b")
    assert _holds({"IpAddress": {"aws:SourceIp": value}}, {"aws:sourceip": [sent]}) is expected


def test_a_stored_ip_value_keeps_the_reading_it_was_stored_with() -> None:
    text = _policy({"IpAddress": {"aws:SourceIp": "10.0.0.0/255.0.0.0"}})
    (condition,) = parse_policy(text, bucket="b", strict=False).statements[0].conditions
    assert condition_holds(condition, {"aws:sourceip": ["10.2.3.4"]})


@pytest.mark.parametrize(
    "pattern",
    [
        "user/${aws:username}",  # no ARN, as "user/bob" is none
        "arn:aws:iam::${aws:username}",  # four colons: never six parts
        "${aws:username}:*",
    ],
)
def test_an_arn_value_with_variables_that_is_never_an_arn_is_malformed(pattern: str) -> None:
    """Such a value matches nothing whoever asks: a Deny holding it would deny nobody."""
    _malformed({"ArnLike": {"aws:PrincipalArn": pattern}})
    _malformed({"ArnNotEquals": {"aws:PrincipalArn": pattern}})


@pytest.mark.parametrize(
    "pattern",
    [
        "${aws:PrincipalArn}",
        "arn:aws:iam::${aws:PrincipalAccount}:user/${aws:username}",
        "arn:aws:iam::*:user/${aws:username, 'nobody'}",
    ],
)
def test_an_arn_value_with_variables_that_makes_an_arn_is_taken(pattern: str) -> None:
    parse_policy(_policy({"ArnLike": {"aws:PrincipalArn": pattern}}), bucket="b")
