"""The one access decision, driven by a table of (who, what, facts, context) -> allow/deny."""

# ruff: noqa: E501  (the case table reads best one case per line)

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3torrent.access import (
    ALL_USERS,
    ANONYMOUS,
    AUTHENTICATED_USERS,
    AccessControlList,
    AccessFacts,
    CanonicalUser,
    Grant,
    Group,
    Owner,
    Permission,
    Principal,
    PublicAccessBlock,
    RequestContext,
    Resource,
    canned_acl,
    decide,
    parse_policy,
)

ALICE_ID, BOB_ID, CAROL_ID, ROOT_ID = "a" * 64, "b" * 64, "c" * 64, "f" * 64
ALICE = Principal.user(ALICE_ID, "alice")  # owns bucket "b"
BOB = Principal.user(BOB_ID, "bob")
CAROL = Principal.user(CAROL_ID, "carol")
ROOT = Principal.user(ROOT_ID, "admin", is_root=True)
ALICE_OWNER, BOB_OWNER = Owner(ALICE_ID, "alice"), Owner(BOB_ID, "bob")
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

PRIVATE_BUCKET = canned_acl("private", owner=ALICE_OWNER, bucket_owner=ALICE_OWNER)
PUBLIC_READ_BUCKET = canned_acl("public-read", owner=ALICE_OWNER, bucket_owner=ALICE_OWNER)
PUBLIC_RW_BUCKET = canned_acl("public-read-write", owner=ALICE_OWNER, bucket_owner=ALICE_OWNER)
AUTH_READ_BUCKET = canned_acl("authenticated-read", owner=ALICE_OWNER, bucket_owner=ALICE_OWNER)
PRIVATE_OBJ = canned_acl("private", owner=ALICE_OWNER, bucket_owner=ALICE_OWNER)
PUBLIC_OBJ = canned_acl("public-read", owner=ALICE_OWNER, bucket_owner=ALICE_OWNER)
AUTH_OBJ = canned_acl("authenticated-read", owner=ALICE_OWNER, bucket_owner=ALICE_OWNER)
BOBS_PRIVATE_OBJ = canned_acl("private", owner=BOB_OWNER, bucket_owner=ALICE_OWNER)
BOBS_PUBLIC_OBJ = canned_acl("public-read", owner=BOB_OWNER, bucket_owner=ALICE_OWNER)
BOBS_OBJ_OWNER_READ = canned_acl("bucket-owner-read", owner=BOB_OWNER, bucket_owner=ALICE_OWNER)
BOBS_OBJ_NO_GRANTS = AccessControlList(BOB_OWNER, ())
OBJ_CAROL_READ = AccessControlList(
    ALICE_OWNER,
    (
        Grant(CanonicalUser(ALICE_ID, "alice"), Permission.FULL_CONTROL),
        Grant(CanonicalUser(CAROL_ID, "carol"), Permission.READ),
    ),
)
OBJ_CAROL_FULL = AccessControlList(
    ALICE_OWNER, (Grant(CanonicalUser(CAROL_ID, "carol"), Permission.FULL_CONTROL),)
)
OBJ_PUBLIC_ACP = AccessControlList(ALICE_OWNER, (Grant(Group(ALL_USERS), Permission.READ_ACP),))
BUCKET_CAROL_WRITE = AccessControlList(
    ALICE_OWNER, (Grant(CanonicalUser(CAROL_ID, "carol"), Permission.WRITE),)
)
BUCKET_AUTH_WRITE_ACP = AccessControlList(
    ALICE_OWNER, (Grant(Group(AUTHENTICATED_USERS), Permission.WRITE_ACP),)
)

IGNORE_ACLS = PublicAccessBlock(ignore_public_acls=True)
RESTRICT = PublicAccessBlock(restrict_public_buckets=True)
ALL_BLOCKED = PublicAccessBlock(True, True, True, True)

