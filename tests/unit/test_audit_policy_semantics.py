"""Audit of bucket policy evaluation against IAM's documented semantics: the Not* elements,
Deny over Allow, condition operators and their set/IfExists forms, and the document's
own limits. A wrong "allow" here is a leak on every channel (REST, torrent, web seed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from s3torrent.access import (
    ACCOUNT_ID,
    ANONYMOUS,
    ROOT_ARN,
    AccessError,
    AccessFacts,
    Owner,
    Principal,
    RequestContext,
    Resource,
    canned_acl,
    decide,
    parse_policy,
    user_arn,
)
from s3torrent.access.conditions import condition_holds, parse_condition_block, parse_date
from s3torrent.s3.errors import S3Error
from s3torrent.s3.server import condition_values
from s3torrent.s3.versioning import parse_lock_date

ALICE = Principal.user("a" * 64, "alice")  # owns bucket "b"
BOB = Principal.user("b" * 64, "bob")
CAROL = Principal.user("c" * 64, "carol")
ALICE_OWNER = Owner(ALICE.canonical_id or "", "alice")
PRIVATE = canned_acl("private", owner=ALICE_OWNER, bucket_owner=ALICE_OWNER)
PUBLIC_READ = canned_acl("public-read", owner=ALICE_OWNER, bucket_owner=ALICE_OWNER)
NOW = datetime(2025, 6, 1, tzinfo=UTC)


def _doc(*statements: dict[str, Any], version: str = "2012-10-17") -> str:
    return json.dumps({"Version": version, "Statement": list(statements)})


def _stmt(effect: str, **fields: Any) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": effect}
    if "NotPrincipal" not in fields:
        statement["Principal"] = "*"
    if "NotAction" not in fields:
        statement["Action"] = "s3:GetObject"
    if "NotResource" not in fields:
        statement["Resource"] = "arn:aws:s3:::b/*"
    statement.update(fields)
    return statement


def _may(
    who: Principal,
    text: str,
    *,
    action: str = "s3:GetObject",
    key: str | None = "k",
    object_acl: Any = PUBLIC_READ,
    values: dict[str, Any] | None = None,
    source_ip: str | None = None,
) -> bool:
    facts = AccessFacts(ALICE_OWNER, PRIVATE, object_acl, policy=parse_policy(text, bucket="b"))
    ctx = RequestContext(now=NOW, source_ip=source_ip, values=values or {})
    return decide(who, action, Resource("b", key), facts, ctx).allowed


def _holds(block: dict[str, Any], context: dict[str, list[str]]) -> bool:
    return all(condition_holds(c, context) for c in parse_condition_block(block))


def _malformed(text: str) -> None:
    with pytest.raises(AccessError) as caught:
        parse_policy(text, bucket="b")
    assert caught.value.code == "MalformedPolicy"


# --- NotPrincipal ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "listed",
    [
        pytest.param([ROOT_ARN], id="account-only"),
        pytest.param([ACCOUNT_ID], id="account-id-only"),
        pytest.param([user_arn("bob")], id="user-only"),
    ],
)
def test_a_not_principal_deny_spares_a_user_only_with_its_account(listed: list[str]) -> None:
    """IAM evaluates a user's account and then the user: a Deny with NotPrincipal spares a
    user only when both are listed ("you must also specify the account ARN of the
    not-denied principal. Otherwise, the policy might deny access to the entire account").
    Before, listing the account alone spared every user (a Deny that denied only anonymous)."""
    text = _doc(_stmt("Deny", NotPrincipal={"AWS": listed}))
    assert not _may(BOB, text)
    assert not _may(CAROL, text)
    assert not _may(ANONYMOUS, text)


def test_a_not_principal_deny_listing_user_and_account_spares_that_user() -> None:
    text = _doc(_stmt("Deny", NotPrincipal={"AWS": [user_arn("bob"), ROOT_ARN]}))
    assert _may(BOB, text)
    assert not _may(CAROL, text)
    assert not _may(ANONYMOUS, text)


def test_a_not_principal_deny_by_canonical_id_and_account_spares_that_user() -> None:
    text = _doc(
        _stmt(
            "Deny",
            NotPrincipal={"CanonicalUser": BOB.canonical_id, "AWS": ACCOUNT_ID},
        )
    )
    assert _may(BOB, text)
    assert not _may(CAROL, text)


@pytest.mark.parametrize(
    "listed",
    [
        pytest.param({"AWS": [user_arn("bob")]}, id="user"),
        pytest.param({"AWS": [ROOT_ARN]}, id="account"),
        pytest.param({"AWS": [user_arn("bob"), ROOT_ARN]}, id="both"),
    ],
)
def test_a_not_principal_allow_never_grants_a_listed_identity(listed: dict[str, Any]) -> None:
    """With Allow the wider reading is the other one: naming either of a user's identities
    keeps the grant from it; anonymous, in no account, is granted."""
    text = _doc(_stmt("Allow", NotPrincipal=listed))
    assert not _may(BOB, text, object_acl=PRIVATE)
    assert _may(ANONYMOUS, text, object_acl=PRIVATE)


def test_a_not_principal_star_deny_denies_nobody_and_allow_grants_nobody() -> None:
    assert _may(BOB, _doc(_stmt("Deny", NotPrincipal={"AWS": "*"})))
    assert not _may(ANONYMOUS, _doc(_stmt("Allow", NotPrincipal={"AWS": "*"})), object_acl=PRIVATE)


# --- NotAction, NotResource, Deny over Allow -----------------------------------------------


def test_not_action_and_not_resource_with_allow_and_deny() -> None:
    allow_but_delete = _doc(_stmt("Allow", NotAction="s3:DeleteObject"))
    assert _may(BOB, allow_but_delete, object_acl=PRIVATE)
    assert not _may(BOB, allow_but_delete, action="s3:DeleteObject", object_acl=PRIVATE)
    deny_all_but_get = _doc(_stmt("Allow", Action="s3:*"), _stmt("Deny", NotAction=["s3:Get*"]))
    assert _may(BOB, deny_all_but_get, object_acl=PRIVATE)
    assert not _may(BOB, deny_all_but_get, action="s3:PutObject")
    allow_outside = _doc(_stmt("Allow", NotResource="arn:aws:s3:::b/private/*"))
    assert _may(BOB, allow_outside, object_acl=PRIVATE)
    assert not _may(BOB, allow_outside, key="private/x", object_acl=PRIVATE)
    deny_outside = _doc(_stmt("Deny", NotResource="arn:aws:s3:::b/public/*"))
    assert not _may(ANONYMOUS, deny_outside)
    assert _may(ANONYMOUS, deny_outside, key="public/x")


def test_an_explicit_deny_in_any_statement_beats_every_allow() -> None:
    text = _doc(
        _stmt("Allow", Principal={"AWS": user_arn("bob")}),
        _stmt("Allow"),
        _stmt("Deny", Principal={"AWS": user_arn("bob")}, Resource="arn:aws:s3:::b/k"),
    )
    assert not _may(BOB, text)
    assert _may(CAROL, text)
    assert _may(BOB, text, key="other")


@pytest.mark.parametrize("pair", [("Action", "NotAction"), ("Resource", "NotResource")])
def test_an_element_and_its_not_form_together_are_malformed(pair: tuple[str, str]) -> None:
    statement = _stmt("Allow")
    statement[pair[0]] = "*" if pair[0] == "Action" else "arn:aws:s3:::b/*"
    statement[pair[1]] = "s3:PutObject" if pair[0] == "Action" else "arn:aws:s3:::b/x"
    _malformed(_doc(statement))


def test_actions_are_case_insensitive_resources_case_sensitive_and_star_crosses_slashes() -> None:
    text = _doc(_stmt("Allow", Action="S3:getOBJECT", Resource="arn:aws:s3:::b/Docs/*.pdf"))
    assert _may(BOB, text, key="Docs/a/b/c.pdf", object_acl=PRIVATE)
    assert not _may(BOB, text, key="docs/a.pdf", object_acl=PRIVATE)
    single = _doc(_stmt("Allow", Resource="arn:aws:s3:::b/d?c"))
    assert _may(BOB, single, key="d/c", object_acl=PRIVATE)
    assert not _may(BOB, single, key="dc", object_acl=PRIVATE)


@pytest.mark.parametrize(
    "principal", ["*", {"AWS": "*"}, {"AWS": ["*"]}], ids=["star", "aws-star", "aws-list"]
)
def test_every_form_of_everyone_includes_anonymous(principal: Any) -> None:
    assert _may(ANONYMOUS, _doc(_stmt("Allow", Principal=principal)), object_acl=PRIVATE)


# --- a request's date: one reading for the policy and the operation ----------------------------


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param("20991231", id="basic-date-digits"),
        pytest.param("2099-12-31T00:00:00." + "1" * 60 + "+00:00", id="long"),
    ],
)
def test_a_retain_until_date_the_policy_cannot_read_is_refused(sent: str) -> None:
    """A Deny capping retention (DateGreaterThan s3:object-lock-retain-until-date) read
    "20991231" as epoch seconds (1970) and a 86-character date as no date, so it did not
    apply, while the operation read both as 2099 and locked the object until then. Now the
    operation refuses what the policy cannot read as the same instant."""
    cap = {"DateGreaterThan": {"s3:object-lock-retain-until-date": "2030-01-01T00:00:00Z"}}
    assert not _holds(cap, {"s3:object-lock-retain-until-date": [sent]})
    with pytest.raises(S3Error) as caught:
        parse_lock_date(sent)
    assert caught.value.code == "InvalidArgument"


@pytest.mark.parametrize(
    "sent", ["2099-12-31T00:00:00Z", "2099-12-31T00:00:00.5+02:00", " 2099-12-31T00:00:00 "]
)
def test_a_retain_until_date_means_to_the_policy_what_it_means_to_the_operation(
    sent: str,
) -> None:
    cap = {"DateGreaterThan": {"s3:object-lock-retain-until-date": "2030-01-01T00:00:00Z"}}
    assert _holds(cap, {"s3:object-lock-retain-until-date": [sent]})
    assert parse_lock_date(sent) == parse_date(sent).timestamp()


# --- s3:x-amz-copy-source: the source the copy reads ------------------------------------------


@pytest.mark.parametrize(
    ("sent", "seen"),
    [
        ("b/secret/k", "b/secret/k"),
        ("/b/secret/k", "b/secret/k"),
        ("b/%73ecret/k", "b/secret/k"),
        ("/b/secret/a%20b?versionId=v1", "b/secret/a b?versionId=v1"),
    ],
)
def test_the_copy_source_key_is_the_source_the_copy_reads(sent: str, seen: str) -> None:
    """A Deny on copies from b/secret/* (StringLike s3:x-amz-copy-source) saw the header as
    sent, while the copy reads it URL-decoded with its leading "/" optional: "/b/secret/k"
    or "b/%73ecret/k" copied the secret past the Deny. The key now holds the source as the
    copy reads it, bucket/key (and ?versionId=), as the policy examples write it."""
    values = condition_values({}, {"x-amz-copy-source": sent})
    assert values["s3:x-amz-copy-source"] == seen
    deny = {"StringLike": {"s3:x-amz-copy-source": "b/secret/*"}}
    assert _holds(deny, {"s3:x-amz-copy-source": [str(values["s3:x-amz-copy-source"])]})


def test_a_copy_source_the_copy_refuses_is_left_as_sent() -> None:
    assert condition_values({}, {"x-amz-copy-source": "nokey"}) == {"s3:x-amz-copy-source": "nokey"}


# --- condition operators, as IAM documents them --------------------------------------------


@pytest.mark.parametrize(
    ("block", "context", "holds"),
    [
        # StringLike: `*` and `?` match any character, a newline included.
        ({"StringLike": {"aws:UserAgent": "a*b"}}, {"aws:useragent": ["a\nx\nb"]}, True),
        ({"StringLike": {"aws:UserAgent": "a?b"}}, {"aws:useragent": ["a\nb"]}, True),
        ({"StringLike": {"aws:UserAgent": "A*"}}, {"aws:useragent": ["abc"]}, False),
        ({"StringEqualsIgnoreCase": {"aws:UserAgent": "ABC"}}, {"aws:useragent": ["abc"]}, True),
        ({"NumericLessThan": {"s3:max-keys": "10"}}, {"s3:max-keys": ["5"]}, True),
        ({"NumericLessThan": {"s3:max-keys": "10"}}, {"s3:max-keys": ["x"]}, False),
        (
            {"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}},
            {"aws:currenttime": ["2026-01-01T00:00:00Z"]},
            True,
        ),
        ({"DateLessThan": {"aws:EpochTime": 1900000000}}, {"aws:epochtime": ["1765000000"]}, True),
        ({"Bool": {"aws:SecureTransport": "false"}}, {"aws:securetransport": ["false"]}, True),
        ({"Bool": {"aws:SecureTransport": False}}, {}, False),
        ({"IpAddress": {"aws:SourceIp": "2001:db8::/32"}}, {"aws:sourceip": ["2001:db8::1"]}, True),
        (
            {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
            {"aws:sourceip": ["::ffff:10.1.2.3"]},
            True,
        ),
        (
            {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
            {"aws:sourceip": ["::ffff:10.1.2.3"]},
            False,
        ),
        (
            {"ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT_ID}:user/a*"}},
            {"aws:principalarn": [user_arn("alice")]},
            True,
        ),
        ({"Null": {"s3:x-amz-acl": "true"}}, {}, True),
        ({"Null": {"s3:x-amz-acl": "false"}}, {}, False),
        # A missing key: a positive operator fails, a negated one holds, IfExists holds.
        ({"StringEquals": {"aws:Referer": "x"}}, {}, False),
        ({"StringNotEquals": {"aws:Referer": "x"}}, {}, True),
        ({"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {}, True),
        ({"StringEqualsIfExists": {"aws:Referer": "x"}}, {}, True),
        ({"NumericLessThanIfExists": {"s3:max-keys": "10"}}, {}, True),
        ({"NumericLessThanIfExists": {"s3:max-keys": "10"}}, {"s3:max-keys": ["50"]}, False),
        # Values are ORed (a negated operator: none of them), keys ANDed.
        ({"StringEquals": {"aws:Referer": ["x", "y"]}}, {"aws:referer": ["y"]}, True),
        ({"StringNotEquals": {"aws:Referer": ["x", "y"]}}, {"aws:referer": ["y"]}, False),
        (
            {"StringEquals": {"aws:Referer": "x", "aws:UserAgent": "u"}},
            {"aws:referer": ["x"], "aws:useragent": ["v"]},
            False,
        ),
        # Set operators: ForAllValues holds on an empty set, ForAnyValue does not.
        ({"ForAllValues:StringEquals": {"aws:TagKeys": ["a"]}}, {"aws:tagkeys": []}, True),
        ({"ForAllValues:StringEquals": {"aws:TagKeys": ["a"]}}, {}, True),
        ({"ForAnyValue:StringEquals": {"aws:TagKeys": ["a"]}}, {"aws:tagkeys": []}, False),
        ({"ForAnyValue:StringEquals": {"aws:TagKeys": ["a"]}}, {}, False),
        ({"ForAllValues:StringEquals": {"aws:TagKeys": ["a", "b"]}}, {"aws:tagkeys": ["a"]}, True),
        (
            {"ForAllValues:StringEquals": {"aws:TagKeys": ["a", "b"]}},
            {"aws:tagkeys": ["a", "c"]},
            False,
        ),
        ({"ForAnyValue:StringEquals": {"aws:TagKeys": ["a"]}}, {"aws:tagkeys": ["x", "a"]}, True),
        (
            {"ForAnyValue:StringNotEquals": {"aws:TagKeys": ["a"]}},
            {"aws:tagkeys": ["a", "x"]},
            True,
        ),
        # A key of a namespace this server has no facts of is missing, as in IAM.
        ({"StringEquals": {"ec2:ResourceTag/x": "y"}}, {}, False),
        ({"StringNotEqualsIfExists": {"ec2:ResourceTag/x": "y"}}, {}, True),
    ],
)
def test_condition_operators(
    block: dict[str, Any], context: dict[str, list[str]], holds: bool
) -> None:
    assert _holds(block, context) is holds


@pytest.mark.parametrize(
    "operator",
    [
        "StringEqualz",
        "stringequals",
        "ForSomeValues:StringEquals",
        "NullIfExists",
        "ForAnyValue:Null",
        "IfExists",
        "BinaryNotEquals",
    ],
)
def test_an_operator_not_implemented_is_malformed_never_ignored(operator: str) -> None:
    """A Deny whose condition were skipped would deny everything or nothing: refused."""
    value = "true" if "Null" in operator else "x"
    _malformed(_doc(_stmt("Deny", Condition={operator: {"aws:Referer": value}})))


@pytest.mark.parametrize(
    "condition",
    [
        {"IpAddress": {"aws:SourceIp": "10.0.0.300/8"}},
        {"NumericEquals": {"s3:max-keys": "ten"}},
        {"DateLessThan": {"aws:CurrentTime": "tomorrow"}},
        {"Bool": {"aws:SecureTransport": "yes"}},
        {"ArnLike": {"aws:PrincipalArn": "user/bob"}},
        {"StringEquals": {"aws:Referer": []}},
        {"StringEquals": {"aws:Referer": {"a": "b"}}},
        {"StringEquals": {"aws:NoSuchGlobalKey": "x"}},
        {"StringEquals": {"s3:NoSuchKey": "x"}},
    ],
)
def test_a_condition_value_or_key_iam_refuses_is_malformed(condition: dict[str, Any]) -> None:
    _malformed(_doc(_stmt("Deny", Condition=condition)))


# --- the document ----------------------------------------------------------------------------


def test_document_limits() -> None:
    _malformed(_doc())
    _malformed(_doc(_stmt("Allow", Sid="A"), _stmt("Deny", Sid="A")))
    _malformed(_doc(_stmt("Allow"), version="2012-10-18"))
    big = _stmt("Allow", Resource=[f"arn:aws:s3:::b/{i:05d}-" + "x" * 90 for i in range(200)])
    assert len(_doc(big)) > 20 * 1024
    _malformed(_doc(big))


def test_variables_are_substituted_only_in_2012_10_17() -> None:
    resource = "arn:aws:s3:::b/home/${aws:username}/*"
    modern = _doc(_stmt("Allow", Resource=resource))
    assert _may(BOB, modern, key="home/bob/f", object_acl=PRIVATE)
    assert not _may(BOB, modern, key="home/carol/f", object_acl=PRIVATE)
    old = _doc(_stmt("Allow", Resource=resource), version="2008-10-17")
    assert not _may(BOB, old, key="home/bob/f", object_acl=PRIVATE)
    assert _may(BOB, old, key="home/${aws:username}/f", object_acl=PRIVATE)


@pytest.mark.parametrize("sent", ["REPLACE", "replace", "Replace"])
def test_the_metadata_directive_key_is_the_directive_the_copy_obeys(sent: str) -> None:
    """CopyObject reads x-amz-metadata-directive in any case; a Deny on REPLACE saw
    "replace" as sent and did not apply to the copy that replaced the metadata."""
    values = condition_values({}, {"x-amz-metadata-directive": sent})
    assert values["s3:x-amz-metadata-directive"] == "REPLACE"
