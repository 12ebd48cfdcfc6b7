"""Audit of the policy language against IAM's: what PutBucketPolicy accepts is enforced as
IAM would enforce it, and what IAM's grammar refuses is refused (MalformedPolicy)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from s3torrent.access import parse_policy
from s3torrent.access.conditions import condition_holds, parse_condition_block
from s3torrent.access.errors import AccessError

DENY_SECRET = (
    '{"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*",'
    ' "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/secret/*",'
    ' "Resource": "arn:aws:s3:::b/tmp/*"}]}'
)


def _holds(block: dict[str, Any], context: dict[str, list[str]]) -> bool:
    return all(condition_holds(c, context) for c in parse_condition_block(block))


@pytest.mark.parametrize(
    "text",
    [
        DENY_SECRET,
        '{"Version": "2012-10-17", "Version": "2008-10-17", "Statement": []}',
        '{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",'
        ' "Resource": "arn:aws:s3:::b/*", "Condition": {"IpAddress": {"aws:SourceIp":'
        ' "10.0.0.0/8"}, "IpAddress": {"aws:SourceIp": "0.0.0.0/0"}}}]}',
        '{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",'
        ' "Resource": "arn:aws:s3:::b/*", "Condition": {"StringEquals": {"aws:UserAgent":'
        ' "a", "aws:UserAgent": "b"}}}]}',
    ],
)
def test_duplicate_json_keys_are_malformed(text: str) -> None:
    """JSON leaves duplicate names undefined and json.loads keeps the last, so a statement
    with two Resource elements (or two IpAddress blocks) would be enforced as half of what
    GetBucketPolicy shows: a Deny on secret/* that denies nothing."""
    with pytest.raises(AccessError) as exc:
        parse_policy(text, bucket="b")
    assert exc.value.code == "MalformedPolicy"
    assert "duplicate" in exc.value.message.lower()


def test_duplicate_names_in_different_objects_are_fine() -> None:
    statement = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject"}
    text = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {**statement, "Resource": "arn:aws:s3:::b/a/*"},
                {**statement, "Resource": "arn:aws:s3:::b/b/*"},
            ],
        }
    )
    assert len(parse_policy(text, bucket="b").statements) == 2


def test_a_stored_policy_with_duplicate_names_still_reads() -> None:
    """One accepted before the check keeps its old reading rather than failing every request."""
    policy = parse_policy(DENY_SECRET, bucket="b", known_actions=False)
    assert policy.statements[0].resources == ("arn:aws:s3:::b/tmp/*",)


@pytest.mark.parametrize("present", [True, False])
def test_null_with_both_values_holds_either_way(present: bool) -> None:
    """A condition's values are ORed (IAM: "multiple values for a context key ... logical
    OR"), Null's too: ["true", "false"] holds whether the key is absent or present. Before,
    only the first value was read, so a Deny with it applied to requests without the key."""
    context = {"aws:referer": ["https://example.com/"]} if present else {}
    assert _holds({"Null": {"aws:Referer": ["true", "false"]}}, context)
    assert _holds({"Null": {"aws:Referer": ["false", "true"]}}, context)
    assert _holds({"Null": {"aws:Referer": "true"}}, context) is not present
    assert _holds({"Null": {"aws:Referer": False}}, context) is present