OBJECTS = "arn:aws:s3:::b/*"
BUCKET = "arn:aws:s3:::b"


def stmt(effect: str, action: Any, resource: Any = OBJECTS, **extra: Any) -> dict[str, Any]:
    """A statement for Principal "*" unless told otherwise; None-valued fields are left out."""
    body: dict[str, Any] = {"Effect": effect, "Action": action, "Resource": resource}
    if "NotPrincipal" not in extra and "Principal" not in extra:
        body["Principal"] = "*"
    body.update(extra)
    return {name: value for name, value in body.items() if value is not None}


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


PUBLIC_GET = policy(stmt("Allow", "s3:GetObject", Sid="PublicRead"))
DENY_ALL_GET = policy(stmt("Deny", "s3:GetObject", Sid="NoReads"))
DENY_ALL = policy(stmt("Deny", "s3:*", [BUCKET, OBJECTS], Sid="Lockdown"))
BOB_ARN = "arn:aws:iam::000000000000:user/bob"
ALLOW_BOB_ALL = policy(stmt("Allow", "s3:*", [BUCKET, OBJECTS], Principal={"AWS": BOB_ARN}))
ALLOW_CAROL_BY_ID = policy(
    stmt("Allow", "s3:GetObject", Principal={"CanonicalUser": CAROL_ID}, Sid="CarolId")
)
ALLOW_ALL_BUT_BOB = policy(
    stmt("Allow", "s3:GetObject", NotPrincipal={"AWS": BOB_ARN}, Principal=None)
)
ALLOW_NOT_DELETE = policy(stmt("Allow", None, NotAction="s3:Delete*"))
ALLOW_NOT_SECRET = policy(
    stmt("Allow", "s3:GetObject", None, NotResource="arn:aws:s3:::b/secret/*")
)
ALLOW_FROM_V4 = policy(
    stmt("Allow", "s3:GetObject", Condition={"IpAddress": {"aws:SourceIp": "192.0.2.0/24"}})
)
ALLOW_FROM_V6 = policy(
    stmt("Allow", "s3:GetObject", Condition={"IpAddress": {"aws:SourceIp": ["2001:db8::/32"]}})
)
DENY_NOT_FROM_V4 = policy(
    stmt("Deny", "s3:GetObject", Condition={"NotIpAddress": {"aws:SourceIp": "192.0.2.0/24"}}),
)
DENY_INSECURE = policy(
    stmt("Deny", "s3:*", [BUCKET, OBJECTS], Condition={"Bool": {"aws:SecureTransport": "false"}}),
)
ALLOW_SECURE_ONLY = policy(
    stmt("Allow", "s3:GetObject", Condition={"Bool": {"aws:SecureTransport": True}})
)
ALLOW_LIST_PREFIX = policy(
    stmt("Allow", "s3:ListBucket", BUCKET, Condition={"StringLike": {"s3:prefix": ["public/*"]}})
)
ALLOW_UNTIL = policy(
    stmt(
        "Allow",
        "s3:GetObject",
        Condition={"DateLessThan": {"aws:CurrentTime": "2025-01-01T00:00:00Z"}},
    )
)
ALLOW_AFTER = policy(
    stmt(
        "Allow",
        "s3:GetObject",
        Condition={"DateGreaterThan": {"aws:CurrentTime": "2025-01-01T00:00:00Z"}},
    )
)
ALLOW_PREFIX_WILDCARD = policy(stmt("Allow", "s3:Get*", "arn:aws:s3:::b/pub/??/*"))
ALLOW_ACTION_CASE = policy(stmt("Allow", "S3:getobject"))
ALLOW_LIST_BUCKET_ON_OBJECTS = policy(stmt("Allow", "s3:ListBucket", OBJECTS))
ALLOW_PUBLIC_PUT = policy(stmt("Allow", "s3:PutObject"))
DENY_BOB_DELETE = policy(
    stmt("Deny", "s3:DeleteObject", Principal={"AWS": [BOB_ARN]}, Sid="BobNoDelete")
)
ALLOW_USERNAME = policy(
    stmt(
        "Allow",
        "s3:GetObject",
        "arn:aws:s3:::b/home/*",
        Condition={"StringEquals": {"aws:username": "carol"}},
    )
)
ALLOW_NOT_EQUALS_MISSING = policy(
    stmt("Allow", "s3:GetObject", Condition={"StringNotEquals": {"aws:Referer": "evil.example"}})
)
ALLOW_IFEXISTS = policy(
    stmt("Allow", "s3:GetObject", Condition={"StringEqualsIfExists": {"aws:Referer": "ok"}})
)
ALLOW_MAXKEYS = policy(
    stmt(
        "Allow",
        "s3:ListBucket",
        BUCKET,
        Condition={"NumericLessThanEquals": {"s3:max-keys": "10"}},
    )
)


