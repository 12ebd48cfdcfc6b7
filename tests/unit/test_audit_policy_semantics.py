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
from s3torrent.access.conditions import condition_holds, parse_condition_block

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
