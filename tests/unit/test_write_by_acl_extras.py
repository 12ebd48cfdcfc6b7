"""A write that a bucket ACL's WRITE grant allowed may also set its new object's ACL and tags:
a fact of the request's context (`RequestContext.write_by_acl`) the one decision weighs,
never a second check after it refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from s3torrent.access import (
    AccessControlList,
    AccessFacts,
    CanonicalUser,
    Grant,
    Owner,
    Permission,
    Principal,
    RequestContext,
    Resource,
    decide,
    parse_policy,
)

OWNER_ID, CAROL_ID = "a" * 64, "c" * 64
CAROL = Principal.user(CAROL_ID, "carol")
NOW = datetime(2026, 12, 8, tzinfo=UTC)
_OWNER = Owner(OWNER_ID, "owner")
_CAROL_WRITES = AccessControlList(
    _OWNER, (Grant(CanonicalUser(CAROL_ID, "carol"), Permission.WRITE),)
)
_FACTS = AccessFacts(_OWNER, _CAROL_WRITES)
_EXTRAS = ("s3:PutObjectAcl", "s3:PutObjectTagging")


def _allowed(action: str, *, by_acl: bool, facts: AccessFacts = _FACTS) -> bool:
    ctx = RequestContext(NOW, write_by_acl=by_acl)
    return decide(CAROL, action, Resource("b", "k"), facts, ctx).allowed


@pytest.mark.parametrize("action", _EXTRAS)
def test_a_write_an_acl_allowed_may_set_its_objects_acl_and_tags(action: str) -> None:
    assert _allowed(action, by_acl=True)
    assert not _allowed(action, by_acl=False)


@pytest.mark.parametrize("action", ["s3:GetObject", "s3:GetObjectAcl", "s3:PutObjectRetention"])
def test_the_grant_brings_nothing_else(action: str) -> None:
    assert not _allowed(action, by_acl=True)


@pytest.mark.parametrize("action", _EXTRAS)
def test_an_explicit_deny_still_binds(action: str) -> None:
    statement = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": action,
        "Resource": "arn:aws:s3:::b/*",
    }
    policy = parse_policy(
        json.dumps({"Version": "2012-10-17", "Statement": [statement]}), bucket="b", strict=False
    )
    facts = AccessFacts(_OWNER, _CAROL_WRITES, policy=policy)
    decision = decide(
        CAROL, action, Resource("b", "k"), facts, RequestContext(NOW, write_by_acl=True)
    )
    assert not decision.allowed and decision.explicit_deny