@dataclass(frozen=True)
class Case:
    name: str
    principal: Principal
    action: str
    key: str | None
    expected: bool
    bucket_acl: AccessControlList = PRIVATE_BUCKET
    object_acl: AccessControlList | None = None
    policy: str | None = None
    pab: PublicAccessBlock | None = None
    source_ip: str | None = "198.51.100.7"
    secure: bool = True
    values: dict[str, str] = field(default_factory=dict)
    reason: str = ""


CASES = [
    # --- owners and root ----------------------------------------------------------------------
    Case("owner reads own object", ALICE, "s3:GetObject", "k", True, object_acl=PRIVATE_OBJ, reason="bucket owner"),
    Case("owner lists own bucket", ALICE, "s3:ListBucket", None, True),
    Case("owner puts object", ALICE, "s3:PutObject", "k", True),
    Case("owner reads missing object (gets 404 later)", ALICE, "s3:GetObject", "k", True),
    Case("owner gets bucket acl", ALICE, "s3:GetBucketAcl", None, True),
    Case("owner puts bucket policy", ALICE, "s3:PutBucketPolicy", None, True),
    Case("owner deletes bucket", ALICE, "s3:DeleteBucket", None, True),
    Case("owner cannot read other's private object", ALICE, "s3:GetObject", "k", False, object_acl=BOBS_PRIVATE_OBJ),
    Case("owner cannot read other's object acl", ALICE, "s3:GetObjectAcl", "k", False, object_acl=BOBS_PRIVATE_OBJ),
    Case("owner can delete other's object", ALICE, "s3:DeleteObject", "k", True, object_acl=BOBS_PRIVATE_OBJ),
    Case("owner can overwrite other's object", ALICE, "s3:PutObject", "k", True, object_acl=BOBS_PRIVATE_OBJ),
    Case("owner reads other's object given bucket-owner-read", ALICE, "s3:GetObject", "k", True, object_acl=BOBS_OBJ_OWNER_READ),
    Case("owner reads other's public object", ALICE, "s3:GetObject", "k", True, object_acl=BOBS_PUBLIC_OBJ),
    Case("bucket policy cannot open other's object to owner", ALICE, "s3:GetObject", "k", False, object_acl=BOBS_PRIVATE_OBJ, policy=PUBLIC_GET),
    Case("object owner reads own object via grant", BOB, "s3:GetObject", "k", True, object_acl=BOBS_PRIVATE_OBJ),
    Case("object owner without grants still reads acl", BOB, "s3:GetObjectAcl", "k", True, object_acl=BOBS_OBJ_NO_GRANTS, reason="object owner"),
    Case("object owner without grants still writes acl", BOB, "s3:PutObjectAcl", "k", True, object_acl=BOBS_OBJ_NO_GRANTS),
    Case("object owner without grants cannot read data", BOB, "s3:GetObject", "k", False, object_acl=BOBS_OBJ_NO_GRANTS),
    Case("object owner cannot delete without bucket write", BOB, "s3:DeleteObject", "k", False, object_acl=BOBS_PRIVATE_OBJ),
    Case("root reads anything", ROOT, "s3:GetObject", "k", True, object_acl=BOBS_PRIVATE_OBJ, reason="root"),
    Case("root ignores explicit deny", ROOT, "s3:GetObject", "k", True, object_acl=PRIVATE_OBJ, policy=DENY_ALL),
    Case("root puts bucket policy", ROOT, "s3:PutBucketPolicy", None, True),
    # --- anonymous vs authenticated, ACLs ----------------------------------------------------
    Case("anonymous denied on private object", ANONYMOUS, "s3:GetObject", "k", False, object_acl=PRIVATE_OBJ),
    Case("other user denied on private object", BOB, "s3:GetObject", "k", False, object_acl=PRIVATE_OBJ),
    Case("public-read bucket does not open objects", ANONYMOUS, "s3:GetObject", "k", False, bucket_acl=PUBLIC_READ_BUCKET, object_acl=PRIVATE_OBJ),
    Case("public-read bucket allows anonymous listing", ANONYMOUS, "s3:ListBucket", None, True, bucket_acl=PUBLIC_READ_BUCKET, reason="AllUsers"),
    Case("public-read bucket does not allow put", ANONYMOUS, "s3:PutObject", "k", False, bucket_acl=PUBLIC_READ_BUCKET),
    Case("public-read-write bucket allows anonymous put", ANONYMOUS, "s3:PutObject", "k", True, bucket_acl=PUBLIC_RW_BUCKET),
    Case("public-read-write bucket allows anonymous delete", ANONYMOUS, "s3:DeleteObject", "k", True, bucket_acl=PUBLIC_RW_BUCKET),
    Case("public-read object in private bucket is readable", ANONYMOUS, "s3:GetObject", "k", True, object_acl=PUBLIC_OBJ, reason="acl grant READ to AllUsers"),
    Case("public-read object torrent is readable", ANONYMOUS, "s3:GetObjectTorrent", "k", True, object_acl=PUBLIC_OBJ),
    Case("public-read object acl is not readable", ANONYMOUS, "s3:GetObjectAcl", "k", False, object_acl=PUBLIC_OBJ),
    Case("public-read object cannot be deleted", ANONYMOUS, "s3:DeleteObject", "k", False, object_acl=PUBLIC_OBJ),
    Case("authenticated-read object: anonymous denied", ANONYMOUS, "s3:GetObject", "k", False, object_acl=AUTH_OBJ),
    Case("authenticated-read object: user allowed", BOB, "s3:GetObject", "k", True, object_acl=AUTH_OBJ, reason="AuthenticatedUsers"),
    Case("authenticated-read bucket: user lists", CAROL, "s3:ListBucket", None, True, bucket_acl=AUTH_READ_BUCKET),
    Case("authenticated-read bucket: anonymous cannot list", ANONYMOUS, "s3:ListBucket", None, False, bucket_acl=AUTH_READ_BUCKET),
    Case("grant READ to carol by id", CAROL, "s3:GetObject", "k", True, object_acl=OBJ_CAROL_READ),
    Case("grant READ to carol not to bob", BOB, "s3:GetObject", "k", False, object_acl=OBJ_CAROL_READ),
    Case("READ does not imply READ_ACP", CAROL, "s3:GetObjectAcl", "k", False, object_acl=OBJ_CAROL_READ),
    Case("FULL_CONTROL implies WRITE_ACP", CAROL, "s3:PutObjectAcl", "k", True, object_acl=OBJ_CAROL_FULL),
    Case("FULL_CONTROL implies READ", CAROL, "s3:GetObjectVersion", "k", True, object_acl=OBJ_CAROL_FULL),
    Case("public READ_ACP grant", ANONYMOUS, "s3:GetObjectAcl", "k", True, object_acl=OBJ_PUBLIC_ACP),
    Case("bucket WRITE grant allows put", CAROL, "s3:PutObject", "k", True, bucket_acl=BUCKET_CAROL_WRITE),
    Case("bucket WRITE grant allows abort", CAROL, "s3:AbortMultipartUpload", "k", True, bucket_acl=BUCKET_CAROL_WRITE),
    Case("bucket WRITE grant does not allow list", CAROL, "s3:ListBucket", None, False, bucket_acl=BUCKET_CAROL_WRITE),
    Case("authenticated WRITE_ACP on bucket", BOB, "s3:PutBucketAcl", None, True, bucket_acl=BUCKET_AUTH_WRITE_ACP),
    Case("ACL cannot grant bucket policy", BOB, "s3:PutBucketPolicy", None, False, bucket_acl=BUCKET_AUTH_WRITE_ACP),
    Case("unknown action denied", BOB, "s3:Frobnicate", "k", False, object_acl=PUBLIC_OBJ),
    # --- explicit deny -------------------------------------------------------------------------
    Case("explicit deny beats ACL grant", ANONYMOUS, "s3:GetObject", "k", False, object_acl=PUBLIC_OBJ, policy=DENY_ALL_GET, reason="explicit deny by Sid NoReads"),
    Case("explicit deny beats policy allow", ANONYMOUS, "s3:GetObject", "k", False, policy=policy(stmt("Allow", "s3:GetObject"), stmt("Deny", "s3:GetObject"))),
    Case("explicit deny binds bucket owner", ALICE, "s3:GetObject", "k", False, object_acl=PRIVATE_OBJ, policy=DENY_ALL),
    Case("explicit deny cannot lock owner out of policy", ALICE, "s3:DeleteBucketPolicy", None, True, policy=DENY_ALL),
    Case("deny for bob only", BOB, "s3:DeleteObject", "k", False, bucket_acl=PUBLIC_RW_BUCKET, policy=DENY_BOB_DELETE, reason="BobNoDelete"),
    Case("deny for bob does not hit carol", CAROL, "s3:DeleteObject", "k", True, bucket_acl=PUBLIC_RW_BUCKET, policy=DENY_BOB_DELETE),
    Case("deny insecure transport", ALICE, "s3:ListBucket", None, False, policy=DENY_INSECURE, secure=False),
    Case("secure transport passes deny", ALICE, "s3:ListBucket", None, True, policy=DENY_INSECURE, secure=True),
    Case("deny outside v4 range", ANONYMOUS, "s3:GetObject", "k", False, object_acl=PUBLIC_OBJ, policy=DENY_NOT_FROM_V4, source_ip="203.0.113.9"),
    Case("inside v4 range passes deny", ANONYMOUS, "s3:GetObject", "k", True, object_acl=PUBLIC_OBJ, policy=DENY_NOT_FROM_V4, source_ip="192.0.2.44"),
    Case("deny with NotIpAddress and no source ip", ANONYMOUS, "s3:GetObject", "k", False, object_acl=PUBLIC_OBJ, policy=DENY_NOT_FROM_V4, source_ip=None),
    # --- policy allow ------------------------------------------------------------------------
    Case("policy * GetObject makes objects readable", ANONYMOUS, "s3:GetObject", "k", True, object_acl=PRIVATE_OBJ, policy=PUBLIC_GET, reason="allow by Sid PublicRead"),
    Case("policy on b/* does not allow listing", ANONYMOUS, "s3:ListBucket", None, False, policy=PUBLIC_GET),
    Case("policy on b/* does not allow put", ANONYMOUS, "s3:PutObject", "k", False, policy=PUBLIC_GET),
    Case("policy GetObject needs no object ACL", ANONYMOUS, "s3:GetObject", "k", True, policy=PUBLIC_GET),
    Case("policy allows named user", BOB, "s3:DeleteBucket", None, True, policy=ALLOW_BOB_ALL),
    Case("policy named user is not everyone", CAROL, "s3:GetObject", "k", False, policy=ALLOW_BOB_ALL),
    Case("policy does not grant owner-only actions", BOB, "s3:PutBucketPolicy", None, False, policy=ALLOW_BOB_ALL),
    Case("policy by canonical user", CAROL, "s3:GetObject", "k", True, policy=ALLOW_CAROL_BY_ID, reason="CarolId"),
    Case("NotPrincipal excludes bob", BOB, "s3:GetObject", "k", False, policy=ALLOW_ALL_BUT_BOB),
    Case("NotPrincipal includes anonymous", ANONYMOUS, "s3:GetObject", "k", True, policy=ALLOW_ALL_BUT_BOB),
    Case("NotAction allows get", ANONYMOUS, "s3:GetObject", "k", True, policy=ALLOW_NOT_DELETE),
    Case("NotAction excludes delete", ANONYMOUS, "s3:DeleteObject", "k", False, policy=ALLOW_NOT_DELETE),
    Case("NotResource allows outside", ANONYMOUS, "s3:GetObject", "pub/a", True, policy=ALLOW_NOT_SECRET),
    Case("NotResource excludes inside", ANONYMOUS, "s3:GetObject", "secret/a", False, policy=ALLOW_NOT_SECRET),
    Case("resource ? wildcard matches", ANONYMOUS, "s3:GetObject", "pub/ab/x", True, policy=ALLOW_PREFIX_WILDCARD),
    Case("resource ? wildcard needs one char", ANONYMOUS, "s3:GetObject", "pub/abc/x", False, policy=ALLOW_PREFIX_WILDCARD),
    Case("action matching is case-insensitive", ANONYMOUS, "s3:GetObject", "k", True, policy=ALLOW_ACTION_CASE),
    Case("ListBucket on object arn never matches bucket", ANONYMOUS, "s3:ListBucket", None, False, policy=ALLOW_LIST_BUCKET_ON_OBJECTS),
    Case("public put policy", ANONYMOUS, "s3:PutObject", "k", True, policy=ALLOW_PUBLIC_PUT),
    Case("policy put allowed over other's object", CAROL, "s3:PutObject", "k", True, object_acl=BOBS_PRIVATE_OBJ, policy=ALLOW_PUBLIC_PUT),
    Case("policy cannot open bob's object in alice's bucket", ANONYMOUS, "s3:GetObject", "k", False, object_acl=BOBS_PRIVATE_OBJ, policy=PUBLIC_GET),
    # --- conditions ----------------------------------------------------------------------------
    Case("source ip v4 inside", ANONYMOUS, "s3:GetObject", "k", True, policy=ALLOW_FROM_V4, source_ip="192.0.2.200"),
    Case("source ip v4 outside", ANONYMOUS, "s3:GetObject", "k", False, policy=ALLOW_FROM_V4, source_ip="192.0.3.1"),
    Case("source ip v4-mapped v6 inside", ANONYMOUS, "s3:GetObject", "k", True, policy=ALLOW_FROM_V4, source_ip="::ffff:192.0.2.1"),
    Case("source ip missing", ANONYMOUS, "s3:GetObject", "k", False, policy=ALLOW_FROM_V4, source_ip=None),
    Case("source ip garbage", ANONYMOUS, "s3:GetObject", "k", False, policy=ALLOW_FROM_V4, source_ip="not-an-ip"),
    Case("source ip v6 inside", ANONYMOUS, "s3:GetObject", "k", True, policy=ALLOW_FROM_V6, source_ip="2001:db8:1::5"),
    Case("source ip v6 outside", ANONYMOUS, "s3:GetObject", "k", False, policy=ALLOW_FROM_V6, source_ip="2001:db9::5"),
    Case("v4 client vs v6 range", ANONYMOUS, "s3:GetObject", "k", False, policy=ALLOW_FROM_V6, source_ip="192.0.2.1"),
    Case("secure transport allow over https", ANONYMOUS, "s3:GetObject", "k", True, policy=ALLOW_SECURE_ONLY, secure=True),
    Case("secure transport allow over http", ANONYMOUS, "s3:GetObject", "k", False, policy=ALLOW_SECURE_ONLY, secure=False),
    Case("s3:prefix matches", ANONYMOUS, "s3:ListBucket", None, True, policy=ALLOW_LIST_PREFIX, values={"s3:prefix": "public/photos/"}),
    Case("s3:prefix does not match", ANONYMOUS, "s3:ListBucket", None, False, policy=ALLOW_LIST_PREFIX, values={"s3:prefix": "private/"}),
    Case("s3:prefix missing", ANONYMOUS, "s3:ListBucket", None, False, policy=ALLOW_LIST_PREFIX),
    Case("DateLessThan in the past", ANONYMOUS, "s3:GetObject", "k", False, policy=ALLOW_UNTIL),
    Case("DateGreaterThan satisfied", ANONYMOUS, "s3:GetObject", "k", True, policy=ALLOW_AFTER),
    Case("aws:username matches carol", CAROL, "s3:GetObject", "home/x", True, policy=ALLOW_USERNAME),
    Case("aws:username not bob", BOB, "s3:GetObject", "home/x", False, policy=ALLOW_USERNAME),
    Case("aws:username absent for anonymous", ANONYMOUS, "s3:GetObject", "home/x", False, policy=ALLOW_USERNAME),
    Case("negated operator with missing key holds", ANONYMOUS, "s3:GetObject", "k", True, policy=ALLOW_NOT_EQUALS_MISSING),
    Case("negated operator with matching key fails", ANONYMOUS, "s3:GetObject", "k", False, policy=ALLOW_NOT_EQUALS_MISSING, values={"aws:Referer": "evil.example"}),
    Case("IfExists with missing key holds", ANONYMOUS, "s3:GetObject", "k", True, policy=ALLOW_IFEXISTS),
    Case("IfExists with wrong value fails", ANONYMOUS, "s3:GetObject", "k", False, policy=ALLOW_IFEXISTS, values={"aws:referer": "bad"}),
    Case("numeric max-keys within", ANONYMOUS, "s3:ListBucket", None, True, policy=ALLOW_MAXKEYS, values={"s3:max-keys": "5"}),
    Case("numeric max-keys over", ANONYMOUS, "s3:ListBucket", None, False, policy=ALLOW_MAXKEYS, values={"s3:max-keys": "500"}),
    Case("numeric max-keys garbage", ANONYMOUS, "s3:ListBucket", None, False, policy=ALLOW_MAXKEYS, values={"s3:max-keys": "lots"}),
    # --- block public access -------------------------------------------------------------------
    Case("IgnorePublicAcls hides public-read object", ANONYMOUS, "s3:GetObject", "k", False, object_acl=PUBLIC_OBJ, pab=IGNORE_ACLS),
    Case("IgnorePublicAcls hides authenticated-read", BOB, "s3:GetObject", "k", False, object_acl=AUTH_OBJ, pab=IGNORE_ACLS),
    Case("IgnorePublicAcls keeps user grants", CAROL, "s3:GetObject", "k", True, object_acl=OBJ_CAROL_READ, pab=IGNORE_ACLS),
    Case("IgnorePublicAcls keeps public policy", ANONYMOUS, "s3:GetObject", "k", True, object_acl=PUBLIC_OBJ, policy=PUBLIC_GET, pab=IGNORE_ACLS),
    Case("RestrictPublicBuckets blocks public policy", ANONYMOUS, "s3:GetObject", "k", False, policy=PUBLIC_GET, pab=RESTRICT),
    Case("RestrictPublicBuckets keeps public ACL", ANONYMOUS, "s3:GetObject", "k", True, object_acl=PUBLIC_OBJ, policy=PUBLIC_GET, pab=RESTRICT),
    Case("RestrictPublicBuckets blocks other users via public policy", BOB, "s3:GetObject", "k", False, policy=PUBLIC_GET, pab=RESTRICT),
    Case("RestrictPublicBuckets keeps non-public policy", BOB, "s3:DeleteBucket", None, True, policy=ALLOW_BOB_ALL, pab=RESTRICT),
    Case("RestrictPublicBuckets: ip-restricted policy is not public", ANONYMOUS, "s3:GetObject", "k", True, policy=ALLOW_FROM_V4, pab=RESTRICT, source_ip="192.0.2.3"),
    Case("RestrictPublicBuckets keeps owner", ALICE, "s3:GetObject", "k", True, policy=PUBLIC_GET, pab=RESTRICT),
    Case("all blocked: public object and policy both closed", ANONYMOUS, "s3:GetObject", "k", False, object_acl=PUBLIC_OBJ, policy=PUBLIC_GET, pab=ALL_BLOCKED),
    Case("all blocked: owner still reads", ALICE, "s3:GetObject", "k", True, object_acl=PUBLIC_OBJ, policy=PUBLIC_GET, pab=ALL_BLOCKED),
]  # fmt: skip


