"""Policy principals: forms that could never match are refused; our account covers its users."""

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
    policy_is_public,
    user_arn,
)

ALICE = Principal.user("a" * 64, "alice")  # owns bucket "b"
BOB = Principal.user("b" * 64, "bob")
ALICE_OWNER = Owner(ALICE.canonical_id or "", "alice")
PRIVATE = canned_acl("private", owner=ALICE_OWNER, bucket_owner=ALICE_OWNER)
PUBLIC_READ = canned_acl("public-read", owner=ALICE_OWNER, bucket_owner=ALICE_OWNER)
CTX = RequestContext(now=datetime(2025, 6, 1, tzinfo=UTC))


def policy(effect: str, principal: Any, field: str = "Principal") -> str:
    statement = {
        "Sid": "S",
        "Effect": effect,
        field: principal,
        "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::b/*",
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def may_get(who: Principal, policy_text: str, object_acl: Any = PRIVATE) -> bool:
    facts = AccessFacts(
        ALICE_OWNER, PRIVATE, object_acl, policy=parse_policy(policy_text, bucket="b")
    )
    return decide(who, "s3:GetObject", Resource("b", "k"), facts, CTX).allowed


@pytest.mark.parametrize(
    "principal",
    [
        pytest.param({"AWS": f"arn:aws:iam::{ACCOUNT_ID}:user/*"}, id="user-wildcard"),
        pytest.param({"AWS": f"arn:aws:iam::{ACCOUNT_ID}:user/b?b"}, id="user-question-mark"),
        pytest.param({"AWS": "arn:aws:iam::*:root"}, id="account-wildcard"),
        pytest.param({"AWS": "123456789012"}, id="other-account-id"),
        pytest.param({"AWS": "arn:aws:iam::123456789012:root"}, id="other-account-root"),
        pytest.param({"AWS": "arn:aws:iam::123456789012:user/bob"}, id="other-account-user"),
        pytest.param({"AWS": f"arn:aws:iam::{ACCOUNT_ID}:role/admin"}, id="role"),
        pytest.param({"AWS": f"arn:aws:iam::{ACCOUNT_ID}:user/"}, id="user-without-name"),
        pytest.param({"AWS": "arn:aws:sts::000000000000:assumed-role/r/s"}, id="sts"),
        pytest.param({"AWS": "bob"}, id="bare-name"),
        pytest.param({"AWS": ["*", "123456789012"]}, id="one-bad-in-a-list"),
        pytest.param({"Federated": "cognito-identity.amazonaws.com"}, id="federated"),
    ],
)
@pytest.mark.parametrize("field", ["Principal", "NotPrincipal"])
@pytest.mark.parametrize("effect", ["Allow", "Deny"])
def test_principals_that_can_never_match_are_refused(
    principal: Any, field: str, effect: str
) -> None:
    with pytest.raises(AccessError) as info:
        parse_policy(policy(effect, principal, field), bucket="b")
    assert info.value.code == "MalformedPolicy"
    assert "Invalid principal in policy" in info.value.message


@pytest.mark.parametrize(
    "principal",
    [
        "*",
        {"AWS": "*"},
        {"AWS": ACCOUNT_ID},
        {"AWS": ROOT_ARN},
        {"AWS": user_arn("bob")},
        {"AWS": [ROOT_ARN, user_arn("bob"), ACCOUNT_ID]},
        {"CanonicalUser": "b" * 64},
        {"Service": "logging.s3.amazonaws.com"},
    ],
)
def test_principals_that_name_someone_here_are_accepted(principal: Any) -> None:
    parse_policy(policy("Deny", principal), bucket="b")


@pytest.mark.parametrize("account", [ACCOUNT_ID, ROOT_ARN])
def test_a_deny_to_our_account_covers_its_users(account: str) -> None:
    text = policy("Deny", {"AWS": account})
    assert not may_get(BOB, text, PUBLIC_READ)
    assert may_get(ANONYMOUS, text, PUBLIC_READ)  # the anonymous user is in no account


@pytest.mark.parametrize("account", [ACCOUNT_ID, ROOT_ARN])
def test_an_allow_to_our_account_grants_its_users_not_anonymous(account: str) -> None:
    text = policy("Allow", {"AWS": account})
    assert may_get(BOB, text)
    assert not may_get(ANONYMOUS, text)


def test_not_principal_our_account_alone_spares_no_user() -> None:
    """IAM evaluates the account and then the user: a NotPrincipal Deny naming only the
    account still denies its users (tests/unit/test_audit_policy_semantics.py)."""
    text = policy("Deny", {"AWS": ACCOUNT_ID}, field="NotPrincipal")
    assert not may_get(BOB, text, PUBLIC_READ)
    assert not may_get(ANONYMOUS, text, PUBLIC_READ)


def test_a_deny_to_one_user_spares_the_others() -> None:
    text = policy("Deny", {"AWS": user_arn("bob")})
    assert not may_get(BOB, text, PUBLIC_READ)
    assert may_get(Principal.user("c" * 64, "carol"), text, PUBLIC_READ)


def test_our_account_is_not_public() -> None:
    assert not policy_is_public(parse_policy(policy("Allow", {"AWS": ACCOUNT_ID}), bucket="b"))
    assert policy_is_public(parse_policy(policy("Allow", {"AWS": "*"}), bucket="b"))