def _facts(case: Case) -> AccessFacts:
    return AccessFacts(
        bucket_owner=ALICE_OWNER,
        bucket_acl=case.bucket_acl,
        object_acl=case.object_acl,
        policy=parse_policy(case.policy, bucket="b") if case.policy else None,
        public_access_block=case.pab,
    )


def _ctx(case: Case) -> RequestContext:
    return RequestContext(
        now=NOW, source_ip=case.source_ip, secure_transport=case.secure, values=case.values
    )


def test_table_is_big_enough() -> None:
    assert len(CASES) >= 70
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_decide(case: Case) -> None:
    decision = decide(
        case.principal, case.action, Resource("b", case.key), _facts(case), _ctx(case)
    )
    assert decision.allowed is case.expected, decision.reason
    assert case.reason in decision.reason


def test_naive_now_is_taken_as_utc() -> None:
    facts = AccessFacts(ALICE_OWNER, PRIVATE_BUCKET, policy=parse_policy(ALLOW_AFTER, bucket="b"))
    ctx = RequestContext(now=datetime(2025, 6, 1))
    assert decide(ANONYMOUS, "s3:GetObject", Resource("b", "k"), facts, ctx).allowed


_text = st.text(st.characters(codec="utf-8"), max_size=30)


@settings(max_examples=200, deadline=None)
@given(
    action=_text,
    bucket=_text,
    key=st.none() | _text,
    source_ip=st.none() | _text,
    values=st.dictionaries(_text, _text, max_size=4),
    who=st.sampled_from([ANONYMOUS, ALICE, BOB, CAROL, ROOT]),
)
def test_decide_never_raises(
    action: str,
    bucket: str,
    key: str | None,
    source_ip: str | None,
    values: dict[str, str],
    who: Principal,
) -> None:
    everything = policy(
        stmt("Allow", ["s3:*", "s3:Get?bject"], ["arn:aws:s3:::b*", "*"]),
        stmt(
            "Deny",
            "s3:Put*",
            Condition={
                "NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8", "::1/128"]},
                "NumericGreaterThan": {"s3:max-keys": 5},
                "DateLessThanIfExists": {"aws:CurrentTime": "2020-01-01"},
                "ForAnyValue:StringLike": {"s3:prefix": ["*a*b?"]},
                "Null": {"aws:username": "true"},
            },
        ),
    )
    facts = AccessFacts(
        ALICE_OWNER,
        PUBLIC_READ_BUCKET,
        BOBS_PUBLIC_OBJ,
        parse_policy(everything, bucket="b"),
        ALL_BLOCKED,
    )
    ctx = RequestContext(now=NOW, source_ip=source_ip, values=values)
    decision = decide(who, action, Resource(bucket, key), facts, ctx)
    assert isinstance(decision.allowed, bool)
    assert decision.reason
